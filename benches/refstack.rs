//! The later Refstack API under load: durable `POST /v1/results/` (unsigned and RSA-signed),
//! beside a trivial actix-web handler that reads the same body, measured in the same run with
//! the same client; the unsigned case runs again last, to separate warm-up from the cost of a
//! signature. Every submission's bytes are distinct (the signed ones end with a line break, the
//! last run's with a space), so that the blob store writes each: the same bytes twice are
//! stored once. The parse rate of uploads is `benches/testresults.rs`'s.
//!
//! Run with `cargo bench --bench refstack`. The server runs in this process with the default
//! durability (fsync) on a loopback port; so does the client, so both share the machine's cores.
//! Environment: `ANNALS_BENCH_CLIENTS` (concurrent connections, default 16),
//! `ANNALS_BENCH_SUBMISSIONS` (default 2000), `ANNALS_BENCH_TESTS` (passing tests per
//! submission, default 1000).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use annals::actors::SystemClock;
use annals::config::Config;
use annals::events::EventLog;
use annals::startup::Application;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 16);
    let total = env_or("ANNALS_BENCH_SUBMISSIONS", 2000);
    let tests = env_or("ANNALS_BENCH_TESTS", 1000);

    let dir = tempfile::tempdir()?;
    let annals = start_annals(dir.path().join("log"))?;
    let trivial = start_trivial()?;
    // Each submission is distinct (its cpid), as real ones are: the blob store writes each.
    let bodies: Arc<Vec<String>> = Arc::new((0..total).map(|i| body(i, tests)).collect());
    let size = bodies[0].len();
    let (key, public) = signing_key()?;
    // Signed bodies end with a line break, so that they too are new to the blob store.
    let signed_bodies: Arc<Vec<String>> =
        Arc::new(bodies.iter().map(|body| format!("{body}\n")).collect());
    let signed: Arc<Vec<String>> = Arc::new(
        signed_bodies
            .iter()
            .map(|body| {
                let digest = sha2::Sha256::digest(body.as_bytes());
                let signature = key
                    .sign(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &digest)
                    .expect("signed");
                format!(
                    "X-Signature: {}\r\nX-Public-Key: {public}\r\n",
                    hex::encode(signature)
                )
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        println!(
            "POST /v1/results/, {total} submissions of {tests} tests ({size} bytes each), \
             {clients} connections"
        );
        let b = bodies.clone();
        let base = run(trivial, clients, total, 200, move |i| {
            post("/trivial", "", &b[i])
        })
        .await;
        let b = bodies.clone();
        let face = run(annals, clients, total, 201, move |i| {
            post("/v1/results/", "", &b[i])
        })
        .await;
        let b = signed_bodies.clone();
        let s = signed.clone();
        let face_signed = run(annals, clients, total, 201, move |i| {
            post("/v1/results/", &s[i], &b[i])
        })
        .await;
        // The first run also creates the blob store's 256 prefix directories and warms the
        // log: run the unsigned case again last, to tell that from the cost of signing.
        let b = bodies.clone();
        let face_again = run(annals, clients, total, 201, move |i| {
            post("/v1/results/", "", &format!("{} ", b[i]))
        })
        .await;
        report("trivial POST (same body)", &base, None);
        report("POST /v1/results/", &face, Some(&base));
        report("POST /v1/results/ signed", &face_signed, Some(&base));
        report("POST /v1/results/ (again)", &face_again, Some(&base));
        let mb =
            |run: &Run| size as f64 * run.latencies.len() as f64 / run.elapsed.as_secs_f64() / 1e6;
        println!(
            "  body MB/s: trivial {:.1}, unsigned {:.1}, signed {:.1}, unsigned again {:.1}",
            mb(&base),
            mb(&face),
            mb(&face_signed),
            mb(&face_again)
        );
    });
    Ok(())
}

/// refstack-client's results: `tests` passing tests with their uuids.
fn body(i: usize, tests: usize) -> String {
    let results: Vec<String> = (0..tests)
        .map(|t| {
            format!(
                r#"{{"name":"tempest.api.compute.servers.test_server_actions.ServerActionsTestJSON.test_action_{t:06}","uuid":"8f2d4a1e-0c3b-4d5e-9f6a-{t:012}"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"cpid":"cloud{i:08}","duration_seconds":{},"results":[{}]}}"#,
        1000 + i,
        results.join(",")
    )
}

/// A 2048-bit RSA key, and its OpenSSH public key line.
fn signing_key() -> anyhow::Result<(rsa::RsaPrivateKey, String)> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?;
    let mpint = |out: &mut Vec<u8>, bytes: &[u8]| {
        let pad = bytes.first().is_some_and(|b| b & 0x80 != 0);
        out.extend_from_slice(&((bytes.len() + usize::from(pad)) as u32).to_be_bytes());
        if pad {
            out.push(0);
        }
        out.extend_from_slice(bytes);
    };
    let mut blob = Vec::new();
    blob.extend_from_slice(&7u32.to_be_bytes());
    blob.extend_from_slice(b"ssh-rsa");
    mpint(&mut blob, &key.e().to_bytes_be());
    mpint(&mut blob, &key.n().to_bytes_be());
    let line = format!(
        "ssh-rsa {} bench",
        base64::engine::general_purpose::STANDARD.encode(blob)
    );
    Ok((key, line))
}

/// The annals server with the Refstack face, on its own actix system; its main address.
fn start_annals(data: std::path::PathBuf) -> anyhow::Result<SocketAddr> {
    let mut config = Config {
        data,
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.partisci.enabled = false;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let log = EventLog::open(&config.data, config.log_options()).expect("the log opens");
            let application = Application::build(&config, log, Arc::new(SystemClock))
                .await
                .expect("annals starts");
            let _ = sender.send(application.addresses.main);
            let _ = application.run().await;
        })
    });
    Ok(receiver.recv()?)
}

/// A trivial actix-web server: a POST that reads its body whole and answers 200.
fn start_trivial() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(|| {
                App::new()
                    .app_data(web::PayloadConfig::new(64 << 20))
                    .route(
                        "/trivial",
                        web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
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

fn post(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Latencies of one run, and how long it took.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

/// Sends `total` requests over `clients` keep-alive connections; every answer must have the
/// status `expected`.
async fn run(
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
