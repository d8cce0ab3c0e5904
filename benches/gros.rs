//! The agent face under load: durable `POST /auth/log.py` (a Python logging record, as the
//! logging HTTPHandler sends it) and `POST /auth/status.py` (BigBoat measurements), beside a
//! trivial actix-web handler that reads the same body, measured in the same run with the same
//! client. Requests go to 16 agents of one project in turn, as a controller serving a project's
//! agents sees them.
//!
//! Run with `cargo bench --bench gros`. The server runs in this process with the default
//! durability (fsync) on a loopback port; so does the client, so both share the machine's cores.
//! Environment: `ANNALS_BENCH_CLIENTS` (concurrent connections, default 16),
//! `ANNALS_BENCH_REQUESTS` (per run, default 5000).

#[path = "support/mod.rs"]
mod support;

use annals::config::GrosProjectSpec;
use support::{env_or, report, run};

/// A form POST, as Python's clients send it.
fn form(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn main() -> anyhow::Result<()> {
    let clients = env_or("ANNALS_BENCH_CLIENTS", 16);
    let total = env_or("ANNALS_BENCH_REQUESTS", 5000);

    let dir = tempfile::tempdir()?;
    let mut config = support::config(dir.path(), &["partisci", "hpcwaas", "refstack"]);
    config.gros.projects = vec![GrosProjectSpec {
        key: "PROJ".into(),
        networks: vec!["127.0.0.0/8".into()],
        ..GrosProjectSpec::default()
    }];
    let annals = support::start_annals(config)?.main;
    let trivial = support::start_trivial_post(actix_web::http::StatusCode::ACCEPTED)?;
    let record = "name=gatherer.jira&msg=Fetched+100+issues&args=%28%29&levelname=INFO&\
                  levelno=20&pathname=%2Fhome%2Fagent%2Fgatherer%2Fjira.py&\
                  filename=jira.py&module=jira&exc_info=None&exc_text=None&stack_info=None&\
                  lineno=321&funcName=update&created=1700000000.123&msecs=123.0&\
                  relativeCreated=5000.1&thread=140000000&threadName=MainThread&\
                  processName=MainProcess&process=4242&message=Fetched+100+issues";
    let status = "status=%5B%7B%22name%22%3A%22cpu%22%2C%22checked_time%22%3A%222026-11-22+\
                  10%3A00%3A00%22%2C%22ok%22%3Atrue%2C%22value%22%3A1.5%2C%22max%22%3A4%7D%2C\
                  %7B%22name%22%3A%22mem%22%2C%22checked_time%22%3A%222026-11-22+10%3A00%3A00\
                  %22%2C%22ok%22%3Atrue%2C%22value%22%3A512%2C%22max%22%3A4096%7D%5D&\
                  source=bigboat";
    let runtime = support::runtime()?;
    runtime.block_on(async move {
        println!(
            "GROS controller, {total} requests per run, {clients} connections, 16 agents; log \
             record {} bytes, measurements {} bytes",
            record.len(),
            status.len()
        );
        let base = run(trivial, clients, total, 202, move |_| {
            form("/trivial", record)
        })
        .await;
        let log = run(annals, clients, total, 202, move |i| {
            form(
                &format!("/auth/log.py?project=PROJ&agent=a{}", i % 16),
                record,
            )
        })
        .await;
        let measurements = run(annals, clients, total, 202, move |i| {
            form(
                &format!("/auth/status.py?project=PROJ&agent=a{}", i % 16),
                status,
            )
        })
        .await;
        let base_again = run(trivial, clients, total, 202, move |_| {
            form("/trivial", status)
        })
        .await;
        report("trivial POST (log body)", &base, None);
        report("POST /auth/log.py", &log, Some(&base));
        report("POST /auth/status.py", &measurements, Some(&base));
        report("trivial POST (again)", &base_again, None);
    });
    Ok(())
}
