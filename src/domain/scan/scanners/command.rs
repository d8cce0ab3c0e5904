//! The `command` scanner: runs the engine's program (argv, never a shell, in its own process
//! group, through `crate::process`) with the scan as JSON on its standard input, and reads
//! findings as JSON lines on its standard output. Its standard output and error are kept for
//! the report; its exit code, a timeout and a stop decide how the scan ends.
//!
//! # The protocol
//!
//! Standard input is one JSON object: `{"engine", "scan_id", "assets": [{"id", "value",
//! "criticity", "datatype"}], "options": {...}}`, then end of file.
//!
//! Each line of standard output that is a JSON object is one of:
//! - a finding: `{"title": "...", "severity": "info|low|medium|high|critical", "confidence":
//!   "certain|firm|tentative", "description", "solution", "type", "target": {"addr": [...],
//!   "protocol", "port_id", "port_type"}, "raw": <any JSON>, "tags": [...], "links": [...]}`;
//!   only `title` is required (severity defaults to `info`, confidence to `certain`, type to
//!   `command`, `target.addr` to every asset's value);
//! - `{"asset_done": "<asset value>"}`: that asset is done.
//!
//! Other lines (text, JSON that is not an object) are kept in the raw output only; a JSON
//! object that is neither, and a line longer than [`process::DEFAULT_MAX_LINE_BYTES`], is
//! named in the raw output as ignored (the first [`MAX_IGNORED_BYTES`] of them, then only
//! counted). Exit code 0 finishes the scan; any other ends it in ERROR with the code and the
//! last line of standard error.
//!
//! # Across a restart of annals
//!
//! The program runs under a supervisor of its own (`process::supervised`), so it outlives
//! annals. Each report goes with the offset of standard output after its line, and the scan
//! records both in one append; a restart follows the program from the last recorded offset, so
//! that no finding is lost or recorded twice. Lines ignored before a restart are not named in
//! the report.

use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use super::values::{asset_values, CommandSettings, Ended, Job, Reported};
use crate::domain::scan::Progress;
use crate::domain::scan::{Confidence, Finding, Severity, Target};
use crate::process::supervised::{self, Offsets, Supervision};
use crate::process::{self, Invocation};
use crate::runtime::effects;

/// The most bytes of ignored lines kept for the report; past it they are only counted.
pub const MAX_IGNORED_BYTES: usize = 64 * 1024;

/// How much of an ignored line the report keeps, in characters.
const MAX_IGNORED_LINE_CHARS: usize = 200;

/// The lines of standard output the scanner could not take, for the report: the first
/// [`MAX_IGNORED_BYTES`] of them, and how many more there were.
#[derive(Default)]
struct Ignored {
    text: String,
    more: u64,
}

impl Ignored {
    fn push(&mut self, line: &str, reason: &str) {
        // A line is named by its beginning.
        let cut = line
            .char_indices()
            .map(|(i, _)| i)
            .nth(MAX_IGNORED_LINE_CHARS)
            .unwrap_or(line.len());
        let line = &line[..cut];
        if self.text.len() + line.len() + reason.len() + 3 > MAX_IGNORED_BYTES {
            self.more += 1;
            return;
        }
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(line);
        self.text.push_str(": ");
        self.text.push_str(reason);
    }

    /// The report's `ignored.txt`, if any line was ignored.
    fn into_output(mut self) -> Option<Vec<u8>> {
        if self.more > 0 {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.text
                .push_str(&format!("… and {} more lines ignored", self.more));
        }
        (!self.text.is_empty()).then(|| self.text.into_bytes())
    }
}

/// A finding line, as a program writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    title: String,
    #[serde(default)]
    severity: Severity,
    #[serde(default)]
    confidence: Confidence,
    #[serde(default)]
    description: String,
    #[serde(default)]
    solution: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    target: Option<LineTarget>,
    #[serde(default)]
    raw: Option<Value>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    links: Vec<String>,
}

#[derive(Deserialize)]
struct LineTarget {
    #[serde(default)]
    addr: Vec<String>,
    protocol: Option<String>,
    port_id: Option<u16>,
    port_type: Option<String>,
}

/// What one line of standard output says.
pub fn parse_line(text: &str, job: &Job) -> Result<Option<Progress>, String> {
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(text.trim()) else {
        return Ok(None);
    };
    if let (1, Some(Value::String(asset))) = (object.len(), object.get("asset_done")) {
        return Ok(Some(Progress::AssetDone(asset.clone())));
    }
    let line: Line = serde_json::from_value(Value::Object(object)).map_err(|e| e.to_string())?;
    let target = line.target.unwrap_or(LineTarget {
        addr: Vec::new(),
        protocol: None,
        port_id: None,
        port_type: None,
    });
    Ok(Some(Progress::Finding(Box::new(Finding {
        severity: line.severity,
        confidence: line.confidence,
        title: line.title,
        description: line.description,
        solution: line.solution.unwrap_or_else(|| "n/a".into()),
        kind: line.kind.unwrap_or_else(|| "command".into()),
        target: Target {
            addr: if target.addr.is_empty() {
                asset_values(&job.assets)
            } else {
                target.addr
            },
            protocol: target.protocol,
            port_id: target.port_id,
            port_type: target.port_type,
        },
        raw: line.raw.map(|raw| raw.to_string()),
        tags: line.tags,
        links: line.links,
        vuln_refs: Default::default(),
    }))))
}

/// Runs the program to its end, or until `stop` (SIGTERM to its group, SIGKILL after the
/// engine's grace), under a supervisor of its own in `job.run_dir`, whose supervision is sent on
/// `supervised` as soon as it runs; or, for a program a previous process of annals started
/// (`job.follow`), follows it from where its output was recorded. Each report carries where
/// the program's output goes on after it.
pub async fn scan(
    settings: &CommandSettings,
    job: &Job,
    progress: &mpsc::Sender<Reported>,
    mut stop: watch::Receiver<bool>,
    supervised: oneshot::Sender<Supervision>,
) -> Ended {
    // The line and capture limits, the same for a run followed as for one started.
    let limits = Invocation::new(&settings.program);
    let (mut running, mut read) = match &job.follow {
        Some(follow) => {
            // Its supervision is recorded already: the driver waits for no other.
            drop(supervised);
            // Standard error is read again from its beginning: the scan records none of it,
            // and its last line is the reason of a failure.
            let read = Offsets {
                stderr: 0,
                ..follow.read
            };
            (supervised::attach(&follow.run, read, &limits), read)
        }
        None => {
            let input = serde_json::json!({
                "engine": job.engine,
                "scan_id": job.scan_id,
                "assets": job.assets,
                "options": job.options,
            });
            let invocation = limits
                .args(&settings.args)
                .stdin(input.to_string())
                .timeout(settings.timeout)
                .kill_grace(settings.kill_grace);
            // Under a supervisor of its own, so that the program outlives a crash or a restart
            // of annals, which finds it again from the recorded supervision (or, before that
            // is recorded, from its run directory).
            match effects::start_supervised(invocation, &job.run_dir, Vec::new()) {
                Ok((running, supervision)) => {
                    let _ = supervised.send(supervision);
                    (running, Offsets::default())
                }
                Err(error) => return failed(format!("the command could not start: {error}")),
            }
        }
    };
    let canceller = running.canceller();
    let mut ignored = Ignored::default();
    let mut last_error_line = String::new();
    let mut stopping = false;
    let mut listening = true;
    // Whether the last piece of standard output read was cut from a longer line.
    let mut in_long_line = false;
    while let Some(line) = super::next_output_line(
        &mut running,
        &mut stop,
        &mut stopping,
        &mut read,
        &mut last_error_line,
    )
    .await
    {
        // A line over the limit comes in pieces, none of which is the JSON it was: named
        // once, by its beginning, and skipped.
        let piece_of_long_line = in_long_line || line.continues;
        if line.continues && !in_long_line {
            ignored.push(
                &line.text,
                &format!(
                    "the line is longer than {} bytes",
                    process::DEFAULT_MAX_LINE_BYTES
                ),
            );
        }
        in_long_line = line.continues;
        if piece_of_long_line {
            continue;
        }
        read.stdout = line.offset;
        match parse_line(&line.text, job) {
            Ok(Some(report)) if listening => {
                let report = Reported {
                    progress: report,
                    read: Some(read),
                };
                // The driver stops listening when the scan stopped; the program is then
                // stopped too.
                if progress.send(report).await.is_err() {
                    listening = false;
                    canceller.cancel();
                }
            }
            Ok(_) => {}
            Err(reason) => ignored.push(&line.text, &reason),
        }
    }
    // The outcome holds the whole of each output (up to the capture limit), read from the run's
    // files, also for a run followed from the middle.
    let outcome = match running.wait().await {
        Ok(outcome) => outcome,
        Err(error) => return failed(error.to_string()),
    };
    let mut raw = vec![
        ("command/stdout.txt".to_owned(), outcome.stdout.bytes),
        ("command/stderr.txt".to_owned(), outcome.stderr.bytes),
    ];
    if let Some(ignored) = ignored.into_output() {
        raw.push(("command/ignored.txt".to_owned(), ignored));
    }
    let result = super::program_ended(
        "the command",
        outcome.ending,
        outcome.exit,
        settings.timeout,
        &last_error_line,
    );
    Ended { result, raw }
}

fn failed(reason: String) -> Ended {
    Ended {
        result: Err(reason),
        raw: Vec::new(),
    }
}
