//! Entity states at scale: an execution with 10 and with 100,000 log lines, a scan with 10 and
//! with 10,000 findings, in one run. For each: the size of its snapshot, an activation from
//! that snapshot (what a directory does when the entity is used again; the tail is empty), and
//! a status read through the entity's actor (the execution's as `GET /executions/{id}` makes
//! it, the scan's whole state as `getfindings` asks for it first), p50 and p99.
//!
//! Run with `cargo bench --bench states`. The log is in a temporary directory, appended to
//! without waiting for the disk (the appends only build the streams).
//! Environment: `ANNALS_BENCH_LINES` (default 100000), `ANNALS_BENCH_FINDINGS` (default 10000),
//! `ANNALS_BENCH_READS` (timed activations and status reads of each, default 1000).

#[path = "support/env.rs"]
mod env;
#[path = "support/scratch.rs"]
mod scratch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use env::env_or;
use scratch::new_event;
use uuid::Uuid;

use annals::domain::scan::{
    Asset, Confidence, Datatype, EngineName, Finding, FindingReported, ScanBegan, ScanEvent,
    ScanFinished, ScanId, ScanRecord, ScanRequested, Severity, Target,
};
use annals::domain::workflow::{
    EndedAt, Execution, ExecutionEvent, Level, LogLine, Requested, StepStarted,
};
use annals::events::{DomainEvent, Durability, EventLog, ExpectedVersion, StreamId};
use annals::runtime::state;
use annals::runtime::{Entities, Entity, NoEffects, Settings, SystemClock};

/// Events per `append` call when building a stream.
const BUILD_BATCH: usize = 1000;

/// Appends `events` to a new stream, in batches.
async fn build<E: DomainEvent>(
    log: &EventLog,
    stream: &StreamId,
    events: Vec<E>,
) -> anyhow::Result<()> {
    let mut version = 0;
    for batch in events.chunks(BUILD_BATCH) {
        let new = batch.iter().map(new_event).collect();
        let appended = log
            .append(stream.clone(), ExpectedVersion::Exactly(version), new)
            .await?;
        version = appended.stream_version;
    }
    Ok(())
}

fn execution(lines: u64) -> Vec<ExecutionEvent> {
    let at = Utc::now();
    let mut events = vec![
        ExecutionEvent::ExecutionRequested(Requested {
            workflow: "bench@lab@long".into(),
            inputs: BTreeMap::new(),
            by: Some("ada".into()),
            at,
        }),
        ExecutionEvent::StepStarted(StepStarted {
            index: 0,
            name: "long".into(),
            at,
        }),
    ];
    events.extend((0..lines).map(|n| {
        ExecutionEvent::LogLineRecorded(LogLine {
            level: if n % 7 == 0 { Level::Warn } else { Level::Info },
            at,
            content: format!("{n:>8} a line of a long step's output, as a program prints it"),
        })
    }));
    events.push(ExecutionEvent::ExecutionSucceeded(EndedAt { at }));
    events
}

fn scan(findings: u64) -> Vec<ScanEvent> {
    let at = Utc::now();
    let mut events = vec![
        ScanEvent::ScanRequested(ScanRequested {
            engine: EngineName::parse("tcp").expect("a name"),
            scan_id: ScanId::parse("1").expect("an id"),
            assets: vec![Asset {
                id: "1".into(),
                value: "10.0.0.0/16".into(),
                criticity: "low".into(),
                datatype: Datatype::IpSubnet,
            }],
            options: "{}".into(),
            by: None,
            at,
        }),
        ScanEvent::ScanBegan(ScanBegan { at }),
    ];
    events.extend((0..findings).map(|n| {
        let host = format!("10.0.{}.{}", n / 256, n % 256);
        ScanEvent::FindingReported(FindingReported {
            finding: Finding {
                severity: Severity::Info,
                confidence: Confidence::Certain,
                title: format!("Port '22/tcp' is open on {host} (service: ssh)"),
                description: format!("The port 22/tcp of {host} answered a connection."),
                solution: "Close the port if the service is not needed.".into(),
                kind: "port_info".into(),
                target: Target {
                    addr: vec![host],
                    protocol: Some("tcp".into()),
                    port_id: Some(22),
                    port_type: Some("tcp".into()),
                },
                raw: Some(r#"{"port":22,"state":"open"}"#.into()),
                tags: vec![],
                links: vec![],
                vuln_refs: Default::default(),
            },
            at,
        })
    }));
    events.push(ScanEvent::ScanFinished(ScanFinished { raw: vec![], at }));
    events
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// One entity's figures.
struct Figures {
    what: String,
    snapshot_bytes: usize,
    activation: (Duration, Duration),
    status: (Duration, Duration),
}

/// Writes the snapshot of `id`'s whole stream, then times activations from it and status
/// reads through the actor of a directory started for the purpose.
async fn measure<E: Entity, R: Send + 'static>(
    log: &EventLog,
    what: String,
    id: &str,
    reads: usize,
    status: impl Fn(&E::State) -> R + Clone + Send + 'static,
) -> anyhow::Result<Figures> {
    let stream = StreamId::of(E::KIND, id)?;
    let whole = state::load::<E>(log, &stream)?;
    state::save_snapshot::<E>(log, &stream, whole.version, &whole.state)?;
    let snapshot_bytes = log.store().snapshot(&stream)?.map_or(0, |raw| raw.len());
    let mut activations = Vec::with_capacity(reads);
    for _ in 0..reads {
        let started = Instant::now();
        let loaded = state::load::<E>(log, &stream)?;
        activations.push(started.elapsed());
        anyhow::ensure!(loaded.snapshot_version == Some(whole.version) && loaded.replayed == 0);
    }
    activations.sort_unstable();
    let entities = Entities::<E>::start(
        log.clone(),
        Arc::new(SystemClock),
        Arc::new(NoEffects),
        Settings::default(),
    );
    // The first read activates the actor; the timed ones find it resident.
    entities.inspect(id, status.clone()).await?;
    let mut reads_took = Vec::with_capacity(reads);
    for _ in 0..reads {
        let started = Instant::now();
        entities.inspect(id, status.clone()).await?;
        reads_took.push(started.elapsed());
    }
    reads_took.sort_unstable();
    Ok(Figures {
        what,
        snapshot_bytes,
        activation: (
            percentile(&activations, 50.0),
            percentile(&activations, 99.0),
        ),
        status: (percentile(&reads_took, 50.0), percentile(&reads_took, 99.0)),
    })
}

fn main() -> anyhow::Result<()> {
    let lines = env_or("ANNALS_BENCH_LINES", 100_000u64)?;
    let findings = env_or("ANNALS_BENCH_FINDINGS", 10_000u64)?;
    let reads = env_or("ANNALS_BENCH_READS", 1000usize)?;
    let (_dir, log) = scratch::temp_log(Durability::None)?;
    let figures = actix_rt::System::new().block_on(async {
        let mut figures = Vec::new();
        for count in [10, lines] {
            let id = Uuid::now_v7().to_string();
            build(&log, &StreamId::of(Execution::KIND, &id)?, execution(count)).await?;
            eprintln!("execution with {count} lines built");
            let what = format!("execution, {count} log lines");
            figures.push(
                measure::<Execution, _>(&log, what, &id, reads, |state| state.without_log_index())
                    .await?,
            );
        }
        for count in [10, findings] {
            let id = format!("tcp-{count}");
            build(&log, &StreamId::of(ScanRecord::KIND, &id)?, scan(count)).await?;
            eprintln!("scan with {count} findings built");
            let what = format!("scan, {count} findings");
            figures.push(
                measure::<ScanRecord, _>(&log, what, &id, reads, |state| state.clone()).await?,
            );
        }
        anyhow::Ok(figures)
    })?;
    println!("| entity | snapshot | activation from it, p50 / p99 | status read, p50 / p99 |");
    println!("|---|---|---|---|");
    for f in figures {
        println!(
            "| {} | {} bytes | {} / {} | {} / {} |",
            f.what,
            f.snapshot_bytes,
            us(f.activation.0),
            us(f.activation.1),
            us(f.status.0),
            us(f.status.1)
        );
    }
    println!("\n{reads} activations and {reads} status reads of each, after one untimed read.");
    Ok(())
}
