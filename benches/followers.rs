//! Event API followers: how long an appended event takes to reach long-poll followers, and how
//! much memory the server spends on idle long-poll followers.
//!
//! Run with `cargo bench --bench followers`. The server runs in this process on a loopback port;
//! the idle followers are held by a second copy of this program (so that the resident memory
//! measured here is the server's alone). Environment: `ANNALS_BENCH_FOLLOWERS` (idle followers,
//! default 10000), `ANNALS_BENCH_ROUNDS` (wake rounds, default 50), `ANNALS_BENCH_WAKERS`
//! (followers per wake round, default 100).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::events::{
    DomainEvent, Durability, EventLog, ExpectedVersion, LogOptions, Metadata, NewEvent, StreamId,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set in the child that holds the idle followers: the server's address.
const CHILD_ROLE: &str = "ANNALS_BENCH_IDLE_FOLLOWERS_OF";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    if let Ok(address) = std::env::var(CHILD_ROLE) {
        return hold_idle_followers(&address, env_or("ANNALS_BENCH_FOLLOWERS", 10_000));
    }
    let idle = env_or("ANNALS_BENCH_FOLLOWERS", 10_000);
    let rounds = env_or("ANNALS_BENCH_ROUNDS", 50);
    let wakers = env_or("ANNALS_BENCH_WAKERS", 100);

    let dir = tempfile::tempdir()?;
    // No disk sync: the figure is the path from an append to its followers, not the disk.
    let log = EventLog::open(
        dir.path(),
        LogOptions {
            durability: Durability::None,
            ..LogOptions::default()
        },
    )?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server =
                    annals::http::server(listener, annals::http::HttpState::open(log), None)
                        .expect("the server starts");
                let _ = server.await;
            })
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // Wake latency: followers wait at the head; one append; each follower's answer time.
    let mut latencies = Vec::with_capacity(rounds * wakers);
    for round in 0..rounds {
        let head = log.head();
        let tasks: Vec<_> = (0..wakers)
            .map(|_| {
                let address = address.clone();
                runtime.spawn(async move { long_poll(&address, head).await })
            })
            .collect();
        wait_for_waiting(wakers as f64)?;
        let appended_at = Instant::now();
        runtime.block_on(log.append(
            StreamId::parse(format!("job-bench-{round}"))?,
            ExpectedVersion::Any,
            vec![line_event()],
        ))?;
        for task in tasks {
            let answered_at = runtime.block_on(task)??;
            latencies.push(answered_at.duration_since(appended_at));
        }
    }
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];

    // Memory of idle followers, held by a child process.
    let before = resident_kib()?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ROLE, &address)
        .env("ANNALS_BENCH_FOLLOWERS", idle.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut ready)?;
    anyhow::ensure!(
        ready.trim() == "ready",
        "the follower process said {ready:?}"
    );
    wait_for_waiting(idle as f64)?;
    let during = resident_kib()?;
    drop(child.stdin.take());
    child.wait()?;

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| append → long-poll answer, {} followers × {rounds} rounds, p50 / p99 / max | {:.3} ms / {:.3} ms / {:.3} ms |",
        wakers,
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(*latencies.last().expect("some rounds"))
    );
    println!(
        "| server resident memory with {idle} idle long-poll followers (VmRSS after − before) | {:.1} MiB ({:.1} KiB per follower; {:.1} MiB before) |",
        (during - before) as f64 / 1024.0,
        (during - before) as f64 / idle as f64,
        before as f64 / 1024.0
    );
    log.close();
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn line_event() -> NewEvent {
    let event = annals::actors::job::JobEvent::LineRecorded(annals::actors::job::LineRecorded {
        line: annals::cli::load_line(0, 0, 300),
        level: annals::actors::job::Level::Info,
        at: chrono::Utc::now(),
    });
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: Metadata::system(),
    }
}

/// One long-poll request after `head`; the instant its whole answer arrived.
async fn long_poll(address: &str, head: u64) -> anyhow::Result<Instant> {
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "GET /api/events?from={head}&timeout=60s HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let answered = Instant::now();
    anyhow::ensure!(
        response.starts_with(b"HTTP/1.1 200"),
        "the follower got {:?}",
        String::from_utf8_lossy(&response)
    );
    Ok(answered)
}

/// Waits until the server counts `expected` waiting followers.
fn wait_for_waiting(expected: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = annals::metrics::handle().render();
        let waiting = text
            .lines()
            .find(|line| line.starts_with("annals_followers_waiting "))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if waiting >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {waiting} of {expected} followers waiting"
        );
        std::thread::yield_now();
    }
}

fn resident_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))
}

/// The child: opens `count` long-polls that will not be answered for minutes, says `ready`, and
/// holds them until its standard input closes.
fn hold_idle_followers(address: &str, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut sockets = Vec::with_capacity(count);
        for batch in (0..count).collect::<Vec<_>>().chunks(500) {
            for _ in batch {
                let mut socket = tokio::net::TcpStream::connect(address).await?;
                let request = format!(
                    "GET /api/events?from=18446744073709551615&timeout=5m HTTP/1.1\r\nHost: {address}\r\n\r\n"
                );
                socket.write_all(request.as_bytes()).await?;
                sockets.push(socket);
            }
            tokio::task::yield_now().await;
        }
        println!("ready");
        std::io::stdout().flush()?;
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(sockets);
        anyhow::Ok(())
    })
}
