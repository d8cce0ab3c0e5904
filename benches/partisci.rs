//! The inventory face under load, each figure beside a trivial actix-web handler measured in the
//! same run with the same client: durable `POST update/` ingest over HTTP, UDP ingest (what is
//! accepted, and whether anything is lost without being counted), and `GET version/` over an
//! inventory of 10,000 hosts × 5 applications.
//!
//! Run with `cargo bench --bench partisci`. The server runs in this process with the default
//! durability (fsync) on a loopback port; so does the client, so both share the machine's cores.
//! Environment: `ANNALS_BENCH_CLIENTS` (concurrent HTTP connections, default 64),
//! `ANNALS_BENCH_HOSTS` (hosts, default 10000; 5 applications each), `ANNALS_BENCH_DATAGRAMS`
//! (default 50000), `ANNALS_BENCH_UDP_RATE` (datagrams per second sent, default 20000),
//! `ANNALS_BENCH_PHASES` (which to run, default `post,get,udp`; `get` needs `post` first).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use annals::actors::SystemClock;
use annals::config::Config;
use annals::events::EventLog;
use annals::startup::Application;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const APPS: usize = 5;

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 64);
    let hosts = env_or("ANNALS_BENCH_HOSTS", 10_000);
    let datagrams = env_or("ANNALS_BENCH_DATAGRAMS", 50_000);
    let udp_rate = env_or("ANNALS_BENCH_UDP_RATE", 20_000);
    let phases = std::env::var("ANNALS_BENCH_PHASES").unwrap_or_else(|_| "post,get,udp".into());
    let phase = move |name: &str| phases.split(',').any(|p| p.trim() == name);

    let dir = tempfile::tempdir()?;
    let (annals, partisci) = start_annals(dir.path().join("log"))?;
    let trivial = start_trivial()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let updates = hosts * APPS;
        println!("POST update/, {updates} updates (distinct keys), {clients} connections");
        let body = move |i: usize| {
            format!(
                r#"{{"app":"app{}","ver":"1.{i}","host":"host{}","instance":0}}"#,
                i / hosts % APPS,
                i % hosts
            )
        };
        if phase("post") {
            let base = run(trivial, clients, updates, move |i| {
                post("/trivial", &body(i))
            })
            .await;
            let face = run(annals, clients, updates, move |i| {
                post("/api/v1/update/", &body(i))
            })
            .await;
            report("trivial POST", &base, None);
            report("POST update/ (durable)", &face, Some(&base));
        }
        if !phase("get") {
            return if phase("udp") {
                udp(annals, partisci, datagrams, udp_rate).await
            } else {
                Ok(())
            };
        }

        println!("\nGET version/ over {} versions", updates);
        let all = 20;
        let base = run(trivial, 4, all, |_| get("/trivial/all")).await;
        let face = run(annals, 4, all, |_| get("/api/v1/version/")).await;
        report("trivial GET (same size)", &base, None);
        report("GET version/ (all)", &face, Some(&base));
        let one = 20_000;
        let base = run(trivial, clients, one, |_| get("/trivial")).await;
        let face = run(annals, clients, one, move |i| {
            get(&format!("/api/v1/version/?host=host{}", i % hosts))
        })
        .await;
        report("trivial GET", &base, None);
        report("GET version/?host=H", &face, Some(&base));

        println!("\nUDP, {datagrams} datagrams sent at {udp_rate}/s");
        udp(annals, partisci, datagrams, udp_rate).await
    })
}

/// The annals server with the inventory face, on its own actix system; its main and Partisci
/// addresses.
fn start_annals(data: std::path::PathBuf) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let mut config = Config {
        data,
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.partisci.listen = "127.0.0.1:0".into();
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
                let addresses = &application.addresses;
                let _ = sender.send((addresses.main, addresses.partisci.expect("partisci")));
                let _ = application.run().await;
            })
        })?;
    Ok(receiver.recv()?)
}

/// A trivial actix-web server: a POST that reads its body, a GET of an empty list, and a GET of
/// a body as large as the inventory's full version list.
fn start_trivial() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let large: &'static str = Box::leak(
        format!(
            "{{\"data\":[{}]}}",
            vec![r#"{"app_id":"app0","app":"app0","ver":"1.12345","host":"host1234","instance":0,"host_ip":"127.0.0.1","last_update":1700000000}"#; env_or("ANNALS_BENCH_HOSTS", 10_000) * APPS].join(",")
        )
        .into_boxed_str(),
    );
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || {
                App::new()
                    .route(
                        "/trivial",
                        web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
                    )
                    .route(
                        "/trivial",
                        web::get().to(|| async {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(r#"{"data":[]}"#)
                        }),
                    )
                    .route(
                        "/trivial/all",
                        web::get().to(move || async move {
                            HttpResponse::Ok()
                                .content_type("application/json")
                                .body(large)
                        }),
                    )
            })
            .listen(listener)
            .expect("the trivial server listens")
            .run();
            let _ = server.await;
        })
    });
    Ok(address)
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n")
}

/// Latencies of one run, and how long it took.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Sends `total` requests over `clients` keep-alive connections; every answer must be 200.
async fn run(
    address: SocketAddr,
    clients: usize,
    total: usize,
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
                    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&buffer));
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

/// Reads one response (headers and a `Content-Length` body); its status.
async fn read_response(connection: &mut TcpStream, buffer: &mut Vec<u8>) -> u16 {
    buffer.clear();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .map_or(0, |n| n.trim().parse().expect("a length"));
            while buffer.len() < end + 4 + length {
                let n = connection.read(&mut chunk).await.expect("reads");
                assert!(n > 0, "the connection closed mid-body");
                buffer.extend_from_slice(&chunk[..n]);
            }
            return head[9..12].parse().expect("a status");
        }
        let n = connection.read(&mut chunk).await.expect("reads");
        assert!(n > 0, "the connection closed");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn report(name: &str, run: &Run, beside: Option<&Run>) {
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

/// Sends datagrams at a steady rate from four sockets, then waits until the server has
/// accounted for every one (accepted or counted as dropped) or stops making progress.
async fn udp(
    main: SocketAddr,
    partisci: SocketAddr,
    total: usize,
    rate: usize,
) -> anyhow::Result<()> {
    let before = datagram_counts(main).await;
    let sockets: Vec<_> = (0..4)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    for i in 0..total {
        let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let datagram = format!(r#"{{"app":"udp{}","ver":"1","host":"udp{i}"}}"#, i % APPS);
        sockets[i % 4].send_to(datagram.as_bytes(), partisci)?;
    }
    let sent_in = started.elapsed();
    let mut last = (0, Instant::now());
    let counts = loop {
        let counts = datagram_counts(main).await;
        let handled: u64 = counts.iter().zip(&before).map(|(a, b)| a - b).sum();
        if handled as usize >= total {
            break counts;
        }
        if handled != last.0 {
            last = (handled, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(5) {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recorded_in = started.elapsed();
    let [accepted, invalid, overloaded, failed, kernel] =
        std::array::from_fn(|k| counts[k] - before[k]);
    let lost = (total as u64).saturating_sub(accepted + invalid + overloaded + failed + kernel);
    println!(
        "  sent in {:.2} s; all handled in {:.2} s: {:.0} accepted/s",
        sent_in.as_secs_f64(),
        recorded_in.as_secs_f64(),
        accepted as f64 / recorded_in.as_secs_f64()
    );
    println!(
        "  accepted {accepted}, invalid {invalid}, overloaded {overloaded}, failed {failed}, \
         dropped by the kernel (counted) {kernel}, lost without being counted {lost}"
    );
    Ok(())
}

/// The server's datagram counters: accepted, invalid, overloaded, failed, kernel drops.
async fn datagram_counts(main: SocketAddr) -> [u64; 5] {
    let mut connection = TcpStream::connect(main).await.expect("connects");
    connection
        .write_all(get("/metrics").as_bytes())
        .await
        .expect("sends");
    let mut buffer = Vec::new();
    read_response(&mut connection, &mut buffer).await;
    let text = String::from_utf8_lossy(&buffer);
    [
        "accepted",
        "invalid",
        "overloaded",
        "failed",
        "annals_partisci_udp_kernel_drops_total",
    ]
    .map(|outcome| {
        let series = if outcome.starts_with("annals_") {
            format!("{outcome} ")
        } else {
            format!("annals_partisci_udp_datagrams_total{{outcome=\"{outcome}\"}} ")
        };
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |n| n.trim().parse().unwrap_or(0))
    })
}
