//! Property tests over a real log: what is appended reads back identical; a state loaded from a
//! snapshot plus its tail equals a full replay; a projection rebuilt from position 0 equals the
//! live one.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use annals::events::{
    CodecError, DomainEvent, ExpectedVersion, Metadata, NewEvent, Origin, RecordedEvent, StreamId,
};
use annals::runtime::job::{
    Job, JobEvent, JobFinished, JobInterrupted, JobStarted, Level, LineRecorded,
};
use annals::runtime::projection::{self, ProjectionSettings};
use annals::runtime::state::{self, ReplayUntil};
use annals::runtime::Projection;
use common::{at, fast, new_event, stream, TempLog};
use proptest::prelude::*;

/// Each case uses streams no other case uses, on one shared log.
static CASE: AtomicU64 = AtomicU64::new(0);

fn next_case() -> u64 {
    CASE.fetch_add(1, Ordering::Relaxed)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn origin() -> impl Strategy<Value = Origin> {
    prop_oneof![
        Just(Origin::System),
        ("[0-9.:]{1,21}", proptest::option::of("\\PC{0,12}"))
            .prop_map(|(addr, user)| Origin::Http { addr, user }),
        "[0-9.:]{1,21}".prop_map(|addr| Origin::Udp { addr }),
    ]
}

fn new_events() -> impl Strategy<Value = Vec<NewEvent>> {
    let event = (
        "[A-Za-z]{1,24}",
        any::<u16>(),
        proptest::collection::vec(any::<u8>(), 0..600),
        proptest::option::of(any::<u128>()),
        proptest::option::of(any::<u128>()),
        origin(),
    )
        .prop_map(
            |(event_type, schema_version, payload, correlation, causation, origin)| NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type,
                schema_version,
                payload,
                metadata: Metadata {
                    correlation_id: correlation.map(uuid::Uuid::from_u128),
                    causation_id: causation.map(uuid::Uuid::from_u128),
                    origin,
                },
            },
        );
    proptest::collection::vec(event, 1..8)
}

fn job_event() -> impl Strategy<Value = JobEvent> {
    let time = (0i64..4_000_000_000_000_000).prop_map(at);
    let level = prop_oneof![
        Just(Level::Debug),
        Just(Level::Info),
        Just(Level::Warn),
        Just(Level::Error)
    ];
    prop_oneof![
        ("\\PC{0,40}", time.clone())
            .prop_map(|(name, at)| JobEvent::JobStarted(JobStarted { name, at })),
        ("\\PC{0,80}", level, time.clone())
            .prop_map(|(line, level, at)| JobEvent::LineRecorded(LineRecorded { line, level, at })),
        (any::<bool>(), time.clone())
            .prop_map(|(succeeded, at)| JobEvent::JobFinished(JobFinished { succeeded, at })),
        time.prop_map(|at| JobEvent::JobInterrupted(JobInterrupted { at })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn job_events_decode_to_what_was_encoded(event in job_event()) {
        let decoded = JobEvent::decode(event.event_type(), event.schema_version(), &event.encode_payload());
        prop_assert_eq!(decoded.unwrap(), event);
    }
}

#[test]
fn what_is_appended_reads_back_identical() {
    let t = TempLog::with(fast());
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(48), |(events in new_events(), kind in "[a-z][a-z0-9_]{0,8}", id in "\\PC{1,30}")| {
        let s = StreamId::parse(format!("{kind}-{id}-{}", next_case())).unwrap();
        let appended = rt.block_on(t.log.append(s.clone(), ExpectedVersion::Exactly(0), events.clone())).unwrap();
        let stored = t.log.read_stream(&s, 0, 100).unwrap();
        prop_assert_eq!(stored.len(), events.len());
        for (i, (sent, got)) in events.iter().zip(&stored).enumerate() {
            prop_assert_eq!(got.position, appended.first_position + i as u64);
            prop_assert_eq!(got.version, i as u64 + 1);
            prop_assert_eq!(&got.stream, &s);
            prop_assert_eq!(got.event_id, sent.event_id);
            prop_assert_eq!(&got.event_type, &sent.event_type);
            prop_assert_eq!(got.schema_version, sent.schema_version);
            prop_assert_eq!(&got.metadata, &sent.metadata);
            prop_assert_eq!(&got.payload, &sent.payload);
            let by_position = t.log.store().event(got.position).unwrap();
            prop_assert_eq!(by_position.as_ref(), Some(got));
        }
    });
    annals::events::verify::verify(t.log.store(), |_| {}).unwrap();
}

#[test]
fn a_snapshot_plus_its_tail_equals_a_full_replay() {
    let t = TempLog::with(fast());
    let rt = runtime();
    proptest!(ProptestConfig::with_cases(48), |(events in proptest::collection::vec(job_event(), 1..40), cut in any::<prop::sample::Index>())| {
        let s = stream(&format!("job-p{}", next_case()));
        let new: Vec<NewEvent> = events.iter().map(new_event).collect();
        rt.block_on(t.log.append(s.clone(), ExpectedVersion::Exactly(0), new)).unwrap();
        let at_version = cut.index(events.len() + 1) as u64;
        let partial = state::replay::<Job>(&t.log, &s, ReplayUntil::Version(at_version)).unwrap();
        prop_assert_eq!(partial.version, at_version);
        state::save_snapshot::<Job>(&t.log, &s, partial.version, &partial.state).unwrap();

        let loaded = state::load::<Job>(&t.log, &s).unwrap();
        let full = state::replay::<Job>(&t.log, &s, ReplayUntil::End).unwrap();
        prop_assert_eq!(loaded.snapshot_version, Some(at_version));
        prop_assert_eq!(loaded.replayed, events.len() as u64 - at_version);
        prop_assert_eq!(loaded.version, full.version);
        prop_assert_eq!(loaded.state, full.state);
    });
}

/// Per stream: how many events of each type, and the last line.
#[derive(Default)]
struct Tally;

impl Projection for Tally {
    type State = BTreeMap<String, (BTreeMap<String, u64>, Option<String>)>;

    fn name(&self) -> String {
        "test:tally".into()
    }
    fn version(&self) -> u32 {
        1
    }
    fn apply(&self, state: &mut Self::State, event: &RecordedEvent) -> Result<(), CodecError> {
        let entry = state.entry(event.stream.to_string()).or_default();
        *entry.0.entry(event.event_type.clone()).or_default() += 1;
        if let JobEvent::LineRecorded(line) = JobEvent::from_recorded(event)? {
            entry.1 = Some(line.line);
        }
        Ok(())
    }
}

#[test]
fn a_projection_rebuilt_from_zero_equals_the_live_one() {
    let t = TempLog::with(fast());
    let rt = runtime();
    let live = rt.block_on(async {
        projection::start(
            Tally,
            t.log.clone(),
            ProjectionSettings {
                checkpoint_every: 7,
                batch: 5,
                ..ProjectionSettings::default()
            },
        )
        .unwrap()
    });
    proptest!(ProptestConfig::with_cases(32), |(writes in proptest::collection::vec((0u8..5, proptest::collection::vec(job_event(), 1..4)), 1..12))| {
        rt.block_on(async {
            let mut tasks = Vec::new();
            for (target, events) in writes {
                let log = t.log.clone();
                tasks.push(tokio::spawn(async move {
                    let s = stream(&format!("job-{target}"));
                    log.append(s, ExpectedVersion::Any, events.iter().map(new_event).collect()).await.unwrap()
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            live.wait_for(t.log.head(), Duration::from_secs(30)).await.unwrap();
        });
        let rebuilt = projection::rebuild(&Tally, &t.log).unwrap();
        prop_assert_eq!(live.read(|view| view.clone()), rebuilt);
    });
}
