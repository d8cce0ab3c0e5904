//! The GROS controller's SSH listener against the real server (in-process on port 0, real sled,
//! secret and blob stores in a temporary directory) and Debian's OpenSSH client, as agents run
//! it: `ssh-keyscan` for the host key (checked against `annals gros-ssh-fingerprint`), then
//! `scp` (SFTP, its default mode) and `sftp` with the key registered through `agent.py`, each
//! upload landing byte for byte in the blob store and recorded on the agent. Then what is
//! refused (other keys, unregistered agents, paths outside the upload directory, shells,
//! commands, forwarding), the named limits, and an upload cut short by `kill -9`.

use crate::common;
use crate::gros::urlencode;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use annals::config::{Config, GrosProjectSpec};
use annals::runtime::SystemClock;
use common::app::TestApp;
use common::poll_async;
use serde_json::Value;
use sha2::Digest;

const WAIT: Duration = Duration::from_secs(60);

fn project(key: &str) -> GrosProjectSpec {
    GrosProjectSpec {
        key: key.into(),
        networks: vec!["127.0.0.0/8".into()],
        environment: format!("GROS_PROJECT={key}\n"),
        gather_interval_s: 0,
        ..GrosProjectSpec::default()
    }
}

/// The server with its SSH listener, and an agent's home: its keys and known hosts.
struct Ssh {
    app: TestApp,
    ssh: SocketAddr,
    home: PathBuf,
}

/// The real server with projects `PROJ` and `OTHER` and the SSH listener on a free port.
async fn spawn(configure: impl FnOnce(&mut Config)) -> Ssh {
    let app = TestApp::start(Arc::new(SystemClock), |config, _| {
        config.gros.ssh.listen = "127.0.0.1:0".into();
        // The import command reads the export's files where it is told they are.
        let import = "cd \"$GROS_EXPORT_DIR\" && sha256sum *";
        config.gros.projects = vec![
            GrosProjectSpec {
                import_command: vec!["/bin/sh".into(), "-c".into(), import.into()],
                ..project("PROJ")
            },
            project("OTHER"),
        ];
        configure(config);
    })
    .await;
    let ssh = app.addresses.of("gros_ssh").expect("the SSH listener");
    let home = app.dir.path().join("agent");
    std::fs::create_dir(&home).unwrap();
    Ssh { app, ssh, home }
}

/// Runs a program to its end, off the test's runtime.
async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.stdin(Stdio::null()).output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

impl Ssh {
    /// A new key pair, `<home>/<name>` and `.pub`, as `ssh-keygen` makes agents' keys (RSA, as
    /// gros-gatherer's `~/.ssh/id_rsa`, or another type).
    async fn key(&self, name: &str, kind: &str) -> String {
        let path = self.home.join(name);
        let mut keygen = Command::new("ssh-keygen");
        keygen
            .args(["-q", "-N", "", "-C", "agent@host", "-t", kind, "-f"])
            .arg(&path);
        if kind == "rsa" {
            keygen.args(["-b", "2048"]);
        }
        let made = run(keygen).await;
        assert!(made.status.success(), "{}", text(&made));
        std::fs::read_to_string(path.with_extension("pub"))
            .unwrap()
            .trim_end()
            .to_owned()
    }

    /// Registers `public_key` for agent `agent` of `project`, as gros-gatherer's
    /// `generate_key.py` does through `agent.py`.
    async fn register(&self, project: &str, agent: &str, public_key: &str) {
        let body = format!("public_key={}", urlencode(public_key));
        let request = format!(
            "POST /auth/agent.py?project={project}&agent={agent} HTTP/1.1\r\nHost: controller\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = http(self.app.addresses.main, request).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }

    /// Announces an export as `export_files.py` does once its upload succeeded.
    async fn announce(&self, project: &str, agent: &str) {
        let agent_field = format!(r#"{{"user":"agent-{agent}","key":"{agent}"}}"#);
        let body = format!(
            "files={}&agent={}",
            urlencode(r#"{"export":["data.json"],"update":[],"other":[]}"#),
            urlencode(&agent_field)
        );
        let request = format!(
            "POST /auth/export.py?project={project} HTTP/1.1\r\nHost: controller\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = http(self.app.addresses.main, request).await;
        assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    }

    /// `ssh-keyscan` of the listener, kept as the agent's known hosts.
    async fn scan(&self) -> String {
        let (home, port) = (self.home.clone(), self.ssh.port());
        tokio::task::spawn_blocking(move || scan(&home, port))
            .await
            .unwrap()
    }

    fn options(&self, key: &str) -> Vec<String> {
        client_options(&self.home, key)
    }

    /// `scp` as `export_files.py` runs it: `agent-<name>@host:~/export/<PROJECT>/`.
    fn scp(&self, key: &str, user: &str, files: &[&Path], target: &str) -> Command {
        self.scp_with(key, user, &[], files, target)
    }

    /// [`Ssh::scp`] with more options.
    fn scp_with(
        &self,
        key: &str,
        user: &str,
        options: &[&str],
        files: &[&Path],
        target: &str,
    ) -> Command {
        scp_command(
            &self.home,
            self.ssh.port(),
            key,
            user,
            options,
            files,
            target,
        )
    }

    /// `sftp` in batch mode, `batch` its commands.
    async fn sftp(&self, key: &str, user: &str, batch: &str) -> Output {
        let file = self.home.join("batch");
        std::fs::write(&file, batch).unwrap();
        let mut sftp = Command::new("sftp");
        sftp.args(self.options(key))
            .args(["-P", &self.ssh.port().to_string(), "-b"])
            .arg(&file)
            .arg(format!("{user}@127.0.0.1"));
        run(sftp).await
    }

    /// `ssh` with `args` after the destination.
    fn ssh(&self, key: &str, user: &str, args: &[&str]) -> Command {
        let mut ssh = Command::new("ssh");
        ssh.args(self.options(key))
            .args(["-p", &self.ssh.port().to_string()])
            .arg(format!("{user}@127.0.0.1"))
            .args(args);
        ssh
    }

    /// An SFTP session spoken by hand: `ssh -s sftp`, its standard input and output piped.
    fn raw_sftp(&self, key: &str, user: &str) -> std::process::Child {
        self.ssh(key, user, &["-s", "sftp"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A file of `size` bytes that are not all alike, in the agent's home.
    fn file(&self, name: &str, size: usize) -> PathBuf {
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
        common::written(&self.home, name, bytes)
    }

    async fn events(&self, stream: &str) -> Vec<Value> {
        let request = format!(
            "GET /api/streams/{stream}?limit=1000 HTTP/1.1\r\nHost: controller\r\n\
             Connection: close\r\n\r\n"
        );
        let answer = http(self.app.addresses.main, request).await;
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        match serde_json::from_str::<Value>(body) {
            Ok(page) => page["events"].as_array().cloned().unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn of_type(&self, stream: &str, kind: &str) -> Vec<Value> {
        let events = self.events(stream).await;
        events.into_iter().filter(|e| e["type"] == kind).collect()
    }

    /// The bytes the blob store keeps under `sha256`.
    fn blob(&self, sha256: &str) -> Vec<u8> {
        let path = self
            .app
            .config
            .data
            .join("uploads/sha256")
            .join(&sha256[..2])
            .join(&sha256[2..]);
        std::fs::read(path).unwrap()
    }

    fn partial_files(&self) -> usize {
        std::fs::read_dir(self.app.config.data.join("gros-ssh-partial"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    }
}

/// The options every client gets: the agent's key and known hosts only, nothing asked.
fn client_options(home: &Path, key: &str) -> Vec<String> {
    let home = home.display();
    [
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        format!("{home}/{key}"),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={home}/known_hosts"),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
    ]
    .into()
}

/// `scp` from `home`'s files with `home`'s key to the listener on `port`.
fn scp_command(
    home: &Path,
    port: u16,
    key: &str,
    user: &str,
    options: &[&str],
    files: &[&Path],
    target: &str,
) -> Command {
    let mut scp = Command::new("scp");
    scp.args(client_options(home, key))
        .args(["-P", &port.to_string()])
        .args(options)
        .args(files)
        .arg(format!("{user}@127.0.0.1:{target}"));
    scp
}

/// `ssh-keyscan` of the listener on `port`, kept as `home`'s known hosts.
fn scan(home: &Path, port: u16) -> String {
    let scanned = Command::new("ssh-keyscan")
        .args(["-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(scanned.status.success(), "{}", text(&scanned));
    let lines = String::from_utf8(scanned.stdout).unwrap();
    std::fs::write(home.join("known_hosts"), &lines).unwrap();
    lines
}

async fn http(address: SocketAddr, request: String) -> String {
    tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(address).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        tcp.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = tcp.read_to_end(&mut raw);
        String::from_utf8_lossy(&raw).into_owned()
    })
    .await
    .unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks that each of `files` was recorded on `stream` once, under its name, and that the
/// blob store holds its bytes.
async fn assert_recorded(face: &Ssh, stream: &str, files: &[&Path]) {
    let uploaded = face.of_type(stream, "FileUploaded").await;
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap();
        let bytes = std::fs::read(file).unwrap();
        let recorded: Vec<&Value> = uploaded
            .iter()
            .filter(|e| e["payload"]["name"] == name)
            .collect();
        assert_eq!(recorded.len(), 1, "{name} on {stream}: {uploaded:?}");
        let payload = &recorded[0]["payload"];
        assert_eq!(payload["file"]["sha256"], sha256(&bytes), "{name}");
        assert_eq!(payload["file"]["size"], bytes.len() as u64, "{name}");
        assert!(
            face.blob(&sha256(&bytes)) == bytes,
            "{name}: the blob differs"
        );
    }
}

#[actix_rt::test]
async fn keyscan_then_scp_and_sftp_uploads_land_byte_for_byte_and_are_recorded() {
    let face = spawn(|_| {}).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;

    let scanned = face.scan().await;
    assert!(scanned.contains("ssh-ed25519 "), "{scanned}");
    // The host key is the one the operator pins: the CLI prints its fingerprint.
    let mut fingerprint = Command::new(env!("CARGO_BIN_EXE_annals"));
    fingerprint
        .arg("--data")
        .arg(&face.app.config.data)
        .arg("gros-ssh-fingerprint")
        .env_remove("ANNALS_CONFIG");
    let printed = run(fingerprint).await;
    assert!(printed.status.success(), "{}", text(&printed));
    let printed = String::from_utf8(printed.stdout).unwrap();
    let mut keygen = Command::new("ssh-keygen");
    keygen
        .args(["-l", "-E", "sha256", "-f"])
        .arg(face.home.join("known_hosts"));
    let listed = text(&run(keygen).await);
    assert!(printed.starts_with("SHA256:"), "{printed}");
    assert!(listed.contains(printed.trim()), "{listed} lacks {printed}");

    // As export_files.py: several files at once, into ~/export/<PROJECT>/.
    let data = face.file("data.json", 300_000);
    let empty = face.file("empty.json", 0);
    let copied = run(face.scp("id_rsa", "agent-PROJ", &[&data, &empty], "~/export/PROJ/")).await;
    assert!(copied.status.success(), "{}", text(&copied));
    let tracker = face.file("tracker.txt", 70_001);
    let put = face
        .sftp(
            "id_rsa",
            "agent-PROJ",
            &format!("cd export/PROJ\nput {}\nls -l\n", tracker.display()),
        )
        .await;
    assert!(put.status.success(), "{}", text(&put));
    assert!(text(&put).contains("tracker.txt"), "{}", text(&put));
    assert_recorded(&face, "gros_agent-PROJ.PROJ", &[&data, &empty, &tracker]).await;
    assert_eq!(face.partial_files(), 0);

    // The announcement takes what was uploaded; the next export starts empty.
    face.announce("PROJ", "PROJ").await;
    let announced = face
        .of_type("gros_agent-PROJ.PROJ", "UploadsAnnounced")
        .await;
    let names: Vec<&str> = announced[0]["payload"]["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["data.json", "empty.json", "tracker.txt"]);
    // The project's import command gets them, byte for byte.
    let ended = poll_async(WAIT, "the import's end", || async {
        let events = face.events("gros_agent-PROJ.PROJ").await;
        events
            .iter()
            .any(|e| e["type"] == "ProcessFinished" && e["payload"]["process"] == "import")
            .then_some(events)
    })
    .await;
    let lines: Vec<&str> = ended
        .iter()
        .filter(|e| e["type"] == "ProcessOutput")
        .map(|e| e["payload"]["line"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = [&data, &empty, &tracker]
        .iter()
        .map(|file| {
            let name = file.file_name().unwrap().to_str().unwrap();
            format!("{}  {name}", sha256(&std::fs::read(file).unwrap()))
        })
        .collect();
    assert_eq!(lines, expected);
    // Its files go once its end is recorded.
    poll_async(WAIT, "the import's files removed", || async {
        let exports = face.app.config.data.join("gros-exports");
        (std::fs::read_dir(exports).ok()?.count() == 0).then_some(())
    })
    .await;
    let listed = face.sftp("id_rsa", "agent-PROJ", "ls export/PROJ\n").await;
    assert!(listed.status.success(), "{}", text(&listed));
    assert!(!text(&listed).contains("data.json"), "{}", text(&listed));
}

#[actix_rt::test]
async fn only_the_registered_key_of_a_registered_agent_logs_in() {
    let face = spawn(|_| {}).await;
    let public = face.key("id_rsa", "rsa").await;
    face.key("other", "ed25519").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let data = face.file("data.json", 10);

    for (key, user) in [
        ("other", "agent-PROJ"),
        // A registered key, under an agent that never registered it.
        ("id_rsa", "agent-OTHER"),
        ("id_rsa", "agent-NOBODY"),
        // Not upstream's user name.
        ("id_rsa", "PROJ"),
    ] {
        let copied = run(face.scp(key, user, &[&data], "~/export/PROJ/")).await;
        assert!(!copied.status.success(), "{key} as {user}");
        assert!(
            text(&copied).contains("Permission denied"),
            "{key} as {user}: {}",
            text(&copied)
        );
    }
    // An Ed25519 key registered works as well as RSA.
    let ed25519 = face.key("id_ed25519", "ed25519").await;
    face.register("OTHER", "OTHER", &ed25519).await;
    let copied = run(face.scp("id_ed25519", "agent-OTHER", &[&data], "~/export/OTHER/")).await;
    assert!(copied.status.success(), "{}", text(&copied));
    assert!(face
        .events("gros_agent-PROJ.PROJ")
        .await
        .iter()
        .all(|e| e["type"] != "FileUploaded"));
}

#[actix_rt::test]
async fn nothing_but_uploads_into_the_agents_own_project_directories() {
    let face = spawn(|_| {}).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let data = face.file("data.json", 10);

    for target in [
        "~/export/OTHER/",
        "~/../../tmp/",
        "/etc/",
        "~/export/PROJ/../../",
        "~/",
        "~/export/",
    ] {
        let copied = run(face.scp("id_rsa", "agent-PROJ", &[&data], target)).await;
        assert!(!copied.status.success(), "{target}: {}", text(&copied));
    }
    for batch in [
        "put /dev/null export/PROJ/../x\n",
        "mkdir export/PROJ/sub\n",
        "get export/PROJ/data.json\n",
        "rm export/PROJ/data.json\n",
        "put /dev/null export/PROJ/.hidden\n",
    ] {
        let refused = face.sftp("id_rsa", "agent-PROJ", batch).await;
        assert!(!refused.status.success(), "{batch}: {}", text(&refused));
    }

    let shell = run(face.ssh("id_rsa", "agent-PROJ", &["-T"])).await;
    assert_eq!(shell.status.code(), Some(1), "{}", text(&shell));
    assert!(
        text(&shell).contains("interactive logins are not permitted"),
        "{}",
        text(&shell)
    );
    let command = run(face.ssh("id_rsa", "agent-PROJ", &["cat /etc/passwd"])).await;
    assert_eq!(command.status.code(), Some(1), "{}", text(&command));
    assert!(
        text(&command).contains("is not allowed"),
        "{}",
        text(&command)
    );
    assert!(!text(&command).contains("root:"), "{}", text(&command));
    // scp's legacy protocol is a command too.
    let legacy = face.scp_with("id_rsa", "agent-PROJ", &["-O"], &[&data], "~/export/PROJ/");
    let legacy = run(legacy).await;
    assert!(!legacy.status.success(), "{}", text(&legacy));
    assert!(
        text(&legacy).contains("is not allowed"),
        "{}",
        text(&legacy)
    );

    let remote = run(face.ssh(
        "id_rsa",
        "agent-PROJ",
        &[
            "-N",
            "-o",
            "ExitOnForwardFailure=yes",
            "-R",
            "0:127.0.0.1:9",
        ],
    ))
    .await;
    assert!(!remote.status.success(), "{}", text(&remote));
    assert!(
        text(&remote).contains("forwarding failed"),
        "{}",
        text(&remote)
    );
    let direct = run(face.ssh("id_rsa", "agent-PROJ", &["-W", "127.0.0.1:9"])).await;
    assert!(!direct.status.success(), "{}", text(&direct));
    assert!(text(&direct).contains("open failed"), "{}", text(&direct));

    assert!(face
        .events("gros_agent-PROJ.PROJ")
        .await
        .iter()
        .all(|e| e["type"] != "FileUploaded"));
    assert!(face.events("gros_agent-OTHER.PROJ").await.is_empty());
}

#[actix_rt::test]
async fn a_file_over_the_size_limit_fails_and_nothing_of_it_is_recorded() {
    let face = spawn(|config| config.gros.ssh.max_file_mb = 1).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let large = face.file("large.json", 1024 * 1024 + 1);
    let copied = run(face.scp("id_rsa", "agent-PROJ", &[&large], "~/export/PROJ/")).await;
    assert!(!copied.status.success(), "{}", text(&copied));
    let fits = face.file("fits.json", 1024 * 1024);
    let copied = run(face.scp("id_rsa", "agent-PROJ", &[&fits], "~/export/PROJ/")).await;
    assert!(copied.status.success(), "{}", text(&copied));
    let uploaded = face.of_type("gros_agent-PROJ.PROJ", "FileUploaded").await;
    assert_eq!(uploaded.len(), 1, "{uploaded:?}");
    assert_eq!(uploaded[0]["payload"]["name"], "fits.json");
    assert_eq!(face.partial_files(), 0);
}

#[actix_rt::test]
async fn an_export_holds_at_most_its_limit_of_files() {
    let face = spawn(|config| config.gros.ssh.max_files_per_export = 2).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let (a, b, c) = (face.file("a", 1), face.file("b", 2), face.file("c", 3));
    let copied = run(face.scp("id_rsa", "agent-PROJ", &[&a, &b], "~/export/PROJ/")).await;
    assert!(copied.status.success(), "{}", text(&copied));
    // A name uploaded again replaces its file; a third name is refused.
    let again = run(face.scp("id_rsa", "agent-PROJ", &[&a], "~/export/PROJ/")).await;
    assert!(again.status.success(), "{}", text(&again));
    let third = run(face.scp("id_rsa", "agent-PROJ", &[&c], "~/export/PROJ/")).await;
    assert!(!third.status.success(), "{}", text(&third));
    // OpenSSH's client shows its own words for the status the server refused the open with.
    assert!(text(&third).contains("Failure"), "{}", text(&third));
    let names: Vec<Value> = face
        .of_type("gros_agent-PROJ.PROJ", "FileUploaded")
        .await
        .iter()
        .map(|e| e["payload"]["name"].clone())
        .collect();
    assert_eq!(names, ["a", "b", "a"]);
    // Once announced, the next export starts.
    face.announce("PROJ", "PROJ").await;
    let next = run(face.scp("id_rsa", "agent-PROJ", &[&c], "~/export/PROJ/")).await;
    assert!(next.status.success(), "{}", text(&next));
}

#[actix_rt::test]
async fn an_agent_has_at_most_its_limit_of_sessions_at_once() {
    let face = spawn(|config| config.gros.ssh.max_sessions_per_agent = 1).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    // One session held open: an sftp reading its commands from a pipe left open.
    let mut held = face.raw_sftp("id_rsa", "agent-PROJ");
    // The SFTP version exchange answers once the session holds its place.
    let mut stdin = held.stdin.take().unwrap();
    let mut stdout = held.stdout.take().unwrap();
    let answered = tokio::task::spawn_blocking(move || {
        // SSH_FXP_INIT, version 3.
        stdin.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).unwrap();
        let mut header = [0u8; 5];
        stdout.read_exact(&mut header).unwrap();
        (stdin, stdout, header[4])
    })
    .await
    .unwrap();
    assert_eq!(answered.2, 2, "SSH_FXP_VERSION");
    let data = face.file("data.json", 10);
    let second = run(face.scp("id_rsa", "agent-PROJ", &[&data], "~/export/PROJ/")).await;
    assert!(!second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("open failed"), "{}", text(&second));
    drop(answered);
    held.kill().unwrap();
    held.wait().unwrap();
    // Its place is given back when it ends.
    poll_async(WAIT, "a session once the first ended", || async {
        let copied = run(face.scp("id_rsa", "agent-PROJ", &[&data], "~/export/PROJ/")).await;
        copied.status.success().then_some(())
    })
    .await;
}

#[actix_rt::test]
async fn a_silent_connection_is_closed_at_the_idle_timeout() {
    let face = spawn(|config| config.gros.ssh.idle_timeout_s = 1).await;
    let address = face.ssh;
    let (banner, waited) = tokio::task::spawn_blocking(move || {
        let mut tcp = TcpStream::connect(address).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        let started = Instant::now();
        let mut seen = Vec::new();
        let mut buffer = [0u8; 1024];
        // The server's version line, then nothing until it closes the connection.
        loop {
            match tcp.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
        (
            String::from_utf8_lossy(&seen).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(banner.starts_with("SSH-2.0-annals"), "{banner}");
    assert!(waited < Duration::from_secs(30), "closed after {waited:?}");
}

#[actix_rt::test]
async fn an_upload_killed_midway_is_not_recorded_and_can_be_made_again() {
    let face = spawn(|_| {}).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let data = face.file("data.json", 4 * 1024 * 1024);
    // Slowed to 800 Kbit/s, so that it is under way for seconds.
    let mut slow = face.scp_with(
        "id_rsa",
        "agent-PROJ",
        &["-l", "800"],
        &[&data],
        "~/export/PROJ/",
    );
    let mut child = slow
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = face.app.config.data.join("gros-ssh-partial");
    poll_async(WAIT, "a partial upload", || async {
        std::fs::read_dir(&partial)
            .ok()?
            .flatten()
            .any(|entry| entry.metadata().is_ok_and(|m| m.len() > 0))
            .then_some(())
    })
    .await;
    // SIGKILL: the client never closes the file.
    child.kill().unwrap();
    child.wait().unwrap();
    poll_async(WAIT, "the partial upload removed", || async {
        (face.partial_files() == 0).then_some(())
    })
    .await;
    assert!(face
        .events("gros_agent-PROJ.PROJ")
        .await
        .iter()
        .all(|e| e["type"] != "FileUploaded"));
    let again = run(face.scp("id_rsa", "agent-PROJ", &[&data], "~/export/PROJ/")).await;
    assert!(again.status.success(), "{}", text(&again));
    assert_recorded(&face, "gros_agent-PROJ.PROJ", &[&data]).await;
}

/// `annals serve` as a child process over `dir`, with project `PROJ` and the SSH listener on a
/// free port; gives the server and the SSH listener's port, read from its start-up log.
fn serve(dir: &Path) -> (common::Served, u16) {
    std::fs::write(
        dir.join("annals.toml"),
        "[gros.ssh]\nlisten = \"127.0.0.1:0\"\n\
         [[gros.projects]]\nkey = \"PROJ\"\nnetworks = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let served = crate::gros::serve_in(dir);
    let port = served
        .start_up()
        .iter()
        .find_map(|record| {
            let fields = &record["fields"];
            (fields["face"] == "gros_ssh")
                .then(|| fields["address"].as_str()?.parse::<SocketAddr>().ok())?
        })
        .expect("the SSH listener's address in the start-up log")
        .port();
    (served, port)
}

fn blocking_http(address: &str, request: String) -> String {
    let mut tcp = TcpStream::connect(address).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = tcp.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

fn uploads_recorded(address: &str) -> usize {
    let answer = blocking_http(
        address,
        "GET /api/streams/gros_agent-PROJ.PROJ?limit=1000 HTTP/1.1\r\nHost: controller\r\n\
         Connection: close\r\n\r\n"
            .into(),
    );
    answer.matches("\"FileUploaded\"").count()
}

#[test]
fn a_server_killed_during_an_upload_records_nothing_of_it_and_keeps_its_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("agent");
    std::fs::create_dir(&home).unwrap();
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", "rsa", "-b", "2048", "-f"])
        .arg(home.join("id_rsa"))
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));
    let public = std::fs::read_to_string(home.join("id_rsa.pub")).unwrap();
    let (mut served, port) = serve(dir.path());
    let body = format!("public_key={}", urlencode(public.trim_end()));
    let registered = blocking_http(
        &served.address,
        format!(
            "POST /auth/agent.py?project=PROJ HTTP/1.1\r\nHost: controller\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(registered.starts_with("HTTP/1.1 200"), "{registered}");
    let first_key = scan(&home, port).replace(&port.to_string(), "PORT");
    // The fingerprint logged at start is the scanned key's.
    let logged = served
        .start_up()
        .iter()
        .find_map(|record| {
            let fields = &record["fields"];
            (fields["message"] == "the GROS SSH listener's host key")
                .then(|| fields["fingerprint"].as_str().map(str::to_owned))?
        })
        .expect("the host key's fingerprint in the start-up log");
    let listed = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(home.join("known_hosts"))
        .output()
        .unwrap();
    assert!(
        text(&listed).contains(&logged),
        "{} lacks {logged}",
        text(&listed)
    );

    let bytes: Vec<u8> = (0..4 * 1024 * 1024)
        .map(|i: usize| (i % 253) as u8)
        .collect();
    let data = common::written(&home, "data.json", &bytes);
    let slow = scp_command(
        &home,
        port,
        "id_rsa",
        "agent-PROJ",
        &["-l", "800"],
        &[&data],
        "~/export/PROJ/",
    );
    let mut client = { slow }
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial = dir.path().join("log/gros-ssh-partial");
    common::poll(WAIT, "a partial upload", || {
        std::fs::read_dir(&partial)
            .ok()?
            .flatten()
            .any(|entry| entry.metadata().is_ok_and(|m| m.len() > 0))
            .then_some(())
    });
    // SIGKILL: the server stops with the upload half-written.
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    assert!(!client.wait().unwrap().success());
    drop(served);

    let (served, port) = serve(dir.path());
    assert_eq!(
        std::fs::read_dir(&partial).unwrap().count(),
        0,
        "the half-written upload is gone"
    );
    assert_eq!(uploads_recorded(&served.address), 0);
    // The same host key: the agent's pinned key still matches.
    assert_eq!(
        scan(&home, port).replace(&port.to_string(), "PORT"),
        first_key
    );
    let again = scp_command(
        &home,
        port,
        "id_rsa",
        "agent-PROJ",
        &[],
        &[&data],
        "~/export/PROJ/",
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(uploads_recorded(&served.address), 1);
    let blob = dir
        .path()
        .join("log/uploads/sha256")
        .join(&sha256(&bytes)[..2])
        .join(&sha256(&bytes)[2..]);
    assert!(std::fs::read(blob).unwrap() == bytes);
    // The host key's private half is nowhere in the data directory in clear.
    for file in common::every_file(&dir.path().join("log")) {
        let contents = std::fs::read(&file).unwrap_or_default();
        assert!(
            !contents
                .windows(b"PRIVATE KEY".len())
                .any(|w| w == b"PRIVATE KEY"),
            "{} holds a private key in clear",
            file.display()
        );
    }
}

#[test]
fn the_ssh_limits_are_checked_with_the_configuration() {
    let mut config = Config::default();
    config.gros.ssh.listen = "nowhere".into();
    config.gros.ssh.max_file_mb = 0;
    config.gros.ssh.max_files_per_export = 0;
    config.gros.ssh.max_sessions_per_agent = 0;
    config.gros.ssh.idle_timeout_s = 0;
    let problems: Vec<String> = config
        .problems()
        .into_iter()
        .filter(|(place, _)| {
            matches!(
                place,
                annals::config::Place::Key {
                    section: "gros.ssh",
                    ..
                }
            )
        })
        .map(|(_, problem)| problem)
        .collect();
    assert_eq!(
        problems,
        [
            "listen \"nowhere\" is not an address and port (such as 127.0.0.1:8080)",
            "max_file_mb must be at least 1",
            "max_files_per_export must be at least 1",
            "max_sessions_per_agent must be at least 1",
            "idle_timeout_s must be at least 1 (second)",
        ]
    );
    // Off by default, and with every limit named.
    let defaults = Config::default().gros.ssh;
    assert_eq!(defaults.listen, "");
    assert_eq!(
        (
            defaults.max_file_mb,
            defaults.max_files_per_export,
            defaults.max_sessions_per_agent,
            defaults.idle_timeout_s
        ),
        (256, 1000, 4, 300)
    );
}

/// One SFTP request packet: its type, id and one string argument.
fn sftp_packet(kind: u8, id: u32, path: &str) -> Vec<u8> {
    let mut body = vec![kind];
    body.extend_from_slice(&id.to_be_bytes());
    body.extend_from_slice(&(path.len() as u32).to_be_bytes());
    body.extend_from_slice(path.as_bytes());
    let mut packet = (body.len() as u32).to_be_bytes().to_vec();
    packet.extend_from_slice(&body);
    packet
}

/// The type of the next SFTP packet on `from`, its body skipped.
fn sftp_answer(from: &mut impl Read) -> u8 {
    let mut length = [0u8; 4];
    from.read_exact(&mut length).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
    from.read_exact(&mut body).unwrap();
    body[0]
}

#[actix_rt::test]
async fn an_sftp_session_holds_at_most_its_limit_of_open_handles() {
    let face = spawn(|_| {}).await;
    let public = face.key("id_rsa", "rsa").await;
    face.register("PROJ", "PROJ", &public).await;
    face.scan().await;
    let mut session = face.raw_sftp("id_rsa", "agent-PROJ");
    let (mut stdin, mut stdout) = (
        session.stdin.take().unwrap(),
        session.stdout.take().unwrap(),
    );
    let answers = tokio::task::spawn_blocking(move || {
        // SSH_FXP_INIT, version 3; then SSH_FXP_OPENDIR of the home, once past the limit.
        stdin.write_all(&[0, 0, 0, 5, 1, 0, 0, 0, 3]).unwrap();
        let mut answers = vec![sftp_answer(&mut stdout)];
        let limit = annals::faces::gros_ssh::MAX_OPEN_HANDLES as u32;
        for id in 1..=limit + 1 {
            stdin.write_all(&sftp_packet(11, id, "/")).unwrap();
            answers.push(sftp_answer(&mut stdout));
        }
        answers
    })
    .await
    .unwrap();
    session.kill().unwrap();
    session.wait().unwrap();
    // SSH_FXP_VERSION, SSH_FXP_HANDLE up to the limit, then SSH_FXP_STATUS.
    let mut expected = vec![2];
    expected.extend(std::iter::repeat_n(
        102,
        annals::faces::gros_ssh::MAX_OPEN_HANDLES,
    ));
    expected.push(101);
    assert_eq!(answers, expected);
}
