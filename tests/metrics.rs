//! `/metrics` in Prometheus' text format, fed by real work: appends, an actor, HTTP requests
//! and a waiting follower. Its own test binary, because the recorder is process-wide.

mod common;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use annals::actors::job::{Job, JobCommand};
use annals::actors::{Entities, NoEffects, Settings, SystemClock};
use annals::events::{ExpectedVersion, Metadata};
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
    assert_eq!(
        sample(&text, "annals_followers_waiting", &[]),
        Some(0.0),
        "{text}"
    );
    assert!(
        sample(&text, "annals_appended_events_total", &[]).unwrap() >= 5.0,
        "{text}"
    );
    assert!(
        sample(&text, "annals_round_events_count", &[]).unwrap() >= 5.0,
        "{text}"
    );
    assert!(
        sample(&text, "annals_append_seconds_bucket", &["le=\"+Inf\""]).unwrap() >= 5.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "annals_actor_activations_total", &["kind=\"job\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "annals_actors_resident", &["kind=\"job\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "annals_http_requests_total",
            &["route=\"/api/events\"", "status=\"200\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "annals_http_requests_total",
            &["route=\"unmatched\"", "status=\"404\""]
        ),
        Some(1.0),
        "{text}"
    );
}
