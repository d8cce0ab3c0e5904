//! Metrics in Prometheus' text format: the one recorder of the process and the name of every
//! metric annals records. Recording sites use these names; `/metrics` renders them.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Events written to the log.
pub const APPENDED_EVENTS: &str = "annals_appended_events_total";
/// Events per commit round (the journal's batch size).
pub const ROUND_EVENTS: &str = "annals_round_events";
/// Seconds from an append's submission to its acknowledgement.
pub const APPEND_SECONDS: &str = "annals_append_seconds";
/// Entity actors resident, by `kind`.
pub const ACTORS_RESIDENT: &str = "annals_actors_resident";
/// Entity actors activated, by `kind`.
pub const ACTOR_ACTIVATIONS: &str = "annals_actor_activations_total";
/// Entity actors passivated, by `kind`.
pub const ACTOR_PASSIVATIONS: &str = "annals_actor_passivations_total";
/// Long-poll and event-stream followers waiting for a commit.
pub const FOLLOWERS_WAITING: &str = "annals_followers_waiting";
/// Partisci datagrams received, by `outcome`: `accepted`, `invalid` (dropped: not a valid
/// update), `overloaded` (dropped: too many in flight) or `failed` (the log refused it).
pub const PARTISCI_DATAGRAMS: &str = "annals_partisci_udp_datagrams_total";
/// Partisci datagrams the kernel dropped because the socket's buffer was full (Linux).
pub const PARTISCI_KERNEL_DROPS: &str = "annals_partisci_udp_kernel_drops_total";
/// Follower reads, by `source`: `recent` (the in-memory window of the latest events) or `store`.
pub const FOLLOW_READS: &str = "annals_follow_reads_total";
/// The shards of entities whose side effects this node runs: all 64 on one node; on a
/// PostgreSQL log shared by several, those it holds leases on.
pub const SHARDS_HELD: &str = "annals_shards_held";
/// HTTP requests answered, by `route` (the matched pattern, or `unmatched`) and `status`.
pub const HTTP_REQUESTS: &str = "annals_http_requests_total";

/// The values each labelled metric is known to take, shown at zero from the start. The entity
/// kinds, the `kind` label's values, are the domain's: start-up gives them ([`register_kinds`]).
const KNOWN_LABELS: &[(&str, &str, &[&str])] = &[
    (
        PARTISCI_DATAGRAMS,
        "outcome",
        &["accepted", "invalid", "overloaded", "failed"],
    ),
    (FOLLOW_READS, "source", &["recent", "store"]),
];

/// Describes every metric (its `# HELP` line) and registers each at zero, so that a scrape
/// shows every family from the start rather than once first touched. Gauges and counters are
/// moved by zero, not set: a value recorded before this runs is kept.
fn describe_and_register() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(APPENDED_EVENTS, "Events written to the log.");
    describe_histogram!(ROUND_EVENTS, "Events per commit round of the journal.");
    describe_histogram!(
        APPEND_SECONDS,
        Unit::Seconds,
        "Seconds from an append's submission to its acknowledgement."
    );
    describe_gauge!(ACTORS_RESIDENT, "Entity actors resident, by kind.");
    describe_counter!(ACTOR_ACTIVATIONS, "Entity actors activated, by kind.");
    describe_counter!(ACTOR_PASSIVATIONS, "Entity actors passivated, by kind.");
    describe_gauge!(
        FOLLOWERS_WAITING,
        "Long-poll and event-stream followers waiting for a commit."
    );
    describe_counter!(
        PARTISCI_DATAGRAMS,
        "Partisci UDP datagrams received, by outcome (accepted, invalid, overloaded, failed)."
    );
    describe_counter!(
        PARTISCI_KERNEL_DROPS,
        "Partisci UDP datagrams the kernel dropped on a full socket buffer."
    );
    describe_counter!(
        FOLLOW_READS,
        "Follower reads, by source: recent (the in-memory window) or store."
    );
    describe_gauge!(
        SHARDS_HELD,
        "Shards of entities whose side effects this node runs (64 on a single node)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route pattern (or unmatched) and status."
    );

    metrics::counter!(APPENDED_EVENTS).increment(0);
    // Registering a histogram is enough for it to render, with empty buckets.
    drop(metrics::histogram!(ROUND_EVENTS));
    drop(metrics::histogram!(APPEND_SECONDS));
    metrics::gauge!(FOLLOWERS_WAITING).increment(0.0);
    metrics::gauge!(SHARDS_HELD).increment(0.0);
    metrics::counter!(PARTISCI_KERNEL_DROPS).increment(0);
    for (name, label, values) in KNOWN_LABELS {
        for value in values.iter() {
            metrics::counter!(*name, &[(*label, *value)]).increment(0);
        }
    }
    // Requests are labelled by route and status, known only as they are answered; the scrape
    // of `/metrics` itself is the series every server has.
    metrics::counter!(HTTP_REQUESTS, "route" => "/metrics", "status" => "200").increment(0);
}

/// The process's recorder, installed on first use (`annals serve` uses it first as it starts, so
/// nothing recorded is lost). If something else installed a recorder first, the handle renders
/// only what reaches it, which is nothing.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let latency = [
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ];
        let sizes = [
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(APPEND_SECONDS.into()), &latency)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(ROUND_EVENTS.into()), &sizes)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        describe_and_register();
        handle
    })
}

/// Shows the actor metrics of each of `kinds` at zero, so that a scrape lists every kind from
/// the start. Registering again is harmless: nothing is moved.
pub fn register_kinds(kinds: &[&'static str]) {
    for kind in kinds {
        let labels = [("kind", *kind)];
        metrics::gauge!(ACTORS_RESIDENT, &labels).increment(0.0);
        metrics::counter!(ACTOR_ACTIVATIONS, &labels).increment(0);
        metrics::counter!(ACTOR_PASSIVATIONS, &labels).increment(0);
    }
}

/// Counts a follower as waiting until dropped, even when its request is abandoned mid-wait.
pub struct Waiting;

impl Waiting {
    pub fn start() -> Waiting {
        metrics::gauge!(FOLLOWERS_WAITING).increment(1.0);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        metrics::gauge!(FOLLOWERS_WAITING).decrement(1.0);
    }
}
