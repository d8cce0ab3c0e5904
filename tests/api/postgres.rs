//! The PostgreSQL log with several nodes on one database (a throwaway PostgreSQL, see
//! tests/common/postgres.rs): appends through every node land in one gapless log that verifies;
//! a wait on one node wakes for an event written on another; `verify` names a changed or missing
//! row; `migrate` copies logs between the engines byte for byte; two real servers serve one log.
//! The journal, follow and crash tests run on both engines in their own modules.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use annals::events::verify::verify;
use annals::events::{
    AppendError, Backend, EventLog, ExpectedVersion, LogOptions, Position, RecordedEvent,
};
use common::postgres::{annals_on, database_of, server};
use common::{line, line_text, stream, Engine};

/// Two nodes (two logs with data directories of their own) on one new database.
fn two_nodes() -> (common::TempLog, common::TempLog) {
    let options = Engine::Postgres.options(common::fast());
    let a = common::TempLog::with(options.clone());
    let b = common::TempLog::with(options);
    (a, b)
}

fn url_of(log: &EventLog) -> String {
    match &log.options().backend {
        Backend::Postgres(postgres) => postgres.url.clone(),
        Backend::Sled => panic!("a PostgreSQL log"),
    }
}

/// Appends `text` to `name` at the version it finds, again after each conflict; the version
/// it landed at.
async fn append_at_current(log: &EventLog, name: &str, text: &str) -> u64 {
    loop {
        let current = log.stream_version(&stream(name)).unwrap();
        match log
            .append(
                stream(name),
                ExpectedVersion::Exactly(current),
                vec![line(text)],
            )
            .await
        {
            Ok(appended) => return appended.stream_version,
            Err(AppendError::Conflict { .. }) => continue,
            Err(error) => panic!("append: {error}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_two_nodes_land_in_one_gapless_log_that_verifies() {
    let (a, b) = two_nodes();
    let nodes = [Arc::new(a.log.clone()), Arc::new(b.log.clone())];
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..4 {
            let node = node.clone();
            writers.push(tokio::spawn(async move {
                let own = format!("job-{n}-{w}");
                for i in 0..25 {
                    node.append(
                        stream(&own),
                        ExpectedVersion::Exactly(i),
                        vec![line(&format!("{own} {i}"))],
                    )
                    .await
                    .unwrap();
                    // Both nodes race on one stream, each at the version it reads: a conflict
                    // means deciding again, never a lost or doubled version.
                    append_at_current(&node, "job-shared", &format!("{own} shared {i}")).await;
                }
            }));
        }
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let total = 2 * 4 * 25 * 2;
    for node in &nodes {
        // Each node sees the other's rounds once it has followed them.
        let head = common::poll_async(Duration::from_secs(30), "the other node's rounds", || {
            let node = node.clone();
            async move { (node.head() == total).then_some(node.head()) }
        })
        .await;
        assert_eq!(head, total);
    }
    let seen: Vec<Vec<RecordedEvent>> = nodes
        .iter()
        .map(|node| node.read_all(0, total as usize + 10).unwrap())
        .collect();
    assert_eq!(
        seen[0].iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let hashes = |events: &[RecordedEvent]| events.iter().map(|e| e.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&seen[0]), hashes(&seen[1]));
    let shared = a.log.read_stream(&stream("job-shared"), 0, 1000).unwrap();
    assert_eq!(
        shared.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    let mut texts: Vec<String> = shared.iter().map(line_text).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 200, "every shared append landed once");
    let report = verify(b.log.store(), |_| {}).unwrap();
    assert_eq!((report.events, report.streams), (total, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_on_one_node_wakes_for_an_event_written_on_another() {
    let (a, b) = two_nodes();
    common::append_line(&a.log, "job-1", "first").await;
    let head = common::poll_async(Duration::from_secs(30), "node b follows", || async {
        (b.log.head() == 1).then_some(1)
    })
    .await;
    let waiting = {
        let b = b.log.clone();
        // Far longer than any notification or fallback poll takes: a wake by the timeout
        // returns the head it started from.
        tokio::spawn(async move { b.wait_past(head, Duration::from_secs(60)).await })
    };
    common::append_line(&a.log, "job-2", "second").await;
    assert_eq!(waiting.await.unwrap(), Some(2));
    let on_b = b.log.read_all(1, 10).unwrap();
    let on_a = a.log.read_all(1, 10).unwrap();
    assert_eq!(on_b.len(), 1);
    assert_eq!(
        (line_text(&on_b[0]), on_b[0].hash),
        ("second".into(), on_a[0].hash)
    );
    // Followers near the head read the window in memory, filled in order on this node too.
    let recent = b
        .log
        .recent()
        .after(1, 2, 10, |_| true)
        .expect("in the window");
    assert_eq!(recent.0.len(), 1);
    assert_eq!(recent.0[0].event().hash, on_a[0].hash);
}

/// What `command` said and its exit code.
fn output(mut command: Command) -> (Option<i32>, String) {
    let output = command.output().expect("annals runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// A log of 30 events on a new database, closed; its URL.
async fn written_database() -> String {
    let t = Engine::Postgres.log_with(common::fast());
    for i in 0..30 {
        common::append_line(&t.log, &format!("job-{}", i % 4), &format!("line {i}")).await;
    }
    let url = url_of(&t.log);
    let log = t.log.clone();
    tokio::task::spawn_blocking(move || log.close())
        .await
        .unwrap();
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_a_changed_row_and_a_missing_one() {
    let data = tempfile::tempdir().unwrap();
    let clean = written_database().await;
    let (code, out) = output({
        let mut c = annals_on(&clean, data.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok: 30 events in 4 streams, head 30"), "{out}");

    // One bit of the payload of the record at position 17 flipped, as a failing disk or an
    // attacker with SQL access would.
    let changed = written_database().await;
    server().psql(
        database_of(&changed),
        "UPDATE annals_events SET record = set_byte(record, length(record) - 1, \
         get_byte(record, length(record) - 1) # 1) WHERE position = 17",
    );
    let (code, out) = output({
        let mut c = annals_on(&changed, data.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("corrupt") && out.contains("position 17"),
        "{out}"
    );

    let removed = written_database().await;
    server().psql(
        database_of(&removed),
        "DELETE FROM annals_events WHERE position = 12",
    );
    let (code, out) = output({
        let mut c = annals_on(&removed, data.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("position 12") && out.contains("missing"),
        "{out}"
    );
}

/// Every stored record of a log, in position order, with its stream and version.
fn records(log: &EventLog) -> Vec<(Position, String, u64, Vec<u8>)> {
    log.store()
        .raw_events_after(0)
        .map(|raw| {
            let raw = raw.unwrap();
            (
                raw.position,
                raw.stream.as_str().to_owned(),
                raw.version,
                raw.record.to_vec(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_a_log_to_postgresql_and_back_byte_for_byte() {
    let source = Engine::Sled.log_with(common::fast());
    // Rounds of many sizes, over more than one round of the copy.
    let mut writers = Vec::new();
    for w in 0..8 {
        let log = source.log.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..300 {
                common::append_line(&log, &format!("job-{w}"), &format!("{w} {i}")).await;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let original = records(&source.log);
    assert_eq!(original.len(), 2400);
    let common::TempLog { log, dir: _kept } = source;
    let from = _kept.path().to_owned();
    tokio::task::spawn_blocking(move || log.close())
        .await
        .unwrap();

    let url = server().new_database();
    let scratch = tempfile::tempdir().unwrap();
    let migrate = |from: &str, to: &str| {
        let mut c = annals_on(&url, scratch.path());
        c.args(["migrate", "--from", from, "--to", to]);
        output(c)
    };
    let (code, out) = migrate(from.to_str().unwrap(), &url);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok: 2400 events in 8 streams"), "{out}");
    // A target that is not empty is refused, and left as it was.
    let (code, out) = migrate(from.to_str().unwrap(), &url);
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("not empty"), "{out}");

    let back = scratch.path().join("back");
    let (code, out) = migrate(&url, back.to_str().unwrap());
    assert_eq!(code, Some(0), "{out}");

    let on_postgres = EventLog::open(
        scratch.path(),
        common::postgres::at(&url, LogOptions::default()),
    )
    .unwrap();
    assert_eq!(records(&on_postgres), original);
    let on_sled = EventLog::open(&back, LogOptions::default()).unwrap();
    assert_eq!(records(&on_sled), original);
    // The copies go on from the same head: the next event chains to it on each.
    for copy in [&on_postgres, &on_sled] {
        common::append_line(copy, "job-9", "after the copy").await;
        assert_eq!(verify(copy.store(), |_| {}).unwrap().events, 2401);
    }
}

/// `annals serve` on the PostgreSQL log at `url`, its data directory in `dir`, the main listener
/// on a free port and no face listener of its own (two nodes on one machine).
fn serve_node(url: &str, dir: &Path) -> common::Served {
    let args = ["--data".as_ref(), dir.as_os_str(), "serve".as_ref()];
    common::spawn_serve(
        &args,
        &[
            ("ANNALS_LOG_BACKEND", "postgres"),
            ("ANNALS_LOG_POSTGRES_URL", url),
            // Every node of a cluster has the same master key.
            ("ANNALS_MASTER_KEY", &"ef".repeat(32)),
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:0"),
            ("ANNALS_PARTISCI_LISTEN", ""),
            ("ANNALS_PATROWL_LISTEN", ""),
            ("ANNALS_HPCWAAS_LISTEN", ""),
        ],
    )
    .expect("the node starts")
}

#[actix_rt::test]
async fn two_servers_on_one_database_serve_one_log() {
    let url = server().new_database();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = serve_node(&url, dir_a.path());
    let b = serve_node(&url, dir_b.path());
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let get = |address: &str, path: &str| {
        let request = client.get(format!("http://{address}{path}"));
        async move {
            let mut response = request.send().await.expect("an answer");
            let body = response.body().limit(16 << 20).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            (response.status().as_u16(), json)
        }
    };
    // A long poll on node B, from the head it has: it wakes for the report sent to node A.
    let (_, before) = get(&b.address, "/api/events?from=0&limit=1").await;
    let head = before["head"].as_u64().unwrap();
    let waiting = get(&b.address, &format!("/api/events?from={head}&timeout=50s"));
    let report = client
        .post(format!("http://{}/api/v1/update/", a.address))
        .send_body(r#"{"app":"Web Server","ver":"2.4","host":"web-1"}"#);
    let (woken, sent) = futures_util::join!(waiting, async {
        report.await.expect("an answer").status().as_u16()
    });
    assert_eq!(sent, 200);
    assert_eq!(woken.0, 200, "{}", woken.1);
    let events = woken.1["events"].as_array().unwrap();
    assert!(!events.is_empty(), "{}", woken.1);
    // Node B's read model follows the one log: the application is listed there.
    let apps = common::poll_async(Duration::from_secs(30), "node b lists the app", || async {
        let (status, apps) = get(&b.address, "/api/v1/app/").await;
        (status == 200 && apps["data"].as_array().is_some_and(|d| !d.is_empty())).then_some(apps)
    })
    .await;
    assert_eq!(apps["data"].as_array().unwrap().len(), 1, "{apps}");
    assert_eq!(apps["data"][0]["app"], "Web Server", "{apps}");
    assert_eq!(apps["data"][0]["host_count"], 1, "{apps}");
    // Both nodes' logs verify as one.
    let (_, on_a) = get(&a.address, "/api/events?from=0&limit=100").await;
    let (_, on_b) = get(&b.address, "/api/events?from=0&limit=100").await;
    assert_eq!(on_a["events"], on_b["events"]);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
    let (code, out) = output({
        let mut c = annals_on(&url, dir_a.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(0), "{out}");
}

/// Jobs hosted on `log`, as one node hosts them.
fn jobs_on(log: &EventLog) -> annals::runtime::Entities<annals::runtime::job::Job> {
    annals::runtime::Entities::start(
        log.clone(),
        Arc::new(annals::runtime::SystemClock),
        Arc::new(annals::runtime::NoEffects),
        annals::runtime::Settings::default(),
    )
}

#[actix_rt::test]
async fn an_entity_held_on_one_node_answers_with_what_another_node_wrote() {
    use annals::events::Metadata;
    use annals::runtime::job::{JobCommand, Level};
    let (a, b) = two_nodes();
    let (on_a, on_b) = (jobs_on(&a.log), jobs_on(&b.log));
    let record = |text: &str| JobCommand::RecordLine {
        line: text.into(),
        level: Level::Info,
    };
    on_a.execute(
        "nightly",
        JobCommand::Start {
            name: "nightly".into(),
        },
        Metadata::system(),
    )
    .await
    .unwrap();
    // Node B loads the job and keeps it in memory.
    let followed = |log: &EventLog, head: Position| {
        let log = log.clone();
        common::poll_async(Duration::from_secs(30), "node b follows", move || {
            let log = log.clone();
            async move { (log.head() >= head).then_some(()) }
        })
    };
    followed(&b.log, a.log.head()).await;
    assert_eq!(on_b.state("nightly").await.unwrap().0, 1);
    // Node A writes on; once node B has heard of it, B's answer includes it.
    on_a.execute("nightly", record("from a"), Metadata::system())
        .await
        .unwrap();
    followed(&b.log, a.log.head()).await;
    let (version, state) = on_b.state("nightly").await.unwrap();
    assert_eq!(version, 2, "{state:?}");
    // A command on node B decides on that state, after the write of node A.
    let executed = on_b
        .execute("nightly", record("from b"), Metadata::system())
        .await
        .unwrap();
    assert_eq!(executed.version, 3);
    followed(&a.log, b.log.head()).await;
    assert_eq!(on_a.state("nightly").await.unwrap().0, 3);
}

#[test]
fn a_missing_or_unreachable_database_is_refused_clearly_and_never_shows_its_password() {
    let data = tempfile::tempdir().unwrap();
    let (code, out) = output({
        let mut c = annals_on("postgres://annals:s3cret@127.0.0.1:1/annals", data.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("cannot open the log at PostgreSQL postgres://annals:…@127.0.0.1:1/annals"),
        "{out}"
    );
    assert!(!out.contains("s3cret"), "{out}");

    let (code, out) = output({
        let mut c = annals_on("", data.path());
        c.arg("verify");
        c
    });
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("needs postgres_url"), "{out}");

    let config = common::written(
        data.path(),
        "annals.toml",
        "[log]\nbackend = \"postgres\"\n",
    );
    let (code, out) = output({
        let mut c = Command::new(env!("CARGO_BIN_EXE_annals"));
        c.args(["config", "check"]).arg(&config);
        c
    });
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("needs postgres_url"), "{out}");
}

/// Blobs and secrets one node keeps, every node of the log reads: a blob is read from the
/// database into the other node's directory; a secret (sealed, never in clear in the
/// database) is read, replaced and deleted through any node; a node's own secrets move into
/// the database when its store is first shared; a node with another master key is refused.
#[test]
fn blobs_and_secrets_are_shared_by_the_nodes_of_one_log() {
    use annals::blobs::BlobStore;
    use annals::secrets::{KeySource, MasterKey, SecretError, SecretId, SecretStore};
    let (a, b) = two_nodes();
    // Blobs.
    // One kept by a before it shared its blobs.
    let earlier = BlobStore::open(a.path())
        .unwrap()
        .put(b"from before")
        .unwrap();
    let blobs_a = BlobStore::open(a.path())
        .unwrap()
        .shared_by_nodes(a.log.shared_files())
        .unwrap();
    let blobs_b = BlobStore::open(b.path())
        .unwrap()
        .shared_by_nodes(b.log.shared_files())
        .unwrap();
    assert_eq!(blobs_b.get(&earlier.sha256).unwrap(), b"from before");
    let kept = blobs_a.put(b"a report, kept once").unwrap();
    assert!(!blobs_b.path_of(&kept.sha256).exists());
    assert_eq!(blobs_b.get(&kept.sha256).unwrap(), b"a report, kept once");
    assert!(blobs_b.path_of(&kept.sha256).exists(), "kept on b too");
    let local = blobs_a.local_path(&kept.sha256).unwrap();
    assert_eq!(std::fs::read(local).unwrap(), b"a report, kept once");

    // Secrets: one node had one before its store was shared.
    let key = MasterKey::generate();
    let open = |dir: &Path, key: &MasterKey| {
        SecretStore::open(
            dir,
            KeySource::Key(MasterKey::parse(&key.to_hex()).unwrap()),
        )
    };
    let earlier = SecretId::parse("earlier").unwrap();
    open(a.path(), &key)
        .unwrap()
        .put(&earlier, b"from before")
        .unwrap();
    let secrets_a = open(a.path(), &key)
        .unwrap()
        .shared_by_nodes(a.log.shared_files())
        .unwrap();
    assert!(!a.path().join("secrets/earlier").exists(), "moved out");
    let secrets_b = open(b.path(), &key)
        .unwrap()
        .shared_by_nodes(b.log.shared_files())
        .unwrap();
    let read =
        |store: &SecretStore, id: &SecretId| store.get(id).unwrap().map(|s| s.expose().to_vec());
    assert_eq!(
        read(&secrets_b, &earlier).as_deref(),
        Some(&b"from before"[..])
    );
    let id = SecretId::parse("ssh-key-1").unwrap();
    secrets_b.put(&id, b"-----BEGIN KEY-----").unwrap();
    assert_eq!(
        read(&secrets_a, &id).as_deref(),
        Some(&b"-----BEGIN KEY-----"[..])
    );
    secrets_a.put(&id, b"replaced").unwrap();
    assert_eq!(read(&secrets_b, &id).as_deref(), Some(&b"replaced"[..]));
    let in_database = server().psql(
        database_of(&url_of(&a.log)),
        "SELECT count(*) FROM annals_files WHERE area = 'secrets' \
         AND position(convert_to('replaced', 'UTF8') in bytes) > 0",
    );
    assert_eq!(in_database, "0", "sealed, never in clear");
    assert!(secrets_b.delete(&id).unwrap());
    assert_eq!(read(&secrets_a, &id), None);
    assert!(!secrets_a.delete(&id).unwrap());

    // Another key is refused at once.
    let other = tempfile::tempdir().unwrap();
    let refused = open(other.path(), &MasterKey::generate())
        .unwrap()
        .shared_by_nodes(a.log.shared_files());
    assert!(
        matches!(refused, Err(SecretError::WrongSharedMasterKey { .. })),
        "{refused:?}"
    );
}

/// A log on a PostgreSQL server that speaks TLS: given the CA certificate that signed the
/// server's, every connection of annals is encrypted and the log works as without; a CA that
/// did not sign it, `sslmode=require` without a CA, and a CA file that is not there are
/// refused saying why.
#[actix_rt::test]
async fn a_log_reached_over_tls_checks_the_servers_certificate() {
    let (server, ca) = common::postgres::tls_server();
    let url = server.new_database();
    let options = |url: &str, ca_cert: Option<&Path>| LogOptions {
        backend: Backend::Postgres(annals::events::PostgresOptions {
            url: url.to_owned(),
            password: None,
            pool_size: 2,
            lease: Duration::from_secs(10),
            ca_cert: ca_cert.map(Path::to_owned),
        }),
        ..common::fast()
    };
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), options(&url, Some(ca))).expect("opens over TLS");
    let appended = log
        .append(
            stream("job-1"),
            ExpectedVersion::Exactly(0),
            vec![line("over TLS")],
        )
        .await
        .unwrap();
    assert_eq!(appended.stream_version, 1);
    assert_eq!(verify(log.store(), |_| {}).unwrap().events, 1);
    let encrypted = server.psql(
        database_of(&url),
        "SELECT count(*) FILTER (WHERE ssl) || '/' || count(*) FROM pg_stat_ssl \
         JOIN pg_stat_activity USING (pid) WHERE application_name = 'annals'",
    );
    let (tls, all) = encrypted.split_once('/').unwrap();
    assert!(
        all != "0" && tls == all,
        "{encrypted} of annals' connections use TLS"
    );
    log.close();

    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = common::tls::self_signed(other.path());
    let refused = EventLog::open(other.path(), options(&url, Some(&other_ca)))
        .err()
        .expect("an untrusted server is refused")
        .to_string();
    assert!(refused.contains("invalid peer certificate"), "{refused}");
    let refused = EventLog::open(
        other.path(),
        options(&format!("{url}?sslmode=require"), None),
    )
    .err()
    .expect("TLS without a CA is refused")
    .to_string();
    assert!(refused.contains("postgres_ca_cert"), "{refused}");
    let missing = other.path().join("missing.pem");
    let refused = EventLog::open(other.path(), options(&url, Some(&missing)))
        .err()
        .expect("a CA file that is not there is refused")
        .to_string();
    assert!(
        refused.contains("the CA certificate file") && refused.contains("missing.pem"),
        "{refused}"
    );
}
