//! Durable appends from concurrent writers, timed: the events, the writer loop and the pooled
//! figures that the benchmarks of the log share.
// Each benchmark uses part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::Barrier;

use annals::cli::load_line;
use annals::events::{EventLog, ExpectedVersion, NewEvent, StreamId};
use annals::runtime::job::{JobEvent, JobStarted, Level, LineRecorded};

use super::scratch::new_event;

/// The bytes of each line, as `annals load` writes them.
pub const LINE_BYTES: usize = 300;

pub fn line_event(writer: usize, seq: u64) -> JobEvent {
    JobEvent::LineRecorded(LineRecorded {
        line: load_line(writer, seq, LINE_BYTES),
        level: Level::Info,
        at: Utc::now(),
    })
}

/// One measured append run: how many events were acknowledged in how long, and each
/// acknowledgement's latency.
pub struct Run {
    pub events: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// Commit rounds (baseline only; the journal does not expose its count).
    pub rounds: Option<u64>,
}

/// The runs of one system at one writer count, pooled.
#[derive(Default)]
pub struct Pooled {
    pub events: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub rounds: Option<u64>,
}

impl Pooled {
    pub fn add(&mut self, run: Run) {
        self.events += run.events;
        self.elapsed += run.elapsed;
        self.latencies.extend(run.latencies);
        if let Some(r) = run.rounds {
            self.rounds = Some(self.rounds.unwrap_or(0) + r);
        }
    }
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
    pub fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        percentile(&self.latencies, p)
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

pub async fn annals_writer(
    log: EventLog,
    writer: usize,
    barrier: Arc<Barrier>,
    seconds: f64,
) -> anyhow::Result<(u64, Vec<Duration>)> {
    let stream = StreamId::parse(format!("job-bench-{writer}"))?;
    // Untimed set-up: the job starts, so that every timed event is a LineRecorded.
    let started = JobEvent::JobStarted(JobStarted {
        name: format!("bench {writer}"),
        at: Utc::now(),
    });
    let version = log
        .append(
            stream.clone(),
            ExpectedVersion::Exactly(0),
            vec![new_event(&started)],
        )
        .await?
        .stream_version;
    let version = AtomicU64::new(version);
    timed(writer, barrier, seconds, |event| async {
        let appended = log
            .append(
                stream.clone(),
                ExpectedVersion::Exactly(version.load(Ordering::Relaxed)),
                vec![event],
            )
            .await?;
        version.store(appended.stream_version, Ordering::Relaxed);
        Ok(())
    })
    .await
}

/// Once `barrier` releases the writers, appends writer `writer`'s events one after the other
/// with `append` for `seconds`: how many, and each one's latency.
pub async fn timed<F, Fut>(
    writer: usize,
    barrier: Arc<Barrier>,
    seconds: f64,
    mut append: F,
) -> anyhow::Result<(u64, Vec<Duration>)>
where
    F: FnMut(NewEvent) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    barrier.wait().await;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut latencies = Vec::new();
    let mut seq = 1;
    while Instant::now() < deadline {
        // The same event for both writers; the baseline stores its payload.
        let event = new_event(&line_event(writer, seq));
        let sent = Instant::now();
        append(event).await?;
        latencies.push(sent.elapsed());
        seq += 1;
    }
    Ok((seq - 1, latencies))
}

/// Starts `writers` writer tasks, releases them together, and gathers how many events they
/// appended, how long that took and each append's latency.
pub async fn drive<F, Fut>(
    writers: usize,
    writer: F,
) -> anyhow::Result<(u64, Duration, Vec<Duration>)>
where
    F: Fn(usize, Arc<Barrier>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(u64, Vec<Duration>)>> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(writers + 1));
    let tasks: Vec<_> = (0..writers)
        .map(|w| tokio::spawn(writer(w, barrier.clone())))
        .collect();
    barrier.wait().await;
    let start = Instant::now();
    let mut events = 0;
    let mut latencies = Vec::new();
    for task in tasks {
        let (n, l) = task.await??;
        events += n;
        latencies.extend(l);
    }
    Ok((events, start.elapsed(), latencies))
}

/// Runs `writers` writers for `seconds`, writer `w` appending through `logs[w % logs.len()]`.
pub fn run_writers(
    runtime: &tokio::runtime::Runtime,
    logs: &[EventLog],
    writers: usize,
    seconds: f64,
) -> anyhow::Result<Run> {
    runtime.block_on(async {
        let (events, elapsed, latencies) = drive(writers, |w, barrier| {
            annals_writer(logs[w % logs.len()].clone(), w, barrier, seconds)
        })
        .await?;
        anyhow::Ok(Run {
            events,
            elapsed,
            latencies,
            rounds: None,
        })
    })
}
