//! The inventory face under load, each figure beside a trivial actix-web handler measured in the
//! same run with the same client: durable `POST update/` ingest over HTTP, UDP ingest (what is
//! accepted, and whether anything is lost without being counted), `GET version/` over an
//! inventory of 10,000 hosts × 5 applications, `GET app/` and `GET host/` over it beside a
//! trivial handler serving the same bodies, and `POST update/` while four connections poll
//! `GET app/` beside it alone.
//!
//! Run with `cargo bench --bench partisci`. The server runs in this process with the default
//! durability (fsync) on a loopback port; so does the client, so both share the machine's cores.
//! Environment: `ANNALS_BENCH_CLIENTS` (concurrent HTTP connections, default 256),
//! `ANNALS_BENCH_HOSTS` (hosts, default 10000; 5 applications each), `ANNALS_BENCH_DATAGRAMS`
//! (default 50000), `ANNALS_BENCH_UDP_RATE` (datagrams per second sent, default 20000),
//! `ANNALS_BENCH_PHASES` (which to run, default `post,get,summaries,udp`; `get` and `summaries`
//! need `post` first), `ANNALS_BENCH_DURABILITY` (`fsync`, `flush` or `none`) and
//! `ANNALS_BENCH_THP=on` (transparent huge pages left on, as they were before the server turned
//! them off).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use support::{env_or, get, post, report, run};

const APPS: usize = 5;

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 256);
    let hosts = env_or("ANNALS_BENCH_HOSTS", 10_000);
    let datagrams = env_or("ANNALS_BENCH_DATAGRAMS", 50_000);
    let udp_rate = env_or("ANNALS_BENCH_UDP_RATE", 20_000);
    let phases =
        std::env::var("ANNALS_BENCH_PHASES").unwrap_or_else(|_| "post,get,summaries,udp".into());
    let phase = move |name: &str| phases.split(',').any(|p| p.trim() == name);

    let dir = tempfile::tempdir()?;
    let mut config = support::config(dir.path(), &["patrowl", "hpcwaas", "gros"]);
    config.partisci.listen = "127.0.0.1:0".into();
    let addresses = support::start_annals(config)?;
    let (annals, partisci) = (
        addresses.main,
        addresses.of("partisci").expect("its own listener"),
    );
    let updates = hosts * APPS;
    let trivial = start_trivial(updates)?;
    let runtime = support::runtime()?;
    runtime.block_on(async move {
        if phase("post") {
            println!("POST update/, {updates} updates (distinct keys), {clients} connections");
            let body = move |i: usize| {
                format!(
                    r#"{{"app":"app{}","ver":"1.{i}","host":"host{}","instance":0}}"#,
                    i / hosts % APPS,
                    i % hosts
                )
            };
            let base = run(trivial, clients, updates, 200, move |i| {
                post("/trivial", "", &body(i))
            })
            .await;
            let face = run(annals, clients, updates, 200, move |i| {
                post("/api/v1/update/", "", &body(i))
            })
            .await;
            report("trivial POST", &base, None);
            report("POST update/ (durable)", &face, Some(&base));
        }
        if phase("get") {
            println!("\nGET version/ over the versions the POST phase wrote");
            let all = 20;
            let base = run(trivial, 4, all, 200, |_| get("/trivial/all")).await;
            let face = run(annals, 4, all, 200, |_| get("/api/v1/version/")).await;
            report("trivial GET (same size)", &base, None);
            report("GET version/ (all)", &face, Some(&base));
            let one = 20_000;
            let base = run(trivial, clients, one, 200, |_| get("/trivial")).await;
            let face = run(annals, clients, one, 200, move |i| {
                get(&format!("/api/v1/version/?host=host{}", i % hosts))
            })
            .await;
            report("trivial GET", &base, None);
            report("GET version/?host=H", &face, Some(&base));
        }
        if phase("summaries") {
            println!("\nGET app/ and GET host/ over the versions the POST phase wrote");
            summaries(annals, clients, updates, hosts).await?;
        }
        if phase("udp") {
            println!("\nUDP, {datagrams} datagrams sent at {udp_rate}/s");
            udp(annals, partisci, datagrams, udp_rate).await?;
        }
        Ok(())
    })
}

/// The trivial server: a POST that reads its body, a GET of an empty list, and a GET of a body
/// as large as a list of `versions` versions.
fn start_trivial(versions: usize) -> anyhow::Result<SocketAddr> {
    let row = r#"{"app_id":"app0","app":"app0","ver":"1.12345","host":"host1234","instance":0,"host_ip":"127.0.0.1","last_update":1700000000}"#;
    let large: &'static str =
        Box::leak(format!("{{\"data\":[{}]}}", vec![row; versions].join(",")).into_boxed_str());
    let json = |body: &'static str| {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(body)
    };
    support::start_trivial(move |routes| {
        routes
            .route(
                "/trivial",
                web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
            )
            .route(
                "/trivial",
                web::get().to(move || async move { json(r#"{"data":[]}"#) }),
            )
            .route(
                "/trivial/all",
                web::get().to(move || async move { json(large) }),
            );
    })
}

/// `GET app/` and `GET host/` beside a trivial handler serving the very same bodies, then
/// `POST update/` (new versions of the keys the POST phase wrote) alone and while four
/// connections poll `GET app/`.
async fn summaries(
    annals: SocketAddr,
    clients: usize,
    updates: usize,
    hosts: usize,
) -> anyhow::Result<()> {
    let app = body_of(annals, "/api/v1/app/").await;
    let host = body_of(annals, "/api/v1/host/").await;
    println!(
        "  bodies: app/ {} bytes, host/ {} bytes",
        app.len(),
        host.len()
    );
    let (app, host): (&'static [u8], &'static [u8]) = (app.leak(), host.leak());
    let trivial = support::start_trivial(move |routes| {
        let json = |body: &'static [u8]| {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(body)
        };
        routes
            .route(
                "/trivial/app",
                web::get().to(move || async move { json(app) }),
            )
            .route(
                "/trivial/host",
                web::get().to(move || async move { json(host) }),
            );
    })?;
    for (path, trivial_path, total) in [
        ("/api/v1/app/", "/trivial/app", 4_000),
        ("/api/v1/host/", "/trivial/host", 200),
    ] {
        let base = run(trivial, 4, total, 200, move |_| get(trivial_path)).await;
        let face = run(annals, 4, total, 200, move |_| get(path)).await;
        report("trivial GET (same body)", &base, None);
        report(&format!("GET {path}"), &face, Some(&base));
    }
    let body = move |round: usize, i: usize| {
        format!(
            r#"{{"app":"app{}","ver":"2.{round}.{i}","host":"host{}","instance":0}}"#,
            i / hosts % APPS,
            i % hosts
        )
    };
    let alone = run(annals, clients, updates, 200, move |i| {
        post("/api/v1/update/", "", &body(1, i))
    })
    .await;
    let polling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let pollers = run_while(annals, 4, polling.clone(), || get("/api/v1/app/"));
    let beside = run(annals, clients, updates, 200, move |i| {
        post("/api/v1/update/", "", &body(2, i))
    })
    .await;
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    let polls = pollers.await?;
    report("POST update/ alone", &alone, None);
    report("POST update/, 4 poll app/", &beside, Some(&alone));
    println!(
        "  (\"the trivial handler\" here: POST update/ alone; {polls} polls of app/ meanwhile)"
    );
    Ok(())
}

/// The body of one `GET path`.
async fn body_of(address: SocketAddr, path: &str) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut connection = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    connection
        .write_all(get(path).as_bytes())
        .await
        .expect("sends");
    let mut buffer = Vec::new();
    assert_eq!(
        support::read_response(&mut connection, &mut buffer).await,
        200
    );
    let start = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    buffer.split_off(start)
}

/// Sends `request` over `clients` keep-alive connections for as long as `going` holds; how
/// many were answered.
fn run_while(
    address: SocketAddr,
    clients: usize,
    going: std::sync::Arc<std::sync::atomic::AtomicBool>,
    request: impl Fn() -> String + Send + Sync + Copy + 'static,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let going = going.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncWriteExt;
                    let mut connection = tokio::net::TcpStream::connect(address)
                        .await
                        .expect("connects");
                    let mut buffer = Vec::with_capacity(1 << 16);
                    let mut answered = 0;
                    while going.load(std::sync::atomic::Ordering::Relaxed) {
                        connection
                            .write_all(request().as_bytes())
                            .await
                            .expect("sends");
                        support::read_response(&mut connection, &mut buffer).await;
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        let mut answered = 0;
        for task in tasks {
            answered += task.await.unwrap_or(0);
        }
        answered
    })
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
    use tokio::io::AsyncWriteExt;
    let mut connection = tokio::net::TcpStream::connect(main)
        .await
        .expect("connects");
    connection
        .write_all(get("/metrics").as_bytes())
        .await
        .expect("sends");
    let mut buffer = Vec::new();
    support::read_response(&mut connection, &mut buffer).await;
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
