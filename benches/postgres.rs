//! The log's engines side by side: durable appends (`Durability::Fsync`) to sled, to a local
//! PostgreSQL through one annals node, and to the same PostgreSQL through three nodes (three
//! logs in one process, each with its own journal, connections and follower), with the same
//! writers spread over them.
//!
//! Run with `cargo bench --bench postgres`. It starts its own PostgreSQL (Debian's `postgresql`
//! package, `fsync` on) in a temporary directory, or uses `ANNALS_TEST_POSTGRES_URL`. Results go
//! to stdout as a Markdown table; each run's figures go to stderr.
//!
//! Environment variables:
//! - `ANNALS_BENCH_SECONDS`: seconds per run (default 5).
//! - `ANNALS_BENCH_ROUNDS`: runs per engine and writer count (default 2), alternating the order.
//! - `ANNALS_BENCH_WRITERS`: comma-separated writer counts (default `1,16,64`).

#[path = "support/appends.rs"]
mod appends;
#[path = "support/env.rs"]
mod env;
#[path = "../tests/common/postgres.rs"]
#[allow(dead_code)]
mod pg;
#[path = "support/scratch.rs"]
mod scratch;

use anyhow::Context;
use appends::{ms, run_writers, Pooled, Run, LINE_BYTES};
use env::env_or;

use annals::events::{Durability, EventLog, LogOptions};

/// Where the events go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Sled,
    Postgres { nodes: usize },
}

impl Target {
    fn name(self) -> String {
        match self {
            Target::Sled => "sled".into(),
            Target::Postgres { nodes: 1 } => "PostgreSQL, 1 node".into(),
            Target::Postgres { nodes } => format!("PostgreSQL, {nodes} nodes"),
        }
    }
}

fn durable() -> LogOptions {
    LogOptions {
        durability: Durability::Fsync,
        ..LogOptions::default()
    }
}

fn run(
    runtime: &tokio::runtime::Runtime,
    target: Target,
    writers: usize,
    seconds: f64,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let nodes: Vec<EventLog> = match target {
        Target::Sled => vec![EventLog::open(dir.path(), durable())?],
        Target::Postgres { nodes } => {
            let url = pg::durable_server().new_database();
            (0..nodes)
                .map(|n| {
                    let data = dir.path().join(format!("node-{n}"));
                    EventLog::open(&data, pg::at(&url, durable()))
                })
                .collect::<Result<_, _>>()?
        }
    };
    let measured = run_writers(runtime, &nodes, writers, seconds);
    for node in &nodes {
        node.close();
    }
    measured
}

fn main() -> anyhow::Result<()> {
    annals::startup::without_transparent_huge_pages();
    let seconds: f64 = env_or("ANNALS_BENCH_SECONDS", 5.0)?;
    let rounds: usize = env_or("ANNALS_BENCH_ROUNDS", 2)?;
    let writers: Vec<usize> = match std::env::var("ANNALS_BENCH_WRITERS") {
        Ok(list) => list
            .split(',')
            .map(|n| n.trim().parse())
            .collect::<Result<_, _>>()
            .context("ANNALS_BENCH_WRITERS")?,
        Err(_) => vec![1, 16, 64],
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The server starts before any timing.
    pg::durable_server();
    let targets = [
        Target::Sled,
        Target::Postgres { nodes: 1 },
        Target::Postgres { nodes: 3 },
    ];
    let mut rows = Vec::new();
    for &count in &writers {
        let mut pooled: Vec<Pooled> = targets.iter().map(|_| Pooled::default()).collect();
        for round in 0..rounds {
            // Each round in another order, so that no engine always runs first.
            for i in 0..targets.len() {
                let t = (i + round) % targets.len();
                let measured = run(&runtime, targets[t], count, seconds)?;
                eprintln!(
                    "  {:<20} writers={count:<3} round {round}: {} events in {:.2} s = {:.0} events/s",
                    targets[t].name(),
                    measured.events,
                    measured.elapsed.as_secs_f64(),
                    measured.events as f64 / measured.elapsed.as_secs_f64()
                );
                pooled[t].add(measured);
            }
        }
        rows.push((count, pooled));
    }
    println!(
        "### Durable appends by engine (`Durability::Fsync`; PostgreSQL `synchronous_commit = on`, \
         `fsync = on`; one {LINE_BYTES}-byte-line `LineRecorded` per append, own stream per \
         writer, `ExpectedVersion::Exactly`; writers spread over the nodes)\n"
    );
    println!("| writers | engine | events/s | × sled | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (count, mut pooled) in rows {
        let sled = pooled[0].rate();
        for (t, target) in targets.iter().enumerate() {
            let rate = pooled[t].rate();
            println!(
                "| {count} | {} | {rate:.0} | {:.2}× | {} | {} |",
                target.name(),
                rate / sled,
                ms(pooled[t].percentile(50.0)),
                ms(pooled[t].percentile(99.0)),
            );
        }
    }
    Ok(())
}
