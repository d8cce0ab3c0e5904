//! Journal benchmark: durable appends against a plain-sled group-commit baseline, replay speed,
//! activation time with and without a snapshot, and bytes on disk per event.
//!
//! Run with `cargo bench --bench journal`. Results go to stdout as Markdown tables; progress and
//! per-round details go to stderr.
//!
//! Environment variables:
//! - `ANNALS_BENCH_SCALE`: `full` (default) or `small` (a quick run with smaller sizes).
//! - `ANNALS_BENCH_SECONDS`: seconds per append run (full: 5, small: 1).
//! - `ANNALS_BENCH_ROUNDS`: append runs per system and writer count (full: 2, small: 1).
//! - `ANNALS_BENCH_WRITERS`: comma-separated writer counts (default `1,16,64`).
//! - `ANNALS_BENCH_LARGE`: events in the large stream (full: 1000000, small: 100000).
//! - `ANNALS_BENCH_SMALL`: events in the small stream (default 10000).
//! - `ANNALS_BENCH_THP=on`: transparent huge pages left on (the annals binary turns them off).
//!
//! Every event is a `job` `LineRecorded` whose line is 300 bytes, built like `annals load` does.

#[path = "support/appends.rs"]
mod appends;
#[path = "support/env.rs"]
mod env;
#[path = "support/scratch.rs"]
mod scratch;

use std::fs::File;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use appends::{drive, line_event, ms, percentile, run_writers, timed, Pooled, Run, LINE_BYTES};
use chrono::Utc;
use env::env_or;
use scratch::new_event;
use tokio::sync::{oneshot, Barrier};

use annals::events::{Durability, EventLog, ExpectedVersion, LogOptions, NewEvent, StreamId};
use annals::runtime::job::{Job, JobEvent, JobStarted};
use annals::runtime::state::{self, ReplayUntil};

/// The page cache of the replay log: more than its 1.3 GB of data at full scale.
const REPLAY_CACHE_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Events per `append` call when building the replay streams.
const BUILD_BATCH: usize = 1000;

struct Config {
    scale: String,
    seconds: f64,
    rounds: usize,
    writers: Vec<usize>,
    small_stream: u64,
    large_stream: u64,
}

impl Config {
    fn from_env() -> anyhow::Result<Config> {
        let scale = std::env::var("ANNALS_BENCH_SCALE").unwrap_or_else(|_| "full".into());
        let (seconds, rounds, large) = match scale.as_str() {
            "full" => (5.0, 2, 1_000_000),
            "small" => (1.0, 1, 100_000),
            other => bail!("ANNALS_BENCH_SCALE={other:?}: expected full or small"),
        };
        let writers = match std::env::var("ANNALS_BENCH_WRITERS") {
            Ok(raw) => raw
                .split(',')
                .map(|w| w.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()
                .context("ANNALS_BENCH_WRITERS")?,
            Err(_) => vec![1, 16, 64],
        };
        Ok(Config {
            scale,
            seconds: env_or("ANNALS_BENCH_SECONDS", seconds)?,
            rounds: env_or("ANNALS_BENCH_ROUNDS", rounds)?,
            writers,
            small_stream: env_or("ANNALS_BENCH_SMALL", 10_000)?,
            large_stream: env_or("ANNALS_BENCH_LARGE", large)?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// 1. annals: durable appends through EventLog::append.

fn run_annals(
    runtime: &tokio::runtime::Runtime,
    writers: usize,
    seconds: f64,
) -> anyhow::Result<Run> {
    let (_dir, log) = scratch::temp_log(Durability::Fsync)?;
    let result = run_writers(runtime, std::slice::from_ref(&log), writers, seconds);
    log.close();
    drop(log);
    result
}

// ---------------------------------------------------------------------------------------------
// 2. Baseline: the same events, group-committed straight to sled by one thread.

struct BaselineRequest {
    value: Vec<u8>,
    reply: oneshot::Sender<()>,
}

/// Takes every pending request, inserts each event under its own key in one batch,
/// `apply_batch`, `flush`, `fdatasync` of `<dir>/db`, then acknowledges them all.
fn baseline_thread(
    db: sled::Db,
    tree: sled::Tree,
    data_file: File,
    requests: mpsc::Receiver<BaselineRequest>,
) -> anyhow::Result<u64> {
    let mut key: u64 = 0;
    let mut rounds = 0;
    while let Ok(first) = requests.recv() {
        let mut pending = vec![first];
        while let Ok(next) = requests.try_recv() {
            pending.push(next);
        }
        let mut batch = sled::Batch::default();
        let mut replies = Vec::with_capacity(pending.len());
        for request in pending {
            key += 1;
            batch.insert(&key.to_be_bytes(), request.value);
            replies.push(request.reply);
        }
        tree.apply_batch(batch)?;
        db.flush()?;
        data_file.sync_data()?;
        rounds += 1;
        for reply in replies {
            let _ = reply.send(());
        }
    }
    Ok(rounds)
}

async fn baseline_writer(
    sender: mpsc::Sender<BaselineRequest>,
    writer: usize,
    barrier: Arc<Barrier>,
    seconds: f64,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    timed(writer, barrier, seconds, |event| {
        let (reply, answer) = oneshot::channel();
        let sent = sender.send(BaselineRequest {
            value: event.payload,
            reply,
        });
        async move {
            sent.map_err(|_| anyhow::anyhow!("the baseline writer thread stopped"))?;
            answer
                .await
                .map_err(|_| anyhow::anyhow!("the baseline writer thread dropped a request"))
        }
    })
    .await
}

fn open_sled(path: &Path) -> anyhow::Result<sled::Db> {
    // The same configuration annals' store uses.
    Ok(sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .open()?)
}

fn run_baseline(
    runtime: &tokio::runtime::Runtime,
    writers: usize,
    seconds: f64,
) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let db = open_sled(dir.path())?;
    let tree = db.open_tree("log")?;
    db.flush()?;
    let data_file = File::open(dir.path().join("db"))?;
    let (sender, receiver) = mpsc::channel();
    let thread = {
        let db = db.clone();
        std::thread::Builder::new()
            .name("baseline-writer".into())
            .spawn(move || baseline_thread(db, tree, data_file, receiver))?
    };
    let result = runtime.block_on(drive(writers, |w, barrier| {
        baseline_writer(sender.clone(), w, barrier, seconds)
    }));
    drop(sender);
    let rounds = thread
        .join()
        .map_err(|_| anyhow::anyhow!("the baseline writer thread panicked"))??;
    drop(db);
    let (events, elapsed, latencies) = result?;
    Ok(Run {
        events,
        elapsed,
        latencies,
        rounds: Some(rounds),
    })
}

// ---------------------------------------------------------------------------------------------
// 3-5. Replay, activation, bytes on disk.

/// Appends `count` events to a new job stream (a JobStarted, then lines) in batches.
fn build_stream(
    runtime: &tokio::runtime::Runtime,
    log: &EventLog,
    stream: &StreamId,
    count: u64,
) -> anyhow::Result<()> {
    runtime.block_on(async {
        let mut version = 0;
        let mut seq = 0;
        while seq < count {
            let n = (count - seq).min(BUILD_BATCH as u64);
            let events: Vec<NewEvent> = (seq..seq + n)
                .map(|s| {
                    if s == 0 {
                        new_event(&JobEvent::JobStarted(JobStarted {
                            name: "replay".into(),
                            at: Utc::now(),
                        }))
                    } else {
                        new_event(&line_event(0, s))
                    }
                })
                .collect();
            let appended = log
                .append(stream.clone(), ExpectedVersion::Exactly(version), events)
                .await?;
            version = appended.stream_version;
            seq += n;
        }
        anyhow::ensure!(
            version == count,
            "the stream ended at {version}, not {count}"
        );
        anyhow::Ok(())
    })
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

/// Warm replay: one untimed run, then `reps` timed runs; returns the median time.
fn time_replay(
    log: &EventLog,
    stream: &StreamId,
    expected: u64,
    reps: usize,
) -> anyhow::Result<Duration> {
    let warm = state::replay::<Job>(log, stream, ReplayUntil::End)?;
    anyhow::ensure!(
        warm.replayed == expected,
        "replayed {} of {expected}",
        warm.replayed
    );
    let mut times = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        let loaded = state::replay::<Job>(log, stream, ReplayUntil::End)?;
        times.push(started.elapsed());
        anyhow::ensure!(loaded.replayed == expected);
        anyhow::ensure!(loaded.state.lines == expected - 1);
    }
    Ok(median(times))
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn du(dir: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = du(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

fn rate(events: u64, took: Duration) -> String {
    format!("{:.0}", events as f64 / took.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    // Huge pages off for the whole process (annals and the baseline alike), as the annals
    // binary runs; `ANNALS_BENCH_THP=on` keeps them on, to compare.
    if std::env::var("ANNALS_BENCH_THP").as_deref() != Ok("on") {
        annals::startup::without_transparent_huge_pages();
    }
    let config = Config::from_env()?;
    let bench_started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sample_payload = new_event(&line_event(0, 1)).payload.len();
    eprintln!(
        "scale {}: {} s per append run, {} round(s), writers {:?}, streams of {} and {} events; payload {} bytes",
        config.scale, config.seconds, config.rounds, config.writers, config.small_stream,
        config.large_stream, sample_payload
    );

    // 1 and 2, interleaved per writer count so that both systems see the same machine state.
    let mut append_rows = Vec::new();
    for &writers in &config.writers {
        let mut annals = Pooled::default();
        let mut baseline = Pooled::default();
        for round in 0..config.rounds {
            // Alternate which system goes first: A B, then B A.
            let order: [bool; 2] = if round % 2 == 0 {
                [true, false]
            } else {
                [false, true]
            };
            for is_annals in order {
                let run = if is_annals {
                    run_annals(&runtime, writers, config.seconds)?
                } else {
                    run_baseline(&runtime, writers, config.seconds)?
                };
                eprintln!(
                    "  {:>8} writers={writers:<3} round {round}: {} events in {:.2} s = {:.0} events/s{}",
                    if is_annals { "annals" } else { "baseline" },
                    run.events,
                    run.elapsed.as_secs_f64(),
                    run.events as f64 / run.elapsed.as_secs_f64(),
                    run.rounds
                        .map(|r| format!(", {:.1} events per fsync", run.events as f64 / r as f64))
                        .unwrap_or_default()
                );
                if is_annals {
                    annals.add(run)
                } else {
                    baseline.add(run)
                }
            }
        }
        append_rows.push((writers, annals, baseline));
    }

    // 3, 4, 5 on one log holding a small and a large stream. Its page cache holds both
    // streams, so that "warm" means in memory.
    let dir = tempfile::tempdir()?;
    let options = LogOptions {
        durability: Durability::None,
        cache_bytes: REPLAY_CACHE_BYTES,
        ..LogOptions::default()
    };
    let log = EventLog::open(dir.path(), options.clone())?;
    let small = StreamId::parse("job-replay-small")?;
    let large = StreamId::parse("job-replay-large")?;
    let build_started = Instant::now();
    build_stream(&runtime, &log, &small, config.small_stream)?;
    build_stream(&runtime, &log, &large, config.large_stream)?;
    let build_took = build_started.elapsed();
    let total_events = config.small_stream + config.large_stream;
    eprintln!(
        "built {total_events} events in {:.1} s ({} events/s, {BUILD_BATCH} per append, durability none)",
        build_took.as_secs_f64(),
        rate(total_events, build_took)
    );

    // Closing syncs everything the build left to sled's background writer, so that no disk
    // work competes with the timed replays; each replay is then warmed once before timing.
    log.close();
    drop(log);
    let log = EventLog::open(dir.path(), options)?;
    let small_replay = time_replay(&log, &small, config.small_stream, 5)?;
    eprintln!(
        "replayed {} events in {:?}",
        config.small_stream, small_replay
    );
    let large_replay = time_replay(&log, &large, config.large_stream, 3)?;
    eprintln!(
        "replayed {} events in {:?}",
        config.large_stream, large_replay
    );

    // 4. Activation of the large stream: full replay (no snapshot), then snapshot + empty tail.
    anyhow::ensure!(log.store().snapshot(&large)?.is_none());
    let mut no_snapshot = Vec::new();
    let mut state_at_end = None;
    for _ in 0..3 {
        let started = Instant::now();
        let loaded = state::load::<Job>(&log, &large)?;
        no_snapshot.push(started.elapsed());
        anyhow::ensure!(
            loaded.snapshot_version.is_none() && loaded.replayed == config.large_stream
        );
        state_at_end = Some((loaded.version, loaded.state));
    }
    let no_snapshot = median(no_snapshot);
    let (version, state_at_end) = state_at_end.expect("three loads");
    state::save_snapshot::<Job>(&log, &large, version, &state_at_end)?;
    let mut with_snapshot = Vec::new();
    let mut first_with_snapshot = None;
    for _ in 0..201 {
        let started = Instant::now();
        let loaded = state::load::<Job>(&log, &large)?;
        let took = started.elapsed();
        anyhow::ensure!(loaded.snapshot_version == Some(version) && loaded.replayed == 0);
        anyhow::ensure!(loaded.state == state_at_end);
        first_with_snapshot.get_or_insert(took);
        with_snapshot.push(took);
    }
    with_snapshot.sort_unstable();
    let snap_p50 = percentile(&with_snapshot, 50.0);
    let snap_p99 = percentile(&with_snapshot, 99.0);
    let snap_first = first_with_snapshot.expect("loads ran");
    eprintln!("activation: {no_snapshot:?} without a snapshot, {snap_p50:?} (p50) with one");

    // 5. Bytes on disk per event.
    let sled_size = log.store().size_on_disk()?;
    log.close();
    drop(log);
    let (apparent, allocated) = du(dir.path())?;
    drop(dir);

    // Context for 5: the same payloads stored by plain sled, one key each.
    let raw_dir = tempfile::tempdir()?;
    let (raw_sled_size, raw_apparent, raw_allocated) = {
        let db = open_sled(raw_dir.path())?;
        let tree = db.open_tree("log")?;
        let mut key: u64 = 0;
        while key < total_events {
            let mut batch = sled::Batch::default();
            for _ in 0..BUILD_BATCH.min((total_events - key) as usize) {
                key += 1;
                batch.insert(&key.to_be_bytes(), new_event(&line_event(0, key)).payload);
            }
            tree.apply_batch(batch)?;
        }
        db.flush()?;
        let size = db.size_on_disk()?;
        drop(tree);
        drop(db);
        let (a, b) = du(raw_dir.path())?;
        (size, a, b)
    };
    drop(raw_dir);

    // The report.
    println!();
    println!(
        "### Durable appends (`Durability::Fsync`, one {LINE_BYTES}-byte-line `LineRecorded` per append, own stream per writer, `ExpectedVersion::Exactly`)"
    );
    println!();
    println!(
        "{} s per run, {} run(s) per cell, pooled. Latency: each append's await time.",
        config.seconds, config.rounds
    );
    println!();
    println!("| writers | annals events/s | annals p50 ms | annals p99 ms | baseline events/s | baseline p50 ms | baseline p99 ms | baseline events/fsync | annals / baseline |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (writers, mut annals, mut baseline) in append_rows {
        let per_fsync = baseline
            .rounds
            .map(|r| format!("{:.1}", baseline.events as f64 / r as f64))
            .unwrap_or_default();
        println!(
            "| {writers} | {:.0} | {} | {} | {:.0} | {} | {} | {per_fsync} | {:.2}× |",
            annals.rate(),
            ms(annals.percentile(50.0)),
            ms(annals.percentile(99.0)),
            baseline.rate(),
            ms(baseline.percentile(50.0)),
            ms(baseline.percentile(99.0)),
            annals.rate() / baseline.rate(),
        );
    }
    println!();
    println!("### Replay, activation, size");
    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| build: {total_events} events, {BUILD_BATCH} per append, `Durability::None` | {:.1} s ({} events/s) |",
        build_took.as_secs_f64(),
        rate(total_events, build_took)
    );
    println!(
        "| warm replay, {}-event stream (median of 5) | {} ms ({} events/s) |",
        config.small_stream,
        ms(small_replay),
        rate(config.small_stream, small_replay)
    );
    println!(
        "| warm replay, {}-event stream (median of 3) | {} ms ({} events/s) |",
        config.large_stream,
        ms(large_replay),
        rate(config.large_stream, large_replay)
    );
    println!(
        "| activation, {}-event history, no snapshot (median of 3) | {} ms |",
        config.large_stream,
        ms(no_snapshot)
    );
    println!(
        "| activation, {}-event history, snapshot + empty tail (201 loads) | p50 {} ms, p99 {} ms, first {} ms |",
        config.large_stream,
        ms(snap_p50),
        ms(snap_p99),
        ms(snap_first)
    );
    println!(
        "| bytes/event, annals: `size_on_disk()` / {total_events} | {:.0} ({:.1} MiB) |",
        sled_size as f64 / total_events as f64,
        sled_size as f64 / 1048576.0
    );
    println!(
        "| bytes/event, annals: files after close, apparent / allocated | {:.0} / {:.0} |",
        apparent as f64 / total_events as f64,
        allocated as f64 / total_events as f64
    );
    println!(
        "| bytes/event, plain sled (payload only, one key): `size_on_disk()`; files apparent / allocated | {:.0}; {:.0} / {:.0} |",
        raw_sled_size as f64 / total_events as f64,
        raw_apparent as f64 / total_events as f64,
        raw_allocated as f64 / total_events as f64
    );
    println!("| payload of one event (MessagePack `LineRecorded`) | {sample_payload} bytes |");
    println!();
    println!(
        "Total bench time: {:.0} s",
        bench_started.elapsed().as_secs_f64()
    );
    Ok(())
}
