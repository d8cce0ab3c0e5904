//! Crash and fault tests with real child processes: `annals load` appends from many concurrent
//! writers and prints each acknowledgement; the test kills it with SIGKILL at random moments
//! and checks, after each restart, that every acknowledged event is present and unchanged and
//! that the log verifies, on each engine. A write failure (file size limit) must fail appends,
//! not lose acks.

use crate::common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use annals::cli::load_line;
use annals::events::verify::verify;
use annals::events::{Backend, DomainEvent, EventLog, LogOptions, Position};
use annals::runtime::job::JobEvent;
use common::line_text;

/// One acknowledgement printed by `annals load`.
#[derive(Debug, Clone)]
struct Ack {
    stream: String,
    version: u64,
    event_id: uuid::Uuid,
    writer: usize,
    seq: u64,
}

fn parse_ack(line: &str) -> Option<(Position, Ack)> {
    let fields: Vec<&str> = line.split(' ').collect();
    let ["ack", stream, version, position, event_id, writer, seq] = fields[..] else {
        return None;
    };
    Some((
        position.parse().ok()?,
        Ack {
            stream: stream.to_owned(),
            version: version.parse().ok()?,
            event_id: event_id.parse().ok()?,
            writer: writer.parse().ok()?,
            seq: seq.parse().ok()?,
        },
    ))
}

/// `annals` on the log of `options` (sled in `data`, or the PostgreSQL database it names).
fn annals(data: &Path, options: &LogOptions) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command.arg("--data").arg(data).env("RUST_LOG", "warn");
    if let Backend::Postgres(postgres) = &options.backend {
        command
            .env("ANNALS_LOG_BACKEND", "postgres")
            .env("ANNALS_LOG_POSTGRES_URL", &postgres.url);
    }
    command
}

/// Starts `annals load` and a thread that forwards each complete ack line.
fn start_load(mut command: Command, run: &str) -> (Child, mpsc::Receiver<String>) {
    command
        .args(["load", "--writers", "16", "--events", "0", "--run", run])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("annals starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, received)
}

/// Checks that every acknowledged event is in the log, unchanged, and that the log verifies.
fn check_acknowledged(data: &Path, options: &LogOptions, acked: &BTreeMap<Position, Ack>) {
    let log = EventLog::open(data, options.clone()).expect("the log opens after the crash");
    for (position, ack) in acked {
        let event = log
            .store()
            .event(*position)
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged event at position {position} is missing"));
        assert_eq!(event.stream.as_str(), ack.stream, "position {position}");
        assert_eq!(event.version, ack.version, "position {position}");
        assert_eq!(event.event_id, ack.event_id, "position {position}");
        if ack.seq == 0 {
            assert!(matches!(
                JobEvent::from_recorded(&event),
                Ok(JobEvent::JobStarted(_))
            ));
        } else {
            assert_eq!(
                line_text(&event),
                load_line(ack.writer, ack.seq, 300),
                "position {position}"
            );
        }
    }
    let report =
        verify(log.store(), |_| {}).unwrap_or_else(|e| panic!("verify after a crash: {e}"));
    assert!(report.events >= acked.len() as u64);
    log.close();
}

/// A small deterministic generator, seeded from the clock and printed, so a failing run can be
/// replayed by setting `ANNALS_CRASH_SEED`.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// On sled, the log in a directory; on PostgreSQL, in a database (the commit is the durability
/// point there, and a killed node's open transaction is rolled back).
mod sigkill_at_random_moments_loses_no_acknowledged_event {
    use crate::common::Engine;

    #[test]
    fn sled() {
        super::sigkill_cycles(Engine::Sled);
    }

    #[test]
    fn postgres() {
        super::sigkill_cycles(Engine::Postgres);
    }
}

fn sigkill_cycles(engine: common::Engine) {
    let _load = common::LOAD_TEST.blocking_lock();
    let seed = std::env::var("ANNALS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("ANNALS_CRASH_SEED={seed}");
    let mut random = XorShift(seed);
    let (_dir, data) = common::data_dir();
    let options = engine.options(LogOptions::default());
    let mut acked = BTreeMap::new();
    let cycles = 24;
    for cycle in 0..cycles {
        let (mut child, lines) = start_load(annals(&data, &options), &format!("c{cycle}"));
        // Every fourth cycle kills during start-up (opening and recovering the log); the others
        // after a random number of acknowledgements.
        let kill_after = if cycle % 4 == 3 {
            0
        } else {
            1 + random.next(1500)
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = 0;
        while seen < kill_after {
            let line = lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("cycle {cycle}: no acknowledgement in time"));
            let (position, ack) = parse_ack(&line).unwrap_or_else(|| panic!("bad line {line:?}"));
            assert!(
                acked.insert(position, ack).is_none(),
                "position {position} acknowledged twice"
            );
            seen += 1;
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        // Lines printed before the kill are acknowledgements too.
        for line in lines.iter() {
            if let Some((position, ack)) = parse_ack(&line) {
                assert!(
                    acked.insert(position, ack).is_none(),
                    "position {position} acknowledged twice"
                );
            }
        }
        check_acknowledged(&data, &options, &acked);
    }
    assert!(
        acked.len() > 1000,
        "only {} acknowledgements over {cycles} cycles",
        acked.len()
    );
}

#[test]
fn a_write_failure_fails_appends_and_loses_nothing_acknowledged() {
    let (_dir, data) = common::data_dir();
    // Create the log first, so that the limit hits appends rather than creation.
    EventLog::open(&data, LogOptions::default())
        .unwrap()
        .close();
    let options = LogOptions::default();
    let mut limited = annals(&data, &options);
    let limit: u64 = 3 * 1024 * 1024;
    // SAFETY: only async-signal-safe calls between fork and exec: signal and setrlimit.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut limited, move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (mut child, lines) = start_load(limited, "full");
    let mut acked = BTreeMap::new();
    for line in lines.iter() {
        let (position, ack) = parse_ack(&line).unwrap_or_else(|| panic!("bad line {line:?}"));
        acked.insert(position, ack);
    }
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "the load must fail once writes fail");
    assert!(
        stderr.contains("could not be written") || stderr.contains("File too large"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
    assert!(!acked.is_empty());
    check_acknowledged(&data, &options, &acked);
}
