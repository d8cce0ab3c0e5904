//! The GROS controller's SSH listener (`[gros.ssh] listen`): where agents upload their exports
//! with scp and sftp, as to upstream's controller, and what `ssh-keyscan` reads the host key
//! from. It translates SSH and SFTP into the GROS service's calls and decides nothing about
//! agents: who may log in (the key an agent registered), what it may reach and what an upload
//! is recorded as come from `domain::gros`.
//!
//! An agent logs in as `agent-<name>` (upstream's user name) with the key it registered
//! through `agent.py`, and sees a home with one directory, `export/`, holding `<PROJECT>/` for
//! each project in which it registered that key: exactly where gros-gatherer's
//! `export_files.py` copies to (`~/export/<PROJECT>/`). Files are written there and nowhere
//! else; there is no shell, no command, no forwarding, no reading back. An upload is written
//! to a partial file under `<data>/gros-ssh-partial/`, and only once the client closes it whole
//! is it moved into the blob store and recorded (`FileUploaded`); a partial file is never
//! recorded, and the directory is emptied at every start.
//!
//! The listener runs on a thread of its own (`gros-ssh`, with its own Tokio runtime), so that
//! its key exchanges and file writes never hold up the actix threads; it reaches the agents'
//! entities through their actors' mailboxes, as the HTTP workers do.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::server::{Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use russh_sftp::protocol::{
    Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version,
};
use russh_sftp::server::StatusReply;

use crate::blobs::BlobStore;
use crate::config::GrosSshSection;
use crate::domain::gros::{AgentName, Gros, ProjectKey, UploadError, UploadName};
use crate::secrets::{Secret, SecretId, SecretStore};

/// The secret store's id of the listener's host key (an OpenSSH private key, Ed25519).
pub const HOST_KEY_SECRET: &str = "gros-ssh-host-key";
/// Where uploads are written until they are complete, under the data directory.
pub const PARTIAL_DIR: &str = "gros-ssh-partial";
/// The start of every agent's user name, as upstream's controller names its agents' users.
pub const USER_PREFIX: &str = "agent-";
/// The one directory of an agent's home: its projects' upload directories are in it.
pub const EXPORT_DIR: &str = "export";
/// The most files and directory listings one SFTP session holds open at once: scp and sftp
/// open one file at a time, and each open upload may take `max_file_mb` of disk.
pub const MAX_OPEN_HANDLES: usize = 16;
/// The name the listener's thread goes by.
const THREAD: &str = "gros-ssh";

/// The limits of the listener, from `[gros.ssh]`.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest file, in bytes.
    pub max_file_bytes: u64,
    /// The most files one export may hold.
    pub max_files_per_export: usize,
    /// The most connections one agent may have at once.
    pub max_sessions_per_agent: usize,
    /// How long a connection may stay silent.
    pub idle_timeout: Duration,
}

impl Limits {
    pub fn of(section: &GrosSshSection) -> Limits {
        Limits {
            max_file_bytes: section.max_file_mb.saturating_mul(1024 * 1024),
            max_files_per_export: section.max_files_per_export,
            max_sessions_per_agent: section.max_sessions_per_agent,
            idle_timeout: Duration::from_secs(section.idle_timeout_s),
        }
    }
}

/// The listener's host key from the secret store, made (Ed25519) the first time. Blocking.
pub fn host_key(secrets: &SecretStore) -> anyhow::Result<(russh::keys::PrivateKey, String)> {
    let id = SecretId::parse(HOST_KEY_SECRET)?;
    let mut made = None;
    let secret = secrets.get_or_create(&id, || {
        match ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .and_then(|key| key.to_openssh(ssh_key::LineEnding::LF))
        {
            Ok(pem) => Secret::new(pem.as_bytes().to_vec()),
            Err(error) => {
                made = Some(error);
                Secret::new(Vec::new())
            }
        }
    })?;
    if let Some(error) = made {
        anyhow::bail!("the SSH host key could not be made: {error}");
    }
    let fingerprint = fingerprint(secret.expose())?;
    let pem = std::str::from_utf8(secret.expose())
        .map_err(|_| anyhow::anyhow!("the stored SSH host key is not an OpenSSH key"))?;
    let key = russh::keys::decode_secret_key(pem, None)
        .map_err(|e| anyhow::anyhow!("the stored SSH host key does not decode: {e}"))?;
    Ok((key, fingerprint))
}

/// The SHA-256 fingerprint (`SHA256:<base64>`, as `ssh-keygen -l` and `ssh` show it) of an
/// OpenSSH private key's public half.
pub fn fingerprint(pem: &[u8]) -> anyhow::Result<String> {
    let key = ssh_key::PrivateKey::from_openssh(pem)
        .map_err(|e| anyhow::anyhow!("the SSH host key does not decode: {e}"))?;
    Ok(key
        .public_key()
        .fingerprint(ssh_key::HashAlg::Sha256)
        .to_string())
}

/// The fingerprint of the host key kept in `secrets`, if one was made. Blocking.
pub fn stored_fingerprint(secrets: &SecretStore) -> anyhow::Result<Option<String>> {
    let id = SecretId::parse(HOST_KEY_SECRET)?;
    match secrets.get(&id)? {
        Some(secret) => Ok(Some(fingerprint(secret.expose())?)),
        None => Ok(None),
    }
}

/// What every connection shares.
struct Shared {
    gros: Gros,
    blobs: BlobStore,
    limits: Limits,
    /// Where uploads are written until complete.
    partial: PathBuf,
    /// Connections logged in, by agent name.
    sessions: Mutex<HashMap<AgentName, usize>>,
}

/// Starts the listener on `listener` (bound before anything started) on a thread of its own.
/// Returns what stops it: the listener closes and every connection ends.
pub fn start(
    listener: std::net::TcpListener,
    gros: Gros,
    blobs: BlobStore,
    key: russh::keys::PrivateKey,
    limits: Limits,
    data_dir: &Path,
) -> anyhow::Result<Box<dyn FnOnce() + Send>> {
    let partial = data_dir.join(PARTIAL_DIR);
    // What a previous process left half-written was never recorded: it goes.
    match std::fs::remove_dir_all(&partial) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&partial)?;
    listener.set_nonblocking(true)?;
    let config = Arc::new(russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-annals_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        // The first probe (`none`) is answered at once; a refused key waits, as OpenSSH's
        // own server makes it.
        auth_rejection_time: Duration::from_millis(200),
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![key],
        inactivity_timeout: Some(limits.idle_timeout),
        max_auth_attempts: 6,
        ..Default::default()
    });
    let shared = Arc::new(Shared {
        gros,
        blobs,
        limits,
        partial,
        sessions: Mutex::default(),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name(THREAD.into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::error!(%error, "the GROS SSH listener cannot listen");
                        return;
                    }
                };
                let mut server = Server { shared };
                let running = russh::server::Server::run_on_socket(&mut server, config, &listener);
                let handle = running.handle();
                tokio::select! {
                    ended = running => {
                        if let Err(error) = ended {
                            tracing::error!(%error, "the GROS SSH listener stopped");
                        }
                    }
                    _ = stopped => handle.shutdown("the server is stopping".into()),
                }
            });
        })?;
    Ok(Box::new(move || {
        let _ = stop.send(());
        let _ = thread.join();
    }))
}

#[derive(Clone)]
struct Server {
    shared: Arc<Shared>,
}

impl russh::server::Server for Server {
    type Handler = Connection;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Connection {
        Connection {
            shared: self.shared.clone(),
            peer,
            login: None,
            channels: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: anyhow::Error) {
        tracing::debug!(%error, "a GROS SSH connection ended with an error");
    }
}

/// One connection.
struct Connection {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    /// Who logged in, once a key was accepted.
    login: Option<Login>,
    /// Session channels opened and not yet given to a subsystem.
    channels: HashMap<ChannelId, Channel<Msg>>,
}

/// A logged-in agent.
struct Login {
    agent: AgentName,
    /// The projects it registered its key in: its upload directories.
    projects: Vec<ProjectKey>,
    /// Whether it holds one of its places among `max_sessions_per_agent`; one that does not
    /// is refused every channel.
    counted: bool,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(login) = self.login.take().filter(|login| login.counted) {
            let mut sessions = self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(count) = sessions.get_mut(&login.agent) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    sessions.remove(&login.agent);
                }
            }
        }
    }
}

/// The agent a user name names: `agent-<name>`.
fn agent_of(user: &str) -> Option<AgentName> {
    AgentName::parse(user.strip_prefix(USER_PREFIX)?).ok()
}

impl Connection {
    /// The projects in which `user`'s agent registered `key`; none for anyone else.
    async fn projects(&self, user: &str, key: &russh::keys::PublicKey) -> Vec<ProjectKey> {
        let (Some(agent), Ok(line)) = (agent_of(user), key.to_openssh()) else {
            return Vec::new();
        };
        match self.shared.gros.upload_projects(&agent, &line).await {
            Ok(projects) => projects,
            Err(error) => {
                tracing::warn!(%error, user, "an SSH login could not be checked");
                Vec::new()
            }
        }
    }

    /// Refuses what the channel asked for: a message on its standard error, exit status 1,
    /// and the channel closed, as upstream's restricted shell answers.
    fn refuse(channel: ChannelId, session: &mut Session, message: &str) -> anyhow::Result<()> {
        session.channel_success(channel)?;
        let line = format!("annals: {message}\r\n");
        session.extended_data(channel, 1, line.into_bytes())?;
        session.exit_status_request(channel, 1)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }
}

/// What a session channel may not do.
const ONLY_UPLOADS: &str =
    "this SSH service takes uploads only: use scp or sftp into export/<PROJECT>/";

impl russh::server::Handler for Connection {
    type Error = anyhow::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        key: &russh::keys::PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.projects(user, key).await.is_empty() {
            Auth::reject()
        } else {
            Auth::Accept
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: &russh::keys::PublicKey,
    ) -> Result<Auth, Self::Error> {
        let projects = self.projects(user, key).await;
        let Some(agent) = agent_of(user).filter(|_| !projects.is_empty()) else {
            tracing::debug!(user, peer = ?self.peer, "an SSH login was refused");
            return Ok(Auth::reject());
        };
        let counted = {
            let mut sessions = self
                .shared
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let count = sessions.entry(agent.clone()).or_default();
            if *count < self.shared.limits.max_sessions_per_agent {
                *count += 1;
                true
            } else {
                false
            }
        };
        if !counted {
            tracing::info!(
                agent = agent.as_str(),
                max = self.shared.limits.max_sessions_per_agent,
                "an agent's SSH session over its limit is refused every channel"
            );
        }
        tracing::debug!(agent = agent.as_str(), peer = ?self.peer, "an agent logged in over SSH");
        self.login = Some(Login {
            agent,
            projects,
            counted,
        });
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match &self.login {
            Some(login) if login.counted => {
                self.channels.insert(channel.id(), channel);
                reply.accept().await;
            }
            _ => reply.reject(ChannelOpenFailure::ResourceShortage).await,
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host: &str,
        _port: u32,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client is done (an SFTP session ends so): its exit status is success, as
        // OpenSSH's sftp-server's, which scp and sftp take for their own.
        session.exit_status_request(channel, 0)?;
        session.close(channel)?;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        _variable_name: &str,
        _variable_value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        Connection::refuse(
            channel,
            session,
            &format!("interactive logins are not permitted; {ONLY_UPLOADS}"),
        )
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        let command = String::from_utf8_lossy(data);
        Connection::refuse(
            channel,
            session,
            &format!(
                "command {command:?} is not allowed (scp -O's legacy protocol included); \
                 {ONLY_UPLOADS}"
            ),
        )
    }

    async fn subsystem_request(
        &mut self,
        channel_id: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let channel = self.channels.remove(&channel_id);
        match (name, channel, &self.login) {
            ("sftp", Some(channel), Some(login)) => {
                session.channel_success(channel_id)?;
                let sftp = Sftp {
                    shared: self.shared.clone(),
                    agent: login.agent.clone(),
                    projects: login.projects.clone(),
                    next_handle: 0,
                    uploads: HashMap::new(),
                    listings: HashMap::new(),
                };
                russh_sftp::server::run(channel.into_stream(), sftp).await;
            }
            _ => session.channel_failure(channel_id)?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// SFTP.

/// One agent's SFTP session.
struct Sftp {
    shared: Arc<Shared>,
    agent: AgentName,
    projects: Vec<ProjectKey>,
    /// The number of the next handle.
    next_handle: u64,
    /// Files open for upload, by handle.
    uploads: HashMap<String, Partial>,
    /// Directory listings, by handle: `None` once read.
    listings: HashMap<String, Option<Vec<File>>>,
}

/// An upload in progress: a partial file nobody else sees, removed unless it went into the
/// blob store.
struct Partial {
    project: ProjectKey,
    name: UploadName,
    path: PathBuf,
    file: Arc<std::fs::File>,
    /// The end of the furthest write.
    size: u64,
    /// Why the upload failed, once a write did: its close fails and records nothing.
    failed: Option<String>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        // Gone into the blob store when recorded; otherwise never recorded, so not kept.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Where a path leads, in an agent's view.
enum Place {
    /// The home, `/`.
    Home,
    /// `/export`.
    Export,
    /// `/export/<PROJECT>`: an upload directory.
    Project(ProjectKey),
    /// A file in an upload directory.
    File(ProjectKey, UploadName),
}

fn refused(code: StatusCode, message: impl Into<String>) -> StatusReply {
    code.with_message(message)
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Ok".into(),
        language_tag: "en-US".into(),
    }
}

fn directory_attributes() -> FileAttributes {
    let mut attributes = FileAttributes {
        permissions: Some(0o700),
        ..FileAttributes::default()
    };
    attributes.set_dir(true);
    attributes
}

fn file_attributes(size: u64) -> FileAttributes {
    let mut attributes = FileAttributes {
        size: Some(size),
        permissions: Some(0o600),
        ..FileAttributes::default()
    };
    attributes.set_regular(true);
    attributes
}

impl Sftp {
    /// Where `path` leads: absolute or from the home, `.` and empty components skipped; `..`
    /// is refused outright (nothing lies above the home, and nothing needs it), as upstream's
    /// restricted shell refuses it.
    fn place(&self, path: &str) -> Result<Place, StatusReply> {
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    return Err(refused(
                        StatusCode::PermissionDenied,
                        format!("{path:?}: '..' is not allowed; uploads go to export/<PROJECT>/"),
                    ))
                }
                part => parts.push(part),
            }
        }
        let missing = || {
            refused(
                StatusCode::NoSuchFile,
                format!("{path:?}: no such file or directory; uploads go to export/<PROJECT>/"),
            )
        };
        let project = |key: &str| {
            self.projects
                .iter()
                .find(|project| project.as_str() == key)
                .cloned()
                .ok_or_else(missing)
        };
        match parts.as_slice() {
            [] => Ok(Place::Home),
            [EXPORT_DIR] => Ok(Place::Export),
            [EXPORT_DIR, key] => Ok(Place::Project(project(key)?)),
            [EXPORT_DIR, key, name] => {
                let project = project(key)?;
                let name = UploadName::parse(name)
                    .map_err(|reason| refused(StatusCode::PermissionDenied, reason))?;
                Ok(Place::File(project, name))
            }
            _ => Err(missing()),
        }
    }

    /// A new handle, unless the session holds [`MAX_OPEN_HANDLES`] already.
    fn handle(&mut self, kind: char) -> Result<String, StatusReply> {
        if self.uploads.len() + self.listings.len() >= MAX_OPEN_HANDLES {
            return Err(refused(
                StatusCode::Failure,
                format!("a session holds at most {MAX_OPEN_HANDLES} files and directories open"),
            ));
        }
        self.next_handle += 1;
        Ok(format!("{kind}{}", self.next_handle))
    }

    /// The uploads of the agent's next export in `project`: name and size.
    async fn uploaded(&self, project: &ProjectKey) -> Result<Vec<(String, u64)>, StatusReply> {
        let uploads = self
            .shared
            .gros
            .uploads(project, &self.agent)
            .await
            .map_err(|error| refused(StatusCode::Failure, error.to_string()))?;
        Ok(uploads
            .into_iter()
            .map(|upload| (upload.name, upload.file.size))
            .collect())
    }

    async fn attributes(&self, path: &str) -> Result<FileAttributes, StatusReply> {
        match self.place(path)? {
            Place::Home | Place::Export | Place::Project(_) => Ok(directory_attributes()),
            Place::File(project, name) => self
                .uploaded(&project)
                .await?
                .into_iter()
                .find(|(uploaded, _)| uploaded == name.as_str())
                .map(|(_, size)| file_attributes(size))
                .ok_or_else(|| {
                    refused(
                        StatusCode::NoSuchFile,
                        format!("{path:?}: no such file or directory"),
                    )
                }),
        }
    }

    /// Moves a complete upload into the blob store and records it.
    async fn finish(&self, partial: Partial) -> Result<(), StatusReply> {
        let failed = |message: String| refused(StatusCode::Failure, message);
        if let Some(reason) = &partial.failed {
            return Err(failed(reason.clone()));
        }
        let blobs = self.shared.blobs.clone();
        let path = partial.path.clone();
        let stored = tokio::task::spawn_blocking(move || blobs.put_file(&path))
            .await
            .map_err(|_| failed("the upload could not be stored: the server is stopping".into()))?
            .map_err(|error| {
                tracing::error!(%error, "an SSH upload could not be stored");
                failed(format!("the upload could not be stored: {error}"))
            })?;
        let recorded = self
            .shared
            .gros
            .record_upload(
                &partial.project,
                &self.agent,
                partial.name.clone(),
                stored,
                self.shared.limits.max_files_per_export,
            )
            .await;
        match recorded {
            Ok(()) => Ok(()),
            Err(error @ UploadError::TooManyFiles(_)) => Err(failed(error.to_string())),
            Err(error) => {
                tracing::error!(%error, "an SSH upload was not recorded");
                Err(failed(error.to_string()))
            }
        }
    }
}

impl russh_sftp::server::Handler for Sftp {
    type Error = StatusReply;

    fn unimplemented(&self) -> StatusReply {
        refused(StatusCode::OpUnsupported, ONLY_UPLOADS)
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, StatusReply> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, StatusReply> {
        let canonical = match self.place(&path)? {
            Place::Home => "/".to_owned(),
            Place::Export => format!("/{EXPORT_DIR}"),
            Place::Project(project) => format!("/{EXPORT_DIR}/{}", project.as_str()),
            Place::File(project, name) => {
                format!("/{EXPORT_DIR}/{}/{}", project.as_str(), name.as_str())
            }
        };
        Ok(Name {
            id,
            files: vec![File::dummy(canonical)],
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let attrs = self.attributes(&path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, StatusReply> {
        let attrs = self.attributes(&path).await?;
        Ok(Attrs { id, attrs })
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, StatusReply> {
        let entries = match self.place(&path)? {
            Place::Home => vec![File::new(EXPORT_DIR, directory_attributes())],
            Place::Export => self
                .projects
                .iter()
                .map(|project| File::new(project.as_str(), directory_attributes()))
                .collect(),
            Place::Project(project) => self
                .uploaded(&project)
                .await?
                .into_iter()
                .map(|(name, size)| File::new(name, file_attributes(size)))
                .collect(),
            Place::File(..) => {
                return Err(refused(
                    StatusCode::Failure,
                    format!("{path:?} is not a directory"),
                ))
            }
        };
        let handle = self.handle('d')?;
        self.listings.insert(handle.clone(), Some(entries));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, StatusReply> {
        match self.listings.get_mut(&handle) {
            Some(listing) => match listing.take() {
                Some(files) => Ok(Name { id, files }),
                None => Err(StatusCode::Eof.into()),
            },
            None => Err(refused(StatusCode::Failure, "no such directory handle")),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, StatusReply> {
        let Place::File(project, name) = self.place(&filename)? else {
            return Err(refused(
                StatusCode::Failure,
                format!("{filename:?} is a directory"),
            ));
        };
        if pflags.contains(OpenFlags::READ) || !pflags.contains(OpenFlags::WRITE) {
            return Err(refused(
                StatusCode::PermissionDenied,
                format!("{filename:?}: files can be uploaded, not read"),
            ));
        }
        // Refused before its bytes come when it could not be recorded; recording checks again.
        let uploaded = self.uploaded(&project).await?;
        let max = self.shared.limits.max_files_per_export;
        if uploaded.len() >= max && !uploaded.iter().any(|(known, _)| known == name.as_str()) {
            return Err(refused(
                StatusCode::Failure,
                UploadError::TooManyFiles(max).to_string(),
            ));
        }
        let handle = self.handle('f')?;
        let path = self
            .shared
            .partial
            .join(uuid::Uuid::new_v4().simple().to_string());
        let created = path.clone();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .write(true)
                .read(true)
                .create_new(true)
                .mode(0o600)
                .open(&created)
        })
        .await
        .map_err(|_| refused(StatusCode::Failure, "the server is stopping"))?
        .map_err(|error| {
            tracing::error!(%error, "an SSH upload's partial file could not be made");
            refused(StatusCode::Failure, "the upload could not be started")
        })?;
        self.uploads.insert(
            handle.clone(),
            Partial {
                project,
                name,
                path,
                file: Arc::new(file),
                size: 0,
                failed: None,
            },
        );
        Ok(Handle { id, handle })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, StatusReply> {
        let max = self.shared.limits.max_file_bytes;
        let Some(partial) = self.uploads.get_mut(&handle) else {
            return Err(refused(StatusCode::Failure, "no such file handle"));
        };
        if let Some(reason) = &partial.failed {
            return Err(refused(StatusCode::Failure, reason.clone()));
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > max {
            let reason = format!("a file may hold at most {max} bytes; nothing of it is kept");
            partial.failed = Some(reason.clone());
            return Err(refused(StatusCode::Failure, reason));
        }
        let file = partial.file.clone();
        let written = tokio::task::spawn_blocking(move || file.write_all_at(&data, offset)).await;
        match written {
            Ok(Ok(())) => {
                partial.size = partial.size.max(end);
                Ok(ok(id))
            }
            _ => {
                let reason = "the upload could not be written".to_owned();
                partial.failed = Some(reason.clone());
                Err(refused(StatusCode::Failure, reason))
            }
        }
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, StatusReply> {
        match self.uploads.get(&handle) {
            Some(partial) => Ok(Attrs {
                id,
                attrs: file_attributes(partial.size),
            }),
            None if self.listings.contains_key(&handle) => Ok(Attrs {
                id,
                attrs: directory_attributes(),
            }),
            None => Err(refused(StatusCode::Failure, "no such handle")),
        }
    }

    // Times and modes a client sets (`scp -p`) are taken and not kept: an upload is its bytes.
    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        if self.uploads.contains_key(&handle) {
            Ok(ok(id))
        } else {
            Err(refused(StatusCode::Failure, "no such file handle"))
        }
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        self.attributes(&path).await?;
        Ok(ok(id))
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, StatusReply> {
        if self.listings.remove(&handle).is_some() {
            return Ok(ok(id));
        }
        let Some(partial) = self.uploads.remove(&handle) else {
            return Err(refused(StatusCode::Failure, "no such handle"));
        };
        self.finish(partial).await?;
        Ok(ok(id))
    }

    async fn remove(&mut self, _id: u32, filename: String) -> Result<Status, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            format!("{filename:?}: uploads cannot be removed; {ONLY_UPLOADS}"),
        ))
    }

    async fn mkdir(
        &mut self,
        _id: u32,
        path: String,
        _attrs: FileAttributes,
    ) -> Result<Status, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            format!("{path:?}: directories cannot be made; {ONLY_UPLOADS}"),
        ))
    }

    async fn rmdir(&mut self, _id: u32, path: String) -> Result<Status, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            format!("{path:?}: directories cannot be removed; {ONLY_UPLOADS}"),
        ))
    }

    async fn rename(
        &mut self,
        _id: u32,
        oldpath: String,
        _newpath: String,
    ) -> Result<Status, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            format!("{oldpath:?}: uploads cannot be renamed; {ONLY_UPLOADS}"),
        ))
    }

    async fn symlink(
        &mut self,
        _id: u32,
        linkpath: String,
        _targetpath: String,
    ) -> Result<Status, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            format!("{linkpath:?}: links cannot be made; {ONLY_UPLOADS}"),
        ))
    }

    async fn read(
        &mut self,
        _id: u32,
        _handle: String,
        _offset: u64,
        _len: u32,
    ) -> Result<Data, StatusReply> {
        Err(refused(
            StatusCode::PermissionDenied,
            "files can be uploaded, not read",
        ))
    }
}
