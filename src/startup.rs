//! Starting the server from a configuration: binds every listener (the main one and each
//! face's own), starts the entity directories, read models and background tasks of each face,
//! settles work left running by the previous process, and runs until SIGINT or SIGTERM. Tests
//! use it to run the real server in-process on port 0. It decides nothing about entities.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use anyhow::{bail, Context as _};

use crate::actors::inventory::Inventory;
use crate::actors::job::Job;
use crate::actors::results::Results;
use crate::actors::scan::Engines;
use crate::actors::sshkey::SshKeys;
use crate::actors::testrun::TestRuns;
use crate::actors::workflow::{runner::RunLimits, Executions};
use crate::actors::{reconcile, Clock, Entities, NoEffects, SystemClock};
use crate::auth::Auth;
use crate::config::Config;
use crate::declarations::Declarations;
use crate::events::EventLog;
use crate::http::{self, Face, Faces, Guard, HttpState, Serves};

/// How long start-up reconciliation may take before the server refuses to start.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the running server listens.
#[derive(Clone, Debug)]
pub struct Addresses {
    pub main: SocketAddr,
    /// The Partisci face's own listener (HTTP and UDP on one port), when configured.
    pub partisci: Option<SocketAddr>,
    /// The scan engine face's own listener, when configured.
    pub patrowl: Option<SocketAddr>,
    /// The HPCWaaS face's own listener, when configured.
    pub hpcwaas: Option<SocketAddr>,
    /// The GROS scraper agent daemon's listener, when enabled.
    pub gros_agent: Option<SocketAddr>,
}

/// A server that is listening. Dropping it without [`Application::run`] stops nothing; the
/// actix system it was built on owns the servers.
pub struct Application {
    pub addresses: Addresses,
    servers: Vec<Server>,
    /// Background work that ends with the servers: retention sweeps.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The Partisci UDP receiver.
    udp: Option<http::partisci::udp::Receiver>,
    /// The log, whose followers are released when the servers stop.
    log: EventLog,
}

impl Application {
    /// Binds, starts and settles everything, on the current actix system. The log must stay
    /// open until [`Application::run`] returns.
    pub async fn build(
        config: &Config,
        log: EventLog,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        // Settings are checked before anything starts, every problem at once, as `annals
        // config check` reports them.
        let declarations = Declarations::parse(config)
            .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))?;
        Application::build_with(config, declarations, log, clock).await
    }

    /// [`Application::build`] on declarations already parsed from `config`.
    pub async fn build_with(
        config: &Config,
        declarations: Declarations,
        log: EventLog,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        // The recorder first, so that what start-up records (settling appends) is counted.
        crate::metrics::handle();
        let auth = Arc::new(
            Auth::new(config.accounts.clone())
                .map_err(|reason| anyhow::anyhow!("the accounts are not valid: {reason}"))?,
        );
        let sse_keep_alive = Duration::from_secs(config.http.sse_keep_alive_s);
        let listening = http::Listening {
            body_timeout: Duration::from_secs(config.http.body_timeout_s),
            request_log: config.http.request_log,
        };
        let tls = tls_config("http", &config.http.tls_cert, &config.http.tls_key)?;
        let settings = crate::actors::Settings::from(&config.actors);
        for warning in &declarations.warnings {
            tracing::warn!("{warning}; start-up goes on");
        }
        let hpcwaas_tls = tls_config("hpcwaas", &config.hpcwaas.tls_cert, &config.hpcwaas.tls_key)?;
        // Every listener is bound before anything starts: a port in use ends start-up before
        // any actor runs or any event is written.
        let mut listeners = Listeners::bind(config)?;
        // The secret store and the blob store are opened once, for every face that uses them.
        let secrets = if config.hpcwaas.enabled || config.gros.enabled {
            Some(open_secrets(log.path())?)
        } else {
            None
        };
        let blobs = if config.refstack.enabled || config.patrowl.enabled {
            Some(crate::blobs::BlobStore::open(log.path())?)
        } else {
            None
        };
        let jobs =
            Entities::<Job>::start(log.clone(), clock.clone(), Arc::new(NoEffects), settings);
        let running = reconcile::track_in_progress::<Job>(&log)?;
        let settled = reconcile::reconcile(&log, &jobs, &running, RECONCILE_TIMEOUT).await?;
        if !settled.is_empty() {
            tracing::info!(count = settled.len(), "settled jobs left running");
        }

        let mut faces = Faces::default();
        let mut gros_servers = Vec::new();
        let mut tasks = Vec::new();
        let mut own_listeners = Vec::new();
        let mut partisci_address = None;
        let mut udp = None;
        if config.partisci.enabled {
            let section = &config.partisci;
            let retention =
                (section.retention_s > 0).then(|| Duration::from_secs(section.retention_s));
            let inventory =
                Inventory::start(log.clone(), clock.clone(), settings, retention).await?;
            tasks.extend(inventory.spawn_sweeper());
            if let Some((listener, socket)) = listeners.partisci.take() {
                let address = listener.local_addr()?;
                udp = Some(http::partisci::udp::Receiver::start(
                    socket,
                    inventory.clone(),
                    actix::Arbiter::current(),
                )?);
                let tls = tls_config("partisci", &section.tls_cert, &section.tls_key)?;
                own_listeners.push((Face::Partisci, listener, tls));
                partisci_address = Some(address);
            }
            faces.partisci = Some(web::Data::new(http::partisci::Partisci {
                inventory,
                auth: auth.clone(),
                access: section.auth,
                danger: section.danger,
                max_body: (section.max_body_kb * 1024) as usize,
            }));
        }

        if let (true, Some(blobs)) = (config.refstack.enabled, blobs.clone()) {
            let section = &config.refstack;
            let limits = crate::testresults::Limits {
                max_input_bytes: (section.max_upload_kb * 1024) as usize,
                max_tests: section.max_tests,
                ..crate::testresults::Limits::default()
            };
            let runs = TestRuns::start(
                log.clone(),
                clock.clone(),
                settings,
                blobs.clone(),
                limits.clone(),
            );
            let results =
                Results::start(log.clone(), clock.clone(), settings, blobs, limits).await?;
            faces.refstack = Some(web::Data::new(http::refstack::Refstack {
                runs,
                results,
                auth: auth.clone(),
                access: section.auth,
                max_upload: (section.max_upload_kb * 1024) as usize,
                max_body: (section.max_body_kb * 1024) as usize,
            }));
        }

        let mut patrowl_address = None;
        if let (true, Some(blobs)) = (config.patrowl.enabled, blobs) {
            let section = &config.patrowl;
            let engines = Engines::start(
                log.clone(),
                clock.clone(),
                settings,
                blobs,
                declarations.engines,
            )
            .await?;
            if let Some(listener) = listeners.patrowl.take() {
                patrowl_address = Some(listener.local_addr()?);
                own_listeners.push((Face::Patrowl, listener, None));
            }
            faces.patrowl = Some(web::Data::new(http::patrowl::Patrowl::new(
                engines,
                auth.clone(),
                section.auth,
                (section.max_body_kb * 1024) as usize,
            )));
        }

        let mut hpcwaas_address = None;
        if let (true, Some(secrets)) = (config.hpcwaas.enabled, secrets.clone()) {
            let section = &config.hpcwaas;
            let keys = SshKeys::start(log.clone(), clock.clone(), settings, secrets);
            let limits = RunLimits {
                kill_grace: Duration::from_secs(section.kill_grace_s),
                max_line_bytes: section.max_line_bytes,
                max_log_lines: section.max_log_lines,
                max_output_bytes: (section.max_output_kb * 1024) as usize,
            };
            let executions = Executions::start(
                log.clone(),
                clock.clone(),
                settings,
                declarations.workflows,
                keys.clone(),
                limits,
                log.path().join(HPCWAAS_WORK_DIR),
            )
            .await?;
            if let Some(listener) = listeners.hpcwaas.take() {
                hpcwaas_address = Some(listener.local_addr()?);
                own_listeners.push((Face::Hpcwaas, listener, hpcwaas_tls.clone()));
            }
            faces.hpcwaas = Some(web::Data::new(http::hpcwaas::Hpcwaas {
                executions,
                keys,
                log: log.clone(),
                auth: auth.clone(),
                access: section.auth,
                max_body: (section.max_body_kb * 1024) as usize,
            }));
        }

        let mut gros_agent_address = None;
        if let (true, Some(secrets)) = (config.gros.enabled, secrets) {
            let section = &config.gros;
            let gros = crate::actors::gros::Gros::start(
                log.clone(),
                clock.clone(),
                settings,
                secrets,
                declarations.gros,
            )
            .await?;
            let face = web::Data::new(http::gros::GrosFace {
                gros,
                max_body: (section.max_body_kb * 1024) as usize,
                local: declarations.gros_agent,
                host: (!section.agent.host.is_empty()).then(|| section.agent.host.clone()),
            });
            if let Some(listener) = listeners.gros_agent.take() {
                gros_agent_address = Some(listener.local_addr()?);
                gros_servers.push(http::gros::serve_agent(listener, face.clone(), listening)?);
            }
            faces.gros = Some(face);
        }

        let guard = Guard {
            auth,
            api: config.auth.api,
        };
        let state = || HttpState {
            sse_keep_alive,
            log: log.clone(),
            guard: guard.clone(),
            faces: faces.clone(),
        };
        let main = listeners.main;
        let main_address = main.local_addr()?;
        let mut servers = vec![http::serve(
            main,
            state(),
            Serves::Everything,
            tls,
            listening,
        )?];
        servers.extend(gros_servers);
        for (face, listener, tls) in own_listeners {
            servers.push(http::serve(
                listener,
                state(),
                Serves::Only(face),
                tls,
                listening,
            )?);
        }
        Ok(Application {
            addresses: Addresses {
                main: main_address,
                partisci: partisci_address,
                patrowl: patrowl_address,
                hpcwaas: hpcwaas_address,
                gros_agent: gros_agent_address,
            },
            servers,
            tasks,
            udp,
            log: log.clone(),
        })
    }

    /// Handles to stop the servers (gracefully: in-flight requests finish).
    pub fn handles(&self) -> Vec<ServerHandle> {
        self.servers.iter().map(Server::handle).collect()
    }

    /// Serves until every server has stopped through its handle, then stops the background
    /// tasks.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `stop` resolves (to the reason, for the log) or every server has stopped
    /// through its handle. Stopping is graceful: followers (long polls, event streams) are
    /// released at once, the listeners close, in-flight requests finish (for at most 30 s),
    /// then the background tasks stop.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = &'static str>,
    ) -> anyhow::Result<()> {
        let handles = self.handles();
        let servers = futures_util::future::join_all(std::mem::take(&mut self.servers));
        tokio::pin!(servers);
        let finished = tokio::select! {
            finished = &mut servers => finished,
            reason = stop => {
                tracing::info!(reason, "stopping: no new connections, in-flight requests finish");
                self.log.release_followers();
                // The command is sent at once; the servers carry it out as they are polled below.
                for handle in &handles {
                    drop(handle.stop(true));
                }
                servers.await
            }
        };
        if let Some(mut udp) = self.udp.take() {
            tokio::task::spawn_blocking(move || udp.stop()).await?;
        }
        for task in &self.tasks {
            task.abort();
        }
        for result in finished {
            result?;
        }
        Ok(())
    }
}

/// Resolves on the first SIGTERM or SIGINT, to its name. The handlers are installed when this
/// is called, so call it before listening: a signal that comes early is not lost.
pub fn termination() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        }
    })
}

/// Starts the server on the real clock, for `annals serve`.
pub async fn build(
    config: &Config,
    declarations: Declarations,
    log: EventLog,
) -> anyhow::Result<Application> {
    Application::build_with(config, declarations, log, Arc::new(SystemClock)).await
}

/// Every socket the configuration listens on, bound at once.
struct Listeners {
    main: TcpListener,
    partisci: Option<(TcpListener, std::net::UdpSocket)>,
    patrowl: Option<TcpListener>,
    hpcwaas: Option<TcpListener>,
    gros_agent: Option<TcpListener>,
}

impl Listeners {
    fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let [partisci, patrowl, hpcwaas, gros_agent] = own_listens(config);
        Ok(Listeners {
            main: bind(&config.http.listen)?,
            partisci: partisci.map(bind_tcp_and_udp).transpose()?,
            patrowl: patrowl.map(bind).transpose()?,
            hpcwaas: hpcwaas.map(bind).transpose()?,
            gros_agent: gros_agent.map(bind).transpose()?,
        })
    }
}

/// The address of each face's own listener, when its face is enabled and it has one: Partisci,
/// PatrOwl, HPCWaaS and the GROS local agent, in that order.
fn own_listens(config: &Config) -> [Option<&str>; 4] {
    fn own(enabled: bool, listen: &str) -> Option<&str> {
        (enabled && !listen.is_empty()).then_some(listen)
    }
    [
        own(config.partisci.enabled, &config.partisci.listen),
        own(config.patrowl.enabled, &config.patrowl.listen),
        own(config.hpcwaas.enabled, &config.hpcwaas.listen),
        own(
            config.gros.enabled && config.gros.agent.enabled,
            &config.gros.agent.listen,
        ),
    ]
}

/// A TCP listener on `listen`, or an error naming the address.
fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))
}

/// A TCP listener and a UDP socket on the same port, as Partisci serves both. With port 0,
/// the UDP socket takes the port the TCP listener was given.
fn bind_tcp_and_udp(listen: &str) -> anyhow::Result<(TcpListener, std::net::UdpSocket)> {
    let listener = bind(listen)?;
    let address = listener.local_addr()?;
    let socket = std::net::UdpSocket::bind(address)
        .with_context(|| format!("cannot receive UDP on {address}"))?;
    Ok((listener, socket))
}

fn tls_config(
    section: &str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> anyhow::Result<Option<rustls::ServerConfig>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(http::tls::server_config(cert, key)?)),
        (None, None) => Ok(None),
        _ => bail!("[{section}] tls_cert and tls_key go together: give both or neither"),
    }
}

/// Where workflow steps get their scratch directories, under the data directory; emptied at
/// every start.
pub const HPCWAAS_WORK_DIR: &str = "hpcwaas-work";

/// Opens the secret store of the data directory, with the master key from `ANNALS_MASTER_KEY`
/// or the key file. Blocking, at start-up only.
fn open_secrets(data: &std::path::Path) -> anyhow::Result<Arc<crate::secrets::SecretStore>> {
    let source = crate::secrets::KeySource::from_env()?;
    Ok(Arc::new(crate::secrets::SecretStore::open(data, source)?))
}

/// Every address the configuration listens on, for the check that refuses to expose annals
/// without accounts.
pub fn listen_addresses(config: &Config) -> Vec<&str> {
    std::iter::once(config.http.listen.as_str())
        .chain(own_listens(config).into_iter().flatten())
        .collect()
}
