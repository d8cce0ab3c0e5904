//! The scan engine face under load: `GET /engines/<name>/status` with 1,000 scans known,
//! beside a trivial actix-web JSON handler (a tiny body) and a trivial handler answering a
//! body of the same size, measured in the same run with the same client, plain and gzipped
//! (as PatrowlManager's HTTP library accepts); and the time a `tcp`
//! scan of 1,000 ports on 127.0.0.1 takes from `startscan` to FINISHED, polled as a client
//! would (every millisecond here, not every 5 s).
//!
//! Run with `cargo bench --bench patrowl`. The server runs in this process with the default
//! durability (fsync) on a loopback port; so does the client, so both share the machine's cores.
//! Environment: `ANNALS_BENCH_CLIENTS` (concurrent connections, default 16),
//! `ANNALS_BENCH_SCANS` (scans known, default 1000), `ANNALS_BENCH_REQUESTS` (status requests,
//! default 20000), `ANNALS_BENCH_PORT_SCANS` (1,000-port scans timed, default 5).

#[path = "support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix_web::{web, HttpResponse};
use support::{env_or, get, post, read_response, report, run};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 16);
    let scans = env_or("ANNALS_BENCH_SCANS", 1000);
    let requests = env_or("ANNALS_BENCH_REQUESTS", 20_000);
    let port_scans = env_or("ANNALS_BENCH_PORT_SCANS", 5);

    let dir = tempfile::tempdir()?;
    let mut config = support::config(dir.path(), &["partisci", "refstack"]);
    config.patrowl.listen = String::new();
    for engine in &mut config.patrowl.engines {
        engine.max_scans = scans + port_scans + 1;
    }
    let annals = support::start_annals(config)?.main;
    let runtime = support::runtime()?;
    runtime.block_on(async move {
        // A closed port: each of these scans ends at once, with its summary finding.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let started = Instant::now();
        run(annals, clients, scans, 200, move |i| {
            post(
                "/engines/tcp/startscan",
                "",
                &format!(
                    r#"{{"assets":[{{"id":{i},"value":"127.0.0.1","criticity":"low","datatype":"ip"}}],"options":{{"ports":["{closed}"]}},"engine_id":1,"scan_id":{i}}}"#
                ),
            )
        })
        .await;
        let body = poll_until(annals, "/engines/tcp/status", |body| {
            !body.contains("\"SCANNING\"") && !body.contains("\"STARTED\"")
        })
        .await;
        println!(
            "{scans} scans started and ended in {:.1} s; the status body is {} bytes",
            started.elapsed().as_secs_f64(),
            body.len()
        );
        let same_size = body.clone();
        let trivial = support::start_trivial(move |routes| {
            let same_size = same_size.clone();
            routes
                .route(
                    "/trivial",
                    web::get().to(|| async {
                        HttpResponse::Ok().json(serde_json::json!({"page": "status", "status": "READY"}))
                    }),
                )
                .route(
                    "/same-size",
                    web::get().to(move || {
                        let body = same_size.clone();
                        async move { HttpResponse::Ok().content_type("application/json").body(body) }
                    }),
                );
        })
        .expect("the trivial server starts");
        println!("GET status with {scans} scans known, {requests} requests, {clients} connections");
        let tiny = run(trivial, clients, requests, 200, |_| get("/trivial")).await;
        let same = run(trivial, clients, requests, 200, |_| get("/same-size")).await;
        let status = run(annals, clients, requests, 200, |_| get("/engines/tcp/status")).await;
        // As PatrowlManager's HTTP library asks.
        let gzipped = run(annals, clients, requests, 200, |_| {
            "GET /engines/tcp/status HTTP/1.1\r\nHost: bench\r\nAccept-Encoding: gzip, deflate\r\n\r\n"
                .to_owned()
        })
        .await;
        report("trivial JSON handler", &tiny, None);
        report("trivial, same-size body", &same, Some(&tiny));
        report("GET /engines/tcp/status", &status, Some(&tiny));
        report("  (beside the same size)", &status, Some(&same));
        report("GET status, gzip accepted", &gzipped, Some(&tiny));

        // 1,000 ports, a few of them open.
        let listeners: Vec<std::net::TcpListener> = (0..5)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a listener"))
            .collect();
        let open: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().expect("an address").port())
            .collect();
        let mut ports: Vec<String> = open.iter().map(u16::to_string).collect();
        let mut next = 20_000u16;
        while ports.len() < 1000 {
            if !open.contains(&next) {
                ports.push(next.to_string());
            }
            next += 1;
        }
        let ports = serde_json::to_string(&ports).expect("ports");
        let mut times = Vec::new();
        for n in 0..port_scans {
            let id = format!("ports-{n}");
            let body = format!(
                r#"{{"assets":[{{"id":1,"value":"127.0.0.1","criticity":"low","datatype":"ip"}}],"options":{{"ports":{ports}}},"scan_id":"{id}"}}"#
            );
            let began = Instant::now();
            let (status, answer) = request(annals, &post("/engines/tcp/startscan", "", &body)).await;
            assert_eq!(status, 200, "{answer}");
            let path = format!("/engines/tcp/status/{id}");
            let end = poll_until(annals, &path, |body| body.contains("\"FINISHED\"")).await;
            times.push(began.elapsed());
            assert!(end.contains("\"nb_findings\":6"), "5 open ports and a summary: {end}");
        }
        times.sort();
        println!(
            "tcp scan of 1000 ports on 127.0.0.1 (5 open), startscan to FINISHED, {port_scans} runs: \
             median {:.0} ms, best {:.0} ms, worst {:.0} ms",
            times[times.len() / 2].as_secs_f64() * 1000.0,
            times[0].as_secs_f64() * 1000.0,
            times[times.len() - 1].as_secs_f64() * 1000.0
        );
        drop(listeners);
    });
    Ok(())
}

/// One request on a new connection: its status and body.
async fn request(address: SocketAddr, request: &str) -> (u16, String) {
    let mut connection = TcpStream::connect(address).await.expect("connects");
    connection
        .write_all(request.as_bytes())
        .await
        .expect("sends");
    let mut buffer = Vec::new();
    let status = read_response(&mut connection, &mut buffer).await;
    let body = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|end| String::from_utf8_lossy(&buffer[end + 4..]).into_owned())
        .unwrap_or_default();
    (status, body)
}

/// GETs `path` every millisecond until its body satisfies `done` (at most a minute).
async fn poll_until(address: SocketAddr, path: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = request(address, &get(path)).await;
        assert_eq!(status, 200, "{body}");
        if done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} did not settle: {body}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
