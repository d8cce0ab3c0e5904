//! Entities hosted by real actix actors over a real log: commands, rejections, activation,
//! passivation, snapshots, side effects, restart and reconciliation, projections.

use crate::common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use annals::events::{
    CodecError, EventLog, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StreamId,
};
use annals::runtime::job::{Job, JobCommand, JobEvent, JobRejection, JobState, JobStatus, Level};
use annals::runtime::projection::{self, ProjectionError};
use annals::runtime::state::{self, ReplayUntil};
use annals::runtime::{
    reconcile, CommandError, Ctx, Decision, Effects, Entities, Entity, NoEffects, Projection,
    ProjectionSettings, Settings, SystemClock,
};
use common::{fast, line, stream, TempLog};

/// Jobs hosted over `log`, on the default settings as `change` changes them.
fn jobs_with(log: &EventLog, change: impl FnOnce(&mut Settings)) -> Entities<Job> {
    let mut settings = Settings::default();
    change(&mut settings);
    Entities::start(
        log.clone(),
        Arc::new(SystemClock),
        Arc::new(NoEffects),
        settings,
    )
}

/// Jobs hosted over `log` on the default settings.
fn jobs(log: &EventLog) -> Entities<Job> {
    jobs_with(log, |_| {})
}

/// A new log, and jobs hosted over it on the default settings.
fn new_jobs() -> (TempLog, Entities<Job>) {
    let t = TempLog::new();
    let jobs = jobs(&t.log);
    (t, jobs)
}

fn start(name: &str) -> JobCommand {
    JobCommand::Start { name: name.into() }
}

fn finish() -> JobCommand {
    JobCommand::Finish { succeeded: true }
}

fn record(text: &str) -> JobCommand {
    JobCommand::RecordLine {
        line: text.into(),
        level: Level::Info,
    }
}

/// Executes `command` on the job `id` as the system; it must succeed.
async fn execute(jobs: &Entities<Job>, id: &str, command: JobCommand) {
    jobs.execute(id, command, Metadata::system()).await.unwrap();
}

/// Executes `command` on the job `id` as the system; it must be rejected with `rejection`.
async fn assert_rejected(
    jobs: &Entities<Job>,
    id: &str,
    command: JobCommand,
    rejection: JobRejection,
) {
    let refused = jobs.execute(id, command, Metadata::system()).await;
    assert_eq!(refused.unwrap_err(), CommandError::Rejected(rejection));
}

/// Appends to `stream_name` an event of a type no entity reads (`NoSuchEvent`), as another
/// writer might.
async fn append_unreadable(log: &EventLog, stream_name: &str) {
    let mut unreadable = line("?");
    unreadable.event_type = "NoSuchEvent".into();
    log.append(stream(stream_name), ExpectedVersion::Any, vec![unreadable])
        .await
        .unwrap();
}

fn from_peer() -> Metadata {
    common::from_ada(7, "127.0.0.1:5000")
}

/// Polls an async check until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[actix_rt::test]
async fn a_command_is_decided_appended_applied_and_answered() {
    let (t, jobs) = new_jobs();
    let done = jobs
        .execute("nightly", start("nightly"), from_peer())
        .await
        .unwrap();
    assert_eq!((done.version, done.first_position), (1, Some(1)));
    let done = jobs
        .execute("nightly", record("hello"), from_peer())
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    assert!(matches!(&done.events[..], [JobEvent::LineRecorded(l)] if l.line == "hello"));

    // The reply came after the events were durable: they are readable, with their metadata.
    let events = t.log.read_stream(&stream("job-nightly"), 0, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].metadata, from_peer());
    let (version, state) = jobs.state("nightly").await.unwrap();
    assert_eq!(
        (version, state.status, state.lines),
        (2, JobStatus::Running, 1)
    );
}

#[actix_rt::test]
async fn with_the_clock_set_back_behind_the_log_new_events_still_get_ids_above_it() {
    // The newest id in the log is from a clock that ran far ahead, since set back.
    let t = TempLog::new();
    let ahead = uuid::Uuid::from_u128(u128::MAX / 2);
    let mut event = line("from a fast clock");
    event.event_id = ahead;
    t.log
        .append(stream("job-fast"), ExpectedVersion::Any, vec![event])
        .await
        .unwrap();
    let t = t.reopen_async().await;
    let jobs = jobs(&t.log);
    for name in ["one", "two"] {
        jobs.execute(name, start(name), from_peer()).await.unwrap();
    }
    let ids: Vec<_> = t
        .log
        .read_all(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids[1] > ahead && ids[2] > ids[1], "{ids:?}");
}

#[actix_rt::test]
async fn a_rejected_command_writes_nothing() {
    let (t, jobs) = new_jobs();
    let too_early = record("too early");
    assert_rejected(
        &jobs,
        "idle",
        too_early,
        JobRejection::NotRunning(JobStatus::New),
    )
    .await;
    assert_eq!(t.log.head(), 0);
    let bad_id = jobs
        .execute("bad\u{7}id", start("x"), Metadata::system())
        .await;
    assert!(matches!(bad_id, Err(CommandError::Unavailable(reason)) if reason.contains("control")));
}

#[actix_rt::test]
async fn actors_beyond_the_cap_are_passivated_least_recently_used_first() {
    let t = TempLog::new();
    let jobs = jobs_with(&t.log, |s| s.max_resident = 2);
    for id in ["a", "b"] {
        execute(&jobs, id, start(id)).await;
    }
    execute(&jobs, "a", record("a is recent")).await;
    execute(&jobs, "c", start("c")).await;
    let stats = jobs.stats().await;
    assert_eq!(
        (stats.resident, stats.activations, stats.passivations),
        (2, 3, 1)
    );
    // The passivated actor really stops and frees its state.
    eventually("the passivated actor to stop", || async {
        jobs.stats().await.live == 2
    })
    .await;
    // "a" was used more recently than "b", so "b" went; using "a" activates nothing new.
    execute(&jobs, "a", record("still here")).await;
    assert_eq!(jobs.stats().await.activations, 3);
    // "b" comes back with its state from the log.
    let (version, state) = jobs.state("b").await.unwrap();
    assert_eq!((version, state.name.as_str()), (1, "b"));
    assert_eq!(jobs.stats().await.activations, 4);
}

#[actix_rt::test]
async fn idle_actors_are_passivated() {
    let t = TempLog::new();
    let jobs = jobs_with(&t.log, |s| s.idle_timeout = Duration::from_millis(30));
    execute(&jobs, "a", start("a")).await;
    assert_eq!(jobs.stats().await.resident, 1);
    eventually("passivation", || async {
        let stats = jobs.stats().await;
        stats.resident == 0 && stats.live == 0
    })
    .await;
    let (version, _) = jobs.state("a").await.unwrap();
    assert_eq!(version, 1);
}

#[actix_rt::test]
async fn snapshots_are_written_every_n_events_and_used_on_activation() {
    let t = TempLog::new();
    let jobs = jobs_with(&t.log, |s| s.snapshot_every = 5);
    execute(&jobs, "s", start("s")).await;
    for i in 0..11 {
        execute(&jobs, "s", record(&i.to_string())).await;
    }
    let s = stream("job-s");
    eventually("a snapshot at version 10", || {
        let log = t.log.clone();
        let s = s.clone();
        async move { state::load::<Job>(&log, &s).unwrap().snapshot_version == Some(10) }
    })
    .await;
    let loaded = state::load::<Job>(&t.log, &s).unwrap();
    assert_eq!((loaded.version, loaded.replayed), (12, 2));
    let replayed = state::replay::<Job>(&t.log, &s, ReplayUntil::End).unwrap();
    assert_eq!(loaded.state, replayed.state);
}

/// `job` under a newer state schema: same rules, another `STATE_VERSION`.
struct JobNext;

impl Entity for JobNext {
    annals::entity_types!("job" version Job::STATE_VERSION + 1, state JobState,
        JobCommand => JobEvent, rejected JobRejection);

    fn decide(state: &JobState, command: &JobCommand, ctx: &Ctx) -> Decision<Self> {
        Job::decide(state, command, ctx)
    }
    fn apply(state: &mut JobState, event: &JobEvent) {
        Job::apply(state, event)
    }
}

#[actix_rt::test]
async fn a_snapshot_of_a_stale_state_schema_is_ignored() {
    let (t, jobs) = new_jobs();
    execute(&jobs, "v", start("v")).await;
    execute(&jobs, "v", record("one")).await;
    let s = stream("job-v");
    // A snapshot that disagrees with the log shows which path a load took.
    let marked = JobState {
        lines: 999,
        ..Default::default()
    };
    state::save_snapshot::<Job>(&t.log, &s, 2, &marked).unwrap();
    assert_eq!(state::load::<Job>(&t.log, &s).unwrap().state.lines, 999);
    let fresh = state::load::<JobNext>(&t.log, &s).unwrap();
    assert_eq!(
        (fresh.snapshot_version, fresh.state.lines, fresh.replayed),
        (None, 1, 2)
    );
}

#[actix_rt::test]
async fn a_slow_replay_writes_a_snapshot_at_activation() {
    let t = TempLog::new();
    let s = stream("job-slow");
    let events: Vec<NewEvent> = (0..200).map(|i| line(&i.to_string())).collect();
    t.log
        .append(s.clone(), ExpectedVersion::Exactly(0), events)
        .await
        .unwrap();
    let jobs = jobs_with(&t.log, |s| s.replay_budget = Duration::ZERO);
    assert_eq!(jobs.state("slow").await.unwrap().0, 200);
    eventually("the activation snapshot", || {
        let log = t.log.clone();
        let s = s.clone();
        async move { state::load::<Job>(&log, &s).unwrap().snapshot_version == Some(200) }
    })
    .await;
}

#[actix_rt::test]
async fn an_actor_that_lost_a_race_catches_up_and_decides_again() {
    let t = TempLog::new();
    let first = jobs(&t.log);
    let second = jobs(&t.log);
    execute(&first, "r", start("r")).await;
    // Activate the second incarnation, then let the first move the stream on.
    assert_eq!(second.state("r").await.unwrap().0, 1);
    execute(&first, "r", record("from first")).await;
    let done = second
        .execute("r", record("from second"), Metadata::system())
        .await
        .unwrap();
    assert_eq!(done.version, 3);
    let (_, state) = second.state("r").await.unwrap();
    assert_eq!(
        (state.lines, state.last_line.as_deref()),
        (2, Some("from second"))
    );
    // The rules are checked against the caught-up state.
    execute(&first, "r", finish()).await;
    let too_late = record("too late");
    let ended = JobRejection::NotRunning(JobStatus::Succeeded);
    assert_rejected(&second, "r", too_late, ended).await;
}

/// Runs a started job to completion in a spawned task, as a face would run a scan.
struct RunToCompletion {
    log: EventLog,
    /// For each call: whether the events were already durable (readable) when it was made.
    durable_when_called: Mutex<Vec<bool>>,
}

impl Effects<Job> for RunToCompletion {
    fn after_commit(&self, id: &str, _: &JobState, events: &[JobEvent], entities: &Entities<Job>) {
        let stream = StreamId::of(Job::KIND, id).unwrap();
        let stored = self.log.read_stream(&stream, 0, usize::MAX).unwrap();
        let durable = stored.len() >= events.len()
            && stored[stored.len() - events.len()..]
                .iter()
                .zip(events)
                .all(|(s, e)| s.event_type == annals::events::DomainEvent::event_type(e));
        self.durable_when_called.lock().unwrap().push(durable);
        if matches!(events, [JobEvent::JobStarted(_)]) {
            let entities = entities.clone();
            let id = id.to_owned();
            tokio::spawn(async move {
                execute(&entities, &id, record("working")).await;
                execute(&entities, &id, finish()).await;
            });
        }
    }
}

#[actix_rt::test]
async fn side_effects_start_after_durability_and_report_back_as_commands() {
    let t = TempLog::new();
    let effects = Arc::new(RunToCompletion {
        log: t.log.clone(),
        durable_when_called: Mutex::default(),
    });
    let jobs = Entities::<Job>::start(
        t.log.clone(),
        Arc::new(SystemClock),
        effects.clone(),
        Settings::default(),
    );
    execute(&jobs, "e", start("e")).await;
    eventually("the job to finish", || async {
        jobs.state("e").await.unwrap().1.status == JobStatus::Succeeded
    })
    .await;
    assert_eq!(
        *effects.durable_when_called.lock().unwrap(),
        [true, true, true]
    );
}

#[test]
fn after_a_restart_entities_come_back_and_running_ones_are_settled() {
    let t = TempLog::with(fast());
    let before = actix_rt::System::new().block_on(async {
        let jobs = jobs(&t.log);
        for id in ["running", "done"] {
            execute(&jobs, id, start(id)).await;
            execute(&jobs, id, record("progress")).await;
        }
        execute(&jobs, "done", finish()).await;
        let running = reconcile::track_in_progress::<Job>(&t.log).unwrap();
        running
            .wait_for(t.log.head(), Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(
            running.read(|v| v.state.clone()),
            BTreeSet::from(["running".to_owned()])
        );
        (
            jobs.state("running").await.unwrap(),
            jobs.state("done").await.unwrap(),
        )
    });

    let t = t.reopen();
    actix_rt::System::new().block_on(async {
        let jobs = jobs(&t.log);
        assert_eq!(jobs.state("done").await.unwrap(), before.1);
        assert_eq!(jobs.state("running").await.unwrap(), before.0);

        let running = reconcile::track_in_progress::<Job>(&t.log).unwrap();
        let settled = reconcile::reconcile(&t.log, &jobs, &running, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(settled.len(), 1);
        assert_eq!(settled[0].0, "running");
        let (version, state) = jobs.state("running").await.unwrap();
        assert_eq!((version, state.status), (3, JobStatus::Interrupted));
        assert_eq!(jobs.state("done").await.unwrap(), before.1);

        running
            .wait_for(t.log.head(), Duration::from_secs(30))
            .await
            .unwrap();
        assert!(running.read(|v| v.state.is_empty()));
        // A second start-up finds nothing left to settle.
        let again = reconcile::reconcile(&t.log, &jobs, &running, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(again.is_empty());
    });
    annals::events::verify::verify(t.log.store(), |_| {}).unwrap();
}

/// Counts lines per stream, and how many events it was ever asked to fold.
#[derive(Default)]
struct LinesPerStream {
    folded: Arc<AtomicUsize>,
}

impl Projection for LinesPerStream {
    type State = std::collections::BTreeMap<String, u64>;

    fn name(&self) -> String {
        "test:lines-per-stream".into()
    }
    fn version(&self) -> u32 {
        1
    }
    fn category(&self) -> Option<String> {
        Some("job".into())
    }
    fn apply(&self, state: &mut Self::State, event: &RecordedEvent) -> Result<(), CodecError> {
        self.folded.fetch_add(1, Ordering::Relaxed);
        if let JobEvent::LineRecorded(_) = annals::events::DomainEvent::from_recorded(event)? {
            *state.entry(event.stream.to_string()).or_default() += 1;
        }
        Ok(())
    }
}

#[test]
fn a_projection_sees_its_writes_resumes_from_its_checkpoint_and_stops_on_bad_events() {
    let t = TempLog::with(fast());
    actix_rt::System::new().block_on(async {
        let live = projection::start(
            LinesPerStream::default(),
            t.log.clone(),
            ProjectionSettings::default(),
        )
        .unwrap();
        for i in 0..5 {
            let appended = common::append_line(&t.log, &format!("job-{}", i % 2), "l").await;
            // Read your write: once the projection reaches the acknowledged position, it shows it.
            live.wait_for(appended.first_position, Duration::from_secs(30))
                .await
                .unwrap();
            assert_eq!(live.read(|v| v.state.values().sum::<u64>()), i + 1);
        }
        // Events of other categories move the position without being folded.
        let other = common::append_line(&t.log, "scan-z", "elsewhere").await;
        live.wait_for(other.first_position, Duration::from_secs(30))
            .await
            .unwrap();
        let rebuilt = projection::rebuild(&LinesPerStream::default(), &t.log).unwrap();
        assert_eq!(live.read(|v| v.clone()), rebuilt);
        // The checkpoint is saved off the fold path; the restart below needs it on disk.
        eventually("the checkpoint of position 5", || async {
            projection::saved_position(&LinesPerStream::default(), &t.log)
                .unwrap()
                .is_some_and(|p| p >= 5)
        })
        .await;
    });

    let t = t.reopen();
    actix_rt::System::new().block_on(async {
        let counted = LinesPerStream::default();
        let folded = counted.folded.clone();
        let resumed =
            projection::start(counted, t.log.clone(), ProjectionSettings::default()).unwrap();
        // The checkpoint was saved after the last job event was folded (position 5).
        assert!(resumed.position() >= 5, "resumed at {}", resumed.position());
        common::append_line(&t.log, "job-0", "new").await;
        resumed.wait_for(7, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            folded.load(Ordering::Relaxed),
            1,
            "only the tail is folded after a restart"
        );
        assert_eq!(resumed.read(|v| v.state["job-0"]), 4);

        append_unreadable(&t.log, "job-0").await;
        let stopped = resumed
            .wait_for(8, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(
            matches!(stopped, ProjectionError::Stopped { .. }),
            "{stopped}"
        );
        assert!(resumed.failure().unwrap().contains("NoSuchEvent"));
    });
}

#[actix_rt::test]
async fn a_catch_up_that_fails_leaves_the_state_as_it_was() {
    let (t, jobs) = new_jobs();
    execute(&jobs, "c", start("c")).await;
    execute(&jobs, "c", record("kept")).await;
    // Another writer appends an event the entity cannot read behind the actor's back.
    append_unreadable(&t.log, "job-c").await;
    // The command conflicts, the catch-up cannot fold the new event, and the command fails...
    let failed = jobs.execute("c", record("lost"), Metadata::system()).await;
    assert!(
        matches!(failed, Err(CommandError::Unavailable(ref reason)) if reason.contains("NoSuchEvent")),
        "{failed:?}"
    );
    // ...without wiping what the actor knew.
    let (version, state) = jobs.state("c").await.unwrap();
    assert_eq!(
        (version, state.status, state.lines),
        (2, JobStatus::Running, 1)
    );
    assert_eq!(state.last_line.as_deref(), Some("kept"));
}
