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

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use annals::config::Config;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use sha2::Digest;
use support::{env_or, post, report, run, Run};

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 16);
    let total = env_or("ANNALS_BENCH_SUBMISSIONS", 2000);
    let tests = env_or("ANNALS_BENCH_TESTS", 1000);

    let dir = tempfile::tempdir()?;
    let mut config = Config {
        data: dir.path().join("log"),
        ..Config::default()
    };
    config.http.listen = "127.0.0.1:0".into();
    config.patrowl.enabled = false;
    config.partisci.enabled = false;
    config.hpcwaas.enabled = false;
    let annals = support::start_annals(config)?.main;
    // A POST that reads its body whole and answers 200.
    let trivial = support::start_trivial(|routes| {
        routes.route(
            "/trivial",
            web::post().to(|_: web::Bytes| async { HttpResponse::Ok().finish() }),
        );
    })?;
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
