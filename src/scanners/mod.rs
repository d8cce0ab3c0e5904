//! The built-in scanners of the scan engine face: `tcp` (a connect scan), `http` (security
//! headers and banners) and `command` (an external program speaking JSON lines). A scanner
//! takes a scan's assets and options, reports progress and findings on a channel as it finds
//! them, and ends with its raw outputs for the report. It knows nothing of entities, events
//! or HTTP routes; the scan's driver turns what it reports into commands.

pub mod command;
pub mod http;
pub mod tcp;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use crate::actors::scan::Asset;
pub use crate::actors::scan::Progress;
use crate::config::{EngineConfig, ScannerKind};

/// How a scanner ended: `Err` holds why the scan failed; `raw` its outputs, by name in the
/// report's archive.
#[derive(Debug)]
pub struct Ended {
    pub result: Result<(), String>,
    pub raw: Vec<(String, Vec<u8>)>,
}

/// One scan's work.
#[derive(Clone, Debug)]
pub struct Job {
    pub engine: String,
    pub scan_id: String,
    pub assets: Vec<Asset>,
    /// The options in effect.
    pub options: Map<String, Value>,
}

/// Checks what a scan asks of a scanner before the scan is accepted (host names that are
/// one line, ports that parse, ranges within bounds, URLs that are URLs, options the scanner
/// does), so that a bad request is refused with its reason.
pub fn check(
    engine: &EngineConfig,
    assets: &[Asset],
    options: &Map<String, Value>,
) -> Result<(), String> {
    check_hosts(assets)?;
    match engine.scanner {
        ScannerKind::Tcp => tcp::check(engine, assets, options),
        ScannerKind::Http => http::check(assets),
        ScannerKind::Command => Ok(()),
    }
}

/// The characters no asset naming a host may hold, whatever the scanner: tools take hosts
/// one per line (nmap's `-iL` file, which Patrowl's engines write), so a line break would
/// smuggle another host or argument in, and NUL ends a C string early.
pub const FORBIDDEN_IN_HOSTS: [char; 3] = ['\r', '\n', '\0'];

/// Refuses an asset naming a host (`ip`, `ip-range`, `ip-subnet`, `fqdn`, `domain`, `url`)
/// that holds a character of [`FORBIDDEN_IN_HOSTS`]: one check for every scanner, `command`
/// programs included.
pub fn check_hosts(assets: &[Asset]) -> Result<(), String> {
    use crate::actors::scan::Datatype;
    for asset in assets {
        let host = matches!(
            asset.datatype,
            Datatype::Ip
                | Datatype::IpRange
                | Datatype::IpSubnet
                | Datatype::Fqdn
                | Datatype::Domain
                | Datatype::Url
        );
        if host && asset.value.contains(FORBIDDEN_IN_HOSTS) {
            return Err(format!(
                "asset {:?} ({}) holds a carriage return, line feed or NUL, which no host \
                 name or address holds",
                asset.value,
                asset.datatype.as_str()
            ));
        }
    }
    Ok(())
}

/// Runs `job` on `engine`'s scanner until it ends or `stop` turns true. Must run on an actix
/// (local) runtime: the `http` scanner's client is not `Send`.
pub async fn run(
    engine: &EngineConfig,
    job: Job,
    progress: mpsc::Sender<Progress>,
    stop: watch::Receiver<bool>,
) -> Ended {
    match engine.scanner {
        ScannerKind::Tcp => until_stopped(tcp::scan(engine, &job, &progress), stop).await,
        ScannerKind::Http => until_stopped(http::scan(engine, &job, &progress), stop).await,
        // The program is stopped by the scanner itself, so that it gets SIGTERM and its grace.
        ScannerKind::Command => command::scan(engine, &job, &progress, stop).await,
    }
}

/// Runs `work`, dropping it (which closes its sockets) when `stop` turns true.
async fn until_stopped(
    work: impl std::future::Future<Output = Ended>,
    mut stop: watch::Receiver<bool>,
) -> Ended {
    tokio::select! {
        ended = work => ended,
        _ = stop.wait_for(|stopped| *stopped) => Ended {
            result: Err("stopped".into()),
            raw: Vec::new(),
        },
    }
}

/// The values of every asset, for a finding about all of them.
pub fn asset_values(assets: &[Asset]) -> Vec<String> {
    assets.iter().map(|asset| asset.value.clone()).collect()
}
