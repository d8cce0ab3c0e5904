//! The workflow face under concurrent executions: rounds of `ANNALS_BENCH_EXECUTIONS` (100)
//! executions of a short step triggered at once, each followed by a long poll on its log that
//! is waiting when the step writes its line. The step prints the wall-clock time (µs) at which
//! it writes; the client notes when the long poll's answer arrives; the difference is the
//! latency from a line written to a line delivered, through the pipe, the runner, the actor,
//! the journal (and its sync), the follow wake-up and HTTP. Beside it, a trivial actix-web
//! handler answers the same number of concurrent GETs. `cargo bench --bench hpcwaas`;
//! `ANNALS_BENCH_DURABILITY=flush|none` changes the log's durability (fsync by default).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{web, HttpResponse};
use annals::config::Config;
use annals::domain::workflow::catalogue::StepSpec;
use annals::domain::workflow::WorkflowSpec;
use annals::events::Durability;
use support::{env_or, get, post, read_response, report, run, Run};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the step waits before writing its line, so that the long poll is waiting by then
/// (a line already there would be answered at once and measure nothing). Polls that were not
/// waiting are counted and left out. The time is bash's own clock in microseconds, written by
/// a builtin: a `date` process per line would put a hundred process starts into the window
/// measured.
const STEP: &str = "sleep 1; echo ${EPOCHREALTIME/./}";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// One execution, from its trigger to its end: the line's latency (`None` when the poll was
/// not waiting yet), and whether it ended in success.
async fn one(address: SocketAddr) -> (Option<Duration>, bool) {
    let mut connection = TcpStream::connect(address).await.expect("connects");
    connection.set_nodelay(true).expect("nodelay");
    let mut buffer = Vec::with_capacity(1 << 16);
    connection
        .write_all(post("/workflows/bench@lab@tick", "", "{}").as_bytes())
        .await
        .expect("sends");
    assert_eq!(read_response(&mut connection, &mut buffer).await, 201);
    let head = String::from_utf8_lossy(&buffer).to_ascii_lowercase();
    let id = head
        .lines()
        .find_map(|line| line.strip_prefix("location: /executions/"))
        .expect("a Location")
        .trim()
        .to_owned();
    let asked_at = now_ns();
    let logs = format!("/executions/{id}/logs?from=0&levels=14&size=50&timeout=60s");
    connection
        .write_all(get(&logs).as_bytes())
        .await
        .expect("sends");
    assert_eq!(read_response(&mut connection, &mut buffer).await, 200);
    let received_at = now_ns();
    let body = body_of(&buffer);
    let written_at: u128 = body["logs"][0]["content"]
        .as_str()
        .and_then(|text| text.trim().parse::<u128>().ok())
        .expect("the step's time, in microseconds")
        * 1000;
    let latency = (written_at > asked_at)
        .then(|| Duration::from_nanos(received_at.saturating_sub(written_at) as u64));
    // Waits for the end, a long poll past the last line between status reads: the poll waits
    // out its timeout when no line comes, also once the execution has ended.
    let rest = format!("/executions/{id}/logs?from=1&timeout=200ms");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        connection
            .write_all(get(&format!("/executions/{id}")).as_bytes())
            .await
            .expect("sends");
        assert_eq!(read_response(&mut connection, &mut buffer).await, 200);
        let status = body_of(&buffer)["status"].clone();
        if status != "RUNNING" && status != "CANCELLING" {
            return (latency, status == "SUCCESS");
        }
        assert!(Instant::now() < deadline, "the execution ends");
        connection
            .write_all(get(&rest).as_bytes())
            .await
            .expect("sends");
        assert_eq!(read_response(&mut connection, &mut buffer).await, 200);
    }
}

fn body_of(buffer: &[u8]) -> serde_json::Value {
    let start = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    serde_json::from_slice(&buffer[start..]).expect("a JSON body")
}

fn main() -> anyhow::Result<()> {
    let executions = env_or("ANNALS_BENCH_EXECUTIONS", 100);
    let rounds = env_or("ANNALS_BENCH_ROUNDS", 3);
    let durability = match std::env::var("ANNALS_BENCH_DURABILITY").as_deref() {
        Ok("flush") => Durability::Flush,
        Ok("none") => Durability::None,
        _ => Durability::Fsync,
    };

    let dir = tempfile::tempdir()?;
    let mut config = Config {
        durability,
        ..support::config(dir.path(), &["partisci", "refstack"])
    };
    config.hpcwaas.listen = String::new();
    config.hpcwaas.workflows = vec![WorkflowSpec {
        application_id: "bench".into(),
        environment_id: "lab".into(),
        environment_name: "Bench".into(),
        name: "tick".into(),
        steps: vec![StepSpec {
            name: "tick".into(),
            command: vec!["bash".into(), "-c".into(), STEP.into()],
            ..StepSpec::default()
        }],
        ..WorkflowSpec::default()
    }];
    let annals = support::start_annals(config)?.main;
    let trivial = support::start_trivial(|routes| {
        routes.route(
            "/trivial",
            web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"ok": true})) }),
        );
    })?;
    let runtime = support::runtime()?;
    runtime.block_on(async move {
        println!(
            "{rounds} rounds of {executions} concurrent executions of `{STEP}`, durability \
             {durability:?}"
        );
        let base = run(trivial, executions, executions * rounds * 10, 200, |_| {
            get("/trivial")
        })
        .await;
        let mut latencies = Vec::new();
        let mut not_waiting = 0;
        let mut round_times = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let tasks: Vec<_> = (0..executions).map(|_| tokio::spawn(one(annals))).collect();
            for task in tasks {
                let (latency, succeeded) = task.await.expect("an execution finishes");
                assert!(succeeded, "every execution succeeds");
                match latency {
                    Some(latency) => latencies.push(latency),
                    None => not_waiting += 1,
                }
            }
            round_times.push(started.elapsed());
        }
        latencies.sort();
        report("trivial GET", &base, None);
        let lines = Run {
            latencies,
            elapsed: round_times.iter().sum(),
        };
        let at = |q: f64| {
            let i = ((lines.latencies.len() as f64 * q) as usize).min(lines.latencies.len() - 1);
            lines.latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "  line written → delivered to a waiting long poll: {} lines, p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms ({not_waiting} polls not yet waiting, left out)",
            lines.latencies.len(),
            at(0.5),
            at(0.99),
            lines
                .latencies
                .last()
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        );
        let rounds_ms: Vec<String> = round_times
            .iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1000.0))
            .collect();
        println!(
            "  a round (trigger → line → end → status, the step sleeping 1 s): {} ms",
            rounds_ms.join(", ")
        );
    });
    Ok(())
}
