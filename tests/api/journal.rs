//! The journal and the reads of a real log, on each engine (sled in a temporary directory, a
//! new database of a throwaway PostgreSQL): ordering, optimistic concurrency, idempotent
//! retries, limits, waits; and opening bad directories.

use crate::common;
use crate::on_each_engine;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use annals::events::{AppendError, Durability, EventLog, ExpectedVersion, LogOptions, StoreError};
use common::{fast, line, line_text, stream};
use tokio::sync::Barrier;

on_each_engine! {
async fn every_read_returns_durable_events_in_order(engine: Engine) {
    let t = engine.log();
    let log = &t.log;
    let a = stream("job-a");
    let b = stream("job-b");
    let other = stream("scan-x");
    let first = log
        .append(
            a.clone(),
            ExpectedVersion::Exactly(0),
            vec![line("a1"), line("a2")],
        )
        .await
        .unwrap();
    assert_eq!(
        (first.first_position, first.stream_version, first.count),
        (1, 2, 2)
    );
    log.append(other.clone(), ExpectedVersion::Any, vec![line("x1")])
        .await
        .unwrap();
    log.append(b.clone(), ExpectedVersion::Exactly(0), vec![line("b1")])
        .await
        .unwrap();
    log.append(a.clone(), ExpectedVersion::Exactly(2), vec![line("a3")])
        .await
        .unwrap();

    assert_eq!(log.head(), 5);
    let all = log.read_all(0, 100).unwrap();
    let texts: Vec<String> = all.iter().map(line_text).collect();
    assert_eq!(texts, ["a1", "a2", "x1", "b1", "a3"]);
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert!(all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at));

    let tail = log.read_all(2, 2).unwrap();
    assert_eq!(tail.iter().map(|e| e.position).collect::<Vec<_>>(), [3, 4]);

    let of_a = log.read_stream(&a, 1, 100).unwrap();
    assert_eq!(of_a.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(of_a.iter().map(line_text).collect::<Vec<_>>(), ["a2", "a3"]);

    let (jobs, scanned_to) = log.read_category("job", 1, 100).unwrap();
    assert_eq!(
        (
            jobs.iter().map(|e| e.position).collect::<Vec<_>>(),
            scanned_to
        ),
        (vec![2, 4, 5], 5)
    );
    let (first_job, scanned_to) = log.read_category("job", 0, 1).unwrap();
    assert_eq!((first_job[0].position, scanned_to), (1, 1));
    let (scans, scanned_to) = log.read_category("scan", 3, 100).unwrap();
    assert_eq!((scans.len(), scanned_to), (0, 5));
    let (none, scanned_to) = log.read_category("jo", 0, 100).unwrap();
    assert_eq!((none.len(), scanned_to), (0, 5));

    assert_eq!(log.stream_version(&a).unwrap(), 3);
    assert_eq!(log.stream_version(&stream("job-none")).unwrap(), 0);
}
}

on_each_engine! {
async fn many_writers_on_many_streams_lose_nothing(engine: Engine) {
    let t = engine.log_with(fast());
    let writers = 32;
    let per_writer = 60;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = t.log.clone();
        tasks.push(tokio::spawn(async move {
            let s = stream(&format!("job-w{w}"));
            let mut acks = Vec::new();
            for i in 1..=per_writer {
                let event = line(&format!("{w}/{i}"));
                let id = event.event_id;
                let appended = log
                    .append(s.clone(), ExpectedVersion::Exactly(i - 1), vec![event])
                    .await
                    .unwrap();
                assert_eq!(appended.stream_version, i);
                acks.push((appended.first_position, id, format!("{w}/{i}")));
            }
            acks
        }));
    }
    let mut acked = BTreeMap::new();
    for task in tasks {
        for (position, id, text) in task.await.unwrap() {
            assert!(
                acked.insert(position, (id, text)).is_none(),
                "position {position} acknowledged twice"
            );
        }
    }
    let total = writers * per_writer;
    let all = t.log.read_all(0, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, total);
    for (expected_position, event) in (1..).zip(&all) {
        assert_eq!(event.position, expected_position, "positions are gapless");
        let (id, text) = &acked[&event.position];
        assert_eq!(&event.event_id, id);
        assert_eq!(&line_text(event), text);
    }
    let report = annals::events::verify::verify(t.log.store(), |_| {}).unwrap();
    assert_eq!((report.events, report.streams), (total, writers));
}
}

on_each_engine! {
async fn writers_racing_on_one_stream_get_conflicts_not_lost_updates(engine: Engine) {
    let t = engine.log_with(fast());
    let s = stream("job-contended");
    let writers = 16;
    let per_writer = 20;
    let start = Arc::new(Barrier::new(writers));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let log = t.log.clone();
        let s = s.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            let mut versions = Vec::new();
            let mut version = log.stream_version(&s).unwrap();
            // Everyone has read version 0 before anyone appends: all but one must conflict.
            start.wait().await;
            while versions.len() < per_writer {
                let event = line(&format!("{w}/{}", versions.len()));
                match log
                    .append(s.clone(), ExpectedVersion::Exactly(version), vec![event])
                    .await
                {
                    Ok(appended) => {
                        version = appended.stream_version;
                        versions.push(version);
                    }
                    Err(AppendError::Conflict {
                        actual, expected, ..
                    }) => {
                        assert_eq!(expected, version);
                        assert_ne!(actual, version);
                        conflicts += 1;
                        version = log.stream_version(&s).unwrap();
                    }
                    Err(other) => panic!("unexpected {other}"),
                }
            }
            (versions, conflicts)
        }));
    }
    let mut all_versions = HashSet::new();
    let mut conflicts = 0;
    for task in tasks {
        let (versions, c) = task.await.unwrap();
        conflicts += c;
        for v in versions {
            assert!(
                all_versions.insert(v),
                "version {v} acknowledged to two writers"
            );
        }
    }
    let total = (writers * per_writer) as u64;
    assert!(conflicts >= writers - 1, "only {conflicts} conflicts");
    assert_eq!(t.log.stream_version(&s).unwrap(), total);
    assert_eq!(all_versions, (1..=total).collect());
    let events = t.log.read_stream(&s, 0, usize::MAX).unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
}
}

on_each_engine! {
async fn writers_without_a_version_check_all_land_on_one_stream(engine: Engine) {
    let t = engine.log_with(fast());
    let s = stream("job-shared");
    let mut tasks = Vec::new();
    for w in 0..16 {
        let log = t.log.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..25 {
                let appended = log
                    .append(
                        s.clone(),
                        ExpectedVersion::Any,
                        vec![line(&format!("{w}/{i}"))],
                    )
                    .await
                    .unwrap();
                versions.push(appended.stream_version);
            }
            versions
        }));
    }
    let mut versions = HashSet::new();
    for task in tasks {
        for v in task.await.unwrap() {
            assert!(versions.insert(v));
        }
    }
    assert_eq!(versions, (1..=400).collect());
    assert_eq!(t.log.head(), 400);
}
}

on_each_engine! {
async fn a_conflict_writes_nothing(engine: Engine) {
    let t = engine.log();
    let s = stream("job-1");
    t.log
        .append(s.clone(), ExpectedVersion::Exactly(0), vec![line("one")])
        .await
        .unwrap();
    let refused = t
        .log
        .append(s.clone(), ExpectedVersion::Exactly(0), vec![line("two")])
        .await
        .unwrap_err();
    assert_eq!(
        refused,
        AppendError::Conflict {
            stream: s.clone(),
            expected: 0,
            actual: 1
        }
    );
    assert_eq!(
        refused.to_string(),
        "stream job-1 is at version 1, not the expected 0"
    );
    assert_eq!(t.log.head(), 1);
    assert_eq!(t.log.read_all(0, 10).unwrap().len(), 1);
}
}

on_each_engine! {
async fn a_retried_append_is_acknowledged_without_a_second_write(engine: Engine) {
    let t = engine.log();
    let s = stream("job-retry");
    let events = vec![line("one"), line("two")];
    let first = t
        .log
        .append(s.clone(), ExpectedVersion::Exactly(0), events.clone())
        .await
        .unwrap();
    assert!(!first.duplicate);
    // The retry carries the same expected version, which no longer matches: the ids win.
    let again = t
        .log
        .append(s.clone(), ExpectedVersion::Exactly(0), events.clone())
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(t.log.head(), 2);

    // Two copies of one append in flight at once are written once.
    let twin = vec![line("three")];
    let (x, y) = tokio::join!(
        t.log.append(s.clone(), ExpectedVersion::Any, twin.clone()),
        t.log.append(s.clone(), ExpectedVersion::Any, twin.clone()),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.first_position, y.first_position);
    assert!(x.duplicate != y.duplicate);
    assert_eq!(t.log.head(), 3);

    // Some ids known and some new is a client bug, refused whole.
    let mixed = vec![events[0].clone(), line("four")];
    let refused = t
        .log
        .append(s.clone(), ExpectedVersion::Any, mixed)
        .await
        .unwrap_err();
    assert_eq!(refused, AppendError::PartlyDuplicate(s.clone()));
    assert_eq!(t.log.head(), 3);

    // The same id in another stream is another event.
    let elsewhere = t
        .log
        .append(stream("job-other"), ExpectedVersion::Any, events.clone())
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    assert_eq!(t.log.head(), 5);

    // After a restart, the retry is still recognised: the journal's memory of ids comes back
    // from the log.
    let t = t.reopen_async().await;
    let after_restart = t
        .log
        .append(s.clone(), ExpectedVersion::Any, events)
        .await
        .unwrap();
    assert!(after_restart.duplicate);
    assert_eq!(after_restart.first_position, first.first_position);
    assert_eq!(t.log.head(), 5);
}
}

on_each_engine! {
async fn appends_over_the_limits_are_refused_whole(engine: Engine) {
    let options = LogOptions {
        max_event_bytes: 1000,
        max_events_per_append: 3,
        ..LogOptions::default()
    };
    let t = engine.log_with(options);
    let s = stream("job-limits");
    let big = line(&"x".repeat(1000));
    let size = big.payload.len();
    assert_eq!(
        t.log
            .append(s.clone(), ExpectedVersion::Any, vec![line("ok"), big])
            .await,
        Err(AppendError::TooLarge { size, limit: 1000 })
    );
    let four = (0..4).map(|i| line(&i.to_string())).collect();
    assert_eq!(
        t.log.append(s.clone(), ExpectedVersion::Any, four).await,
        Err(AppendError::TooMany { count: 4, limit: 3 })
    );
    let one = line("one");
    assert_eq!(
        t.log
            .append(
                s.clone(),
                ExpectedVersion::Any,
                vec![one.clone(), one.clone()]
            )
            .await,
        Err(AppendError::RepeatedId(one.event_id))
    );
    assert_eq!(t.log.head(), 0);
    // An empty append only checks the version.
    let empty = t
        .log
        .append(s.clone(), ExpectedVersion::Exactly(0), vec![])
        .await
        .unwrap();
    assert_eq!((empty.count, empty.stream_version), (0, 0));
    assert!(t
        .log
        .append(s, ExpectedVersion::Exactly(1), vec![])
        .await
        .is_err());
    assert_eq!(t.log.head(), 0);
}
}

on_each_engine! {
async fn a_follower_sees_every_event_once_in_order(engine: Engine) {
    let t = engine.log_with(fast());
    let follower = {
        let log = t.log.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut after = 0;
            while seen.len() < 300 {
                let events = log.read_all(after, 50).unwrap();
                if events.is_empty() {
                    log.wait_past(after, Duration::from_secs(3600))
                        .await
                        .expect("the log is open");
                    continue;
                }
                for event in events {
                    assert_eq!(event.position, after + 1);
                    after = event.position;
                    seen.push(line_text(&event));
                }
            }
            seen
        })
    };
    let mut writers = Vec::new();
    for w in 0..10 {
        let log = t.log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..30 {
                common::append_line(&log, &format!("job-{w}"), &format!("{w}/{i}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .unwrap()
        .unwrap();
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!(distinct.len(), 300);
}
}

on_each_engine! {
async fn the_recent_events_kept_in_memory_are_the_stored_events(engine: Engine) {
    let t = engine.log_with(fast());
    let mut from_peer = line("from a peer");
    from_peer.metadata = annals::events::Metadata {
        correlation_id: Some(uuid::Uuid::new_v4()),
        causation_id: Some(uuid::Uuid::new_v4()),
        origin: annals::events::Origin::Http {
            addr: "127.0.0.1:4242".into(),
            user: Some("ada".into()),
        },
    };
    let mut over_udp = line("over udp");
    over_udp.metadata.origin = annals::events::Origin::Udp {
        addr: "127.0.0.1:514".into(),
    };
    common::append_line(&t.log, "job-a", "plain").await;
    t.log
        .append(
            stream("job-b"),
            ExpectedVersion::Any,
            vec![from_peer, over_udp],
        )
        .await
        .unwrap();
    let head = t.log.head();
    let (recent, looked_at) = t.log.recent().after(0, head, 100, |_| true).unwrap();
    assert_eq!(looked_at, 3);
    let recent: Vec<_> = recent.iter().map(|e| e.event().clone()).collect();
    assert_eq!(recent, t.log.read_all(0, 100).unwrap());

    // A reopened log starts its window empty, at its head.
    let t = t.reopen_async().await;
    assert!(t.log.recent().after(2, 3, 100, |_| true).is_none());
    let (none, looked_at) = t.log.recent().after(3, 3, 100, |_| true).unwrap();
    assert_eq!((none.len(), looked_at), (0, 3));
}
}

on_each_engine! {
async fn a_commit_between_read_and_wait_still_wakes_the_reader(engine: Engine) {
    let t = engine.log();
    let after = t.log.head();
    assert!(t.log.read_all(after, 10).unwrap().is_empty());
    // The event lands after the read and before the wait.
    common::append_line(&t.log, "job-race", "late").await;
    let head = tokio::time::timeout(
        Duration::from_secs(30),
        t.log.wait_past(after, Duration::from_secs(3600)),
    )
    .await
    .expect("the wait returns at once");
    assert_eq!(head, Some(1));
    // With nothing new, the wait ends at its timeout with the unchanged head.
    assert_eq!(t.log.wait_past(1, Duration::from_millis(20)).await, Some(1));
}
}

on_each_engine! {
async fn a_closed_log_refuses_appends_and_ends_waits(engine: Engine) {
    let t = engine.log();
    common::append_line(&t.log, "job-1", "kept").await;
    let log = t.log.clone();
    tokio::task::spawn_blocking(move || log.close())
        .await
        .unwrap();
    assert_eq!(
        t.log
            .append(stream("job-1"), ExpectedVersion::Any, vec![line("late")])
            .await,
        Err(AppendError::Closed)
    );
    assert_eq!(t.log.wait_past(1, Duration::from_secs(3600)).await, None);
    let t = t.reopen();
    assert_eq!(
        t.log
            .read_all(0, 10)
            .unwrap()
            .iter()
            .map(line_text)
            .collect::<Vec<_>>(),
        ["kept"]
    );
}
}

on_each_engine! {
async fn every_durability_mode_keeps_events_across_a_clean_restart(engine: Engine) {
    for durability in [Durability::Fsync, Durability::Flush, Durability::None] {
        let t = engine.log_with(LogOptions {
            durability,
            ..LogOptions::default()
        });
        for i in 0..10 {
            t.log
                .append(
                    stream("job-d"),
                    ExpectedVersion::Exactly(i),
                    vec![line(&i.to_string())],
                )
                .await
                .unwrap();
        }
        let t = t.reopen_async().await;
        assert_eq!(t.log.head(), 10, "{durability:?}");
        assert_eq!(t.log.stream_version(&stream("job-d")).unwrap(), 10);
    }
}
}

#[test]
fn opening_something_that_is_not_a_log_names_the_path_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();

    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let error = EventLog::open(&file, LogOptions::default()).err().unwrap();
    assert!(matches!(error, StoreError::Open { .. }), "{error}");
    assert!(
        error.to_string().contains(&file.display().to_string()),
        "{error}"
    );

    let garbage = dir.path().join("garbage");
    std::fs::create_dir(&garbage).unwrap();
    std::fs::write(garbage.join("db"), vec![0xAB; 4096]).unwrap();
    std::fs::write(
        garbage.join("conf"),
        b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n",
    )
    .unwrap();
    let error = EventLog::open(&garbage, LogOptions::default())
        .err()
        .unwrap();
    assert!(
        error.to_string().contains(&garbage.display().to_string()),
        "{error}"
    );

    let foreign = dir.path().join("foreign");
    {
        let db = sled::open(&foreign).unwrap();
        db.insert(b"someone else's", b"data").unwrap();
        db.flush().unwrap();
    }
    let error = EventLog::open(&foreign, LogOptions::default())
        .err()
        .unwrap();
    assert!(matches!(error, StoreError::NotALog { .. }), "{error}");
    assert!(error.to_string().contains("holds no annals log"), "{error}");

    // A directory with someone's files is never turned into a new log.
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join("db"), b"hi\n").unwrap();
    let error = EventLog::open(&home, LogOptions::default()).err().unwrap();
    assert!(matches!(error, StoreError::NotALog { .. }), "{error}");
    assert_eq!(std::fs::read(home.join("db")).unwrap(), b"hi\n");

    let future = dir.path().join("future");
    {
        let db = sled::open(&future).unwrap();
        db.open_tree("log")
            .unwrap()
            .insert(b"Mformat", b"annals-log v99")
            .unwrap();
        db.flush().unwrap();
    }
    let error = EventLog::open(&future, LogOptions::default())
        .err()
        .unwrap();
    assert!(
        matches!(error, StoreError::UnsupportedFormat { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("annals-log v99"), "{error}");

    let busy = dir.path().join("busy");
    let first = EventLog::open(&busy, LogOptions::default()).unwrap();
    let error = EventLog::open(&busy, LogOptions::default()).err().unwrap();
    assert!(
        error.to_string().contains(&busy.display().to_string())
            && error.to_string().contains("another process holds it"),
        "{error}"
    );
    first.close();
}

on_each_engine! {
async fn a_category_read_looks_at_a_bounded_number_of_positions(engine: Engine) {
    use annals::events::log::CATEGORY_SCAN;
    let t = engine.log_with(fast());
    let busy = stream("job-busy");
    let mut written = 0;
    while written < CATEGORY_SCAN + 5 {
        let batch = (0..1000).map(|i| line(&i.to_string())).collect();
        t.log
            .append(busy.clone(), ExpectedVersion::Any, batch)
            .await
            .unwrap();
        written += 1000;
    }
    let rare = t
        .log
        .append(stream("rare-1"), ExpectedVersion::Any, vec![line("here")])
        .await
        .unwrap()
        .first_position;

    // The first read stops at its budget without finding anything, yet moves on.
    let (events, scanned_to) = t.log.read_category("rare", 0, 10).unwrap();
    assert_eq!((events.len(), scanned_to), (0, CATEGORY_SCAN));
    let (events, scanned_to) = t.log.read_category("rare", scanned_to, 10).unwrap();
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        [rare]
    );
    assert_eq!(scanned_to, rare);
    let (events, next) = t.log.read_category("rare", scanned_to, 10).unwrap();
    assert_eq!((events.len(), next), (0, rare));
}
}

on_each_engine! {
/// Rounds of many sizes (one event, a few, hundreds) and rounds of many streams at once: every
/// position is read from any starting point, alone or in pages, by category, and the log
/// verifies.
async fn positions_are_read_from_anywhere_across_rounds_of_many_sizes(engine: Engine) {
    let t = engine.log_with(fast());
    let log = &t.log;
    let mut expected = BTreeMap::new();
    let mut record = |name: &str, appended: annals::events::Appended| {
        let first_version = appended.stream_version - appended.count as u64 + 1;
        for k in 0..appended.count as u64 {
            let place = (name.to_owned(), first_version + k);
            assert!(expected
                .insert(appended.first_position + k, place)
                .is_none());
        }
    };
    for (i, size) in [1, 2, 3, 1, 7, 64, 1, 500, 2].into_iter().enumerate() {
        let name = format!("job-size-{}", i % 3);
        let events = (0..size).map(|n| line(&format!("{i}.{n}"))).collect();
        let appended = log
            .append(stream(&name), ExpectedVersion::Any, events)
            .await
            .unwrap();
        record(&name, appended);
    }
    // Concurrent appends to many streams: the journal gathers them into rounds of several
    // streams each.
    let names: Vec<String> = (0..50).map(|i| format!("scan-many-{i}")).collect();
    let appends = names.iter().map(|name| {
        log.append(
            stream(name),
            ExpectedVersion::Exactly(0),
            vec![line("x"), line("y")],
        )
    });
    for (name, appended) in names
        .iter()
        .zip(futures_util::future::join_all(appends).await)
    {
        record(name, appended.unwrap());
    }

    let head = log.head();
    assert_eq!(head, 681);
    assert_eq!(
        expected.keys().copied().collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>()
    );
    let place = |e: &annals::events::RecordedEvent| (e.position, (e.stream.to_string(), e.version));
    for after in 0..=head {
        let page: Vec<_> = log.read_all(after, 3).unwrap().iter().map(place).collect();
        let want: Vec<_> = (after + 1..=head.min(after + 3))
            .map(|p| (p, expected[&p].clone()))
            .collect();
        assert_eq!(page, want, "after {after}");
        let one = log.store().event(after + 1).unwrap();
        assert_eq!(one.as_ref().map(place), want.first().cloned());
    }
    assert!(log.store().event(0).unwrap().is_none());
    let all: Vec<_> = log.read_all(0, 10_000).unwrap().iter().map(place).collect();
    assert_eq!(all, expected.clone().into_iter().collect::<Vec<_>>());
    let (scans, _) = log.read_category("scan", 0, 1000).unwrap();
    assert_eq!(scans.len(), 100);
    assert!(scans.iter().all(|e| e.stream.category() == "scan"));
    let (jobs, looked_at) = log.read_category("job", 100, 2).unwrap();
    assert_eq!(
        jobs.iter().map(|e| e.position).collect::<Vec<_>>(),
        [101, 102]
    );
    assert_eq!(looked_at, 102);
    let report = annals::events::verify::verify(log.store(), |_| {}).unwrap();
    assert_eq!(report.events, head);
}
}
