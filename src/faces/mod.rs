//! The protocol faces, each described once by the [`Face`] trait, and [`FACES`], the one list
//! of them. Start-up, the HTTP server, the OpenAPI document and the 404 of unknown paths all
//! read that list; nothing else names the faces one by one. A face's module here only wires:
//! its rules live in `domain`, its handlers in `http`.
//!
//! Adding a face: its entities and services, its handlers and OpenAPI piece, its configuration
//! section, then one module here: `face_common!` implements [`Face`] for it, and its own
//! `launch` starts it; and one line in [`FACES`].

mod gros;
pub mod gros_ssh;
mod hpcwaas;
mod partisci;
mod patrowl;
mod refstack;

use std::net::{TcpListener, UdpSocket};
use std::sync::{Arc, OnceLock};

use actix_web::dev::Server;
use actix_web::web;
use futures_util::future::LocalBoxFuture;

use crate::auth::Auth;
use crate::blobs::BlobStore;
use crate::config::{Config, FaceSection};
use crate::declarations::Declarations;
use crate::domain::Core;
use crate::events::EventLog;
use crate::http::{AppData, Listening, Routed, Router, Served};
use crate::runtime::{Clock, Settings};
use crate::secrets::SecretStore;

/// Every face, in the order they start, are routed and appear in the OpenAPI document.
pub static FACES: [&dyn Face; 5] = [
    &partisci::Partisci,
    &hpcwaas::Hpcwaas,
    &refstack::Refstack,
    &patrowl::Patrowl,
    &gros::Gros,
];

/// One protocol face: how it starts from the configuration; what it serves and how it answers a
/// path it does not know is its [`Served`] part, which the HTTP server knows it by.
pub trait Face: Served {
    /// The face's section of the configuration: whether it runs, its own listener, its
    /// largest body.
    fn section<'c>(&self, config: &'c Config) -> &'c dyn FaceSection;

    /// Whether its own listener also receives UDP datagrams on the same port.
    fn own_udp(&self) -> bool;

    /// Starts the face's entities, read models and background work, and says what its handlers
    /// share and how its own listener (already bound, in `start.own`) is served.
    fn start<'a>(&'a self, start: Start<'a>) -> LocalBoxFuture<'a, anyhow::Result<Started>>;
}

/// Every face, as the HTTP server knows them: for the OpenAPI document, which describes every
/// face whether it runs or not.
pub fn described() -> Vec<&'static dyn Served> {
    FACES.into_iter().map(|face| face as &dyn Served).collect()
}

/// Every route of the main listener with every face running: the same calls as the listener's
/// own routing, on an app that is then dropped.
pub fn route_table() -> Vec<Routed> {
    let mut table = Vec::new();
    let _ = actix_web::App::new().configure(|config| {
        let mut router = Router::new(config, &mut table);
        for face in FACES {
            face.routes(&mut router);
        }
        crate::http::routes(&mut router);
    });
    table
}

/// What a face starts from.
pub struct Start<'a> {
    pub config: &'a Config,
    pub declarations: &'a Declarations,
    pub log: &'a EventLog,
    pub clock: &'a Arc<dyn Clock>,
    pub settings: Settings,
    /// The arbiters entity actors are spread over.
    pub shards: &'a crate::runtime::Shards,
    /// The kinds whose effects follow the shards this node holds.
    pub cluster: &'a crate::runtime::Cluster,
    pub auth: &'a Arc<Auth>,
    pub stores: &'a Stores,
    pub listening: Listening,
    /// The face's own listener, bound before anything started, when it has one.
    pub own: Option<Bound>,
    /// The listeners faces serve beside their own, bound before anything started.
    pub others: &'a OtherListeners,
}

impl Start<'_> {
    /// What the face's handlers check callers with: the accounts, the face's `access` rule,
    /// and the largest body they read.
    pub fn gate(&self, access: crate::auth::Access, max_body: usize) -> crate::http::Gate {
        crate::http::Gate {
            auth: self.auth.clone(),
            access,
            max_body,
        }
    }

    /// What the face's services start on.
    pub fn core(&self) -> Core {
        Core {
            log: self.log.clone(),
            clock: self.clock.clone(),
            settings: self.settings,
            shards: self.shards.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// Listeners a face serves beside its own HTTP one (the GROS SSH listener), by name: bound
/// with every other listener before anything starts, and taken by the face that serves each.
pub struct OtherListeners(std::sync::Mutex<Vec<(&'static str, TcpListener)>>);

/// The name of the GROS face's SSH listener among [`OtherListeners`] and the addresses.
pub const GROS_SSH: &str = "gros_ssh";

impl OtherListeners {
    /// Binds every listener the configuration gives beside the faces' own.
    pub fn bind(config: &Config) -> anyhow::Result<OtherListeners> {
        let mut bound = Vec::new();
        if let Some(listen) = config.gros.ssh.listening(config.gros.enabled) {
            let listener = TcpListener::bind(listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
            bound.push((GROS_SSH, listener));
        }
        Ok(OtherListeners(std::sync::Mutex::new(bound)))
    }

    /// Where each listens.
    pub fn addresses(&self) -> anyhow::Result<Vec<(&'static str, std::net::SocketAddr)>> {
        let bound = self.0.lock().unwrap_or_else(|e| e.into_inner());
        bound
            .iter()
            .map(|(name, listener)| Ok((*name, listener.local_addr()?)))
            .collect()
    }

    /// The listener named `name`, for the face that serves it.
    pub fn take(&self, name: &str) -> Option<TcpListener> {
        let mut bound = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = bound.iter().position(|(bound, _)| *bound == name)?;
        Some(bound.remove(at).1)
    }
}

/// A face's own listener, bound.
pub struct Bound {
    pub tcp: TcpListener,
    /// The UDP socket on the same port, for a face that receives datagrams.
    pub udp: Option<UdpSocket>,
}

/// A started face.
pub struct Started {
    /// Adds what the face's handlers share to an app; called for each listener (and each of
    /// its workers) that serves the face.
    pub data: AppData,
    /// How the face's own listener is served, when it has one.
    pub own: Option<Own>,
    /// Background work that ends with the servers.
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
    /// What must be stopped, blocking, once the servers have stopped.
    pub on_stop: Vec<Box<dyn FnOnce() + Send>>,
}

impl Started {
    /// A face whose handlers share `data`, with nothing else to start.
    pub fn sharing<T: Send + Sync + 'static>(data: web::Data<T>) -> Started {
        Started {
            data: Arc::new(move |config: &mut web::ServiceConfig| {
                config.app_data(data.clone());
            }),
            own: None,
            tasks: Vec::new(),
            on_stop: Vec::new(),
        }
    }
}

/// How a face's own listener is served.
pub enum Own {
    /// The face's routes, as on the main listener, over TLS when configured.
    Routes {
        listener: TcpListener,
        tls: Option<Box<rustls::ServerConfig>>,
    },
    /// A server of the face's own making.
    Server(Server),
}

/// The stores next to the log that several faces share, each opened at most once, by the first
/// face that asks for it.
pub struct Stores {
    data: std::path::PathBuf,
    /// Where the nodes of a PostgreSQL log share blobs and secrets.
    shared: Option<crate::events::SharedFiles>,
    secrets: OnceLock<Arc<SecretStore>>,
    blobs: OnceLock<BlobStore>,
}

impl Stores {
    pub fn new(log: &EventLog) -> Stores {
        Stores {
            data: log.path().to_path_buf(),
            shared: log.shared_files(),
            secrets: OnceLock::new(),
            blobs: OnceLock::new(),
        }
    }

    /// The secret store of the data directory, with the master key from `ANNALS_MASTER_KEY` or
    /// the key file. Blocking, at start-up only.
    pub fn secrets(&self) -> anyhow::Result<Arc<SecretStore>> {
        if let Some(secrets) = self.secrets.get() {
            return Ok(secrets.clone());
        }
        let source = crate::secrets::KeySource::from_env()?;
        let opened =
            Arc::new(SecretStore::open(&self.data, source)?.shared_by_nodes(self.shared.clone())?);
        Ok(self.secrets.get_or_init(|| opened).clone())
    }

    /// The blob store of the data directory.
    pub fn blobs(&self) -> anyhow::Result<BlobStore> {
        if let Some(blobs) = self.blobs.get() {
            return Ok(blobs.clone());
        }
        let opened = BlobStore::open(&self.data)?.shared_by_nodes(self.shared.clone())?;
        Ok(self.blobs.get_or_init(|| opened).clone())
    }
}

/// What every face writes alike: its [`Served`] part and its [`Face`] impl. A face's name is
/// also the name of its configuration section and of its module under `http`, so from that name
/// come its routes, its OpenAPI piece (`$api` under the module's `openapi`) and its section; the
/// paths it owns and its `404` are given. The face's own `async fn launch(start, section)` starts
/// it: `face_common!(Type: name, Api, [prefixes], |path| not_found)`, or `name udp` for a face
/// whose own listener also receives UDP datagrams.
macro_rules! face_common {
    ($ty:ident: $face:ident udp, $($rest:tt)*) => {
        face_common!(@ $ty: $face, true, $($rest)*);
    };
    ($ty:ident: $face:ident, $($rest:tt)*) => {
        face_common!(@ $ty: $face, false, $($rest)*);
    };
    (@ $ty:ident: $face:ident, $udp:literal, $api:ident, $prefixes:expr, |$path:ident| $not_found:expr) => {
        impl crate::http::Served for $ty {
            fn name(&self) -> &'static str {
                stringify!($face)
            }

            fn routes(&self, router: &mut crate::http::Router) {
                crate::http::$face::routes(router)
            }

            fn openapi(&self) -> utoipa::openapi::OpenApi {
                <crate::http::$face::openapi::$api as utoipa::OpenApi>::openapi()
            }

            fn prefixes(&self) -> &'static [&'static str] {
                &$prefixes
            }

            fn not_found(&self, $path: &str) -> actix_web::HttpResponse {
                $not_found
            }
        }

        impl crate::faces::Face for $ty {
            fn section<'c>(
                &self,
                config: &'c crate::config::Config,
            ) -> &'c dyn crate::config::FaceSection {
                &config.$face
            }

            fn own_udp(&self) -> bool {
                $udp
            }

            fn start<'a>(
                &'a self,
                start: crate::faces::Start<'a>,
            ) -> futures_util::future::LocalBoxFuture<'a, anyhow::Result<crate::faces::Started>> {
                let config = start.config;
                Box::pin($ty::launch(start, &config.$face))
            }
        }
    };
}
pub(crate) use face_common;

/// A TLS configuration from a section's `tls_cert` and `tls_key`, when it gives them.
pub fn tls_config(
    section: &str,
    cert: &Option<std::path::PathBuf>,
    key: &Option<std::path::PathBuf>,
) -> anyhow::Result<Option<rustls::ServerConfig>> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(crate::http::tls::server_config(cert, key)?)),
        (None, None) => Ok(None),
        _ => anyhow::bail!("[{section}] tls_cert and tls_key go together: give both or neither"),
    }
}
