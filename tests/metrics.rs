//! `/metrics` in Prometheus' text format, fed by real work: appends, an actor, HTTP requests
//! and a waiting follower. Its own test binary, because the recorder is process-wide. A real
//! server's first scrape shows every documented metric and passes `promtool check metrics`.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use annals::events::{ExpectedVersion, Metadata};
use annals::runtime::job::{Job, JobCommand};
use annals::runtime::{Entities, NoEffects, Settings, SystemClock};
use common::{fast, line, stream, TempLog};

/// The value of the first sample of `name` whose line holds every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find(|line| {
            line.split([' ', '{']).next() == Some(name)
                && labels.iter().all(|label| line.contains(label))
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[actix_rt::test]
async fn metrics_count_appends_actors_requests_and_waiting_followers() {
    let t = TempLog::with(fast());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    actix_rt::spawn(
        annals::http::server(listener, annals::http::HttpState::open(t.log.clone()), None).unwrap(),
    );
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let metrics = || {
        let client = client.clone();
        let url = format!("{address}/metrics");
        async move {
            let mut response = client.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200);
            String::from_utf8(response.body().await.unwrap().to_vec()).unwrap()
        }
    };

    for i in 0..3 {
        t.log
            .append(
                stream("job-m"),
                ExpectedVersion::Any,
                vec![line(&i.to_string())],
            )
            .await
            .unwrap();
    }
    let jobs = Entities::<Job>::start(
        t.log.clone(),
        Arc::new(SystemClock),
        Arc::new(NoEffects),
        Settings::default(),
    );
    jobs.execute(
        "metered",
        JobCommand::Start { name: "m".into() },
        Metadata::system(),
    )
    .await
    .unwrap();

    // A follower waits at the head; the gauge shows it until an event wakes it.
    let head = t.log.head();
    let follower = {
        let client = client.clone();
        let url = format!("{address}/api/events?from={head}&timeout=30s");
        actix_rt::spawn(async move { client.get(url).send().await.unwrap().status().as_u16() })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sample(&metrics().await, "annals_followers_waiting", &[]) != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never showed as waiting"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    t.log
        .append(stream("job-m"), ExpectedVersion::Any, vec![line("wake")])
        .await
        .unwrap();
    assert_eq!(follower.await.unwrap(), 200);
    let _ = client
        .get(format!("{address}/no/such/page"))
        .send()
        .await
        .unwrap();

    let text = metrics().await;
    let exactly: [(&str, &[&str], f64); 5] = [
        ("annals_followers_waiting", &[], 0.0),
        ("annals_actor_activations_total", &["kind=\"job\""], 1.0),
        ("annals_actors_resident", &["kind=\"job\""], 1.0),
        (
            "annals_http_requests_total",
            &["route=\"/api/events\"", "status=\"200\""],
            1.0,
        ),
        (
            "annals_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""],
            1.0,
        ),
    ];
    for (name, labels, value) in exactly {
        assert_eq!(
            sample(&text, name, labels),
            Some(value),
            "{name} {labels:?}: {text}"
        );
    }
    let at_least: [(&str, &[&str]); 3] = [
        ("annals_appended_events_total", &[]),
        ("annals_round_events_count", &[]),
        ("annals_append_seconds_bucket", &["le=\"+Inf\""]),
    ];
    for (name, labels) in at_least {
        assert!(
            sample(&text, name, labels).unwrap() >= 5.0,
            "{name} {labels:?}: {text}"
        );
    }
}

/// The metric names `docs/api.md` documents for `/metrics`.
fn documented_metrics() -> Vec<String> {
    let api = include_str!("../docs/api.md");
    let row = api
        .lines()
        .find(|line| line.starts_with("| GET | `/metrics` |"))
        .expect("docs/api.md documents /metrics");
    let names: Vec<String> = row
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| word.starts_with("annals_"))
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "{row}");
    names
}

/// Runs `promtool check metrics` on `text`; its exit status and output. promtool comes from
/// Debian's `prometheus` package (`.ci/run` installs it).
fn promtool_check(text: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let mut child = match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(error) => panic!(
            "promtool is not on PATH ({error}): install Debian's `prometheus` package \
             (apt-get install prometheus), as .ci/run does"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, said)
}

#[test]
fn a_fresh_server_shows_every_documented_metric_and_passes_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        common::serve_data(&dir.path().join("log"), None, &[], &[]).expect("the server starts");
    let mut stream = std::net::TcpStream::connect(&server.address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /metrics HTTP/1.1\r\nHost: annals\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    let (head, text) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(!head.contains("chunked"), "{head}");

    for name in documented_metrics() {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|line| line.starts_with(&name) && !line.starts_with('#')),
            "{name} has no sample at start:\n{text}"
        );
    }
    assert_eq!(
        sample(text, "annals_actors_resident", &["kind=\"job\""]),
        Some(0.0),
        "{text}"
    );
    let (status, said) = promtool_check(text);
    assert!(status.success(), "promtool check metrics: {said}\n{text}");
    assert!(server.terminate().success());
}
