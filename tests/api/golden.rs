//! Golden files under `snapshots/`: how an event renders as JSON and how a replayed state looks.
//! Ids, times and hashes are redacted so that the files only change when the shapes do.

use crate::common;

use std::sync::Arc;

use annals::actors::job::{Job, JobCommand, Level};
use annals::actors::state::ReplayUntil;
use annals::actors::{kinds, Entities, ManualClock, NoEffects, Settings};
use annals::events::codec::render;
use annals::events::{Metadata, Origin};
use common::{at, stream, TempLog};

fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

#[actix_rt::test]
async fn a_job_renders_and_replays_as_recorded() {
    let t = TempLog::new();
    let clock = Arc::new(ManualClock::at(at(1_700_000_000_000_000)));
    let jobs = Entities::<Job>::start(
        t.log.clone(),
        clock.clone(),
        Arc::new(NoEffects),
        Settings::default(),
    );
    let metadata = Metadata {
        correlation_id: Some(uuid::Uuid::from_u128(42)),
        causation_id: None,
        origin: Origin::Http {
            addr: "127.0.0.1:40000".into(),
            user: Some("ada".into()),
        },
    };
    jobs.execute(
        "golden",
        JobCommand::Start {
            name: "nightly scan".into(),
        },
        metadata.clone(),
    )
    .await
    .unwrap();
    clock.set(at(1_700_000_001_000_000));
    let line = JobCommand::RecordLine {
        line: "port 22 open".into(),
        level: Level::Warn,
    };
    jobs.execute("golden", line, metadata).await.unwrap();
    clock.set(at(1_700_000_002_000_000));
    jobs.execute(
        "golden",
        JobCommand::Finish { succeeded: true },
        Metadata::system(),
    )
    .await
    .unwrap();

    let rendered: Vec<_> = t.log.read_all(0, 10).unwrap().iter().map(render).collect();
    settings().bind(|| {
        insta::assert_json_snapshot!("job_events", rendered, {
            "[].recorded_at" => "[recorded_at]",
            "[].hash" => "[hash]",
        });
    });
    let replayed = kinds::replay(&t.log, &stream("job-golden"), ReplayUntil::Version(2)).unwrap();
    settings().bind(|| insta::assert_json_snapshot!("job_state_at_version_2", replayed));
}
