//! The audit commands (`export`, `replay`, `verify`) against a running server, through its event
//! API: sled lets one process at a time open a log, so while a server holds it this is how an
//! auditor reads it. It only asks and prints; what the answers mean is the server's to decide.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};

use crate::runtime::state::ReplayUntil;

/// Where the server is and how to ask it, as the audit commands take it.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Ask this running server (`http://127.0.0.1:8080`) through its event API instead of
    /// opening the log, which the server holds.
    #[arg(long, env = "ANNALS_SERVER")]
    pub server: Option<String>,
    /// With --server: a bearer token of an account with access to the event API, when the
    /// server has accounts (see `annals new-token`).
    #[arg(long, env = "ANNALS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// With --server: the PEM certificate (of its CA, or its own) to trust for `https://`.
    #[arg(long, env = "ANNALS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// How long one request may take; a long answer is a page of at most 1000 events.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A guard on the size of one answer: a page holds at most 1000 events, each at most 1 MiB
/// under the journal's default limit.
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// How often `verify` asks how a running verification is going.
const VERIFY_POLL: Duration = Duration::from_millis(200);

/// A running server's event API.
struct Server {
    base: String,
    token: Option<String>,
    client: awc::Client,
}

impl Server {
    fn new(args: &ServerArgs, url: &str) -> anyhow::Result<Server> {
        let base = url.trim_end_matches('/').to_owned();
        // A password in the URL would be echoed by every error that names the server; the
        // token has its own option, which nothing prints.
        let authority = base
            .split_once("://")
            .map_or(base.as_str(), |(_, rest)| rest);
        if authority
            .split('/')
            .next()
            .is_some_and(|host| host.contains('@'))
        {
            bail!(
                "--server takes no credentials in its URL: give an account's token with \
                 --token or ANNALS_TOKEN"
            );
        }
        let tls = match (
            base.split_once("://").map(|(scheme, _)| scheme),
            &args.ca_cert,
        ) {
            (Some("http"), _) => None,
            (Some("https"), Some(ca_cert)) => Some(tls_trusting(ca_cert)?),
            (Some("https"), None) => bail!(
                "an https:// server needs --ca-cert FILE (ANNALS_CA_CERT): the PEM certificate \
                 of its CA, or its own"
            ),
            _ => bail!("--server {url:?} is not an http:// or https:// URL"),
        };
        let mut connector = awc::Connector::new().timeout(REQUEST_TIMEOUT);
        if let Some(tls) = tls {
            connector = connector.rustls_0_23(Arc::new(tls));
        }
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(REQUEST_TIMEOUT)
            .finish();
        Ok(Server {
            base,
            token: args.token.clone(),
            client,
        })
    }

    /// GETs `path` and reads its JSON answer; an error answer becomes an error naming the
    /// server's message.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.get(&url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the server at {}: {e}", self.base))?;
        let status = response.status();
        let body = response
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .with_context(|| format!("cannot read the answer of {url}"))?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: String,
            }
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|body| body.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned());
            if status == awc::http::StatusCode::UNAUTHORIZED {
                bail!("{message} (give an account's token with --token or ANNALS_TOKEN)");
            }
            bail!("{message}");
        }
        serde_json::from_slice(&body).with_context(|| format!("the answer of {url} is not JSON"))
    }
}

/// A TLS client configuration that trusts the certificates of one PEM file.
fn tls_trusting(ca_cert: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let file = std::fs::File::open(ca_cert)
        .with_context(|| format!("cannot read --ca-cert {}", ca_cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(file)) {
        let cert = cert.with_context(|| format!("{} is not PEM", ca_cert.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} holds a bad certificate", ca_cert.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate", ca_cert.display());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS cannot be set up")?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Runs one request sequence on a runtime of its own: the commands are synchronous.
fn run<T>(
    args: &ServerArgs,
    url: &str,
    work: impl AsyncFnOnce(&Server) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    actix_web::rt::System::new().block_on(async {
        let server = Server::new(args, url)?;
        work(&server).await
    })
}

/// Percent-encodes a path segment or query value: everything but unreserved characters.
fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A page of the event API.
#[derive(Deserialize)]
struct Page {
    events: Vec<serde_json::Value>,
    next: u64,
    head: u64,
}

/// `annals export --server`: the events after `from` up to the head of the first answer, each
/// as one line of the JSON the API renders (the same as a local export's).
pub fn export(
    args: &ServerArgs,
    url: &str,
    from: u64,
    stream: Option<&str>,
    out: &mut dyn Write,
    bar: &ProgressBar,
) -> anyhow::Result<()> {
    run(args, url, async |server| {
        let mut next = match stream {
            // A stream's pages go by version; every version is read and filtered by position.
            Some(_) => 0,
            None => from,
        };
        let mut end = None;
        loop {
            let path = match stream {
                Some(stream) => format!(
                    "/api/streams/{}/events?from={next}&limit=1000",
                    encode(stream)
                ),
                None => format!("/api/events?from={next}&limit=1000"),
            };
            let page: Page = server.get(&path).await?;
            let end = *end.get_or_insert_with(|| {
                if stream.is_none() {
                    bar.set_length(page.head.saturating_sub(from));
                }
                page.head
            });
            for event in &page.events {
                let position = event["position"].as_u64().with_context(|| {
                    format!("the server sent an event without a position: {event}")
                })?;
                // `end` is a position, or for a stream a version: what was appended after the
                // first answer is left out either way.
                let reached = match stream {
                    None => position,
                    Some(_) => event["version"].as_u64().with_context(|| {
                        format!("the server sent a stream's event without a version: {event}")
                    })?,
                };
                if reached > end {
                    return Ok(());
                }
                if position > from {
                    serde_json::to_writer(&mut *out, event)?;
                    out.write_all(b"\n")?;
                    bar.inc(1);
                }
            }
            if page.events.is_empty() || page.next >= end {
                return Ok(());
            }
            next = page.next;
        }
    })
}

/// A replayed state, in the order a local `replay` prints it.
#[derive(Serialize, Deserialize)]
pub struct Replayed {
    pub stream: String,
    pub version: u64,
    pub state: serde_json::Value,
}

/// `annals replay --server`: the state the server replays.
pub fn replay(
    args: &ServerArgs,
    url: &str,
    stream: &str,
    until: ReplayUntil,
) -> anyhow::Result<Replayed> {
    let query = match until {
        ReplayUntil::End => String::new(),
        ReplayUntil::Version(version) => format!("?at_version={version}"),
        ReplayUntil::Time(time) => format!(
            "?at_time={}",
            encode(&time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        ),
    };
    run(args, url, async |server| {
        server
            .get(&format!("/api/streams/{}/state{query}", encode(stream)))
            .await
    })
}

/// Where a verification stands, as `/api/verify` reports it.
#[derive(Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Verified {
    Running {
        head: u64,
        checked: u64,
    },
    Ok {
        head: u64,
        events: u64,
        streams: u64,
        hash: String,
    },
    Failed {
        position: Option<u64>,
        problem: String,
    },
}

/// How a verification ended, in the words of a local `annals verify`.
pub enum Verdict {
    Sound(String),
    Corrupt(String),
}

/// `annals verify --server`: starts a verification on the server (or takes the one under way)
/// and waits for it to end, showing its progress.
pub fn verify(args: &ServerArgs, url: &str, bar: &ProgressBar) -> anyhow::Result<Verdict> {
    run(args, url, async |server| {
        let mut covering = None;
        loop {
            let path = match covering {
                Some(head) => format!("/api/verify?covering={head}"),
                None => "/api/verify".to_owned(),
            };
            match server.get(&path).await? {
                Verified::Running { head, checked } => {
                    covering.get_or_insert(head);
                    bar.set_length(head);
                    bar.set_position(checked);
                    actix_web::rt::time::sleep(VERIFY_POLL).await;
                }
                Verified::Ok {
                    head,
                    events,
                    streams,
                    hash,
                } => {
                    return Ok(Verdict::Sound(format!(
                        "ok: {events} events in {streams} streams, head {head} ({hash})"
                    )))
                }
                Verified::Failed { position, problem } => {
                    let at = position
                        .map(|p| format!("position {p}: "))
                        .unwrap_or_default();
                    return Ok(Verdict::Corrupt(format!("corrupt: {at}{problem}")));
                }
            }
        }
    })
}
