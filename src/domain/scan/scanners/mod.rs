//! The built-in scanners of the scan engine face: `tcp` (a connect scan), `http` (security
//! headers and banners), `nmap` (the real nmap, its XML read into the nmap engine's findings)
//! and `command` (an external program speaking JSON lines). A scanner
//! takes a scan's assets and options, reports progress and findings on a channel as it finds
//! them, and ends with its raw outputs for the report. It knows nothing of entities, events
//! or HTTP routes; the scan's driver turns what it reports into commands. Each gets its
//! settings parsed ([`Scanner`]), never the configuration file's engine entry.

pub mod command;
pub mod http;
pub mod nmap;
pub mod tcp;
mod values;

use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use crate::domain::scan::Asset;
pub use crate::domain::scan::Progress;
use crate::process::supervised::{Offsets, Supervision};
use crate::process::{Ending, Exit, Line, Running, Stream};
pub use values::{
    asset_values, CommandSettings, Ended, Follow, HttpSettings, Job, NmapSettings, Reported,
    TcpSettings,
};

/// An engine's scanner with its settings, parsed from its declaration at start-up. What
/// differs between scanners is decided here, by one `match` per question.
#[derive(Clone, Debug, PartialEq)]
pub enum Scanner {
    Tcp(TcpSettings),
    Http(HttpSettings),
    Nmap(NmapSettings),
    Command(CommandSettings),
}

impl Scanner {
    /// The scanner's name, as a declaration and the engine's `info` write it.
    pub fn name(&self) -> &'static str {
        match self {
            Scanner::Tcp(_) => "tcp",
            Scanner::Http(_) => "http",
            Scanner::Nmap(_) => "nmap",
            Scanner::Command(_) => "command",
        }
    }

    /// The program a `command` or `nmap` scanner runs under a supervisor; none for the
    /// built-in ones.
    pub fn program(&self) -> Option<&str> {
        match self {
            Scanner::Command(settings) => Some(&settings.program),
            Scanner::Nmap(settings) => Some(&settings.program),
            Scanner::Tcp(_) | Scanner::Http(_) => None,
        }
    }

    /// Checks options that every scan of the engine gets, at start-up: if the scanner refuses
    /// them, it would refuse every scan.
    pub fn check_options(&self, options: &Map<String, Value>) -> Result<(), String> {
        match self {
            Scanner::Tcp(_) => tcp::check_options(options),
            Scanner::Nmap(_) => nmap::check_options(options),
            Scanner::Http(_) | Scanner::Command(_) => Ok(()),
        }
    }

    /// Checks what a scan asks of the scanner before the scan is accepted (host names that are
    /// one line, ports that parse, ranges within bounds, URLs that are URLs, options the
    /// scanner does), so that a bad request is refused with its reason.
    pub fn check(&self, assets: &[Asset], options: &Map<String, Value>) -> Result<(), String> {
        check_hosts(assets)?;
        match self {
            Scanner::Tcp(settings) => tcp::check(settings, assets, options),
            Scanner::Http(_) => http::check(assets),
            Scanner::Nmap(settings) => nmap::check(settings, assets, options),
            Scanner::Command(_) => Ok(()),
        }
    }

    /// Runs `job` until it ends or `stop` turns true. A scanner that starts a program under a
    /// supervisor says where on `supervised` as soon as it runs; the others drop it at once.
    /// Must run on an actix (local) runtime: the `http` scanner's client is not `Send`.
    pub async fn run(
        &self,
        job: Job,
        progress: mpsc::Sender<Reported>,
        stop: watch::Receiver<bool>,
        supervised: oneshot::Sender<Supervision>,
    ) -> Ended {
        match self {
            Scanner::Tcp(settings) => {
                drop(supervised);
                until_stopped(tcp::scan(settings, &job, &progress), stop).await
            }
            Scanner::Http(settings) => {
                drop(supervised);
                until_stopped(http::scan(settings, &job, &progress), stop).await
            }
            // The program is stopped by the scanner itself, so that it gets SIGTERM and its
            // grace.
            Scanner::Command(settings) => {
                command::scan(settings, &job, &progress, stop, supervised).await
            }
            Scanner::Nmap(settings) => {
                nmap::scan(settings, &job, &progress, stop, supervised).await
            }
        }
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
    use crate::domain::scan::Datatype;
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

/// The next line of a supervised program's standard output, or `None` once its output ended.
/// A line of standard error moves `read.stderr` on, and the last one that is not blank is kept
/// in `last_error_line`, for the reason of a failed exit. A stop asked on `stop` cancels the
/// run once (`stopping` then says so) and reading goes on to the run's end.
async fn next_output_line(
    running: &mut Running,
    stop: &mut watch::Receiver<bool>,
    stopping: &mut bool,
    read: &mut Offsets,
    last_error_line: &mut String,
) -> Option<Line> {
    let canceller = running.canceller();
    loop {
        let line = tokio::select! {
            line = running.next_line() => line?,
            _ = stop.wait_for(|stopped| *stopped), if !*stopping => {
                *stopping = true;
                canceller.cancel();
                continue;
            }
        };
        if line.stream != Stream::Stderr {
            return Some(line);
        }
        read.stderr = line.offset;
        if !line.text.trim().is_empty() {
            *last_error_line = line.text;
        }
    }
}

/// What the end of a supervised program means for its scan: `Ok` for an exit with code 0,
/// else why it failed, naming the program as `program` says ("the command", "nmap").
fn program_ended(
    program: &str,
    ending: Ending,
    exit: Exit,
    timeout: Duration,
    last_error_line: &str,
) -> Result<(), String> {
    match (ending, exit) {
        (Ending::Cancelled, _) => Err("stopped".into()),
        (Ending::Lost, _) => Err(format!(
            "{program} was interrupted: its supervisor ended without recording its end"
        )),
        (Ending::TimedOut, _) => Err(format!(
            "{program} timed out after {} s and was stopped",
            timeout.as_secs()
        )),
        (Ending::Finished, Exit::Code(0)) => Ok(()),
        (Ending::Finished, exit) => {
            let how = match exit {
                Exit::Code(code) => format!("exited with code {code}"),
                Exit::Signal(signal) => format!("was killed by signal {signal}"),
                Exit::Unknown => "ended with an unknown status".into(),
            };
            Err(if last_error_line.is_empty() {
                format!("{program} {how}")
            } else {
                format!("{program} {how}: {last_error_line}")
            })
        }
    }
}
