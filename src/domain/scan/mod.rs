//! Scans (the scan engine face's domain): each scan is an entity, one stream per engine, scan
//! id and incarnation (`scan-<engine>-<scan id>`, then `scan-<engine>~<n>-<scan id>` for the
//! n-th use of the same id, see [`entity_id`]), whose events are its request (assets, options, who asked),
//! the start of its work, where its program runs (a `command` scanner's supervised run) and how
//! far its output was read, every asset scanned, every finding as it is found, its end
//! (finished, failed with a reason, stopped) and its cleaning. Nothing here scans, knows of HTTP or reads
//! a clock: the scanners report through commands, and time comes with the command.

pub mod archive;
pub mod read_model;
pub mod scanners;
pub mod service;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::blobs::BlobRef;
use crate::domain::{is_name, string_newtype};
use crate::events::codec::domain_events;
use crate::process::supervised::{Offsets, Supervision};
use crate::runtime::entity::{Ctx, Decision, Entity};
pub use service::{Engines, EnginesError};

/// The longest scan id a client may give, in bytes.
pub const MAX_SCAN_ID_BYTES: usize = 128;
/// The most assets one scan may hold.
pub const MAX_ASSETS: usize = 10_000;
/// The longest asset value, in bytes.
pub const MAX_ASSET_BYTES: usize = 2048;
/// The reason a scan left running by a previous process ends with.
pub const INTERRUPTED: &str = "interrupted by restart";

/// One scan.
pub struct ScanRecord;

/// An engine's name: 1 to 64 lower-case ASCII letters, digits or `_`, so that the stream id
/// `scan-<engine>-<scan id>` splits at its first two dashes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EngineName(String);

impl EngineName {
    pub fn parse(raw: &str) -> Result<EngineName, String> {
        if !is_name(raw, 64, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
        }) {
            return Err(format!(
                "engine name {raw:?} must be 1 to 64 lower-case letters, digits or '_'"
            ));
        }
        Ok(EngineName(raw.to_owned()))
    }
}

string_newtype!(EngineName, String);

impl From<EngineName> for String {
    fn from(name: EngineName) -> String {
        name.0
    }
}

/// A client's scan id: PatrowlManager sends integers, test harnesses strings; both become this
/// text, 1 to [`MAX_SCAN_ID_BYTES`] bytes of printable characters without `/`. Deserializing
/// goes through [`ScanId::parse`] too, so no decoded value escapes the check.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct ScanId(String);

impl ScanId {
    pub fn parse(raw: &str) -> Result<ScanId, String> {
        if raw.is_empty() {
            return Err("scan_id is empty".into());
        }
        if raw.len() > MAX_SCAN_ID_BYTES {
            return Err(format!("scan_id is longer than {MAX_SCAN_ID_BYTES} bytes"));
        }
        if raw.chars().any(|c| c.is_control() || c == '/') {
            return Err("scan_id holds a control character or '/'".into());
        }
        Ok(ScanId(raw.to_owned()))
    }
}

string_newtype!(ScanId, String);

/// The entity id of the `incarnation`-th use (from 1) of scan id `scan_id` on engine `engine`.
///
/// A client may use a scan id again once its scan was cleaned or its report fetched
/// (PatrowlManager's scan id is its database key, and upstream engines forget a scan then).
/// Each use is an entity of its own, so that the history of every earlier one stays whole: the
/// first is `<engine>-<scan id>`, as before ids could be used again (older logs read
/// unchanged), the n-th `<engine>~<n>-<scan id>`. Engine names hold no `~` and the first `-`
/// ends the engine's part, so no two (engine, scan id, incarnation) share an entity id.
pub fn entity_id(engine: &EngineName, scan_id: &ScanId, incarnation: u32) -> String {
    if incarnation <= 1 {
        format!("{}-{}", engine.as_str(), scan_id.as_str())
    } else {
        format!("{}~{incarnation}-{}", engine.as_str(), scan_id.as_str())
    }
}

/// Which use of its scan id a scan's entity id is (see [`entity_id`]); 1 for ids without one.
pub fn incarnation(entity_id: &str) -> u32 {
    entity_id
        .split_once('-')
        .and_then(|(engine, _)| engine.split_once('~'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(1)
}

/// What an asset is, as PatrowlManager names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Datatype {
    Ip,
    IpRange,
    IpSubnet,
    Fqdn,
    Domain,
    Url,
    Keyword,
    Person,
    Organisation,
    Path,
    Application,
}

impl Datatype {
    pub const ALL: [Datatype; 11] = [
        Datatype::Ip,
        Datatype::IpRange,
        Datatype::IpSubnet,
        Datatype::Fqdn,
        Datatype::Domain,
        Datatype::Url,
        Datatype::Keyword,
        Datatype::Person,
        Datatype::Organisation,
        Datatype::Path,
        Datatype::Application,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Datatype::Ip => "ip",
            Datatype::IpRange => "ip-range",
            Datatype::IpSubnet => "ip-subnet",
            Datatype::Fqdn => "fqdn",
            Datatype::Domain => "domain",
            Datatype::Url => "url",
            Datatype::Keyword => "keyword",
            Datatype::Person => "person",
            Datatype::Organisation => "organisation",
            Datatype::Path => "path",
            Datatype::Application => "application",
        }
    }

    pub fn parse(raw: &str) -> Option<Datatype> {
        Datatype::ALL.into_iter().find(|d| d.as_str() == raw)
    }
}

/// One asset to scan, as the client gave it (its id as text, whether it came as a number or
/// a string).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Asset {
    pub id: String,
    pub value: String,
    pub criticity: String,
    pub datatype: Datatype,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    #[default]
    Certain,
    Firm,
    Tentative,
    /// What the nmap engine says of an OS guess.
    Undefined,
}

/// Where a finding is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// What the finding concerns: asset values, or hosts found in them; never empty.
    pub addr: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_id: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_type: Option<String>,
}

/// One finding, as a scanner reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub confidence: Confidence,
    pub title: String,
    pub description: String,
    pub solution: String,
    /// The issue's `type`, such as `port_info`.
    pub kind: String,
    pub target: Target,
    /// Free JSON from the scanner, as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub links: Vec<String>,
    /// References by kind, such as `CPE`: the issue's `metadata.vuln_refs`, which
    /// PatrowlManager tags assets from. Absent from findings recorded before it existed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub vuln_refs: std::collections::BTreeMap<String, Vec<String>>,
}

/// What a finding weighs against a scan's limit of bytes: its text fields.
pub fn finding_bytes(finding: &Finding) -> usize {
    let texts = [
        &finding.title,
        &finding.description,
        &finding.solution,
        &finding.kind,
    ];
    let lists = finding
        .target
        .addr
        .iter()
        .chain(&finding.tags)
        .chain(&finding.links)
        .chain(finding.vuln_refs.values().flatten());
    texts.iter().map(|text| text.len()).sum::<usize>()
        + finding.raw.as_ref().map_or(0, String::len)
        + lists.map(String::len).sum::<usize>()
}

/// A raw output kept for the report: its name in the archive and where its bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawOutput {
    pub name: String,
    pub blob: BlobRef,
}

/// Where a scan is. `Started` until its work begins, `Scanning` while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScanStatus {
    #[default]
    Started,
    Scanning,
    Finished,
    Error,
    Stopped,
}

impl ScanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanStatus::Started => "STARTED",
            ScanStatus::Scanning => "SCANNING",
            ScanStatus::Finished => "FINISHED",
            ScanStatus::Error => "ERROR",
            ScanStatus::Stopped => "STOPPED",
        }
    }

    /// Whether the scan still counts against its engine's concurrent scans.
    pub fn active(self) -> bool {
        matches!(self, ScanStatus::Started | ScanStatus::Scanning)
    }
}

/// A finding as its scan's stream holds it: numbered from 1 in the order found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingRecord {
    pub issue_id: u64,
    pub finding: Finding,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
}

/// What `decide`, the effects and the answers about one scan need. Its findings stay in its
/// stream (one `FindingReported` event each, read when asked for): the state keeps how many
/// there are and what they weigh, so that it, its snapshot and a status read cost the same at
/// 10 findings and at 10,000.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanState {
    /// The request as its event recorded it; `None` until requested.
    pub request: Option<ScanRequested>,
    pub status: ScanStatus,
    /// The asset values scanned so far, in order.
    pub assets_done: Vec<String>,
    /// How many findings were recorded.
    pub findings: u64,
    /// What the recorded findings weigh ([`finding_bytes`]), against the scan's limit.
    pub finding_bytes: u64,
    /// Why the scan failed.
    pub reason: Option<String>,
    pub raw: Vec<RawOutput>,
    pub cleaned: bool,
    #[serde(default, with = "chrono::serde::ts_microseconds_option")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Whether a client fetched the ended scan's report, which frees its scan id for another
    /// scan, as upstream engines forget a scan then.
    #[serde(default)]
    pub report_fetched: bool,
    /// The `command` program running under its supervisor, until the scan ends: what a restart
    /// re-attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<ScanRun>,
}

/// A scan's program running under its supervisor, and how far its output was recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanRun {
    pub supervision: Supervision,
    /// Where each output stream goes on after the last recorded finding.
    pub read: Offsets,
}

impl ScanState {
    /// A scan the face still shows: requested and not cleaned.
    pub fn visible(&self) -> bool {
        self.request.is_some() && !self.cleaned
    }
}

/// What a scanner reports while it runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    Finding(Box<Finding>),
    /// One asset is done.
    AssetDone(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ScanCommand {
    /// Asks for a scan; `allowed` is the engine's allowed asset types.
    Request {
        engine: EngineName,
        scan_id: ScanId,
        assets: Vec<Asset>,
        options: String,
        allowed: Vec<Datatype>,
        by: Option<String>,
    },
    /// The scanner began working.
    Begin,
    /// The scan's program started under its supervisor.
    Supervise {
        run: Supervision,
    },
    /// What the scanner reported since the last record, in its order: recorded in one append.
    /// `read`: where the program's output goes on after these reports, recorded with them.
    Record {
        progress: Vec<Progress>,
        read: Option<Offsets>,
    },
    Finish {
        raw: Vec<RawOutput>,
    },
    Fail {
        reason: String,
        raw: Vec<RawOutput>,
    },
    Stop {
        by: Option<String>,
    },
    /// Removes the scan from the engine's list, stopping it first if it runs.
    Clean {
        by: Option<String>,
    },
    /// Notes that a client fetched the ended scan's report (once: later fetches note nothing).
    RecordReportFetched {
        by: Option<String>,
    },
    /// Settles a scan whose work died with the previous process.
    MarkInterrupted,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanRejection {
    #[error("no assets: a scan needs at least one asset")]
    NoAssets,
    #[error("too many assets: {0} (at most {MAX_ASSETS})")]
    TooManyAssets(usize),
    #[error(
        "asset {value:?} has datatype {datatype}, which this engine does not scan (it scans: {allowed})"
    )]
    DatatypeNotAllowed {
        value: String,
        datatype: &'static str,
        allowed: String,
    },
    #[error(
        "scan id {0:?} is in use on this engine: its scan runs, or ended and its report was not \
         fetched; fetch its report or clean it to use the id again"
    )]
    AlreadyExists(String),
    #[error("no such scan")]
    Unknown,
    #[error("the scan was cleaned")]
    Cleaned,
    #[error("the scan is {}, not running", .0.as_str())]
    NotRunning(ScanStatus),
    #[error("the scan is {}, not ended", .0.as_str())]
    NotEnded(ScanStatus),
}

domain_events! {
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub enum ScanEvent {
        ScanRequested version 1 {
            pub engine: EngineName,
            pub scan_id: ScanId,
            pub assets: Vec<Asset>,
            /// The options in effect (the engine's defaults overlaid by the client's), as JSON text.
            pub options: String,
            pub by: Option<String>,
        },
        ScanBegan version 1 {},
        /// The scan's program runs under a supervisor: where, so that a restart finds it.
        ScanSupervised version 1 {
            pub run: Supervision,
        },
        /// How far the program's output was read: recorded with the reports read up to there.
        ScanOutputRead version 1 {
            pub read: Offsets,
        },
        AssetScanned version 1 {
            pub asset: String,
        },
        FindingReported version 1 {
            pub finding: Finding,
        },
        ScanFinished version 1 {
            pub raw: Vec<RawOutput>,
        },
        ScanFailed version 1 {
            pub reason: String,
            pub raw: Vec<RawOutput>,
        },
        ScanStopped version 1 {
            pub by: Option<String>,
        },
        ScanCleaned version 1 {
            pub by: Option<String>,
        },
        ScanReportFetched version 1 {
            pub by: Option<String>,
        },
    }
}

impl Entity for ScanRecord {
    // 2: the state notes whether the report was fetched. 3: it keeps the running program's
    // supervised run. 4: it counts and weighs the findings instead of keeping them.
    crate::entity_types!("scan" version 4, state ScanState,
        ScanCommand => ScanEvent, rejected ScanRejection);

    fn decide(state: &ScanState, command: &ScanCommand, ctx: &Ctx) -> Decision<Self> {
        let now = ctx.now;
        // Commands of a scan's own work, which only a running scan takes.
        let running = || {
            if state.request.is_none() {
                Err(ScanRejection::Unknown)
            } else if !state.status.active() {
                Err(ScanRejection::NotRunning(state.status))
            } else {
                Ok(())
            }
        };
        let known = || match (&state.request, state.cleaned) {
            (None, _) => Err(ScanRejection::Unknown),
            (Some(_), true) => Err(ScanRejection::Cleaned),
            (Some(_), false) => Ok(()),
        };
        let event = match command {
            ScanCommand::Request {
                engine,
                scan_id,
                assets,
                options,
                allowed,
                by,
            } => {
                if state.request.is_some() {
                    return Err(ScanRejection::AlreadyExists(scan_id.as_str().to_owned()));
                }
                if assets.is_empty() {
                    return Err(ScanRejection::NoAssets);
                }
                if assets.len() > MAX_ASSETS {
                    return Err(ScanRejection::TooManyAssets(assets.len()));
                }
                if let Some(asset) = assets.iter().find(|a| !allowed.contains(&a.datatype)) {
                    return Err(ScanRejection::DatatypeNotAllowed {
                        value: asset.value.clone(),
                        datatype: asset.datatype.as_str(),
                        allowed: allowed
                            .iter()
                            .map(|d| d.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    });
                }
                ScanEvent::ScanRequested(ScanRequested {
                    engine: engine.clone(),
                    scan_id: scan_id.clone(),
                    assets: assets.clone(),
                    options: options.clone(),
                    by: by.clone(),
                    at: now,
                })
            }
            ScanCommand::Begin => {
                running()?;
                if state.status == ScanStatus::Scanning {
                    return Ok(vec![]);
                }
                ScanEvent::ScanBegan(ScanBegan { at: now })
            }
            ScanCommand::Supervise { run } => {
                running()?;
                let run = run.clone();
                ScanEvent::ScanSupervised(ScanSupervised { run, at: now })
            }
            ScanCommand::Record { progress, read } => {
                running()?;
                let mut events: Vec<ScanEvent> = progress
                    .iter()
                    .map(|report| match report {
                        Progress::Finding(finding) => ScanEvent::FindingReported(FindingReported {
                            finding: (**finding).clone(),
                            at: now,
                        }),
                        Progress::AssetDone(asset) => ScanEvent::AssetScanned(AssetScanned {
                            asset: asset.clone(),
                            at: now,
                        }),
                    })
                    .collect();
                if let (Some(read), Some(_)) = (read, &state.run) {
                    events.push(ScanEvent::ScanOutputRead(ScanOutputRead {
                        read: *read,
                        at: now,
                    }));
                }
                return Ok(events);
            }
            ScanCommand::Finish { raw } => {
                running()?;
                ScanEvent::ScanFinished(ScanFinished {
                    raw: raw.clone(),
                    at: now,
                })
            }
            ScanCommand::Fail { reason, raw } => {
                running()?;
                ScanEvent::ScanFailed(ScanFailed {
                    reason: reason.clone(),
                    raw: raw.clone(),
                    at: now,
                })
            }
            ScanCommand::MarkInterrupted => {
                running()?;
                ScanEvent::ScanFailed(ScanFailed {
                    reason: INTERRUPTED.into(),
                    raw: vec![],
                    at: now,
                })
            }
            ScanCommand::Stop { by } => {
                known()?;
                running()?;
                ScanEvent::ScanStopped(ScanStopped {
                    by: by.clone(),
                    at: now,
                })
            }
            ScanCommand::Clean { by } => {
                known()?;
                let mut events = Vec::with_capacity(2);
                // A running scan is stopped before it leaves the list, so that nothing keeps
                // scanning unseen.
                if state.status.active() {
                    events.push(ScanEvent::ScanStopped(ScanStopped {
                        by: by.clone(),
                        at: now,
                    }));
                }
                events.push(ScanEvent::ScanCleaned(ScanCleaned {
                    by: by.clone(),
                    at: now,
                }));
                return Ok(events);
            }
            ScanCommand::RecordReportFetched { by } => {
                known()?;
                if state.status.active() {
                    return Err(ScanRejection::NotEnded(state.status));
                }
                if state.report_fetched {
                    return Ok(vec![]);
                }
                ScanEvent::ScanReportFetched(ScanReportFetched {
                    by: by.clone(),
                    at: now,
                })
            }
        };
        Ok(vec![event])
    }

    fn apply(state: &mut ScanState, event: &ScanEvent) {
        match event {
            ScanEvent::ScanRequested(e) => {
                state.request = Some(e.clone());
                state.status = ScanStatus::Started;
            }
            ScanEvent::ScanBegan(_) => state.status = ScanStatus::Scanning,
            ScanEvent::ScanSupervised(e) => {
                state.run = Some(ScanRun {
                    supervision: e.run.clone(),
                    read: Offsets::default(),
                });
            }
            ScanEvent::ScanOutputRead(e) => {
                if let Some(run) = state.run.as_mut() {
                    run.read = e.read;
                }
            }
            ScanEvent::AssetScanned(e) => state.assets_done.push(e.asset.clone()),
            ScanEvent::FindingReported(e) => {
                state.findings += 1;
                state.finding_bytes += finding_bytes(&e.finding) as u64;
            }
            ScanEvent::ScanFinished(e) => {
                state.status = ScanStatus::Finished;
                state.run = None;
                state.raw.extend(e.raw.iter().cloned());
                state.ended_at = Some(e.at);
            }
            ScanEvent::ScanFailed(e) => {
                state.status = ScanStatus::Error;
                state.run = None;
                state.reason = Some(e.reason.clone());
                state.raw.extend(e.raw.iter().cloned());
                state.ended_at = Some(e.at);
            }
            ScanEvent::ScanStopped(e) => {
                state.status = ScanStatus::Stopped;
                state.run = None;
                state.ended_at = Some(e.at);
            }
            ScanEvent::ScanCleaned(_) => state.cleaned = true,
            ScanEvent::ScanReportFetched(_) => state.report_fetched = true,
        }
    }

    fn in_progress(event: &ScanEvent) -> Option<bool> {
        match event {
            ScanEvent::ScanRequested(_) => Some(true),
            ScanEvent::ScanFinished(_) | ScanEvent::ScanFailed(_) | ScanEvent::ScanStopped(_) => {
                Some(false)
            }
            _ => None,
        }
    }

    fn on_restart(state: &ScanState) -> Option<ScanCommand> {
        (state.request.is_some() && state.status.active()).then_some(ScanCommand::MarkInterrupted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::assert_deserializes_as_parsed;

    #[test]
    fn deserializing_checks_engine_names_and_scan_ids_as_parse_does() {
        let long = "x".repeat(MAX_SCAN_ID_BYTES + 1);
        assert_deserializes_as_parsed(ScanId::parse, "42", &["", "a/b", "a\nb", &long]);
        assert_deserializes_as_parsed(EngineName::parse, "tcp", &["TCP-1"]);
    }
}
