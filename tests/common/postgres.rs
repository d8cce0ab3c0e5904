//! A throwaway PostgreSQL for the tests of the PostgreSQL log: one cluster per test process
//! (`initdb` and `pg_ctl` from Debian's `postgresql` package, in a temporary directory, on a free
//! loopback port, as the `postgres` user when the tests run as root), stopped when the process
//! exits, and one new database per log. `ANNALS_TEST_POSTGRES_URL` names a server to use instead
//! (its user must be allowed to create databases).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// A running server: how to reach it, and the programs that talk to it.
pub struct Server {
    /// `postgres://user@host:port` (no database).
    base: String,
    bin: PathBuf,
}

/// The clusters this process started (programs, directory), stopped at exit.
static STARTED: Mutex<Vec<(PathBuf, PathBuf)>> = Mutex::new(Vec::new());

/// Where Debian's PostgreSQL programs are: the newest `/usr/lib/postgresql/*/bin`, or `PATH`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("pg_ctl").exists())
        .collect();
    versions.sort_by_key(|bin| {
        bin.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(newest) = versions.pop() {
        return newest;
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .find(|dir| dir.join("pg_ctl").exists() && dir.join("initdb").exists());
    on_path.unwrap_or_else(|| {
        panic!(
            "the PostgreSQL tests need initdb and pg_ctl: install Debian's postgresql package \
             (apt-get install postgresql), or set ANNALS_TEST_POSTGRES_URL"
        )
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `program` from `bin`, run as the `postgres` user when this process is root (PostgreSQL
/// refuses to run as root).
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

extern "C" fn stop_at_exit() {
    let started = STARTED
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    for (bin, dir) in started {
        let _ = pg_command(&bin, "pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Stops and removes the clusters of test processes that are gone (killed before their exit
/// handler ran), so that none outlives its tests for long.
fn sweep_orphans(bin: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_cluster = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("annals-pg-"));
        let owner = std::fs::read_to_string(dir.join("owner"))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok());
        let Some(owner) = owner.filter(|_| is_cluster) else {
            continue;
        };
        // SAFETY: signal 0 only asks whether the process exists.
        let alive = unsafe { libc::kill(owner, 0) } == 0;
        if !alive {
            let _ = pg_command(bin, "pg_ctl")
                .arg("-D")
                .arg(dir.join("data"))
                .args(["-m", "immediate", "-w", "stop"])
                .output();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The server, started on first use, with `fsync` off: the tests kill annals, never the
/// machine, so they need PostgreSQL's commits, not its syncs.
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(false))
}

/// A server whose commits reach the disk (`fsync` on), for benchmarks of durable appends.
pub fn durable_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| start(true))
}

/// A server of its own (whatever `ANNALS_TEST_POSTGRES_URL` says) that speaks TLS with a
/// self-signed certificate for 127.0.0.1 and localhost, and the PEM file of that certificate.
pub fn tls_server() -> &'static (Server, PathBuf) {
    static SERVER: OnceLock<(Server, PathBuf)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .unwrap();
        let pem = (certified.cert.pem(), certified.key_pair.serialize_pem());
        let (server, dir) = start_cluster(false, Some(&pem));
        (server, dir.join("server.crt"))
    })
}

fn start(fsync: bool) -> Server {
    if let Ok(url) = std::env::var("ANNALS_TEST_POSTGRES_URL") {
        let base = match url.rfind('/') {
            Some(slash) if slash > "postgres://".len() => url[..slash].to_owned(),
            _ => url,
        };
        return Server {
            base,
            bin: bin_dir(),
        };
    }
    start_cluster(fsync, None).0
}

/// A throwaway cluster, with TLS when given a certificate and its key (PEM); the server and
/// the cluster's directory.
fn start_cluster(fsync: bool, tls: Option<&(String, String)>) -> (Server, PathBuf) {
    let bin = bin_dir();
    sweep_orphans(&bin);
    let dir = tempfile::Builder::new()
        .prefix("annals-pg-")
        .tempdir()
        .expect("a temporary directory")
        .keep();
    std::fs::write(dir.join("owner"), std::process::id().to_string())
        .expect("the cluster's owner is written");
    let data = dir.join("data");
    if is_root() {
        let mut chown = Command::new("chown");
        chown.arg("postgres:").arg(&dir);
        run(chown, "chown the cluster's directory to postgres");
    }
    let mut initdb = pg_command(&bin, "initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "annals", "--no-sync", "-E", "UTF8"]);
    run(initdb, "initdb");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    {
        let mut started = STARTED.lock().unwrap();
        if started.is_empty() {
            // SAFETY: registers a plain function, run once when the process exits.
            unsafe { libc::atexit(stop_at_exit) };
        }
        started.push((bin.clone(), dir.clone()));
    }
    let mut options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync={} -c max_connections=400",
        dir.display(),
        if fsync { "on" } else { "off" }
    );
    if let Some((cert, key)) = tls {
        let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
        std::fs::write(&cert_file, cert).unwrap();
        std::fs::write(&key_file, key).unwrap();
        std::fs::set_permissions(
            &key_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&cert_file).arg(&key_file);
            run(chown, "chown the server's certificate to postgres");
        }
        options += &format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            cert_file.display(),
            key_file.display()
        );
    }
    let mut pg_ctl = pg_command(&bin, "pg_ctl");
    pg_ctl
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(dir.join("server.log"))
        .arg("-o")
        .arg(options)
        .args(["-w", "-t", "60", "start"]);
    run(pg_ctl, "pg_ctl start");
    let server = Server {
        base: format!("postgres://annals@127.0.0.1:{port}"),
        bin,
    };
    (server, dir)
}

impl Server {
    /// A new, empty database; its URL.
    pub fn new_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "annals_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        format!("{}/{name}", self.base)
    }

    /// Runs `sql` on `database` with psql; its output (unaligned, tuples only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .arg(format!("{}/{database}", self.base))
            .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

/// `options` on the PostgreSQL log at `url`.
pub fn at(url: &str, options: annals::events::LogOptions) -> annals::events::LogOptions {
    annals::events::LogOptions {
        backend: annals::events::Backend::Postgres(annals::events::PostgresOptions {
            url: url.to_owned(),
            password: None,
            pool_size: 4,
            lease: std::time::Duration::from_secs(10),
            ca_cert: None,
        }),
        ..options
    }
}

/// The database name at the end of a URL this module made.
pub fn database_of(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// `annals --data DATA …` on the PostgreSQL log at `url`, logging warnings only.
pub fn annals_on(url: &str, data: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .arg("--data")
        .arg(data)
        .env("ANNALS_LOG_BACKEND", "postgres")
        .env("ANNALS_LOG_POSTGRES_URL", url)
        .env("RUST_LOG", "warn");
    command
}
