//! Running external programs with `annals::process`: real child processes (sh, cat, printf,
//! sleep), streaming observed before the program exits, stdin, environment, timeouts and
//! cancellation that kill the whole process group, exit statuses, spawn errors and bounded
//! output. Waits are on the program's own signals (a fifo, a line) or polls with a deadline.
//! Its own test binary, not a module of `tests/api`: one test changes the process's umask and
//! the umask every program is started with, which would reach the other tests' servers.

mod common;

use std::path::Path;
use std::time::Duration;

use annals::process::{self, Ending, Exit, Invocation, Line, ProcessError, Running, Stream};
use libc::{SIGKILL, SIGTERM};

/// How long a test waits for a killed process group to disappear.
const GONE_WITHIN: Duration = Duration::from_secs(10);

fn sh(script: &str) -> Invocation {
    Invocation::new("sh").arg("-c").arg(script)
}

/// A whole stdout line, as [`all_lines`] and [`expect_line`] show it: without its offset, which
/// the tests of supervised runs check.
fn out(text: &str) -> Line {
    Line {
        stream: Stream::Stdout,
        text: text.to_owned(),
        continues: false,
        offset: 0,
    }
}

fn without_offset(line: Line) -> Line {
    Line { offset: 0, ..line }
}

/// A script that ignores SIGTERM, so that only the SIGKILL after its short grace period ends
/// it; its first line is the pid of its background sleep, printed once the trap is set.
fn ignoring_sigterm() -> Invocation {
    sh("trap '' TERM; sleep 1000 & echo $!; wait").kill_grace(Duration::from_millis(200))
}

/// Starts `invocation`; the run, and its process group (the program's pid).
fn spawned(invocation: Invocation) -> (Running, u32) {
    let running = process::spawn(invocation).expect("starts");
    let pgid = running.pid();
    (running, pgid)
}

/// Waits for the end of the run and then for its process group `pgid` to be gone: how the run
/// ended, how its program exited, and whether the group had to be killed with SIGKILL.
async fn ended_and_gone(running: Running, pgid: u32) -> (Ending, Exit, bool) {
    let outcome = running.wait().await.expect("an outcome");
    assert_group_gone(pgid).await;
    (outcome.ending, outcome.exit, outcome.forced)
}

/// Reads every remaining line.
async fn all_lines(running: &mut Running) -> Vec<Line> {
    let mut lines = Vec::new();
    while let Some(line) = running.next_line().await {
        lines.push(without_offset(line));
    }
    lines
}

async fn expect_line(running: &mut Running) -> Line {
    tokio::time::timeout(Duration::from_secs(30), running.next_line())
        .await
        .expect("a line within 30 s")
        .map(without_offset)
        .expect("a line before the end of output")
}

/// The pid a script's first line gives, as `sleep 1000 & echo $!` prints it.
async fn background_pid(running: &mut Running) -> u32 {
    expect_line(running)
        .await
        .text
        .parse()
        .expect("the background pid")
}

/// Whether any process of group `pgid` is still alive. Killed processes that were reparented
/// stay zombies until their new parent reaps them, so zombies count as gone.
fn group_alive(pgid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(-(pgid as libc::pid_t), 0) } != 0 {
        return false;
    }
    std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .any(|stat| {
            // `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
            let Some(after) = stat.rfind(')').map(|end| &stat[end + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = after.split_whitespace().collect();
            fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z"
        })
}

fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .map(|end| !stat[end + 1..].trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Polls until `alive` says no more, off the runtime's thread, so that the run's supervisor
/// keeps running meanwhile.
async fn assert_gone(what: &'static str, alive: impl Fn() -> bool + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        common::poll(GONE_WITHIN, what, || (!alive()).then_some(()))
    })
    .await
    .expect("the poll finishes");
}

async fn assert_group_gone(pgid: u32) {
    assert_gone("the process group to disappear", move || group_alive(pgid)).await;
}

async fn assert_process_gone(pid: u32) {
    assert_gone("the process to disappear", move || process_alive(pid)).await;
}

fn make_fifo(path: &Path) {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("no NUL");
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    let result = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(result, 0, "mkfifo: {}", std::io::Error::last_os_error());
}

/// Writes to a fifo; opening blocks until the program opens it for reading.
async fn write_fifo(path: &Path, text: &str) {
    let path = path.to_owned();
    let text = text.to_owned();
    tokio::task::spawn_blocking(move || std::fs::write(path, text))
        .await
        .expect("the writer finishes")
        .expect("the fifo takes the text");
}

#[tokio::test]
async fn lines_arrive_while_the_program_is_still_running() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let fifo = dir.path().join("go");
    make_fifo(&fifo);
    // The program cannot exit before the test writes the fifo, and the test writes it only
    // after it has seen the first line: that line was delivered while the program ran.
    let mut running = process::spawn(
        sh(r#"echo ready; read answer < "$1"; echo "got $answer""#)
            .arg("sh")
            .arg(&fifo),
    )
    .expect("sh starts");
    assert_eq!(expect_line(&mut running).await, out("ready"));
    assert!(process_alive(running.pid()), "the program is still running");
    write_fifo(&fifo, "go\n").await;
    assert_eq!(expect_line(&mut running).await, out("got go"));
    assert!(running.next_line().await.is_none());
    let outcome = running.wait().await.expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.stdout.bytes, b"ready\ngot go\n");
}

#[tokio::test]
async fn stderr_lines_are_tagged_and_captured_apart() {
    let mut running =
        process::spawn(sh("echo out1; echo err1 >&2; echo out2; printf err2 >&2")).expect("starts");
    let lines = all_lines(&mut running).await;
    let of = |stream| {
        lines
            .iter()
            .filter(|line| line.stream == stream)
            .map(|line| line.text.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(of(Stream::Stdout), ["out1", "out2"]);
    assert_eq!(of(Stream::Stderr), ["err1", "err2"]);
    let outcome = running.wait().await.expect("an outcome");
    assert_eq!(outcome.stdout.bytes, b"out1\nout2\n");
    assert_eq!(outcome.stderr.bytes, b"err1\nerr2");
    assert!(!outcome.stdout.truncated());
}

#[tokio::test]
async fn stdin_is_delivered_then_closed() {
    let mut running =
        process::spawn(Invocation::new("cat").stdin(b"hello\r\nworld".to_vec())).expect("starts");
    assert_eq!(all_lines(&mut running).await, [out("hello"), out("world")]);
    let outcome = running.wait().await.expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
}

#[tokio::test]
async fn large_input_and_output_flow_at_once_without_deadlock() {
    // cat writes as it reads: with 4 MiB each way, both pipes fill many times over.
    let input: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| if i % 100 == 99 { b'\n' } else { b'x' })
        .collect();
    let outcome = process::run(
        Invocation::new("cat")
            .stdin(input.clone())
            .timeout(Duration::from_secs(120)),
    )
    .await
    .expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(outcome.stdout.total, input.len() as u64);
    assert!(outcome.stdout.bytes == input);
}

#[tokio::test]
async fn a_program_that_does_not_read_its_input_is_not_an_error() {
    let outcome = process::run(sh("exit 0").stdin(vec![b'x'; 1024 * 1024]))
        .await
        .expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
}

#[tokio::test]
async fn the_environment_is_minimal_plus_what_is_given() {
    // Cargo sets this for the test process; the program must not see it.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut running = process::spawn(
        sh(r#"echo "$GIVEN"; echo "${CARGO_MANIFEST_DIR-absent}"; echo "${PATH:+has path}"; pwd"#)
            .env("GIVEN", "given value")
            .current_dir(dir.path()),
    )
    .expect("sh is found through the inherited PATH");
    let canonical = dir.path().canonicalize().expect("a canonical path");
    assert_eq!(
        all_lines(&mut running).await,
        [
            out("given value"),
            out("absent"),
            out("has path"),
            out(&canonical.to_string_lossy()),
        ]
    );
    running.wait().await.expect("an outcome");
}

#[tokio::test]
async fn exit_codes_and_signals_are_reported() {
    let outcome = process::run(sh("exit 7")).await.expect("an outcome");
    assert_eq!(
        (outcome.ending, outcome.exit, outcome.forced),
        (Ending::Finished, Exit::Code(7), false)
    );
    assert!(!outcome.succeeded());

    let outcome = process::run(Invocation::new("true"))
        .await
        .expect("an outcome");
    assert_eq!(outcome.exit, Exit::Code(0));
    assert!(outcome.succeeded());

    let outcome = process::run(sh("kill -KILL $$")).await.expect("an outcome");
    assert_eq!(
        (outcome.ending, outcome.exit),
        (Ending::Finished, Exit::Signal(libc::SIGKILL))
    );
}

#[tokio::test]
async fn spawn_failures_are_typed() {
    let missing = process::spawn(Invocation::new("/nonexistent/annals-no-such-program"));
    assert!(
        matches!(missing, Err(ProcessError::NotFound { .. })),
        "{missing:?}"
    );
    let missing = process::spawn(Invocation::new("annals-no-such-program-on-path"));
    assert!(
        matches!(missing, Err(ProcessError::NotFound { .. })),
        "{missing:?}"
    );
    let not_executable = tempfile::NamedTempFile::new().expect("a file");
    let denied = process::spawn(Invocation::new(not_executable.path()));
    assert!(
        matches!(denied, Err(ProcessError::PermissionDenied { .. })),
        "{denied:?}"
    );
    let no_dir = process::spawn(Invocation::new("true").current_dir("/nonexistent/annals-dir"));
    assert!(
        matches!(no_dir, Err(ProcessError::NoWorkingDirectory { .. })),
        "{no_dir:?}"
    );
    let empty = process::spawn(Invocation::new(""));
    assert!(
        matches!(empty, Err(ProcessError::EmptyProgram)),
        "{empty:?}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_program_and_its_grandchildren() {
    let (mut running, pgid) = spawned(
        sh("sleep 1000 & echo $!; wait")
            .timeout(Duration::from_secs(2))
            .kill_grace(Duration::from_secs(60)),
    );
    let grandchild = background_pid(&mut running).await;
    assert!(process_alive(grandchild));
    // sh dies of the SIGTERM: the grace period was not needed.
    let ended = ended_and_gone(running, pgid).await;
    assert_eq!(ended, (Ending::TimedOut, Exit::Signal(SIGTERM), false));
    assert_process_gone(grandchild).await;
}

#[tokio::test]
async fn a_timeout_uses_sigkill_when_sigterm_is_ignored() {
    let (mut running, pgid) = spawned(ignoring_sigterm().timeout(Duration::from_secs(1)));
    let grandchild = background_pid(&mut running).await;
    let ended = ended_and_gone(running, pgid).await;
    assert_eq!(ended, (Ending::TimedOut, Exit::Signal(SIGKILL), true));
    assert_process_gone(grandchild).await;
}

#[tokio::test]
async fn cancel_lets_a_program_that_handles_sigterm_exit_cleanly() {
    let (mut running, pgid) = spawned(
        sh("trap 'echo stopping; exit 3' TERM; sleep 1000 & echo ready; wait")
            // Were the grace period used, the test would hang for a minute and see `forced`.
            .kill_grace(Duration::from_secs(60)),
    );
    assert_eq!(expect_line(&mut running).await, out("ready"));
    running.canceller().cancel();
    assert_eq!(expect_line(&mut running).await, out("stopping"));
    let ended = ended_and_gone(running, pgid).await;
    assert_eq!(ended, (Ending::Cancelled, Exit::Code(3), false));
}

#[tokio::test]
async fn cancel_kills_a_program_that_ignores_sigterm_after_the_grace_period() {
    let (mut running, pgid) = spawned(ignoring_sigterm());
    let grandchild = background_pid(&mut running).await;
    let canceller = running.canceller();
    canceller.cancel();
    // A second request changes nothing.
    canceller.cancel();
    let ended = ended_and_gone(running, pgid).await;
    assert_eq!(ended, (Ending::Cancelled, Exit::Signal(SIGKILL), true));
    assert_process_gone(grandchild).await;
}

#[tokio::test]
async fn cancelling_after_the_end_changes_nothing() {
    let mut running = process::spawn(sh("echo done")).expect("starts");
    let canceller = running.canceller();
    assert_eq!(all_lines(&mut running).await, [out("done")]);
    let outcome = running.wait().await.expect("an outcome");
    canceller.cancel();
    assert_eq!(outcome.ending, Ending::Finished);
}

#[tokio::test]
async fn what_a_finished_program_leaves_in_its_group_is_killed() {
    // Without the kill, the background sleep would hold stdout open for 1000 s.
    let (mut running, pgid) = spawned(sh("sleep 1000 & echo $!"));
    let grandchild = background_pid(&mut running).await;
    let outcome = running.wait().await.expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert_process_gone(grandchild).await;
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn dropping_a_run_kills_its_group() {
    let (mut running, pgid) = spawned(sh("sleep 1000 & echo $!; wait"));
    let grandchild = background_pid(&mut running).await;
    drop(running);
    assert_process_gone(grandchild).await;
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn long_lines_are_cut_and_captured_output_is_bounded() {
    // One 300,000-byte line without a newline, then 20,000 short lines.
    let mut running = process::spawn(
        sh("head -c 300000 /dev/zero | tr '\\0' a; echo; seq 1 20000")
            .max_line_bytes(1000)
            .max_capture_bytes(10_000),
    )
    .expect("starts");
    let lines = all_lines(&mut running).await;
    let outcome = running.wait().await.expect("an outcome");
    assert!(outcome.succeeded(), "{outcome:?}");
    assert!(lines.iter().all(|line| line.text.len() <= 1000));
    let (pieces, rest) = lines.split_at(300);
    assert!(pieces[..299].iter().all(|line| line.continues));
    assert!(pieces.iter().all(|line| line.text == "a".repeat(1000)));
    assert!(!pieces[299].continues);
    assert_eq!(rest.len(), 20_000);
    assert_eq!(rest.last(), Some(&out("20000")));
    assert_eq!(outcome.stdout.bytes.len(), 10_000);
    let seq_bytes: u64 = (1..=20_000u64)
        .map(|n| n.to_string().len() as u64 + 1)
        .sum();
    assert_eq!(outcome.stdout.total, 300_001 + seq_bytes);
    assert!(outcome.stdout.truncated());
}

#[tokio::test]
async fn output_that_is_not_utf8_is_decoded_lossily() {
    let mut running = process::spawn(Invocation::new("printf").arg("\\377abc\\n")).expect("starts");
    assert_eq!(all_lines(&mut running).await, [out("\u{fffd}abc")]);
    let outcome = running.wait().await.expect("an outcome");
    assert_eq!(outcome.stdout.bytes, b"\xffabc\n");
}

#[tokio::test]
async fn arguments_reach_the_program_unchanged_without_a_shell() {
    let tricky = "$HOME; echo injected `id` \"quoted\" *";
    let mut running =
        process::spawn(Invocation::new("printf").args(["%s\\n", tricky])).expect("starts");
    assert_eq!(all_lines(&mut running).await, [out(tricky)]);
    running.wait().await.expect("an outcome");
}

#[tokio::test]
async fn programs_get_the_umask_annals_was_started_with() {
    // What `annals` does at start: keep its own umask private, give programs the one it got.
    // SAFETY: umask(2) cannot fail.
    let inherited = unsafe { libc::umask(0o077) };
    process::set_child_umask(0o027);
    let mut running = process::spawn(sh("umask")).expect("starts");
    let lines = all_lines(&mut running).await;
    // SAFETY: as above; the test binary's own umask is put back.
    unsafe { libc::umask(inherited) };
    assert_eq!(lines, vec![out("0027")]);
}

mod supervised {
    //! Runs under a supervisor of their own (`process::supervised`): they outlive whoever
    //! follows them, are found again from their directory, and end only by their supervisor.

    use super::*;
    use annals::process::supervised::{self, Fate, Offsets, Supervision};

    /// Starts `invocation` supervised by the annals binary, in a run directory under `root`.
    fn start(
        root: &Path,
        invocation: Invocation,
        remove_at_end: Vec<std::path::PathBuf>,
    ) -> (Running, Supervision) {
        supervised::use_supervisor(env!("CARGO_BIN_EXE_annals"));
        supervised::spawn(invocation, &root.join("run"), remove_at_end).expect("supervised")
    }

    /// Every line left, with its offset.
    async fn rest(running: &mut Running) -> Vec<(String, u64)> {
        let mut lines = Vec::new();
        while let Some(line) = running.next_line().await {
            lines.push((line.text, line.offset));
        }
        lines
    }

    async fn fate_becomes(dir: &Path, fate: Fate) {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            common::poll(GONE_WITHIN, "the run's fate", || {
                (supervised::fate(&dir) == fate).then_some(())
            })
        })
        .await
        .expect("the poll finishes");
    }

    #[tokio::test]
    async fn a_run_outlives_its_reader_and_is_read_again_from_where_it_stopped() {
        let root = tempfile::tempdir().unwrap();
        let gate = root.path().join("gate");
        make_fifo(&gate);
        let script = format!(
            "echo one; echo two; read go < {}; echo three; echo four >&2",
            gate.display()
        );
        let (mut running, supervision) = start(root.path(), sh(&script), Vec::new());
        // Its own session: a signal to annals' group or session never reaches it.
        // SAFETY: getsid(2) only reads.
        let (ours, its) = unsafe { (libc::getsid(0), libc::getsid(supervision.supervisor as i32)) };
        assert_ne!(ours, its);
        assert_eq!(expect_line(&mut running).await, out("one"));
        let first = running.next_line().await.unwrap();
        assert_eq!((first.text.as_str(), first.offset), ("two", 8));
        // The reader goes away (annals stops); the run does not.
        drop(running);
        assert_eq!(supervised::fate(&supervision.dir), Fate::Running);
        write_fifo(&gate, "go\n").await;
        fate_becomes(&supervision.dir, Fate::Ended).await;
        let from = Offsets {
            stdout: first.offset,
            stderr: 0,
        };
        let mut again = supervised::attach(&supervision, from, &Invocation::new("unused"));
        let mut lines = rest(&mut again).await;
        lines.sort();
        assert_eq!(
            lines,
            [("four".to_owned(), 5), ("three".to_owned(), 14)],
            "every line after the offset, once"
        );
        let outcome = again.wait().await.unwrap();
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(outcome.stdout.bytes, b"one\ntwo\nthree\n");
        assert_eq!(outcome.stderr.bytes, b"four\n");
    }

    #[tokio::test]
    async fn a_cancel_stops_the_whole_group_through_the_supervisor() {
        let root = tempfile::tempdir().unwrap();
        let invocation = sh("sleep 1000 & echo $!; trap 'echo stopping; exit 3' TERM; \
                             echo ready; while :; do sleep 0.05; done")
        .kill_grace(Duration::from_secs(30));
        let (mut running, supervision) = start(root.path(), invocation, Vec::new());
        let background = background_pid(&mut running).await;
        assert_eq!(expect_line(&mut running).await, out("ready"));
        // A reader attached later cancels as well as the first.
        drop(running);
        let mut again = supervised::attach(&supervision, Offsets::default(), &Invocation::new("x"));
        again.canceller().cancel();
        let mut last = None;
        while let Some(line) = again.next_line().await {
            if line.stream == Stream::Stdout {
                last = Some(line.text);
            }
        }
        assert_eq!(last.as_deref(), Some("stopping"));
        let outcome = again.wait().await.unwrap();
        assert_eq!(outcome.ending, Ending::Cancelled);
        assert_eq!(outcome.exit, Exit::Code(3));
        assert!(!outcome.forced);
        assert_process_gone(background).await;
        assert_group_gone(supervision.group).await;
    }

    #[tokio::test]
    async fn the_supervisor_enforces_the_timeout_and_removes_the_given_files() {
        let root = tempfile::tempdir().unwrap();
        let secret = root.path().join("key");
        std::fs::write(&secret, "private").unwrap();
        let invocation = sh("trap '' TERM; echo ready; while :; do sleep 0.05; done")
            .timeout(Duration::from_millis(300))
            .kill_grace(Duration::from_millis(200));
        let (mut running, supervision) = start(root.path(), invocation, vec![secret.clone()]);
        assert_eq!(expect_line(&mut running).await, out("ready"));
        let outcome = running.wait().await.unwrap();
        assert_eq!(outcome.ending, Ending::TimedOut);
        assert_eq!(outcome.exit, Exit::Signal(libc::SIGKILL));
        assert!(outcome.forced);
        assert!(!secret.exists(), "removed at the end");
        assert_group_gone(supervision.group).await;
    }

    #[tokio::test]
    async fn a_run_whose_supervisor_was_killed_is_lost_and_its_group_killed() {
        let root = tempfile::tempdir().unwrap();
        let (mut running, supervision) =
            start(root.path(), sh("echo ready; exec sleep 1000"), Vec::new());
        assert_eq!(expect_line(&mut running).await, out("ready"));
        drop(running);
        // SAFETY: kill(2) of the supervisor this test started.
        unsafe { libc::kill(supervision.supervisor as i32, libc::SIGKILL) };
        fate_becomes(&supervision.dir, Fate::Lost).await;
        assert!(
            group_alive(supervision.group),
            "the program outlived its supervisor"
        );
        let again = supervised::attach(
            &supervision,
            Offsets {
                stdout: 6,
                stderr: 0,
            },
            &Invocation::new("x"),
        );
        let outcome = again.wait().await.unwrap();
        assert_eq!(outcome.ending, Ending::Lost);
        assert_eq!(outcome.exit, Exit::Unknown);
        assert_group_gone(supervision.group).await;
    }

    #[tokio::test]
    async fn output_past_the_cap_is_counted_not_kept() {
        let root = tempfile::tempdir().unwrap();
        // 100 lines of 50 bytes: 5,000 bytes, of which 1,000 are kept.
        let invocation =
            sh("for i in $(seq 1 100); do printf '%049d\\n' $i; done").max_output_bytes(1000);
        let (mut running, supervision) = start(root.path(), invocation, Vec::new());
        let lines = rest(&mut running).await;
        assert_eq!(lines.len(), 20, "only the kept lines are read");
        assert_eq!(lines.last().map(|line| line.1), Some(1000));
        let outcome = running.wait().await.unwrap();
        assert!(outcome.succeeded(), "{outcome:?}");
        assert_eq!(
            (outcome.stdout.bytes.len(), outcome.stdout.total),
            (1000, 5000)
        );
        assert!(outcome.stdout.truncated());
        let kept = std::fs::metadata(supervision.dir.join("stdout"))
            .unwrap()
            .len();
        assert_eq!(kept, 1000);
    }

    #[tokio::test]
    async fn supervised_spawn_failures_are_typed_and_leave_nothing() {
        let root = tempfile::tempdir().unwrap();
        supervised::use_supervisor(env!("CARGO_BIN_EXE_annals"));
        let dir = root.path().join("run");
        let error = supervised::spawn(Invocation::new("no-such-program-here"), &dir, Vec::new())
            .expect_err("refused");
        assert!(matches!(error, ProcessError::NotFound { .. }), "{error:?}");
        assert!(!dir.exists());
        let error = supervised::spawn(Invocation::new(""), &dir, Vec::new()).expect_err("refused");
        assert!(matches!(error, ProcessError::EmptyProgram), "{error:?}");
    }

    #[tokio::test]
    async fn input_environment_and_arguments_reach_the_program() {
        let root = tempfile::tempdir().unwrap();
        let invocation = sh(
            "read line; echo \"${#line} $GIVEN $1\"; test -z \"$ANNALS_MASTER_KEY\" && echo clean",
        )
        .arg("sh")
        .arg("arg one")
        .env("GIVEN", "value")
        .stdin(b"private\n".to_vec());
        let (mut running, supervision) = start(root.path(), invocation, Vec::new());
        let lines: Vec<String> = rest(&mut running).await.into_iter().map(|l| l.0).collect();
        assert_eq!(lines, ["7 value arg one", "clean"]);
        assert!(running.wait().await.unwrap().succeeded());
        // Every regular file (`control` is a FIFO).
        let files: Vec<String> = std::fs::read_dir(&supervision.dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().into_string().unwrap())
            .collect();
        for file in files {
            let text = std::fs::read(supervision.dir.join(&file)).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&text).contains("private"),
                "the input is in no file ({file})"
            );
        }
    }

    /// A run whose directory is gone ended and was cleaned away: its group id may be another
    /// group's by now, so a lost run is killed only while its directory says it is there.
    #[test]
    fn a_lost_run_whose_directory_is_gone_kills_nothing() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let mut stranger = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let supervision = Supervision {
            dir: dir.path().join("run"),
            supervisor: 1,
            group: stranger.id(),
            boot: supervised::boot_id(),
        };
        supervised::kill_lost(&supervision);
        assert!(group_alive(stranger.id()), "a group of no run was killed");
        // With its lock file there, the run may have left its group behind: it is killed.
        std::fs::create_dir(&supervision.dir).unwrap();
        std::fs::write(supervision.dir.join("lock"), "").unwrap();
        supervised::kill_lost(&supervision);
        let status = stranger.wait().expect("sleep ends");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9)
        );
    }
}
