//! The PostgreSQL engine: one database holds the log, and every annals node that names it
//! appends to it and reads from it.
//!
//! | table                 | rows                                                            |
//! |-----------------------|-----------------------------------------------------------------|
//! | `annals_events`       | position (key), stream, version (unique per stream), event id, the sealed record |
//! | `annals_head`         | one row: position, hash, recorded_at (µs), greatest event id    |
//! | `annals_meta`         | `format` = [`POSTGRES_FORMAT`]                                  |
//! | `annals_snapshots`    | stream → snapshot (a cache of the log)                          |
//! | `annals_checkpoints`  | read model → checkpoint (a cache of the log)                    |
//!
//! A round is two statements. The first reads the head and the versions of the round's streams
//! in one snapshot; the journal checks expected versions and seals the events against them.
//! The second, committed on its own, moves the head from the position it was read at (compare
//! and set), inserts every event of the round and sends one `NOTIFY annals_head` with the new
//! position and the writing node's mark, which other nodes follow; when another node moved the head in between, it writes
//! nothing and the journal reads and seals again, this time locking the head row from its read
//! to its commit so that it cannot lose twice. So rounds of all nodes follow each other, the
//! chain continues from the head's hash, and no reader can see position p + 1 before p. The
//! head row is locked only from the update to the commit, which does not wait for the WAL's
//! flush; a durability barrier after it (`flush_barrier`, from the log's durability) is the
//! durability point, and a node runs one before publishing other nodes' rounds. The records are byte for byte what sled stores, so the hash chain, `verify`
//! and `migrate` do not depend on the engine. Streams are `COLLATE "C"`: a category is a range
//! of names in byte order.
//!
//! The client is the synchronous `postgres` crate, whose calls must not run on a thread that is
//! inside an async runtime: each connection lives on a thread of its own, and callers hand it
//! work and wait for the answer, as they wait for a disk read with sled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::DateTime;
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};
use uuid::Uuid;

use super::super::envelope::{Position, RecordedEvent, StreamId, Version, GENESIS_HASH};
use super::super::ownership::LEASE_SHARDS;
use super::{Committed, Durability, EntryCounts, LogHead, RawEvent, Record, StoreError};

/// The format marker of a PostgreSQL log.
pub const POSTGRES_FORMAT: &str = "annals-log postgres v1";

/// How many rows one read of a lazy walk fetches.
const PAGE_ROWS: i64 = 512;

/// Serialises the creation of the tables by nodes starting at once (an advisory lock key).
const SCHEMA_LOCK: i64 = 0x616e_6e61_6c73; // "annals"

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS annals_meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS annals_events (
    position bigint PRIMARY KEY,
    stream text COLLATE "C" NOT NULL,
    version bigint NOT NULL,
    event_id uuid NOT NULL,
    record bytea NOT NULL,
    UNIQUE (stream, version)
);
CREATE INDEX IF NOT EXISTS annals_events_event_id ON annals_events (event_id);
CREATE TABLE IF NOT EXISTS annals_head (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    position bigint NOT NULL,
    hash bytea NOT NULL,
    recorded_at bigint NOT NULL,
    greatest_id uuid NOT NULL
);
CREATE TABLE IF NOT EXISTS annals_snapshots (
    stream text COLLATE "C" PRIMARY KEY,
    state bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS annals_checkpoints (
    name text PRIMARY KEY,
    state bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS annals_nodes (
    node text PRIMARY KEY,
    seen_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS annals_files (
    area text NOT NULL,
    name text COLLATE "C" NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (area, name)
);
CREATE TABLE IF NOT EXISTS annals_leases (
    shard integer PRIMARY KEY,
    node text NOT NULL,
    expires_at timestamptz NOT NULL
);
"#;

/// Where the PostgreSQL log is and how many connections a node opens to it.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// A libpq-style URL or key=value string (`postgres://annals@127.0.0.1:5432/annals`).
    pub url: String,
    /// The password, when the URL carries none (from the environment, never from a file).
    pub password: Option<String>,
    /// Connections for reads (the journal and the follower have one each besides).
    pub pool_size: usize,
    /// How long a node's lease on its shards lasts without a renewal: how soon another node
    /// takes the effects of a node that died.
    pub lease: Duration,
    /// The CA certificates (PEM) that signed the server's certificate: connections use TLS,
    /// checking the server's certificate and name against them. Without it a URL's
    /// `sslmode=require` is refused, and other modes connect without TLS.
    pub ca_cert: Option<PathBuf>,
}

/// The URL without its password, for messages.
impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "…"))
            .field("pool_size", &self.pool_size)
            .field("lease", &self.lease)
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

/// How a node reaches its database: where, as whom, and with TLS or not. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connector {
    config: postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl Connector {
    /// A new connection.
    fn connect(&self) -> Result<Client, StoreError> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
        .map_err(pg)
    }
}

impl PostgresOptions {
    /// How to connect: the URL parsed, the password added, TLS set up when asked for.
    fn connector(&self) -> Result<Connector, StoreError> {
        let mut config = self.config()?;
        let required = config.get_ssl_mode() == postgres::config::SslMode::Require;
        let tls = match &self.ca_cert {
            Some(file) => {
                config.ssl_mode(postgres::config::SslMode::Require);
                Some(trusting(file)?)
            }
            None if required => {
                return Err(StoreError::Postgres(
                    "sslmode=require needs the CA certificate that signed the server's: \
                     [log] postgres_ca_cert (ANNALS_LOG_POSTGRES_CA_CERT)"
                        .into(),
                ))
            }
            None => None,
        };
        Ok(Connector { config, tls })
    }

    fn config(&self) -> Result<postgres::Config, StoreError> {
        if self.url.trim().is_empty() {
            return Err(StoreError::Postgres(
                "no URL: [log] backend \"postgres\" needs postgres_url (ANNALS_LOG_POSTGRES_URL), \
                 such as postgres://annals@127.0.0.1:5432/annals"
                    .into(),
            ));
        }
        let mut config: postgres::Config = self.url.parse().map_err(|e| {
            StoreError::Postgres(format!(
                "the URL {:?} is not a PostgreSQL connection string: {e}",
                redact(&self.url)
            ))
        })?;
        if config.get_password().is_none() {
            if let Some(password) = &self.password {
                config.password(password);
            }
        }
        if config.get_application_name().is_none() {
            config.application_name("annals");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        Ok(config)
    }
}

/// A TLS client that trusts the certificates of the PEM file `file` only.
fn trusting(file: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let refused = |reason: String| {
        StoreError::Postgres(format!(
            "the CA certificate file {} for PostgreSQL: {reason}",
            file.display()
        ))
    };
    let pem = std::fs::read(file).map_err(|e| refused(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|e| refused(e.to_string()))?;
        roots.add(cert).map_err(|e| refused(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(refused("it holds no certificate".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| refused(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// `url` with any password replaced by `…`.
pub(crate) fn redact(url: &str) -> String {
    // postgres://user:password@host/…: the password is between the scheme's `:` and `@`.
    if let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    {
        let scheme = &url[..url.len() - rest.len()];
        if let Some(at) = rest.find('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}{}:…{}", &rest[..colon], &rest[at..]);
            }
        }
        return url.to_owned();
    }
    // key=value form: drop the value of `password=`.
    url.split_whitespace()
        .map(|part| {
            if part.starts_with("password=") {
                "password=…"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn pg(error: postgres::Error) -> StoreError {
    let message = match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => match std::error::Error::source(&error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    };
    StoreError::Postgres(message)
}

/// Positions and versions are `bigint` in PostgreSQL.
fn to_sql_int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql_int(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what.to_owned(), "it is negative"))
}

/// A connection with the statements it has prepared.
pub(crate) struct Conn {
    client: Client,
    prepared: HashMap<&'static str, Statement>,
    /// A round's transaction is open (a contended round holds the head row's lock).
    in_round: bool,
}

impl Conn {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(pg)?;
        self.prepared.insert(sql, statement.clone());
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params).map_err(pg)
    }

    fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params).map_err(pg)
    }
}

type Job = Box<dyn FnOnce(Result<&mut Conn, StoreError>) + Send>;

/// Connections, each on a thread of its own, that take work in turn from one queue. A
/// connection that broke is opened again for the next piece of work.
struct Workers {
    queue: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    fn start(
        name: &str,
        count: usize,
        connector: &Connector,
        setup: &'static str,
    ) -> Result<Workers, StoreError> {
        let (queue, jobs) = mpsc::channel::<Job>();
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..count.max(1) {
            let jobs = jobs.clone();
            let connector = connector.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    let mut conn: Option<Conn> = None;
                    loop {
                        let job = {
                            let jobs = jobs.lock().unwrap_or_else(|p| p.into_inner());
                            jobs.recv()
                        };
                        // The store is gone: the connection closes on this thread.
                        let Ok(job) = job else { return };
                        if conn.as_ref().is_some_and(|c| c.client.is_closed()) {
                            conn = None;
                        }
                        if conn.is_none() {
                            match connect(&connector, setup) {
                                Ok(opened) => conn = Some(opened),
                                Err(error) => {
                                    job(Err(error));
                                    continue;
                                }
                            }
                        }
                        job(Ok(conn.as_mut().expect("opened above")));
                    }
                })
                .map_err(StoreError::Sync)?;
        }
        Ok(Workers {
            queue: Mutex::new(queue),
        })
    }

    /// Runs `work` on the next free connection and waits for its answer.
    fn run<R: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(conn.and_then(work));
        });
        let sent = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job);
        if sent.is_err() {
            return Err(StoreError::Postgres("the connections are closed".into()));
        }
        answer
            .recv()
            .unwrap_or_else(|_| Err(StoreError::Postgres("a connection's thread stopped".into())))
    }
}

fn connect(connector: &Connector, setup: &str) -> Result<Conn, StoreError> {
    let mut client = connector.connect()?;
    if !setup.is_empty() {
        client.batch_execute(setup).map_err(pg)?;
    }
    Ok(Conn {
        client,
        prepared: HashMap::new(),
        in_round: false,
    })
}

/// The log in a PostgreSQL database.
pub struct PgStore {
    path: PathBuf,
    options: PostgresOptions,
    connector: Connector,
    /// Connections for reads, snapshots and checkpoints.
    reads: Workers,
    /// The journal's connection (`synchronous_commit = off`; see [`flush_barrier`]), opened
    /// with the first round.
    rounds: Mutex<Option<Workers>>,
    /// This node's mark in its rounds' notifications, so that its follower leaves them to the
    /// journal, which publishes them itself.
    node: u64,
}

impl PgStore {
    /// Connects, creates the tables when the database has none, and checks the format marker.
    pub fn open(path: &Path, options: &PostgresOptions) -> Result<PgStore, StoreError> {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let connector = options.connector()?;
        let reads = Workers::start("annals-pg", options.pool_size, &connector, "")?;
        let store = PgStore {
            path: path.to_owned(),
            options: options.clone(),
            connector,
            reads,
            rounds: Mutex::new(None),
            node: Uuid::new_v4().as_u64_pair().0,
        };
        let described = store.describe();
        let opening = described.clone();
        let opened = store.reads.run(move |conn| {
            let mut tx = conn.client.transaction().map_err(pg)?;
            // Every open after the first finds the tables there: no notice for each.
            tx.batch_execute("SET LOCAL client_min_messages = warning")
                .map_err(pg)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
                .map_err(pg)?;
            tx.batch_execute(SCHEMA).map_err(pg)?;
            tx.execute(
                "INSERT INTO annals_head (position, hash, recorded_at, greatest_id) \
                 VALUES (0, $1, 0, $2) ON CONFLICT DO NOTHING",
                &[&GENESIS_HASH.as_slice(), &Uuid::nil()],
            )
            .map_err(pg)?;
            tx.execute(
                "INSERT INTO annals_meta (key, value) VALUES ('format', $1) \
                 ON CONFLICT DO NOTHING",
                &[&POSTGRES_FORMAT],
            )
            .map_err(pg)?;
            let found: String = tx
                .query_one("SELECT value FROM annals_meta WHERE key = 'format'", &[])
                .map_err(pg)?
                .get(0);
            tx.commit().map_err(pg)?;
            if found != POSTGRES_FORMAT {
                return Err(StoreError::UnsupportedFormat {
                    path: PathBuf::from(described),
                    found,
                    expected: POSTGRES_FORMAT.to_owned(),
                });
            }
            Ok(())
        });
        match opened {
            Ok(()) => Ok(store),
            // Say which database could not be reached.
            Err(StoreError::Postgres(reason)) => Err(StoreError::Open {
                path: PathBuf::from(opening),
                reason,
            }),
            Err(other) => Err(other),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, without its password.
    pub fn describe(&self) -> String {
        format!("PostgreSQL {}", redact(&self.options.url))
    }

    pub fn log_head(&self) -> Result<LogHead, StoreError> {
        self.reads.run(|conn| {
            let rows = conn.query(
                "SELECT position, hash, recorded_at, greatest_id FROM annals_head",
                &[],
            )?;
            match rows.first() {
                Some(row) => head_of(row),
                None => Err(StoreError::corrupt("the log head", "its row is missing")),
            }
        })
    }

    pub fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        let stream = stream.as_str().to_owned();
        self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT coalesce(max(version), 0) FROM annals_events WHERE stream = $1",
                &[&stream],
            )?;
            from_sql_int(rows[0].get(0), "a stream version")
        })
    }

    /// One indexed lookup of the ids within the stream (`expected` is not needed: the event id
    /// index finds them wherever they are).
    pub fn find_event_ids(
        &self,
        stream: &StreamId,
        ids: &[Uuid],
        _expected: Option<Version>,
    ) -> Result<HashMap<Uuid, Position>, StoreError> {
        let stream = stream.as_str().to_owned();
        let ids = ids.to_vec();
        self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT event_id, position FROM annals_events \
                 WHERE event_id = ANY($1) AND stream = $2",
                &[&ids, &stream],
            )?;
            rows.iter()
                .map(|row| Ok((row.get(0), from_sql_int(row.get(1), "a position")?)))
                .collect()
        })
    }

    pub fn event(&self, position: Position) -> Result<Option<RecordedEvent>, StoreError> {
        if position == 0 {
            return Ok(None);
        }
        let at = to_sql_int(position);
        let record = self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT record FROM annals_events WHERE position = $1",
                &[&at],
            )?;
            Ok(rows.first().map(|row| row.get::<_, Vec<u8>>(0)))
        })?;
        record
            .map(|record| Record::from(record).open(|| format!("position {position}")))
            .transpose()
    }

    /// Rows in position order, a page at a time.
    pub fn raw_events_after(
        &self,
        after: Position,
    ) -> impl Iterator<Item = Result<RawEvent, StoreError>> + '_ {
        paged(
            after,
            move |after| {
                let from = to_sql_int(after);
                self.reads.run(move |conn| {
                    let rows = conn.query(
                        "SELECT position, stream, version, record FROM annals_events \
                         WHERE position > $1 ORDER BY position LIMIT $2",
                        &[&from, &PAGE_ROWS],
                    )?;
                    rows.iter().map(raw_of).collect()
                })
            },
            |raw: &RawEvent| raw.position,
        )
    }

    /// A stream's records in version order, a page at a time.
    pub fn stream_records_after(
        &self,
        stream: &StreamId,
        after: Version,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        let stream = stream.as_str().to_owned();
        let versions = paged(
            after,
            move |after| {
                let (from, stream) = (to_sql_int(after), stream.clone());
                self.reads.run(move |conn| {
                    let rows = conn.query(
                        "SELECT version, record FROM annals_events \
                         WHERE stream = $1 AND version > $2 ORDER BY version LIMIT $3",
                        &[&stream, &from, &PAGE_ROWS],
                    )?;
                    rows.iter()
                        .map(|row| {
                            let version = from_sql_int(row.get(0), "a version")?;
                            Ok((version, row.get::<_, Vec<u8>>(1)))
                        })
                        .collect()
                })
            },
            |(version, _): &(Version, Vec<u8>)| *version,
        );
        versions.map(|row| row.map(|(_, record)| Record::from(record)))
    }

    /// The category's streams are the names from `category-` up to, not including,
    /// `category.` (the byte after `-`), in the column's byte order.
    pub fn read_category(
        &self,
        category: &str,
        after: Position,
        until: Position,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, Position), StoreError> {
        if until <= after {
            return Ok((Vec::new(), after));
        }
        let (low, high) = (format!("{category}-"), format!("{category}."));
        let (from, to, rows_limit) = (to_sql_int(after), to_sql_int(until), limit as i64);
        let rows = self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT position, record FROM annals_events \
                 WHERE position > $1 AND position <= $2 AND stream >= $3 AND stream < $4 \
                 ORDER BY position LIMIT $5",
                &[&from, &to, &low, &high, &rows_limit],
            )?;
            rows.iter()
                .map(|row| {
                    Ok((
                        from_sql_int(row.get(0), "a position")?,
                        row.get::<_, Vec<u8>>(1),
                    ))
                })
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let full = rows.len() >= limit;
        let mut events = Vec::with_capacity(rows.len());
        let mut last = until;
        for (position, record) in rows {
            events.push(Record::from(record).open(|| format!("position {position}"))?);
            last = position;
        }
        Ok((events, if full { last } else { until }))
    }

    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.reads.run(|conn| {
            let rows = conn.query(
                "SELECT coalesce(sum(pg_total_relation_size(c)), 0)::bigint FROM unnest(\
                 ARRAY['annals_events', 'annals_head', 'annals_meta', 'annals_snapshots', \
                 'annals_checkpoints']::regclass[]) AS c",
                &[],
            )?;
            from_sql_int(rows[0].get(0), "the log's size")
        })
    }

    pub fn snapshot(&self, stream: &StreamId) -> Result<Option<Vec<u8>>, StoreError> {
        self.cached(
            "SELECT state FROM annals_snapshots WHERE stream = $1",
            stream.as_str(),
        )
    }

    pub fn put_snapshot(&self, stream: &StreamId, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_cached(
            "INSERT INTO annals_snapshots (stream, state) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET state = excluded.state",
            stream.as_str(),
            bytes,
        )
    }

    pub fn checkpoint(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.cached("SELECT state FROM annals_checkpoints WHERE name = $1", name)
    }

    pub fn put_checkpoint(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.put_cached(
            "INSERT INTO annals_checkpoints (name, state) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET state = excluded.state",
            name,
            bytes,
        )
    }

    /// A snapshot's or a checkpoint's bytes, by `select` of its key.
    fn cached(&self, select: &'static str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.reads.run(move |conn| {
            let rows = conn.query(select, &[&key])?;
            Ok(rows.first().map(|row| row.get(0)))
        })
    }

    /// Replaces a snapshot or a checkpoint, by `upsert` of its key and bytes.
    fn put_cached(&self, upsert: &'static str, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (key, bytes) = (key.to_owned(), bytes.to_vec());
        self.reads
            .run(move |conn| conn.execute(upsert, &[&key, &bytes]).map(drop))
    }

    /// Every row is one record at one position, so both counts are the rows up to `head`:
    /// what `verify` checks here is that no row lies beyond the positions it walked.
    pub fn entry_counts(&self, head: Position) -> Result<EntryCounts, StoreError> {
        let head = to_sql_int(head);
        let rows = self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT count(*) FROM annals_events WHERE position <= $1",
                &[&head],
            )?;
            from_sql_int(rows[0].get(0), "a count")
        })?;
        Ok(EntryCounts {
            records: rows,
            positions: rows,
        })
    }

    /// The journal's connection. Its rounds commit without waiting for the WAL's flush
    /// (`synchronous_commit = off`), so that the head row's lock is not held through it; the
    /// durability barrier that follows each round waits for it instead ([`flush_barrier`]).
    fn rounds(&self) -> Result<std::sync::MutexGuard<'_, Option<Workers>>, StoreError> {
        let mut rounds = self.rounds.lock().unwrap_or_else(|p| p.into_inner());
        if rounds.is_none() {
            let setup = "SET synchronous_commit = off";
            *rounds = Some(Workers::start(
                "annals-pg-journal",
                1,
                &self.connector,
                setup,
            )?);
        }
        Ok(rounds)
    }

    /// Makes every transaction committed before this call as durable as `durability` asks:
    /// other nodes' rounds this node is about to publish, which their journals commit without
    /// waiting for the flush.
    pub(crate) fn make_durable(&self, durability: Durability) -> Result<(), StoreError> {
        self.reads.run(move |conn| flush_barrier(conn, durability))
    }

    /// Reads the head and the versions of `streams` in one statement, so in one snapshot:
    /// what the round will be checked and sealed against. Nothing is locked, unless the round
    /// is `contended` (its last attempt lost the race): then it opens a transaction that locks
    /// the head row until [`PgStore::commit`] or [`PgStore::abandon_round`], so that this
    /// attempt cannot lose and no node waits on others for ever.
    pub(crate) fn begin_round(
        &self,
        contended: bool,
        streams: &[StreamId],
    ) -> Result<(LogHead, HashMap<StreamId, Version>), StoreError> {
        let names: Vec<String> = streams.iter().map(|s| s.as_str().to_owned()).collect();
        let rounds = self.rounds()?;
        let journal = rounds.as_ref().expect("opened by rounds()");
        let (head, found) = journal.run(move |conn| {
            // A round left open by a failure is ended first.
            if conn.in_round {
                rollback(conn)?;
            }
            if contended {
                // The lock first, then the read in a statement of its own: under read
                // committed, a statement that waited for the lock would still read the
                // versions of the snapshot it started with.
                conn.in_round = true;
                let locked = conn
                    .client
                    .batch_execute("BEGIN; SELECT 1 FROM annals_head FOR UPDATE");
                if let Err(error) = locked {
                    rollback(conn)?;
                    return Err(pg(error));
                }
            }
            let rows = conn.query(READ_ROUND, &[&names]);
            if rows.is_err() && conn.in_round {
                rollback(conn)?;
            }
            let rows = rows?;
            let head = match rows.first() {
                Some(row) => head_of(row)?,
                None => return Err(StoreError::corrupt("the log head", "its row is missing")),
            };
            let mut found = HashMap::new();
            for row in &rows {
                if let (Some(stream), Some(version)) = (
                    row.get::<_, Option<String>>(4),
                    row.get::<_, Option<i64>>(5),
                ) {
                    found.insert(stream, from_sql_int(version, "a stream version")?);
                }
            }
            Ok((head, found))
        })?;
        let versions = streams
            .iter()
            .map(|stream| {
                let version = found.get(stream.as_str()).copied().unwrap_or(0);
                (stream.clone(), version)
            })
            .collect();
        Ok((head, versions))
    }

    /// Writes the round in one statement, committed on its own: the head moves from the one
    /// the round was sealed against (compare and set), the events are inserted, other nodes are
    /// notified. When another node moved the head first, nothing is written and the answer is
    /// [`Committed::HeadMoved`]. The head row's lock is held only from this statement's update
    /// to its commit, which does not wait for the WAL's flush; the round is acknowledged after
    /// the durability barrier that follows it. A failure between the two is an error like a
    /// commit whose answer was lost: the round may be in the log, found again by its event ids.
    pub(crate) fn commit(
        &self,
        batch: PgBatch,
        durability: Durability,
    ) -> Result<Committed, StoreError> {
        let rounds = self.rounds()?;
        let journal = rounds.as_ref().expect("opened by rounds()");
        let node = self.node;
        journal.run(move |conn| {
            let written = write_round(conn, &batch, node);
            let committed = match (written, conn.in_round) {
                (Ok(Committed::Written), true) => {
                    conn.in_round = false;
                    conn.client.batch_execute("COMMIT").map_err(pg)?;
                    Committed::Written
                }
                (Ok(committed), false) => committed,
                (other, true) => {
                    rollback(conn)?;
                    other?
                }
                (Err(error), false) => return Err(error),
            };
            if committed == Committed::Written {
                flush_barrier(conn, durability)?;
            }
            Ok(committed)
        })
    }

    /// Ends a round that [`PgStore::begin_round`] opened and that writes nothing (every
    /// request in it was refused or a retry): the head row's lock, if it took it, is released.
    pub(crate) fn abandon_round(&self) -> Result<(), StoreError> {
        let rounds = self.rounds()?;
        let journal = rounds.as_ref().expect("opened by rounds()");
        journal.run(|conn| {
            if conn.in_round {
                rollback(conn)?;
            }
            Ok(())
        })
    }
}

/// The read that begins a round: the head and one backward index probe per stream of the round
/// (a `max … GROUP BY` would read every version of every stream).
const READ_ROUND: &str = "SELECT h.position, h.hash, h.recorded_at, h.greatest_id, s.stream, \
         (SELECT e.version FROM annals_events e WHERE e.stream = s.stream \
          ORDER BY e.version DESC LIMIT 1) \
     FROM annals_head h LEFT JOIN unnest($1::text[]) AS s(stream) ON true";

/// Ends the round's open transaction without writing.
fn rollback(conn: &mut Conn) -> Result<(), StoreError> {
    conn.in_round = false;
    conn.client.batch_execute("ROLLBACK").map_err(pg)
}

/// Waits until every transaction committed before it is as durable as `durability` asks: a
/// transaction that takes an id commits with `synchronous_commit` on (or `local`), which waits
/// for the WAL to be flushed (and, when on, replicated to synchronous standbys) up to its own
/// commit record, past every commit before it. Concurrent barriers share PostgreSQL's flushes.
fn flush_barrier(conn: &mut Conn, durability: Durability) -> Result<(), StoreError> {
    let barrier = match durability {
        Durability::Fsync => {
            "BEGIN; SET LOCAL synchronous_commit = on; SELECT txid_current(); COMMIT"
        }
        Durability::Flush => {
            "BEGIN; SET LOCAL synchronous_commit = local; SELECT txid_current(); COMMIT"
        }
        Durability::None => return Ok(()),
    };
    conn.client.batch_execute(barrier).map_err(pg)
}

/// `node` goes into the notification after the new head's position: `<position> <node>`.
fn write_round(conn: &mut Conn, batch: &PgBatch, node: u64) -> Result<Committed, StoreError> {
    let head = batch
        .head
        .as_ref()
        .ok_or_else(|| StoreError::corrupt("a commit round", "it sets no head"))?;
    let first = batch
        .positions
        .first()
        .ok_or_else(|| StoreError::corrupt("a commit round", "it holds no event"))?;
    let from = first - 1;
    let notice = format!("{} {node}", head.position);
    let (position, hash, recorded_at, greatest) = head_row(head);
    let rows = conn.query(
        "WITH head AS (\
             UPDATE annals_head SET position = $6, hash = $7, recorded_at = $8, greatest_id = $9 \
             WHERE position = $11 RETURNING 1\
         ), events AS (\
             INSERT INTO annals_events (position, stream, version, event_id, record) \
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::bytea[]) \
             WHERE EXISTS (SELECT 1 FROM head)\
         ) SELECT pg_notify('annals_head', $10) FROM head",
        &[
            &batch.positions,
            &batch.streams,
            &batch.versions,
            &batch.ids,
            &batch.records,
            &position,
            &hash,
            &recorded_at,
            &greatest,
            &notice,
            &from,
        ],
    )?;
    Ok(if rows.is_empty() {
        Committed::HeadMoved
    } else {
        Committed::Written
    })
}

fn head_row(head: &LogHead) -> (i64, Vec<u8>, i64, Uuid) {
    (
        to_sql_int(head.position),
        head.hash.to_vec(),
        head.recorded_at.map_or(0, |t| t.timestamp_micros()),
        head.greatest_id,
    )
}

fn head_of(row: &postgres::Row) -> Result<LogHead, StoreError> {
    let hash: Vec<u8> = row.get(1);
    let micros: i64 = row.get(2);
    Ok(LogHead {
        position: from_sql_int(row.get(0), "the log head")?,
        hash: hash.as_slice().try_into().map_err(|_| {
            StoreError::corrupt("the log head", format!("its hash is {} bytes", hash.len()))
        })?,
        recorded_at: (micros != 0)
            .then(|| DateTime::from_timestamp_micros(micros))
            .flatten(),
        greatest_id: row.get(3),
    })
}

fn raw_of(row: &postgres::Row) -> Result<RawEvent, StoreError> {
    let position = from_sql_int(row.get(0), "a position")?;
    let name: String = row.get(1);
    let stream = StreamId::parse(name).map_err(|e| {
        StoreError::corrupt(format!("position {position}"), format!("its stream: {e}"))
    })?;
    Ok(RawEvent {
        position,
        stream,
        version: from_sql_int(row.get(2), "a version")?,
        record: Record::from(row.get::<_, Vec<u8>>(3)),
    })
}

/// A lazy walk that reads [`PAGE_ROWS`] rows at a time: `fetch(after)` reads the rows after a
/// key, `key` is a row's key; the walk ends after a short page or an error.
fn paged<'a, T: 'a>(
    after: u64,
    mut fetch: impl FnMut(u64) -> Result<Vec<T>, StoreError> + 'a,
    key: impl Fn(&T) -> u64 + 'a,
) -> impl Iterator<Item = Result<T, StoreError>> + 'a {
    let mut next_after = after;
    let mut page = std::collections::VecDeque::new();
    let mut done = false;
    std::iter::from_fn(move || {
        if page.is_empty() && !done {
            match fetch(next_after) {
                Ok(rows) => {
                    done = (rows.len() as i64) < PAGE_ROWS;
                    if let Some(last) = rows.last() {
                        next_after = key(last);
                    }
                    page.extend(rows);
                }
                Err(error) => {
                    done = true;
                    return Some(Err(error));
                }
            }
        }
        page.pop_front().map(Ok)
    })
}

/// How often the follower of other nodes' rounds reads the head when no notification came: a
/// notification lost (a connection that broke and came back) delays followers by this at most.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// How long the follower waits for a notification before it checks whether to stop.
const LISTEN_TICK: Duration = Duration::from_millis(200);

impl PgStore {
    /// Follows the rounds every node commits, on a thread of its own with its own connection:
    /// `LISTEN annals_head`, and `publish` is called with the newest head each notification
    /// names, and with the head read from the table at least every [`FALLBACK_POLL`] (with
    /// `None` in between, to ask whether to go on). The thread stops when `publish` returns false. A broken connection is opened again.
    pub(crate) fn follow_heads(
        &self,
        mut publish: impl FnMut(Option<Position>) -> bool + Send + 'static,
    ) -> Result<(), StoreError> {
        let (connector, node) = (self.connector.clone(), self.node);
        std::thread::Builder::new()
            .name("annals-pg-follow".into())
            .spawn(move || {
                let mut listening: Option<Client> = None;
                let mut last_poll = std::time::Instant::now();
                loop {
                    if listening.as_ref().is_none_or(|c| c.is_closed()) {
                        listening = match connector.connect() {
                            Ok(mut client) => match client.batch_execute("LISTEN annals_head") {
                                Ok(()) => Some(client),
                                Err(error) => {
                                    tracing::warn!(error = %pg(error), "cannot follow other nodes");
                                    None
                                }
                            },
                            Err(error) => {
                                tracing::warn!(%error, "cannot follow other nodes");
                                None
                            }
                        };
                    }
                    let Some(client) = listening.as_mut() else {
                        // Try again later; meanwhile this node still sees its own rounds.
                        std::thread::park_timeout(FALLBACK_POLL);
                        if !publish(None) {
                            return;
                        }
                        continue;
                    };
                    let mut newest: Option<Position> = None;
                    let mut notices = client.notifications();
                    // Wait for one notification, then take those already queued behind it.
                    let mut received = notices.timeout_iter(LISTEN_TICK).next();
                    while let Ok(Some(notice)) = received {
                        // This node's own rounds are the journal's to publish.
                        let mut parts = notice.payload().split(' ');
                        let position = parts.next().and_then(|p| p.parse::<Position>().ok());
                        let from = parts.next().and_then(|n| n.parse::<u64>().ok());
                        if from != Some(node) {
                            newest = newest.max(position);
                        }
                        received = notices.iter().next();
                    }
                    if let Err(error) = received {
                        tracing::warn!(error = %pg(error), "lost the notifications of other nodes");
                    }
                    drop(notices);
                    if newest.is_none() && last_poll.elapsed() >= FALLBACK_POLL {
                        last_poll = std::time::Instant::now();
                        newest = client
                            .query_one("SELECT position FROM annals_head", &[])
                            .ok()
                            .and_then(|row| u64::try_from(row.get::<_, i64>(0)).ok());
                    }
                    if !publish(newest) {
                        return;
                    }
                }
            })
            .map_err(StoreError::Sync)?;
        Ok(())
    }
}

impl PgStore {
    /// Keeps `bytes` as file `name` of `area` for every node; one already there is kept as it
    /// is unless `replace`. Whether `bytes` were written.
    pub(crate) fn put_file(
        &self,
        area: &'static str,
        name: String,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<bool, StoreError> {
        let sql = if replace {
            "INSERT INTO annals_files (area, name, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (area, name) DO UPDATE SET bytes = excluded.bytes"
        } else {
            "INSERT INTO annals_files (area, name, bytes) VALUES ($1, $2, $3) \
             ON CONFLICT (area, name) DO NOTHING"
        };
        self.reads
            .run(move |conn| Ok(conn.execute(sql, &[&area, &name, &bytes])? > 0))
    }

    /// The bytes of file `name` of `area`, if some node kept it.
    pub(crate) fn get_file(
        &self,
        area: &'static str,
        name: String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.reads.run(move |conn| {
            let rows = conn.query(
                "SELECT bytes FROM annals_files WHERE area = $1 AND name = $2",
                &[&area, &name],
            )?;
            Ok(rows.first().map(|row| row.get(0)))
        })
    }

    /// Removes file `name` of `area`; whether it was there.
    pub(crate) fn delete_file(&self, area: &'static str, name: String) -> Result<bool, StoreError> {
        self.reads.run(move |conn| {
            let removed = conn.execute(
                "DELETE FROM annals_files WHERE area = $1 AND name = $2",
                &[&area, &name],
            )?;
            Ok(removed > 0)
        })
    }
}

/// How many times a node renews its leases within one lease's time.
const RENEWALS_PER_LEASE: u32 = 3;

/// How long a node that stopped renewing (its database unreachable) still counts on its
/// leases: less than the lease, so that it stops starting effects before another node may take
/// its shards.
fn trusted_for(lease: Duration) -> Duration {
    lease * 2 / 3
}

impl PgStore {
    /// Leases shards for the node named `node`, on a thread of its own with its own connection,
    /// for as long as `ownership` is alive, and keeps `ownership` to the shards held. Each
    /// renewal marks the node seen, extends the leases it holds, and takes shards whose lease
    /// expired (or that no node ever held) up to its fair share of the nodes seen within a
    /// lease. Resolves after the first renewal, with its error if it failed.
    pub(crate) async fn hold_leases(
        &self,
        node: String,
        lease: Duration,
        ownership: std::sync::Weak<super::super::ownership::Ownership>,
    ) -> Result<(), StoreError> {
        let connector = self.connector.clone();
        let (first, first_done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("annals-pg-leases".into())
            .spawn(move || {
                let mut client: Option<Client> = None;
                let mut first = Some(first);
                let mut renewed = std::time::Instant::now();
                loop {
                    let Some(ownership) = ownership.upgrade() else {
                        return;
                    };
                    if client.as_ref().is_some_and(Client::is_closed) {
                        client = None;
                    }
                    let held = match client.as_mut() {
                        Some(client) => renew(client, &node, lease),
                        None => connector
                            .connect()
                            .and_then(|opened| renew(client.insert(opened), &node, lease)),
                    };
                    match &held {
                        Ok(held) => {
                            renewed = std::time::Instant::now();
                            ownership.set(*held);
                        }
                        Err(error) => {
                            tracing::warn!(%error, "cannot renew this node's leases");
                            client = None;
                            if renewed.elapsed() >= trusted_for(lease) {
                                ownership.set(0);
                            }
                        }
                    }
                    if let Some(first) = first.take() {
                        let _ = first.send(held.map(drop));
                    }
                    drop(ownership);
                    std::thread::park_timeout(lease / RENEWALS_PER_LEASE);
                }
            })
            .map_err(StoreError::Sync)?;
        first_done
            .await
            .unwrap_or_else(|_| Err(StoreError::Postgres("the lease thread ended".into())))
    }
}

impl PgStore {
    /// Takes PostgreSQL's advisory lock `key` on a connection of its own (on a thread of its
    /// own, so that waiting for it holds none of the pool's), and holds it until the returned
    /// sender is dropped: the connection then closes, which releases it.
    pub(crate) async fn hold_lock(&self, key: i64) -> Result<mpsc::Sender<()>, StoreError> {
        let connector = self.connector.clone();
        let (taken, taking) = tokio::sync::oneshot::channel();
        let (release, released) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("annals-pg-lock".into())
            .spawn(move || {
                let locked = connector.connect().and_then(|mut client| {
                    client
                        .execute("SELECT pg_advisory_lock($1)", &[&key])
                        .map_err(pg)?;
                    Ok(client)
                });
                match locked {
                    Ok(client) => {
                        if taken.send(Ok(())).is_ok() {
                            // Until every sender is gone.
                            while released.recv().is_ok() {}
                        }
                        drop(client);
                    }
                    Err(error) => {
                        let _ = taken.send(Err(error));
                    }
                }
            })
            .map_err(StoreError::Sync)?;
        taking
            .await
            .unwrap_or_else(|_| Err(StoreError::Postgres("the lock's thread ended".into())))?;
        Ok(release)
    }
}

/// One renewal of `node`'s leases (see [`PgStore::hold_leases`]): the shards it holds after it.
fn renew(client: &mut Client, node: &str, lease: Duration) -> Result<u64, StoreError> {
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute(
        "INSERT INTO annals_nodes (node, seen_at) VALUES ($1, clock_timestamp()) \
         ON CONFLICT (node) DO UPDATE SET seen_at = excluded.seen_at",
        &[&node],
    )
    .map_err(pg)?;
    // Nodes gone for a day are forgotten.
    tx.execute(
        "DELETE FROM annals_nodes WHERE seen_at < clock_timestamp() - interval '1 day'",
        &[],
    )
    .map_err(pg)?;
    let kept = tx
        .query(
            "UPDATE annals_leases SET expires_at = clock_timestamp() + $2 * interval '1 ms' \
             WHERE node = $1 RETURNING shard",
            &[&node, &lease_ms],
        )
        .map_err(pg)?;
    let live: i64 = tx
        .query_one(
            "SELECT count(*) FROM annals_nodes \
             WHERE seen_at > clock_timestamp() - $1 * interval '1 ms'",
            &[&lease_ms],
        )
        .map_err(pg)?
        .get(0);
    let fair = u64::from(LEASE_SHARDS).div_ceil(u64::try_from(live).unwrap_or(1).max(1));
    let wanted = i64::try_from(fair.saturating_sub(kept.len() as u64)).unwrap_or(0);
    let taken = if wanted > 0 {
        // A shard is taken when no node holds a lease on it that has not expired; two nodes
        // taking the same one meet on its row, and the second finds it held.
        tx.query(
            "INSERT INTO annals_leases (shard, node, expires_at) \
             SELECT s, $1, clock_timestamp() + $2 * interval '1 ms' \
             FROM generate_series(0, $3) AS s \
             WHERE NOT EXISTS (SELECT 1 FROM annals_leases l \
                               WHERE l.shard = s AND l.expires_at > clock_timestamp()) \
             ORDER BY s LIMIT $4 \
             ON CONFLICT (shard) DO UPDATE \
             SET node = excluded.node, expires_at = excluded.expires_at \
             WHERE annals_leases.expires_at <= clock_timestamp() \
             RETURNING shard",
            &[&node, &lease_ms, &(LEASE_SHARDS as i32 - 1), &wanted],
        )
        .map_err(pg)?
    } else {
        Vec::new()
    };
    tx.commit().map_err(pg)?;
    Ok(kept
        .iter()
        .chain(&taken)
        .map(|row| row.get::<_, i32>(0))
        .filter_map(|shard| u32::try_from(shard).ok())
        .filter(|shard| *shard < LEASE_SHARDS)
        .fold(0, |held, shard| held | 1 << shard))
}

/// A round's rows, column by column, for one `unnest` insert.
#[derive(Default)]
pub(crate) struct PgBatch {
    positions: Vec<i64>,
    streams: Vec<String>,
    versions: Vec<i64>,
    ids: Vec<Uuid>,
    records: Vec<Vec<u8>>,
    head: Option<LogHead>,
}

impl PgBatch {
    pub(crate) fn put_event(
        &mut self,
        position: Position,
        stream: &StreamId,
        version: Version,
        event_id: Uuid,
        record: Vec<u8>,
    ) {
        self.positions.push(to_sql_int(position));
        self.streams.push(stream.as_str().to_owned());
        self.versions.push(to_sql_int(version));
        self.ids.push(event_id);
        self.records.push(record);
    }

    pub(crate) fn put_log_head(&mut self, head: &LogHead) {
        self.head = Some(*head);
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn a_password_never_shows_in_a_described_url() {
        assert_eq!(
            redact("postgres://annals:s3cret@db.example:5432/annals"),
            "postgres://annals:…@db.example:5432/annals"
        );
        assert_eq!(
            redact("postgresql://annals@db/annals"),
            "postgresql://annals@db/annals"
        );
        assert_eq!(
            redact("host=db user=annals password=s3cret dbname=annals"),
            "host=db user=annals password=… dbname=annals"
        );
    }
}
