//! Authentication over HTTP and on the command line: the access matrix of the event API, the
//! 401/403 answers, password and token hashes made by the CLI, and the refusal to serve a
//! network without accounts.

use crate::common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use annals::auth::{new_token, Access, Account, Auth, Role};
use annals::events::{EventLog, LogOptions};
use annals::http::{Guard, HttpState};
use base64::Engine;

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

struct Server {
    address: String,
    _dir: tempfile::TempDir,
}

/// The real server with `ada` (admin, password) and `bob` (a bearer token, no role).
fn spawn(api: Access, bob_token_hash: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let log = EventLog::open(dir.path(), LogOptions::default()).unwrap();
    let auth = Auth::new(vec![
        common::password_account("ada", "correct horse", &[Role::Admin]),
        common::token_account("bob", bob_token_hash, &[]),
    ])
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let state = HttpState {
        log,
        guard: Guard {
            auth: Arc::new(auth),
            api,
        },
        faces: Default::default(),
        sse_keep_alive: annals::http::events::KEEP_ALIVE,
    };
    actix_rt::spawn(annals::http::server(listener, state, None).unwrap());
    Server { address, _dir: dir }
}

async fn status_of(
    server: &Server,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let mut request = client.get(format!("{}{path}", server.address));
    if let Some(authorization) = authorization {
        request = request.insert_header(("Authorization", authorization));
    }
    let mut response = request.send().await.unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = if response.status().as_u16() == 200 && path == "/healthz" {
        serde_json::Value::Null
    } else {
        response.json().await.unwrap()
    };
    (response.status().as_u16(), challenge, body)
}

#[actix_rt::test]
async fn the_event_api_needs_an_admin_by_default() {
    let (token, hash) = new_token();
    let server = spawn(Access::Admin, &hash);
    let bearer = format!("Bearer {token}");
    let ada = basic("ada", "correct horse");

    assert_eq!(status_of(&server, "/healthz", None).await.0, 200);
    assert_eq!(status_of(&server, "/readyz", None).await.0, 200);

    let (status, challenge, body) = status_of(&server, "/api/events", None).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(r#"Basic realm="annals", Bearer realm="annals""#)
    );
    assert_eq!(body["status"], 401);
    common::app::assert_says(&body, "/error", "credentials are required");

    for wrong in [
        basic("ada", "wrong horse"),
        basic("eve", "correct horse"),
        "Bearer not-a-token".into(),
        "Negotiate x".into(),
    ] {
        let (status, challenge, _) = status_of(&server, "/api/events", Some(&wrong)).await;
        assert_eq!((status, challenge.is_some()), (401, true), "{wrong}");
    }

    let (status, challenge, body) = status_of(&server, "/api/events", Some(&bearer)).await;
    assert_eq!((status, challenge), (403, None));
    common::app::assert_says(&body, "/error", "account bob may not");

    for _ in 0..2 {
        let (status, _, body) = status_of(&server, "/api/events", Some(&ada)).await;
        assert_eq!(status, 200, "{body}");
    }
    // Past the credentials, a stream that never had an event is not found.
    assert_eq!(
        status_of(&server, "/api/streams/job-x/state", Some(&ada))
            .await
            .0,
        404
    );
    assert_eq!(
        status_of(&server, "/api/streams/job-x/state", Some(&bearer))
            .await
            .0,
        403
    );
}

#[actix_rt::test]
async fn the_event_api_can_be_opened_to_any_account_or_to_anyone() {
    let (token, hash) = new_token();
    let accounts = spawn(Access::Account, &hash);
    assert_eq!(
        status_of(&accounts, "/api/events", Some(&format!("Bearer {token}")))
            .await
            .0,
        200
    );
    assert_eq!(status_of(&accounts, "/api/events", None).await.0, 401);
    let anyone = spawn(Access::Anyone, &hash);
    assert_eq!(status_of(&anyone, "/api/events", None).await.0, 200);
}

fn annals() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .env_remove("ANNALS_CONFIG")
        .env_remove("ANNALS_DATA");
    command
}

#[test]
fn the_command_line_makes_hashes_that_the_server_accepts() {
    let mut child = annals()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"s3cret pass\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("s3cret"));

    let output = annals().arg("new-token").output().unwrap();
    let printed = String::from_utf8(output.stdout).unwrap();
    let token = printed
        .lines()
        .next()
        .unwrap()
        .strip_prefix("token: ")
        .unwrap()
        .to_owned();
    let token_hash = printed.split('"').nth(1).unwrap().to_owned();

    let auth = Auth::new(vec![Account {
        name: "carol".into(),
        password_hash: Some(hash),
        token_sha256: vec![token_hash],
        roles: vec![],
    }])
    .unwrap();
    assert!(auth
        .authorize(Some(&basic("carol", "s3cret pass")), Access::Account)
        .is_ok());
    assert!(auth
        .authorize(Some(&format!("Bearer {token}")), Access::Account)
        .is_ok());
}

/// Runs `annals [--config CONFIG] --data DIR/log serve --listen LISTEN` to its end.
fn serve_on(dir: &std::path::Path, config: Option<&std::path::Path>, listen: &str) -> Output {
    let mut command = annals();
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command
        .arg("--data")
        .arg(dir.join("log"))
        .args(["serve", "--listen", listen])
        .output()
        .unwrap()
}

#[test]
fn serving_a_network_without_accounts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Refused before anything is bound or opened.
    let output = serve_on(dir.path(), None, "0.0.0.0:0");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without any account"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    assert!(!dir.path().join("log").exists());

    let config = dir.path().join("annals.toml");
    std::fs::write(
        &config,
        "[[accounts]]\nname = \"ada\"\npassword_hash = \"plaintext\"\n",
    )
    .unwrap();
    let output = serve_on(dir.path(), Some(&config), "127.0.0.1:0");
    // A file that `config check` refuses, as every invalid configuration is refused: status 2.
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("password_hash is not an argon2 hash"));
}
