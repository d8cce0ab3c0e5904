//! What the HTTP benchmarks share: the real server started in-process from a configuration, a
//! trivial actix-web server beside it, a keep-alive HTTP/1.1 load client written by hand (so
//! that no client library's cost hides in the figures), and the report of a run beside its
//! trivial counterpart. It measures nothing itself.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::config::Config;
use annals::events::EventLog;
use annals::runtime::SystemClock;
use annals::startup::{Addresses, Application};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The allocator of the `annals` binary, so that the server measured here allocates as it does
/// there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A `usize` from the environment, or `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The configuration the benchmarks start from: the log in `dir`, the main listener on a free
/// loopback port, the faces named in `off` turned off, the durability `ANNALS_BENCH_DURABILITY`
/// names (`fsync`, `flush` or `none`; by default `fsync`), everything else as by default.
pub fn config(dir: &std::path::Path, off: &[&str]) -> Config {
    let mut config = Config {
        data: dir.join("log"),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    if let Ok(durability) = std::env::var("ANNALS_BENCH_DURABILITY") {
        config.durability = serde_json::from_value(serde_json::Value::String(durability))
            .expect("ANNALS_BENCH_DURABILITY is fsync, flush or none");
    }
    for face in off {
        match *face {
            "partisci" => config.partisci.enabled = false,
            "hpcwaas" => config.hpcwaas.enabled = false,
            "refstack" => config.refstack.enabled = false,
            "patrowl" => config.patrowl.enabled = false,
            "gros" => config.gros.enabled = false,
            other => panic!("there is no face {other:?}"),
        }
    }
    config
}

/// The client's runtime: two worker threads, as many as the server's, so that the figures do
/// not depend on the machine's core count.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
}

/// annals on `config`, on its own actix system in a thread named `annals-server` (so that
/// `top -H` tells it from the client); where it listens.
pub fn start_annals(config: Config) -> anyhow::Result<Addresses> {
    // Huge pages off, as the binary does; `ANNALS_BENCH_THP=on` keeps them on, to compare.
    if std::env::var("ANNALS_BENCH_THP").as_deref() != Ok("on") {
        annals::startup::without_transparent_huge_pages();
    }
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("annals-server".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let log =
                    EventLog::open(&config.data, config.log_options()).expect("the log opens");
                let application = Application::build(&config, log, Arc::new(SystemClock))
                    .await
                    .expect("annals starts");
                let _ = sender.send(application.addresses.clone());
                let _ = application.run().await;
            })
        })?;
    Ok(receiver.recv()?)
}

/// A trivial actix-web server with the routes `routes` adds, on its own thread.
pub fn start_trivial(
    routes: impl Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .app_data(actix_web::web::PayloadConfig::new(64 << 20))
                    .configure(routes.clone())
            })
            .listen(listener)
            .expect("the trivial server listens")
            .run();
            let _ = server.await;
        })
    });
    Ok(address)
}

/// A trivial server whose `POST /trivial` reads its body whole and answers `status`, empty.
pub fn start_trivial_post(status: actix_web::http::StatusCode) -> anyhow::Result<SocketAddr> {
    start_trivial(move |routes| {
        routes.route(
            "/trivial",
            actix_web::web::post().to(move |_: actix_web::web::Bytes| async move {
                actix_web::HttpResponse::new(status)
            }),
        );
    })
}

/// A POST request with a JSON body and any extra header lines (each ending in `\r\n`).
pub fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
}

/// Latencies of one run, and how long it took.
pub struct Run {
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
}

/// Sends `total` requests over `clients` keep-alive connections; every answer must have the
/// status `expected`.
pub async fn run(
    address: SocketAddr,
    clients: usize,
    total: usize,
    expected: u16,
    request: impl Fn(usize) -> String + Send + Sync + 'static,
) -> Run {
    let request = Arc::new(request);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (request, next) = (request.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = TcpStream::connect(address).await.expect("connects");
                connection.set_nodelay(true).expect("nodelay");
                let mut latencies = Vec::new();
                let mut buffer = Vec::with_capacity(1 << 16);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return latencies;
                    }
                    let sent = Instant::now();
                    connection
                        .write_all(request(i).as_bytes())
                        .await
                        .expect("sends");
                    let status = read_response(&mut connection, &mut buffer).await;
                    assert_eq!(status, expected, "{}", String::from_utf8_lossy(&buffer));
                    latencies.push(sent.elapsed());
                }
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("a client finishes"));
    }
    latencies.sort();
    Run {
        latencies,
        elapsed: started.elapsed(),
    }
}

/// Reads one response (headers and a `Content-Length` body) into `buffer`; its status. Reads
/// go straight into `buffer`'s spare capacity, so that the client spends no time zeroing.
pub async fn read_response(connection: &mut TcpStream, buffer: &mut Vec<u8>) -> u16 {
    buffer.clear();
    let mut scanned: usize = 0;
    loop {
        let start = scanned.saturating_sub(3);
        if let Some(at) = buffer[start..].windows(4).position(|w| w == b"\r\n\r\n") {
            let end = start + at;
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().expect("a length"));
            while buffer.len() < end + 4 + length {
                read_more(connection, buffer, "the connection closed mid-body").await;
            }
            return head[9..12].parse().expect("a status");
        }
        scanned = buffer.len();
        read_more(connection, buffer, "the connection closed").await;
    }
}

async fn read_more(connection: &mut TcpStream, buffer: &mut Vec<u8>, closed: &str) {
    buffer.reserve(1 << 16);
    let n = connection.read_buf(buffer).await.expect("reads");
    assert!(n > 0, "{closed}");
}

/// Prints a run's rate and latency, and its ratio to `beside` (the trivial handler's run).
pub fn report(name: &str, run: &Run, beside: Option<&Run>) {
    let rate = run.latencies.len() as f64 / run.elapsed.as_secs_f64();
    let at = |q: f64| {
        let i = ((run.latencies.len() as f64 * q) as usize).min(run.latencies.len() - 1);
        run.latencies[i].as_secs_f64() * 1000.0
    };
    let ratio = beside.map_or(String::new(), |base| {
        let base_rate = base.latencies.len() as f64 / base.elapsed.as_secs_f64();
        format!("  ({:.2}× the trivial handler)", rate / base_rate)
    });
    println!(
        "  {name:<26} {rate:>9.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms{ratio}",
        at(0.5),
        at(0.99)
    );
}
