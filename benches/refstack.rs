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

#[path = "../tests/common/ssh.rs"]
mod ssh;
#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;

use sha2::Digest;
use support::{env_or, post, report, run, Run};

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 16);
    let total = env_or("ANNALS_BENCH_SUBMISSIONS", 2000);
    let tests = env_or("ANNALS_BENCH_TESTS", 1000);

    let dir = tempfile::tempdir()?;
    let config = support::config(dir.path(), &["patrowl", "partisci", "hpcwaas"]);
    let annals = support::start_annals(config)?.main;
    // A POST that reads its body whole and answers 200.
    let trivial = support::start_trivial_post(actix_web::http::StatusCode::OK)?;
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
    let runtime = support::runtime()?;
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
    let line = ssh::public_key_line(&key, "bench");
    Ok((key, line))
}
