//! What the scanners share: a scan's work as they receive it, each scanner's parsed settings, what
//! a scanner reports and how a scanner ends. It imports no scanner.

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

use crate::domain::scan::{Asset, Progress};
use crate::process::supervised::{Offsets, Supervision};

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
    /// The run directory of a scanner that runs a program: named after the scan, so that a
    /// restart finds it even before its supervision is recorded.
    pub run_dir: std::path::PathBuf,
    /// The program a previous process of annals started for the scan, which runs on: followed
    /// instead of started.
    pub follow: Option<Follow>,
}

/// A scan's program running under its supervisor, to follow from where its output was
/// recorded.
#[derive(Clone, Debug)]
pub struct Follow {
    pub run: Supervision,
    pub read: Offsets,
}

/// What a scanner reports, with where its program's output goes on after it: recorded
/// together, so that a restart reads on exactly after the last recorded report.
#[derive(Debug)]
pub struct Reported {
    pub progress: Progress,
    /// `None` from a scanner that runs no program.
    pub read: Option<Offsets>,
}

/// Sends one report of a scanner that runs no program; false when no one listens any more (the
/// scan was stopped).
pub async fn report(progress: &mpsc::Sender<Reported>, what: Progress) -> bool {
    let reported = Reported {
        progress: what,
        read: None,
    };
    progress.send(reported).await.is_ok()
}

/// A `tcp` engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TcpSettings {
    /// Connections tried at once; at least 1.
    pub concurrency: usize,
    /// How long a connection may take to open before the port counts as closed.
    pub connect_timeout: Duration,
    /// The most hosts an `ip-range` or `ip-subnet` asset may hold.
    pub max_hosts: usize,
}

/// An `http` engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSettings {
    /// How long a request may take, connection included.
    pub request_timeout: Duration,
}

/// A `command` engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandSettings {
    /// The program, run without a shell: a path, or a name looked for on the server's `PATH`.
    pub program: String,
    pub args: Vec<String>,
    /// How long the program may run before it is stopped and the scan fails; at least 1 s.
    pub timeout: Duration,
    /// How long between SIGTERM and SIGKILL when the program is stopped.
    pub kill_grace: Duration,
}

/// An `nmap` engine's settings.
#[derive(Clone, Debug, PartialEq)]
pub struct NmapSettings {
    /// nmap, run without a shell: a path, or a name looked for on the server's `PATH`.
    pub program: String,
    /// Whether nmap may use raw sockets (SYN and UDP scans, OS detection): `None` when annals
    /// runs as root; `Some(true)` for an nmap given capabilities.
    pub privileged: Option<bool>,
    /// The most hosts an `ip-range` or `ip-subnet` asset may hold.
    pub max_hosts: u128,
    /// How long nmap may run before it is stopped and the scan fails; at least 1 s.
    pub timeout: Duration,
    /// How long between SIGTERM and SIGKILL when nmap is stopped.
    pub kill_grace: Duration,
}

/// The values of every asset, for a finding about all of them.
pub fn asset_values(assets: &[Asset]) -> Vec<String> {
    assets.iter().map(|asset| asset.value.clone()).collect()
}

/// An asset of the given value and type, for the scanners' unit tests.
#[cfg(test)]
pub(super) fn test_asset(value: &str, datatype: crate::domain::scan::Datatype) -> Asset {
    Asset {
        id: "1".into(),
        value: value.into(),
        criticity: "low".into(),
        datatype,
    }
}
