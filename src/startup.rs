//! Starting the server from a configuration: binds every listener (the main one and each
//! face's own), starts the entity directories, read models and background tasks of each face,
//! settles work left running by the previous process, and runs until SIGINT or SIGTERM. Tests
//! use it to run the real server in-process on port 0. It decides nothing about entities.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use anyhow::Context as _;

use crate::auth::Auth;
use crate::config::Config;
use crate::declarations::Declarations;
use crate::events::EventLog;
use crate::faces::{self, Bound, OtherListeners, Own, Start, Stores, FACES};
use crate::http::{self, Faces, Guard, HttpState, Serves};
use crate::runtime::job::Job;
use crate::runtime::{reconcile, Clock, Entities, NoEffects, SystemClock};

/// How long start-up reconciliation may take before the server refuses to start.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the running server listens.
#[derive(Clone, Debug)]
pub struct Addresses {
    pub main: SocketAddr,
    /// Each running face's own listener, by the face's name, in the order of [`FACES`], after
    /// the listeners faces serve beside their own (`faces::GROS_SSH`).
    pub own: Vec<(&'static str, SocketAddr)>,
}

impl Addresses {
    /// The own listener of the face named `face`, when it has one.
    pub fn of(&self, face: &str) -> Option<SocketAddr> {
        self.own
            .iter()
            .find(|(name, _)| *name == face)
            .map(|(_, address)| *address)
    }
}

/// A server that is listening. Dropping it without [`Application::run`] stops nothing; the
/// actix system it was built on owns the servers.
pub struct Application {
    pub addresses: Addresses,
    servers: Vec<Server>,
    /// Background work that ends with the servers: retention sweeps.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What the faces stop, blocking, once the servers have stopped (the Partisci UDP receiver).
    on_stop: Vec<Box<dyn FnOnce() + Send>>,
    /// The log, whose followers are released when the servers stop.
    log: EventLog,
    /// The arbiters the entities run on, stopped last.
    shards: crate::runtime::Shards,
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
        crate::metrics::register_kinds(crate::domain::kinds::KINDS);
        let auth = Arc::new(
            Auth::new(config.accounts.clone())
                .map_err(|reason| anyhow::anyhow!("the accounts are not valid: {reason}"))?,
        );
        let listening = http::Listening {
            body_timeout: Duration::from_secs(config.http.body_timeout_s),
            request_log: config.http.request_log,
        };
        let tls = faces::tls_config("http", &config.http.tls_cert, &config.http.tls_key)?;
        let settings = crate::runtime::Settings::from(&config.actors);
        for warning in &declarations.warnings {
            tracing::warn!("{warning}; start-up goes on");
        }
        // Every listener is bound before anything starts: a port in use ends start-up before
        // any actor runs or any event is written.
        let main = bind(&config.http.listen)?;
        let mut own = Vec::new();
        for face in FACES {
            if let Some(listen) = face.section(config).own_listen() {
                own.push((face.name(), bind_own(listen, face.own_udp())?));
            }
        }
        let others = OtherListeners::bind(config)?;
        // The shards this node runs the effects of, before any kind settles its own.
        log.hold_leases(Duration::from_secs(config.log.postgres_lease_s))
            .await
            .context("cannot lease this node's shards of entities")?;
        let held = log.ownership().held();
        let shards = crate::runtime::Shards::start(config.actors.threads);
        let cluster = crate::runtime::Cluster::default();
        let jobs = Entities::<Job>::start_on(
            &shards,
            log.clone(),
            clock.clone(),
            Arc::new(NoEffects),
            settings,
        );
        let running = reconcile::track_in_progress::<Job>(&log)?;
        let settled = reconcile::reconcile(&log, &jobs, &running, RECONCILE_TIMEOUT).await?;
        if !settled.is_empty() {
            tracing::info!(count = settled.len(), "settled jobs left running");
        }

        let stores = Stores::new(&log);
        let mut running = Faces::describing(faces::described());
        let mut servers = Vec::new();
        let mut own_routes = Vec::new();
        let mut own_addresses = others.addresses()?;
        let mut tasks = Vec::new();
        let mut on_stop = Vec::new();
        for face in FACES
            .into_iter()
            .filter(|face| face.section(config).enabled())
        {
            let bound = own
                .iter()
                .position(|(name, _)| *name == face.name())
                .map(|at| own.remove(at).1);
            if let Some(bound) = &bound {
                own_addresses.push((face.name(), bound.tcp.local_addr()?));
            }
            let started = face
                .start(Start {
                    config,
                    declarations: &declarations,
                    log: &log,
                    clock: &clock,
                    settings,
                    shards: &shards,
                    cluster: &cluster,
                    auth: &auth,
                    stores: &stores,
                    listening,
                    own: bound,
                    others: &others,
                })
                .await?;
            match started.own {
                Some(Own::Routes { listener, tls }) => own_routes.push((face, listener, tls)),
                Some(Own::Server(server)) => servers.push(server),
                None => {}
            }
            tasks.extend(started.tasks);
            on_stop.extend(started.on_stop);
            running.add(face, started.data);
        }

        tasks.extend(cluster.start(&log, held));

        let state = || HttpState {
            sse_keep_alive: Duration::from_secs(config.http.sse_keep_alive_s),
            log: log.clone(),
            guard: Guard {
                auth: auth.clone(),
                api: config.auth.api,
            },
            faces: running.clone(),
        };
        let main_address = main.local_addr()?;
        servers.insert(
            0,
            http::serve(main, state(), Serves::Everything, tls, listening)?,
        );
        for (face, listener, tls) in own_routes {
            servers.push(http::serve(
                listener,
                state(),
                Serves::Only(face.name()),
                tls.map(|tls| *tls),
                listening,
            )?);
        }
        Ok(Application {
            addresses: Addresses {
                main: main_address,
                own: own_addresses,
            },
            servers,
            tasks,
            on_stop,
            log: log.clone(),
            shards,
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
        for stop in std::mem::take(&mut self.on_stop) {
            tokio::task::spawn_blocking(stop).await?;
        }
        for task in &self.tasks {
            task.abort();
        }
        self.shards.stop();
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

/// A TCP listener on `listen`, or an error naming the address.
fn bind(listen: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))
}

/// A face's own listener, with a UDP socket on the same port when the face receives datagrams
/// (with port 0, the UDP socket takes the port the TCP listener was given).
fn bind_own(listen: &str, udp: bool) -> anyhow::Result<Bound> {
    // With port 0 the system picks a TCP port whose UDP twin another program may hold: pick
    // again, a few times. A port given in the configuration is tried once.
    const ATTEMPTS: usize = 16;
    let mut attempt = 1;
    loop {
        let tcp = bind(listen)?;
        if !udp {
            return Ok(Bound { tcp, udp: None });
        }
        let address = tcp.local_addr()?;
        match std::net::UdpSocket::bind(address) {
            Ok(socket) => {
                return Ok(Bound {
                    tcp,
                    udp: Some(socket),
                })
            }
            Err(error)
                if error.kind() == std::io::ErrorKind::AddrInUse
                    && listen.ends_with(":0")
                    && attempt < ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(error) => {
                return Err(error).with_context(|| format!("cannot receive UDP on {address}"))
            }
        }
    }
}

/// Every address the configuration listens on, for the check that refuses to expose annals
/// without accounts.
pub fn listen_addresses(config: &Config) -> Vec<&str> {
    std::iter::once(config.http.listen.as_str())
        .chain(
            FACES
                .into_iter()
                .filter_map(|face| face.section(config).own_listen()),
        )
        .collect()
}

/// Turns transparent huge pages off for this process, as the `annals` binary does first thing.
/// mimalloc asks for huge pages on its arenas, then hands idle 64 KiB parts of them back to the
/// system and takes them again: each time, the kernel zeroes a whole 2 MiB page. Under a steady
/// load of small requests that zeroing took a fifth of the server's time (`docs/benchmarks.md`,
/// the inventory face). It only changes how memory is backed, never what the program does.
pub fn without_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and sets a flag of this process only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
