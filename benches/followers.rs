//! Event API followers: how long an appended event takes to reach long-poll followers (each on a
//! new connection, and on connections kept alive across rounds), and how much memory the server
//! spends on idle long-poll followers; with each wake, the server workers' CPU per answer.
//!
//! Run with `cargo bench --bench followers`. The server runs in this process on a loopback port;
//! the idle followers are held by a second copy of this program (so that the resident memory
//! measured here is the server's alone). Environment: `ANNALS_BENCH_FOLLOWERS` (idle followers,
//! default 10000), `ANNALS_BENCH_ROUNDS` (wake rounds, default 50), `ANNALS_BENCH_WAKERS`
//! (followers per wake round, default 100).

#[path = "support/scratch.rs"]
mod scratch;
#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use annals::events::{
    DomainEvent, Durability, EventLog, ExpectedVersion, Metadata, NewEvent, StreamId,
};
use support::env_or;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Set in the child that holds the idle followers: the server's address.
const CHILD_ROLE: &str = "ANNALS_BENCH_IDLE_FOLLOWERS_OF";

fn main() -> anyhow::Result<()> {
    if let Ok(address) = std::env::var(CHILD_ROLE) {
        return hold_idle_followers(&address, env_or("ANNALS_BENCH_FOLLOWERS", 10_000));
    }
    let idle = env_or("ANNALS_BENCH_FOLLOWERS", 10_000);
    let rounds = env_or("ANNALS_BENCH_ROUNDS", 50);
    let wakers = env_or("ANNALS_BENCH_WAKERS", 100);

    // No disk sync: the figure is the path from an append to its followers, not the disk.
    let (_dir, log) = scratch::temp_log(Durability::None)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?.to_string();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server =
                    annals::http::server(listener, annals::http::HttpState::open(log), None)
                        .expect("the server starts");
                let _ = server.await;
            })
        });
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;

    // Wake latency: followers wait at the head; one append; each follower's answer time.
    let workers_before = server_workers()?;
    let mut latencies = Vec::with_capacity(rounds * wakers);
    for round in 0..rounds {
        let head = log.head();
        let tasks: Vec<_> = (0..wakers)
            .map(|_| {
                let address = address.clone();
                runtime.spawn(async move { long_poll(&address, head).await })
            })
            .collect();
        let appended_at = wake(&runtime, &log, wakers, format!("job-bench-{round}"))?;
        for task in tasks {
            let answered_at = runtime.block_on(task)??;
            latencies.push(answered_at.duration_since(appended_at));
        }
    }
    let new_connection_workers = server_workers()?.since(workers_before);
    latencies.sort();
    let percentile = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];

    // The same on connections kept alive, as followers polling back to back use them: no
    // connection is opened or closed in a round, and an answer is whole at its Content-Length.
    let mut sockets = runtime.block_on(async {
        let mut sockets = Vec::with_capacity(wakers);
        for _ in 0..wakers {
            sockets.push(tokio::net::TcpStream::connect(&address).await?);
        }
        anyhow::Ok(sockets)
    })?;
    let workers_before = server_workers()?;
    let mut kept_alive = Vec::with_capacity(rounds * wakers);
    for round in 0..rounds {
        let head = log.head();
        let tasks: Vec<_> = sockets
            .drain(..)
            .map(|socket| {
                let address = address.clone();
                runtime.spawn(async move { long_poll_kept_alive(socket, &address, head).await })
            })
            .collect();
        let appended_at = wake(&runtime, &log, wakers, format!("job-bench-kept-{round}"))?;
        for task in tasks {
            let (socket, answered_at) = runtime.block_on(task)??;
            kept_alive.push(answered_at.duration_since(appended_at));
            sockets.push(socket);
        }
    }
    drop(sockets);
    let kept_alive_workers = server_workers()?.since(workers_before);
    kept_alive.sort();
    let kept_alive_percentile =
        |p: f64| kept_alive[((kept_alive.len() - 1) as f64 * p).round() as usize];

    // Memory of idle followers, held by a child process.
    let before = resident_kib()?;
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ROLE, &address)
        .env("ANNALS_BENCH_FOLLOWERS", idle.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut ready)?;
    anyhow::ensure!(
        ready.trim() == "ready",
        "the follower process said {ready:?}"
    );
    wait_for_waiting(idle as f64)?;
    let during = resident_kib()?;
    drop(child.stdin.take());
    child.wait()?;

    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| append → long-poll answer, {} followers × {rounds} rounds, p50 / p99 / max | {:.3} ms / {:.3} ms / {:.3} ms |",
        wakers,
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(*latencies.last().expect("some rounds"))
    );
    println!(
        "| the same, connections kept alive across rounds, p50 / p99 / max | {:.3} ms / {:.3} ms / {:.3} ms |",
        ms(kept_alive_percentile(0.5)),
        ms(kept_alive_percentile(0.99)),
        ms(*kept_alive.last().expect("some rounds"))
    );
    let answers = (rounds * wakers) as f64;
    for (what, workers) in [
        ("new connections", new_connection_workers),
        ("kept alive", kept_alive_workers),
    ] {
        println!(
            "| server workers, {what}: CPU per answer; time runnable but not running, per round | {:.1} µs; {:.3} ms |",
            workers.running_ns as f64 / answers / 1e3,
            workers.waiting_ns as f64 / rounds as f64 / 1e6
        );
    }
    println!(
        "| server resident memory with {idle} idle long-poll followers (VmRSS after − before) | {:.1} MiB ({:.1} KiB per follower; {:.1} MiB before) |",
        (during - before) as f64 / 1024.0,
        (during - before) as f64 / idle as f64,
        before as f64 / 1024.0
    );
    log.close();
    Ok(())
}

/// Once `wakers` followers wait, appends one event to `stream`: when.
fn wake(
    runtime: &tokio::runtime::Runtime,
    log: &EventLog,
    wakers: usize,
    stream: String,
) -> anyhow::Result<Instant> {
    wait_for_waiting(wakers as f64)?;
    let appended_at = Instant::now();
    runtime.block_on(log.append(
        StreamId::parse(stream)?,
        ExpectedVersion::Any,
        vec![line_event()],
    ))?;
    Ok(appended_at)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn line_event() -> NewEvent {
    let event = annals::runtime::job::JobEvent::LineRecorded(annals::runtime::job::LineRecorded {
        line: annals::cli::load_line(0, 0, 300),
        level: annals::runtime::job::Level::Info,
        at: chrono::Utc::now(),
    });
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        payload: event.encode_payload(),
        metadata: Metadata::system(),
    }
}

/// One long-poll request after `head`; the instant its whole answer arrived.
async fn long_poll(address: &str, head: u64) -> anyhow::Result<Instant> {
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "GET /api/events?from={head}&timeout=60s HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await?;
    let answered = Instant::now();
    anyhow::ensure!(
        response.starts_with(b"HTTP/1.1 200"),
        "the follower got {:?}",
        String::from_utf8_lossy(&response)
    );
    Ok(answered)
}

/// One long-poll request after `head` on a connection kept alive; the connection and the instant
/// the whole answer (headers and `Content-Length` bytes of body) arrived.
async fn long_poll_kept_alive(
    mut socket: tokio::net::TcpStream,
    address: &str,
    head: u64,
) -> anyhow::Result<(tokio::net::TcpStream, Instant)> {
    let request =
        format!("GET /api/events?from={head}&timeout=60s HTTP/1.1\r\nHost: {address}\r\n\r\n");
    socket.write_all(request.as_bytes()).await?;
    let mut response = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let read = socket.read(&mut chunk).await?;
        anyhow::ensure!(read > 0, "the server closed a kept-alive connection");
        response.extend_from_slice(&chunk[..read]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let headers = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        anyhow::ensure!(
            headers.starts_with("http/1.1 200"),
            "the follower got {headers:?}"
        );
        let length: usize = headers
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|value| value.trim().parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no content-length in {headers:?}"))?;
        if response.len() >= end + 4 + length {
            return Ok((socket, Instant::now()));
        }
    }
}

/// Waits until the server counts `expected` waiting followers.
fn wait_for_waiting(expected: f64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = annals::metrics::handle().render();
        let waiting = text
            .lines()
            .find(|line| line.starts_with("annals_followers_waiting "))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0);
        if waiting >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {waiting} of {expected} followers waiting"
        );
        std::thread::yield_now();
    }
}

/// Time the server's worker threads spent on a CPU and waiting for one (runnable but not
/// running: the machine was busy with something else), from the kernel's scheduler statistics.
#[derive(Clone, Copy)]
struct Workers {
    running_ns: u64,
    waiting_ns: u64,
}

impl Workers {
    fn since(self, before: Workers) -> Workers {
        Workers {
            running_ns: self.running_ns - before.running_ns,
            waiting_ns: self.waiting_ns - before.waiting_ns,
        }
    }
}

/// Sums `/proc/self/task/*/schedstat` over actix-web's worker threads (`actix-rt|system:…`).
fn server_workers() -> anyhow::Result<Workers> {
    let mut workers = Workers {
        running_ns: 0,
        waiting_ns: 0,
    };
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
            continue;
        };
        if !name.starts_with("actix-rt|system") {
            continue;
        }
        let stat = std::fs::read_to_string(task.join("schedstat"))?;
        let mut fields = stat.split_whitespace().map(str::parse::<u64>);
        workers.running_ns += fields.next().transpose()?.unwrap_or(0);
        workers.waiting_ns += fields.next().transpose()?.unwrap_or(0);
    }
    Ok(workers)
}

fn resident_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))
}

/// The child: opens `count` long-polls that will not be answered for minutes, says `ready`, and
/// holds them until its standard input closes.
fn hold_idle_followers(address: &str, count: usize) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut sockets = Vec::with_capacity(count);
        for batch in (0..count).collect::<Vec<_>>().chunks(500) {
            for _ in batch {
                let mut socket = tokio::net::TcpStream::connect(address).await?;
                let request = format!(
                    "GET /api/events?from=18446744073709551615&timeout=5m HTTP/1.1\r\nHost: {address}\r\n\r\n"
                );
                socket.write_all(request.as_bytes()).await?;
                sockets.push(socket);
            }
            tokio::task::yield_now().await;
        }
        println!("ready");
        std::io::stdout().flush()?;
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        drop(sockets);
        anyhow::Ok(())
    })
}
