//! The `nmap` scanner: runs the real nmap (argv, never a shell, under a supervisor of its own
//! through `crate::process`) with the options of Patrowl's nmap engine, reads its XML output
//! as a stream while it runs, and reports each host's findings with the nmap engine's titles,
//! types, severities and metadata as soon as nmap writes the host, so that PatrowlManager,
//! which matches findings on (asset, title), sees the same findings from annals as from the
//! upstream engine. The XML, nmap's standard error and the command line go to the report.
//! With `banner`, each open TCP port's banner is grabbed once nmap is done, as the nmap
//! engine does.
//!
//! # Privileges
//!
//! A SYN scan, a UDP scan, OS detection and fragmented packets need raw sockets: root, or
//! capabilities given to nmap (then `privileged = true`). Without them those options are
//! replaced by what nmap can do (a connect scan for a SYN scan, `-sV -sC` for `-A`) or left
//! out, and the scan says which in a `scan_info` finding and in `nmap/command.txt`.
//!
//! # Across a restart of annals
//!
//! nmap runs under its supervisor and outlives annals. Each host's findings are recorded with
//! the offset of standard output after the host's last line; a restart reads the XML again from
//! its start (the parser needs what came before) and reports only the hosts that end after the
//! recorded offset.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Subnets};
use quick_xml::events::Event;
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot, watch};

use super::tcp::truthy;
use super::values::{asset_values, Ended, Job, NmapSettings, Reported};
use crate::domain::scan::{Asset, Confidence, Datatype, Finding, Progress, Severity, Target};
use crate::process::supervised::{self, Offsets, Supervision};
use crate::process::Invocation;
use crate::runtime::effects;

/// The most bytes of nmap's XML kept for the report (and its standard error): a /16 with
/// every host listed stays well below it.
pub const MAX_RAW_BYTES: usize = 64 * 1024 * 1024;

/// The most bytes one host's XML (or any other element of the run) may take while it is read:
/// past it the XML is taken as broken, since nmap never writes so much for one host.
pub const MAX_ELEMENT_BYTES: usize = 16 * 1024 * 1024;

/// The longest value of a text option (`script`, `script_args`), in bytes.
pub const MAX_OPTION_BYTES: usize = 4096;

/// Where PatrowlManager's NVD search for a CPE is, as the nmap engine links it.
const NVD_CPE_SEARCH: &str = "https://nvd.nist.gov/vuln/search/results?adv_search=true&cpe=";

/// The options that are switches, as the nmap engine's `nmap.json` maps them: the option, its
/// nmap arguments, and what to do without raw sockets.
const SWITCHES: [(&str, &[&str], Unprivileged); 16] = [
    ("show_open_ports", &["--open"], Unprivileged::Same),
    ("no_dns", &["-n"], Unprivileged::Same),
    (
        "scan_udp",
        &["-sU", "--max-retries", "3"],
        Unprivileged::Skip("a UDP scan (-sU) needs root: no UDP port was scanned"),
    ),
    (
        "syn_scan",
        &["-sS"],
        Unprivileged::Instead(
            &["-sT"],
            "a SYN scan (-sS) needs root: a connect scan (-sT) ran instead",
        ),
    ),
    ("tcp_scan", &["-sT"], Unprivileged::Same),
    ("ping_scan", &["-sn"], Unprivileged::Same),
    (
        "all_scan",
        &["-A"],
        Unprivileged::Instead(
            &["-sV", "-sC"],
            "OS detection and traceroute (in -A) need root: only versions and default \
             scripts (-sV -sC) ran",
        ),
    ),
    ("fast_scan", &["-F"], Unprivileged::Same),
    ("detect_service_version", &["-sV"], Unprivileged::Same),
    (
        "detect_os",
        &["-O", "--osscan-guess", "--max-os-tries", "1"],
        Unprivileged::Skip("OS detection (-O) needs root: the OS was not detected"),
    ),
    ("no_ping", &["-Pn"], Unprivileged::Same),
    ("script_scan", &["-sC"], Unprivileged::Same),
    ("aggressive_scan", &["-T4"], Unprivileged::Same),
    ("slow_scan", &["-T1"], Unprivileged::Same),
    ("perfs", &["--defeat-rst-ratelimit"], Unprivileged::Same),
    (
        "fragment_packets",
        &["-f"],
        Unprivileged::Skip("fragmented packets (-f) need root: packets were not fragmented"),
    ),
];

/// What a switch becomes when nmap has no raw sockets.
#[derive(Clone, Copy)]
enum Unprivileged {
    Same,
    /// Left out, for this reason.
    Skip(&'static str),
    /// Replaced by these arguments, for this reason.
    Instead(&'static [&'static str], &'static str),
}

/// nmap's command line for one scan, and what it left out for want of privileges.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The arguments after the program.
    pub args: Vec<String>,
    /// The targets, one a line on nmap's standard input (`-iL -`).
    pub hosts: Vec<String>,
    /// What ran otherwise than asked, one sentence each.
    pub fallbacks: Vec<String>,
}

/// Whether nmap may use raw sockets: as configured, or else when annals runs as root.
pub fn privileged(settings: &NmapSettings) -> bool {
    settings.privileged.unwrap_or_else(|| {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    })
}

/// A text option: a string (or a number, as Python's `format` prints it).
fn text(options: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    let text = match options.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("options.{key}: {other} is not a string")),
    };
    if text.len() > MAX_OPTION_BYTES {
        return Err(format!(
            "options.{key} is longer than {MAX_OPTION_BYTES} bytes"
        ));
    }
    if text.contains(char::is_control) {
        return Err(format!("options.{key} holds a control character"));
    }
    Ok(Some(text))
}

/// A whole number option within `range`.
fn number(
    options: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u64>, String> {
    let Some(value) = options.get(key).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "options.{key}: {value} is not a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// The `ports` option as nmap's `-p` takes it: numbers and ranges (`1-1024`, `-` for all),
/// each maybe after `T:`, `U:` or `S:`, given as a list or as one string separated by commas.
pub fn port_list(options: &Map<String, Value>) -> Result<Option<String>, String> {
    let mut items: Vec<String> = Vec::new();
    match options.get("ports") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => items.push(s.clone()),
        Some(Value::Number(n)) => items.push(n.to_string()),
        Some(Value::Array(list)) => {
            for item in list {
                match item {
                    Value::String(s) => items.push(s.clone()),
                    Value::Number(n) => items.push(n.to_string()),
                    other => {
                        return Err(format!("options.ports: {other} is not a port or a range"))
                    }
                }
            }
        }
        Some(other) => return Err(format!("options.ports: {other} is not a list of ports")),
    }
    let mut parts = Vec::new();
    for part in items.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if part.is_empty() {
            continue;
        }
        let bad = || format!("options.ports: {part:?} is not a port or a range (1 to 65535)");
        let bare = ["T:", "U:", "S:"]
            .iter()
            .find_map(|prefix| part.strip_prefix(prefix))
            .unwrap_or(part);
        let port = |p: &str| p.is_empty() || p.parse::<u16>().is_ok_and(|p| p > 0);
        let ok = match bare.split_once('-') {
            Some((low, high)) => port(low) && port(high),
            None => !bare.is_empty() && port(bare),
        };
        if !ok {
            return Err(bad());
        }
        parts.push(part.to_owned());
    }
    if parts.is_empty() {
        return Err("options.ports is empty: name ports, or leave it out".into());
    }
    Ok(Some(parts.join(",")))
}

/// The `script` option as nmap's `--script` takes it: names of scripts shipped with nmap, or
/// of their categories, separated by commas. A path (`libs/vulners.nse`, as PatrowlManager's
/// policies name the nmap engine's copies) stands for the shipped script of its file name:
/// a scan names no file on this server.
pub fn script_list(options: &Map<String, Value>) -> Result<Option<String>, String> {
    let Some(list) = text(options, "script")? else {
        return Ok(None);
    };
    let mut names = Vec::new();
    for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let name = item.rsplit('/').next().unwrap_or(item);
        let fine = !name.is_empty()
            && !name.starts_with(['.', '-'])
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !fine {
            return Err(format!(
                "options.script: {item:?} is not the name of an NSE script or category"
            ));
        }
        names.push(name.to_owned());
    }
    Ok((!names.is_empty()).then(|| names.join(",")))
}

/// nmap's timing template: 0 to 5, or its name.
fn timing(options: &Map<String, Value>) -> Result<Option<String>, String> {
    let Some(template) = text(options, "timing-template")? else {
        return Ok(None);
    };
    const NAMES: [&str; 6] = [
        "paranoid",
        "sneaky",
        "polite",
        "normal",
        "aggressive",
        "insane",
    ];
    let lower = template.to_ascii_lowercase();
    if matches!(lower.as_str(), "0" | "1" | "2" | "3" | "4" | "5")
        || NAMES.contains(&lower.as_str())
    {
        Ok(Some(lower))
    } else {
        Err(format!(
            "options.timing-template: {template:?} is not 0 to 5 or one of {}",
            NAMES.join(", ")
        ))
    }
}

/// A time as nmap takes it: a number, maybe with `ms`, `s`, `m` or `h`.
fn duration(options: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    let Some(time) = text(options, key)? else {
        return Ok(None);
    };
    let digits = time.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &time[digits.len()..];
    if digits
        .parse::<f64>()
        .is_ok_and(|n| n.is_finite() && n >= 0.0)
        && matches!(unit, "" | "ms" | "s" | "m" | "h")
    {
        Ok(Some(time))
    } else {
        Err(format!(
            "options.{key}: {time:?} is not a time such as 100ms or 2s"
        ))
    }
}

/// The targets of one asset as nmap reads them: a name, an address, a CIDR block (an
/// `ip-range` becomes the blocks that cover it), or a URL's host. `max_hosts` bounds ranges
/// and subnets.
pub fn targets(asset: &Asset, max_hosts: u128) -> Result<Vec<String>, String> {
    let value = asset.value.trim();
    let bad = |what: &str| format!("asset {value:?} is not {what}");
    let too_many = |n: u128| {
        format!("asset {value:?} holds {n} hosts, more than the engine's max_hosts ({max_hosts})")
    };
    match asset.datatype {
        Datatype::Ip => value
            .parse::<IpAddr>()
            .map(|ip| vec![ip.to_string()])
            .map_err(|_| bad("an IP address")),
        Datatype::IpRange => {
            let (low, high) = value
                .split_once('-')
                .ok_or_else(|| bad("a range such as 10.0.0.1-10.0.0.9"))?;
            let low: std::net::Ipv4Addr = low.trim().parse().map_err(|_| bad("an IPv4 range"))?;
            let high: std::net::Ipv4Addr = match high.trim().parse::<u8>() {
                Ok(last) => {
                    let [a, b, c, _] = low.octets();
                    std::net::Ipv4Addr::new(a, b, c, last)
                }
                Err(_) => high.trim().parse().map_err(|_| bad("an IPv4 range"))?,
            };
            if low > high {
                return Err(format!("asset {value:?}: the range is backwards"));
            }
            let n = u128::from(u32::from(high) - u32::from(low)) + 1;
            if n > max_hosts {
                return Err(too_many(n));
            }
            Ok(Ipv4Subnets::new(low, high, 0)
                .map(|net| net.to_string())
                .collect())
        }
        Datatype::IpSubnet => {
            let net: IpNet = value
                .parse()
                .map_err(|_| bad("a subnet such as 10.0.0.0/16"))?;
            let size = u32::from(net.max_prefix_len() - net.prefix_len());
            let n = if size >= 127 {
                u128::MAX
            } else {
                1u128 << size
            };
            if n > max_hosts {
                return Err(too_many(n));
            }
            Ok(vec![net.to_string()])
        }
        Datatype::Fqdn | Datatype::Domain => {
            // nmap splits its target list at white space and takes `#` as a comment.
            let fine = !value.is_empty()
                && value.len() <= 253
                && !value.starts_with('-')
                && !value.contains(|c: char| c.is_whitespace() || c == '#' || c.is_control());
            if fine {
                Ok(vec![value.to_owned()])
            } else {
                Err(bad("a host name"))
            }
        }
        Datatype::Url => {
            let host = url_host(value).ok_or_else(|| bad("a URL with a host"))?;
            targets(
                &Asset {
                    value: host,
                    datatype: Datatype::Fqdn,
                    ..asset.clone()
                },
                max_hosts,
            )
        }
        other => Err(format!(
            "asset {value:?}: the nmap scanner cannot scan a {}",
            other.as_str()
        )),
    }
}

/// The host of a URL, without brackets around an IPv6 address.
fn url_host(value: &str) -> Option<String> {
    let uri: awc::http::Uri = value.trim().parse().ok()?;
    // `host:port` alone parses as an authority: a URL names its scheme.
    uri.scheme()?;
    let host = uri.host()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// Checks the options (as at start-up, for the options every scan of an engine gets).
pub fn check_options(options: &Map<String, Value>) -> Result<(), String> {
    plan(options, &[], true, u128::MAX).map(drop)
}

/// Checks what a scan asks for.
pub fn check(
    settings: &NmapSettings,
    assets: &[Asset],
    options: &Map<String, Value>,
) -> Result<(), String> {
    plan(options, assets, privileged(settings), settings.max_hosts).map(drop)
}

/// nmap's command line for a scan of `assets` with `options`, with or without raw sockets.
/// nmap writes its XML on standard output and reads the targets on standard input.
pub fn plan(
    options: &Map<String, Value>,
    assets: &[Asset],
    privileged: bool,
    max_hosts: u128,
) -> Result<Plan, String> {
    if let Some(path) = options.get("host_file_path").filter(|v| truthy(v)) {
        return Err(format!(
            "options.host_file_path ({path}): the nmap scanner reads no file of this server; \
             give the hosts as assets"
        ));
    }
    let mut args: Vec<String> = ["-vvv", "--noninteractive", "-oX", "-", "-iL", "-"]
        .map(String::from)
        .to_vec();
    // `--unprivileged` also when annals is root and told not to use raw sockets, so that
    // nmap does what the plan says; `--privileged` when nmap has capabilities, not root.
    args.push(
        if privileged {
            "--privileged"
        } else {
            "--unprivileged"
        }
        .into(),
    );
    let mut fallbacks = Vec::new();
    for (key, switch, without) in SWITCHES {
        if !options.get(key).is_some_and(truthy) {
            continue;
        }
        match (privileged, without) {
            (true, _) | (false, Unprivileged::Same) => {
                args.extend(switch.iter().map(|a| a.to_string()))
            }
            (false, Unprivileged::Skip(why)) => fallbacks.push(why.to_owned()),
            (false, Unprivileged::Instead(other, why)) => {
                args.extend(other.iter().map(|a| a.to_string()));
                fallbacks.push(why.to_owned());
            }
        }
    }
    let ports = port_list(options)?;
    if let Some(ports) = &ports {
        if options.get("fast_scan").is_some_and(truthy) {
            return Err(
                "options.fast_scan and options.ports: nmap cannot use -F with -p; name the \
                 ports, or use top_ports"
                    .into(),
            );
        }
        args.push(format!("-p{ports}"));
    }
    if let Some(n) = number(options, "top_ports", 1..=65535)? {
        args.extend(["--top-ports".into(), n.to_string()]);
    }
    if let Some(scripts) = script_list(options)? {
        args.extend(["--script".into(), scripts]);
    }
    if let Some(script_args) = text(options, "script_args")? {
        args.extend(["--script-args".into(), script_args]);
    }
    if let Some(rate) = number(options, "min-rate", 1..=1_000_000)? {
        args.extend(["--min-rate".into(), rate.to_string()]);
    }
    if let Some(time) = duration(options, "max-rtt-timeout")? {
        args.extend(["--max-rtt-timeout".into(), time]);
    }
    if let Some(n) = number(options, "max-parallelism", 1..=65535)? {
        args.extend(["--max-parallelism".into(), n.to_string()]);
    }
    if let Some(n) = number(options, "min-hostgroup", 1..=65536)? {
        args.extend(["--min-hostgroup".into(), n.to_string()]);
    }
    if let Some(template) = timing(options)? {
        args.push(format!("-T{template}"));
    }
    if let Some(fields) = options.get("script_output_fields").filter(|v| !v.is_null()) {
        let fine = fields
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string));
        if !fine {
            return Err(format!(
                "options.script_output_fields: {fields} is not a list of keys"
            ));
        }
    }
    let mut hosts = Vec::new();
    for asset in assets {
        for target in targets(asset, max_hosts)? {
            // Each target once, as the nmap engine dedups its hosts.
            if !hosts.contains(&target) {
                hosts.push(target);
            }
        }
    }
    Ok(Plan {
        args,
        hosts,
        fallbacks,
    })
}

/// One element of nmap's XML with what it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// A whole element of the run that the findings come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// A `<host>`, once closed.
    Host(Element),
    /// The `<runstats>` that ends a run nmap finished.
    Finished,
}

/// Reads nmap's XML as it comes, a line at a time, and gives each `<host>` as soon as it is
/// closed. Only the element being read is held, never the whole document. nmap writes every
/// tag whole on one line; a tag cut across lines anyway is held until its `>` comes.
#[derive(Default)]
pub struct XmlStream {
    /// Text after the last `>` read: the beginning of a tag still to come.
    pending: String,
    /// The open elements, `<nmaprun>` (kept without its children) first.
    stack: Vec<Element>,
    /// The bytes read into the open child of `<nmaprun>`, against [`MAX_ELEMENT_BYTES`].
    open_bytes: usize,
    /// Why the XML could not be read; nothing more is read after it.
    pub error: Option<String>,
}

impl XmlStream {
    /// Reads one more line of nmap's standard output (without its line end).
    pub fn feed(&mut self, line: &str) -> Vec<Piece> {
        let mut pieces = Vec::new();
        if self.error.is_some() {
            return pieces;
        }
        self.pending.push_str(line);
        self.pending.push('\n');
        self.open_bytes += line.len() + 1;
        if self.open_bytes > MAX_ELEMENT_BYTES || self.pending.len() > MAX_ELEMENT_BYTES {
            self.error = Some(format!(
                "an element of nmap's XML is over {} MiB",
                MAX_ELEMENT_BYTES >> 20
            ));
            return pieces;
        }
        let Some(end) = self.pending.rfind('>') else {
            return pieces;
        };
        let rest = self.pending.split_off(end + 1);
        let whole = std::mem::replace(&mut self.pending, rest);
        if let Err(error) = self.read(&whole, &mut pieces) {
            self.error = Some(format!("nmap's XML is not well formed: {error}"));
        }
        pieces
    }

    /// Reads a piece of a line longer than the process's line limit: the rest follows.
    fn feed_piece(&mut self, piece: &str) -> Vec<Piece> {
        // Held as it is; the line's last piece ends it.
        if self.error.is_none() {
            self.pending.push_str(piece);
            self.open_bytes += piece.len();
            if self.open_bytes > MAX_ELEMENT_BYTES || self.pending.len() > MAX_ELEMENT_BYTES {
                self.error = Some(format!(
                    "an element of nmap's XML is over {} MiB",
                    MAX_ELEMENT_BYTES >> 20
                ));
            }
        }
        Vec::new()
    }

    fn read(&mut self, text: &str, pieces: &mut Vec<Piece>) -> Result<(), String> {
        let mut reader = quick_xml::Reader::from_str(text);
        // A line may close what an earlier line opened.
        reader.config_mut().allow_unmatched_ends = true;
        reader.config_mut().check_end_names = false;
        loop {
            match reader.read_event().map_err(|e| e.to_string())? {
                Event::Start(start) => {
                    let element = element(&start)?;
                    self.stack.push(element);
                }
                Event::Empty(start) => {
                    let element = element(&start)?;
                    self.close(element, pieces);
                }
                Event::End(_) => {
                    if let Some(element) = self.stack.pop() {
                        self.close(element, pieces);
                    }
                }
                Event::Text(t) => self.text(&t.xml10_content()),
                Event::CData(t) => self.text(&t),
                Event::GeneralRef(r) => {
                    let resolved = match r.resolve_char_ref().map_err(|e| e.to_string())? {
                        Some(c) => c.to_string(),
                        None => quick_xml::escape::resolve_predefined_entity(&r)
                            .ok_or_else(|| format!("unknown entity &{};", &*r))?
                            .to_owned(),
                    };
                    self.text(&resolved);
                }
                Event::Eof => return Ok(()),
                Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            }
        }
    }

    /// Text inside the innermost open element below `<nmaprun>` (nmap writes text only in
    /// script `<elem>`s and CPEs).
    fn text(&mut self, text: &str) {
        if self.stack.len() > 1 {
            if let Some(open) = self.stack.last_mut() {
                open.text.push_str(text);
            }
        }
    }

    /// An element is whole: into its parent, or given out when it is a host.
    fn close(&mut self, element: Element, pieces: &mut Vec<Piece>) {
        match self.stack.len() {
            // `<nmaprun>` itself, or an element outside it.
            0 => {}
            // A child of `<nmaprun>`.
            1 => {
                self.open_bytes = 0;
                match element.name.as_str() {
                    "host" => pieces.push(Piece::Host(element)),
                    "runstats" => pieces.push(Piece::Finished),
                    _ => {}
                }
            }
            _ => {
                if let Some(parent) = self.stack.last_mut() {
                    parent.children.push(element);
                }
            }
        }
    }
}

fn element(start: &quick_xml::events::BytesStart) -> Result<Element, String> {
    let name = start.name().as_ref().to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = attr.key.as_ref().to_owned();
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?
            .into_owned();
        attrs.push((key, value));
    }
    Ok(Element {
        name,
        attrs,
        children: Vec::new(),
        text: String::new(),
    })
}

/// Turns the hosts of one run into findings, as the nmap engine does, and says at the end
/// what was not seen: names that did not resolve, addresses that are down.
pub struct Findings<'a> {
    assets: &'a [Asset],
    options: &'a Map<String, Value>,
    /// Every address and name findings were filed under.
    seen: BTreeSet<String>,
    /// The hosts that assets name one by one (addresses, names, URLs' hosts), as opposed to
    /// the members of a range or subnet.
    named: BTreeSet<String>,
    /// Each `url` asset's host, with the asset's value.
    urls: Vec<(String, String)>,
    /// With `banner`: each open TCP port of each address and name, for [`grab_banners`].
    pub open: Vec<(String, u16)>,
}

impl<'a> Findings<'a> {
    pub fn new(assets: &'a [Asset], options: &'a Map<String, Value>) -> Findings<'a> {
        let urls: Vec<(String, String)> = assets
            .iter()
            .filter(|a| a.datatype == Datatype::Url)
            .filter_map(|a| Some((url_host(&a.value)?, a.value.clone())))
            .collect();
        let named = assets
            .iter()
            .filter(|a| matches!(a.datatype, Datatype::Ip | Datatype::Fqdn | Datatype::Domain))
            .map(|a| a.value.trim().to_owned())
            .chain(urls.iter().map(|(host, _)| host.clone()))
            .collect();
        Findings {
            assets,
            options,
            seen: BTreeSet::new(),
            named,
            urls,
            open: Vec::new(),
        }
    }

    /// Whether every port was asked for (`ports` starting with `-` or `1-65535`): only then
    /// does the nmap engine say that all ports are closed, or that an address is down.
    fn all_ports(&self) -> bool {
        let first = match self.options.get("ports") {
            Some(Value::Array(items)) => items.first().and_then(Value::as_str),
            Some(Value::String(s)) => s.split(',').next(),
            _ => None,
        };
        matches!(first.map(str::trim), Some("-" | "1-65535"))
    }

    /// The findings of one host, in the nmap engine's order: its IP, its OS, each port's
    /// service and state, all ports closed, up or down, host scripts.
    pub fn host(&mut self, host: &Element) -> Vec<Finding> {
        let mut found = Vec::new();
        let address = host
            .all("address")
            .find(|a| a.attr("addrtype") != Some("mac"))
            .or_else(|| host.child("address"));
        let ip = address.and_then(|a| a.attr("addr")).unwrap_or_default();
        let names: Vec<&str> = host
            .all("hostnames")
            .flat_map(|h| h.all("hostname"))
            .filter(|h| matches!(h.attr("type"), Some("user" | "PTR")))
            .filter_map(|h| h.attr("name"))
            .collect();
        let mut addr: Vec<String> = Vec::new();
        for name in &names {
            if !addr.iter().any(|a| a == name) {
                addr.push(name.to_string());
            }
        }
        if addr.is_empty() && !ip.is_empty() {
            addr.push(ip.to_owned());
        }
        // URL assets whose host this is are filed under the host too.
        for (host, url) in &self.urls {
            if addr.contains(host) && !addr.contains(url) {
                addr.push(url.clone());
            }
        }
        let status = host
            .child("status")
            .and_then(|s| s.attr("state"))
            .unwrap_or_default();
        // nmap lists every address of a range or subnet it found down: one finding (and one
        // asset in PatrowlManager) for each of a /16's 65,536 addresses would bury the others
        // past the scan's limit of findings. A host an asset names is said to be down.
        let named = addr.iter().any(|a| self.named.contains(a)) || self.named.contains(ip);
        if status == "down" && !named {
            return found;
        }
        // As the nmap engine names a host: the last of its names, or its address.
        let shown = names.last().copied().unwrap_or(ip).to_owned();
        let target = |addr: &[String]| Target {
            addr: addr.to_vec(),
            ..Target::default()
        };
        let mut distinct: Vec<&str> = Vec::new();
        for name in &names {
            if !distinct.contains(name) {
                distinct.push(name);
            }
        }
        for name in distinct {
            found.push(issue(
                target(&addr),
                format!("Host '{name}' has ip: '{ip}'"),
                format!("The scan detected that the host {name} has IP '{ip}'"),
                "host_ip",
                Some(json!(ip)),
            ));
        }
        if !names.is_empty() && !ip.is_empty() && !addr.iter().any(|a| a == ip) {
            addr.push(ip.to_owned());
        }
        self.seen.extend(addr.iter().cloned());

        if let Some(os) = host.child("os").and_then(|os| os.child("osmatch")) {
            let name = os.attr("name").unwrap_or_default();
            let accuracy = os.attr("accuracy").unwrap_or_default();
            let cpe: Vec<&str> = os
                .all("osclass")
                .filter_map(|c| c.child("cpe"))
                .map(|c| c.text.as_str())
                .collect();
            let mut finding = issue(
                target(&addr),
                format!("OS: {name}"),
                format!(
                    "The scan detected that the host run in OS '{name}' (accuracy={accuracy}%)"
                ),
                "host_osinfo",
                Some(json!({"name": name, "accuracy": accuracy, "cpe": cpe})),
            );
            finding.confidence = Confidence::Undefined;
            found.push(finding);
        }

        let mut open = false;
        if let Some(ports) = host.child("ports") {
            for port in ports.all("port") {
                let proto = port.attr("protocol").unwrap_or_default();
                let id = port.attr("portid").unwrap_or_default();
                let state = port
                    .child("state")
                    .and_then(|s| s.attr("state"))
                    .unwrap_or_default();
                let port_target = Target {
                    addr: addr.clone(),
                    protocol: Some(proto.to_owned()).filter(|p| !p.is_empty()),
                    port_id: id.parse().ok(),
                    port_type: Some(proto.to_owned()).filter(|p| !p.is_empty()),
                };
                let mut data = Map::new();
                data.insert("protocol".into(), json!(proto));
                data.insert("port_id".into(), json!(id));
                data.insert("port_state".into(), json!(state));
                let reachable = !matches!(state, "filtered" | "closed");
                if let (Some(service), true) = (port.child("service"), reachable) {
                    let name = service.attr("name").unwrap_or_default();
                    // What firewalls answer for everything: the nmap engine reports nothing of
                    // such a port.
                    if name == "tcpwrapped" {
                        continue;
                    }
                    found.push(service_finding(&port_target, port, service, &mut data));
                }
                if state == "open"
                    && proto == "tcp"
                    && self.options.get("banner").is_some_and(truthy)
                {
                    if let Ok(port) = id.parse::<u16>() {
                        // Each name and address of the host, as the nmap engine grabs them; a
                        // URL is no host to connect to.
                        let hosts = addr.iter().filter(|a| !a.contains("://"));
                        self.open.extend(hosts.map(|a| (a.clone(), port)));
                    }
                }
                if reachable {
                    open = true;
                    found.push(issue(
                        port_target.clone(),
                        format!("Port '{proto}/{id}' is {state}"),
                        format!("The scan detected that the port '{proto}/{id}' was {state}"),
                        "port_status",
                        Some(Value::Object(data)),
                    ));
                }
            }
            if !open && self.all_ports() {
                found.push(issue(
                    target(&addr),
                    "All Ports are closed".into(),
                    "The scan detected that all ports are closed or filtered".into(),
                    "port_status_closed",
                    None,
                ));
            }
        }

        if open || status == "up" {
            found.push(issue(
                target(&addr),
                format!("Host '{shown}' is up"),
                format!("The scan detected that the host {shown} was up"),
                "host_availability",
                None,
            ));
        }
        if status == "down" {
            found.push(issue(
                target(&addr),
                format!("Host '{shown}' is down"),
                format!("The scan detected that the host {shown} was down"),
                "host_availability",
                None,
            ));
        }

        let fields: Vec<&str> = match self.options.get("script_output_fields") {
            Some(Value::Array(keys)) => keys.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for script in host
            .all("hostscript")
            .flat_map(|scripts| scripts.all("script"))
        {
            let id = script.attr("id").unwrap_or_default();
            let output = script.attr("output").unwrap_or_default();
            found.push(issue(
                target(&addr),
                format!("Script '{id}' has given results"),
                format!("The script '{id}' revealed following information: \n{output}"),
                "host_script",
                Some(json!({"script": id, "output": output})),
            ));
            for elem in script.all("elem") {
                let Some(key) = elem.attr("key").filter(|k| fields.contains(k)) else {
                    continue;
                };
                let value = &elem.text;
                found.push(issue(
                    target(&addr),
                    format!("Script results '{id}/{key}' set to '{value}'"),
                    format!(
                        "The script '{id}' revealed following information: \n'{key}' was \
                         identified to '{value}'"
                    ),
                    "host_script_advanced",
                    Some(json!({"script": id, "key": key, "value": value})),
                ));
            }
        }
        found
    }

    /// What a finished run says of the assets it found nothing of: a `domain` or `fqdn` that
    /// did not resolve, and (when every port or nmap's fast scan was asked for) an `ip` that
    /// is down.
    pub fn end(&self) -> Vec<Finding> {
        let mut found = Vec::new();
        let down_too = self.all_ports() || self.options.get("fast_scan").is_some_and(truthy);
        for asset in self.assets {
            let value = asset.value.trim();
            if self.seen.contains(value) {
                continue;
            }
            let mut finding = match asset.datatype {
                Datatype::Domain | Datatype::Fqdn => issue(
                    Target {
                        addr: vec![value.to_owned()],
                        ..Target::default()
                    },
                    format!("Failed to resolve '{value}'"),
                    format!("The asset '{value}' was not resolved by the engine."),
                    "nmap_error_unresolved",
                    None,
                ),
                Datatype::Ip if down_too => issue(
                    Target {
                        addr: vec![value.to_owned()],
                        ..Target::default()
                    },
                    format!("Host '{value}' is down"),
                    format!("The scan detected that the host {value} was down"),
                    "host_availability",
                    None,
                ),
                _ => continue,
            };
            finding.severity = Severity::Low;
            found.push(finding);
        }
        found
    }
}

/// The `port_info` finding of a port whose service nmap named, with its product, version and
/// CPEs (as `vuln_refs.CPE`, which PatrowlManager tags the asset with, and NVD links), and the
/// output of the port's scripts.
fn service_finding(
    target: &Target,
    port: &Element,
    service: &Element,
    data: &mut Map<String, Value>,
) -> Finding {
    let name = service.attr("name").unwrap_or_default();
    let proto = port.attr("protocol").unwrap_or_default();
    let id = port.attr("portid").unwrap_or_default();
    data.insert("service".into(), json!(name));
    let cpes: Vec<String> = service
        .all("cpe")
        .map(|c| c.text.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if !cpes.is_empty() {
        data.insert("cpe".into(), json!(cpes));
    }
    for (key, attr) in [
        ("detection_method", "method"),
        ("version", "version"),
        ("extrainfo", "extrainfo"),
        ("tunnel", "tunnel"),
        ("product", "product"),
    ] {
        data.insert(key.into(), json!(service.attr(attr)));
    }
    let script_output: String = port
        .all("script")
        .map(|s| format!("{}\n", s.attr("output").unwrap_or_default()))
        .collect();
    data.insert("script_output".into(), json!(script_output));
    let mut cpe_info = String::new();
    for cpe in &cpes {
        cpe_info.push_str(&format!(
            "\n The following CPE vector has been identified: {cpe}"
        ));
    }
    let product = service
        .attr("product")
        .map(|p| format!("\nProduct: {p}"))
        .unwrap_or_default();
    let mut finding = issue(
        target.clone(),
        format!("Service '{name}' is running on port '{proto}/{id}'"),
        format!(
            "The scan detected that the service '{name}' is running on port '{proto}/{id}'. \
             {cpe_info}\n{product}"
        ),
        "port_info",
        Some(Value::Object(data.clone())),
    );
    finding.links = cpes
        .iter()
        .map(|cpe| format!("{NVD_CPE_SEARCH}{cpe}"))
        .collect();
    if !cpes.is_empty() {
        finding.vuln_refs.insert("CPE".into(), cpes);
    }
    finding
}

/// A finding as the nmap engine's `_add_issue` makes one: info, certain, no solution.
fn issue(
    target: Target,
    title: String,
    description: String,
    kind: &str,
    raw: Option<Value>,
) -> Finding {
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title,
        description,
        solution: "n/a".into(),
        kind: kind.into(),
        target,
        raw: raw.map(|raw| raw.to_string()),
        tags: Vec::new(),
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

/// The finding that says what ran otherwise than asked for want of privileges.
fn fallback_finding(assets: &[Asset], fallbacks: &[String]) -> Finding {
    let mut finding = issue(
        Target {
            addr: asset_values(assets),
            ..Target::default()
        },
        "Scan options left out without root privileges".into(),
        format!(
            "nmap ran without raw sockets (annals is not root and the engine does not say \
             `privileged = true`, or it says `privileged = false`), so some options were not \
             applied: {}.",
            fallbacks.join("; ")
        ),
        "scan_info",
        Some(json!({"fallbacks": fallbacks})),
    );
    finding.solution = "Run annals as root, or give nmap the capabilities cap_net_raw, \
                        cap_net_admin and cap_net_bind_service and set `privileged = true` on \
                        the engine."
        .into();
    finding
}

/// Runs nmap to its end, or until `stop` (SIGTERM to its group, SIGKILL after the engine's
/// grace), under a supervisor of its own in `job.run_dir`, whose supervision is sent on
/// `supervised` as soon as it runs; or, for an nmap a previous process of annals started
/// (`job.follow`), follows it, reading its XML again from the start and reporting only what
/// was not recorded.
pub async fn scan(
    settings: &NmapSettings,
    job: &Job,
    progress: &mpsc::Sender<Reported>,
    mut stop: watch::Receiver<bool>,
    supervised: oneshot::Sender<Supervision>,
) -> Ended {
    let plan = match plan(
        &job.options,
        &job.assets,
        privileged(settings),
        settings.max_hosts,
    ) {
        Ok(plan) => plan,
        // An nmap already running (the engine's settings changed since it started) is
        // followed all the same, so that it is seen to its end or stopped.
        Err(_) if job.follow.is_some() => Plan {
            args: Vec::new(),
            hosts: Vec::new(),
            fallbacks: Vec::new(),
        },
        Err(reason) => return failed(reason),
    };
    let limits = Invocation::new(&settings.program)
        .max_capture_bytes(MAX_RAW_BYTES)
        .max_line_bytes(MAX_ELEMENT_BYTES);
    // Reports up to this offset of standard output are recorded already.
    let (mut running, recorded) = match &job.follow {
        Some(follow) => {
            drop(supervised);
            let from = Offsets {
                stdout: 0,
                stderr: 0,
            };
            (
                supervised::attach(&follow.run, from, &limits),
                follow.read.stdout,
            )
        }
        None => {
            let mut hosts = plan.hosts.join("\n");
            hosts.push('\n');
            let invocation = limits
                .args(&plan.args)
                .stdin(hosts)
                .timeout(settings.timeout)
                .kill_grace(settings.kill_grace);
            match effects::start_supervised(invocation, &job.run_dir, Vec::new()) {
                Ok((running, supervision)) => {
                    let _ = supervised.send(supervision);
                    (running, 0)
                }
                Err(error) => return failed(format!("nmap could not start: {error}")),
            }
        }
    };
    let canceller = running.canceller();
    let mut xml = XmlStream::default();
    let mut findings = Findings::new(&job.assets, &job.options);
    let mut read = Offsets::default();
    let mut last_error_line = String::new();
    let (mut stopping, mut listening, mut finished) = (false, true, false);
    let mut assets_said_done = false;
    while let Some(line) = super::next_output_line(
        &mut running,
        &mut stop,
        &mut stopping,
        &mut read,
        &mut last_error_line,
    )
    .await
    {
        let before = read.stdout;
        read.stdout = line.offset;
        // A piece of a line over the limit is followed by the rest of it.
        let pieces = if line.continues {
            xml.feed_piece(&line.text)
        } else {
            xml.feed(&line.text)
        };
        let mut reports = Vec::new();
        for piece in pieces {
            let found = match piece {
                Piece::Host(host) => findings.host(&host),
                Piece::Finished => {
                    finished = true;
                    let mut found = findings.end();
                    if !plan.fallbacks.is_empty() {
                        found.push(fallback_finding(&job.assets, &plan.fallbacks));
                    }
                    // After nmap, as the nmap engine grabs them; not again for a run whose
                    // end was recorded before a restart.
                    if line.offset > recorded && !findings.open.is_empty() && !stopping {
                        let open = std::mem::take(&mut findings.open);
                        tokio::select! {
                            banners = grab_banners(open) => found.extend(banners),
                            // A stop does not wait for the grabs.
                            _ = stop.wait_for(|stopped| *stopped) => {
                                stopping = true;
                                canceller.cancel();
                            }
                        }
                    }
                    found
                }
            };
            reports.extend(found.into_iter().map(|f| Progress::Finding(Box::new(f))));
        }
        // nmap scans its targets in groups of its own choosing: every asset is done once the
        // run is, on the line that ends it.
        if finished && !assets_said_done {
            assets_said_done = true;
            reports.extend(
                asset_values(&job.assets)
                    .into_iter()
                    .map(Progress::AssetDone),
            );
        }
        if line.offset <= recorded || !listening {
            continue;
        }
        let count = reports.len();
        for (i, report) in reports.into_iter().enumerate() {
            // Only the line's last report carries the offset after the line: a restart
            // between two batches of one line reads the line again, whole.
            let offsets = Offsets {
                stdout: if i + 1 == count { line.offset } else { before },
                ..read
            };
            let report = Reported {
                progress: report,
                read: Some(offsets),
            };
            if progress.send(report).await.is_err() {
                listening = false;
                canceller.cancel();
                break;
            }
        }
    }
    let outcome = match running.wait().await {
        Ok(outcome) => outcome,
        Err(error) => return failed(error.to_string()),
    };
    let mut command = format!(
        "{} {}\n",
        settings.program,
        plan.args
            .iter()
            .map(|a| shell_quoted(a))
            .collect::<Vec<_>>()
            .join(" ")
    );
    command.push_str(&format!("targets: {}\n", plan.hosts.join(" ")));
    for fallback in &plan.fallbacks {
        command.push_str(&format!("without root: {fallback}\n"));
    }
    if outcome.stdout.truncated() {
        command.push_str(&format!(
            "the XML was cut at {} MiB in nmap.xml\n",
            MAX_RAW_BYTES >> 20
        ));
    }
    let raw = vec![
        ("nmap/nmap.xml".to_owned(), outcome.stdout.bytes),
        ("nmap/stderr.txt".to_owned(), outcome.stderr.bytes),
        ("nmap/command.txt".to_owned(), command.into_bytes()),
    ];
    let result = super::program_ended(
        "nmap",
        outcome.ending,
        outcome.exit,
        settings.timeout,
        &last_error_line,
    )
    .and_then(|()| match (&xml.error, finished) {
        (Some(error), _) => Err(error.clone()),
        (None, false) => Err("nmap ended without finishing its XML output".into()),
        (None, true) => Ok(()),
    });
    Ended { result, raw }
}

/// How long each step of a banner grab may wait (to connect, to read), as the nmap engine's.
pub const BANNER_TIMEOUT: Duration = Duration::from_secs(2);
/// The most bytes of a banner kept, as the nmap engine reads them.
pub const MAX_BANNER_BYTES: usize = 4094;
/// Banner grabs at once.
pub const BANNER_CONCURRENCY: usize = 16;

/// The `port_banner` findings of `open` (address or name, port), as the nmap engine's
/// `banner` option makes them: what the service says first, or else its answer to an HTTP
/// request (over TLS when it asks for it). A port that says nothing gives no finding.
async fn grab_banners(open: Vec<(String, u16)>) -> Vec<Finding> {
    use futures_util::StreamExt;
    let grabs = open.into_iter().map(|(host, port)| async move {
        let grabbing = host.clone();
        let banner = crate::runtime::blocking(move || grab_banner(&grabbing, port))
            .await
            .unwrap_or_default();
        (host, port, banner)
    });
    let mut grabbed: Vec<(String, u16, String)> = futures_util::stream::iter(grabs)
        .buffered(BANNER_CONCURRENCY)
        .collect()
        .await;
    grabbed.retain(|(_, _, banner)| !banner.is_empty());
    grabbed
        .into_iter()
        .map(|(host, port, banner)| {
            issue(
                Target {
                    addr: vec![host.clone()],
                    ..Target::default()
                },
                format!("Service banner for {host}:{port}"),
                format!("Service banner:\n\n{banner}"),
                "port_banner",
                Some(json!({"banner": banner, "host": host, "port": port})),
            )
        })
        .collect()
}

/// One port's banner, or empty. Blocking: plain sockets with timeouts.
fn grab_banner(host: &str, port: u16) -> String {
    use std::io::{Read, Write};
    let connect = || -> std::io::Result<std::net::TcpStream> {
        use std::net::ToSocketAddrs;
        let mut last = std::io::Error::other("no address");
        for address in (host, port).to_socket_addrs()? {
            match std::net::TcpStream::connect_timeout(&address, BANNER_TIMEOUT) {
                Ok(stream) => {
                    stream.set_read_timeout(Some(BANNER_TIMEOUT))?;
                    stream.set_write_timeout(Some(BANNER_TIMEOUT))?;
                    return Ok(stream);
                }
                Err(error) => last = error,
            }
        }
        Err(last)
    };
    let read = |stream: &mut dyn Read| -> std::io::Result<String> {
        let mut buffer = vec![0; MAX_BANNER_BYTES];
        let n = stream.read(&mut buffer)?;
        buffer.truncate(n);
        // PostgreSQL, under PatrowlManager, refuses NUL.
        Ok(String::from_utf8_lossy(&buffer).replace('\0', ""))
    };
    // What the service says first, unasked.
    let said = connect().and_then(|mut stream| read(&mut stream));
    let answer = match said {
        Ok(said) => return said,
        // Nothing said within the timeout: maybe it waits for a request.
        Err(_) => connect().and_then(|mut stream| {
            stream.write_all(format!("GET / HTTP/1.1\nHost: {host}\n\n").as_bytes())?;
            read(&mut stream)
        }),
    };
    let answer = answer.unwrap_or_default();
    let wants_tls = [
        "HTTPS is required",
        "The plain HTTP request was sent to HTTPS",
    ]
    .iter()
    .any(|hint| answer.contains(hint));
    if !wants_tls {
        return answer;
    }
    let over_tls = || -> Result<String, String> {
        let tls = super::http::any_certificate_tls()?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let connection = rustls::ClientConnection::new(std::sync::Arc::new(tls), name)
            .map_err(|e| e.to_string())?;
        let stream = connect().map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(connection, stream);
        tls.write_all(format!("GET / HTTP/1.0\nHost: {host}\n\n").as_bytes())
            .map_err(|e| e.to_string())?;
        read(&mut tls).map_err(|e| e.to_string())
    };
    over_tls().unwrap_or_default()
}

/// An argument as a shell would need it, for the report's command line only (nmap runs
/// without a shell).
fn shell_quoted(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.,:/=+@%".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn failed(reason: String) -> Ended {
    Ended {
        result: Err(reason),
        raw: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scan::scanners::values::test_asset as asset;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    /// nmap 7.93's XML for `localhost` (a name) and `127.0.0.1`, with `-sV` and two port
    /// scripts, as it writes it (a tag's end and the next tag's start share lines).
    const LOCALHOST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE nmaprun>
<?xml-stylesheet href="file:///usr/bin/../share/nmap/nmap.xsl" type="text/xsl"?>
<!-- Nmap 7.93 scan initiated Mon Dec  7 19:53:44 2026 as: nmap -vvv -oX - -sV -p 18080,18081 -->
<nmaprun scanner="nmap" args="nmap -vvv -oX - -sV -p 18080,18081 -&#45;script http-title" start="1796673224" version="7.93" xmloutputversion="1.05">
<scaninfo type="syn" protocol="tcp" numservices="2" services="18080-18081"/>
<verbose level="3"/>
<taskbegin task="SYN Stealth Scan" time="1796673227"/>
<host starttime="1796673236" endtime="1796673242"><status state="up" reason="localhost-response" reason_ttl="0"/>
<address addr="127.0.0.1" addrtype="ipv4"/>
<hostnames>
<hostname name="localhost" type="user"/>
<hostname name="localhost" type="PTR"/>
</hostnames>
<ports><extraports state="closed" count="3"/><port protocol="tcp" portid="18080"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="http" product="SimpleHTTPServer" version="0.6" extrainfo="Python 3.11.7" method="probed" conf="10"><cpe>cpe:/a:python:simplehttpserver:0.6</cpe></service><script id="http-title" output="Directory listing for /&#xa;second line"><elem key="title">Directory listing for /</elem>
</script></port>
<port protocol="tcp" portid="18081"><state state="closed" reason="reset" reason_ttl="64"/></port>
<port protocol="tcp" portid="18082"><state state="open" reason="syn-ack" reason_ttl="64"/><service name="tcpwrapped" method="probed" conf="8"/></port>
</ports>
<times srtt="50" rttvar="3763" to="100000"/>
</host>
<host><status state="down" reason="no-response" reason_ttl="0"/>
<address addr="10.9.9.9" addrtype="ipv4"/>
<hostnames>
</hostnames>
</host>
<host><status state="up" reason="arp-response" reason_ttl="0"/>
<address addr="10.9.9.10" addrtype="ipv4"/>
<address addr="02:FC:00:00:00:05" addrtype="mac"/>
<hostnames>
</hostnames>
<ports><extraports state="closed" count="65535"/></ports>
<os><osmatch name="Linux 5.0 - 5.4" accuracy="98" line="1"><osclass type="general purpose" vendor="Linux" osfamily="Linux" osgen="5.X" accuracy="98"><cpe>cpe:/o:linux:linux_kernel:5</cpe></osclass></osmatch></os>
<hostscript><script id="smb-os-discovery" output="&#xa;  OS: Windows"><elem key="os">Windows &amp; more</elem>
<elem key="other">x</elem>
</script></hostscript>
</host>
<runstats><finished time="1796673242" exit="success"/><hosts up="2" down="1" total="3"/>
</runstats>
</nmaprun>
"#;

    fn pieces(xml: &str) -> Vec<Piece> {
        let mut stream = XmlStream::default();
        let pieces = xml.lines().flat_map(|line| stream.feed(line)).collect();
        assert_eq!(stream.error, None);
        pieces
    }

    fn hosts(xml: &str) -> Vec<Element> {
        pieces(xml)
            .into_iter()
            .filter_map(|p| match p {
                Piece::Host(host) => Some(host),
                Piece::Finished => None,
            })
            .collect()
    }

    #[test]
    fn hosts_come_whole_as_their_closing_tag_is_read() {
        let all = pieces(LOCALHOST);
        assert_eq!(all.len(), 4);
        assert_eq!(all[3], Piece::Finished);
        let Piece::Host(host) = &all[0] else {
            panic!("{:?}", all[0])
        };
        let port = host.child("ports").unwrap().all("port").next().unwrap();
        let script = port.child("script").unwrap();
        // Character references are resolved, in attributes as in text.
        assert_eq!(
            script.attr("output"),
            Some("Directory listing for /\nsecond line")
        );
        assert_eq!(
            script.child("elem").unwrap().text,
            "Directory listing for /"
        );
        // A tag cut across lines (nmap never does it, a long line's pieces might) waits.
        let mut stream = XmlStream::default();
        assert!(stream
            .feed("<nmaprun><host><status state=\"up\"")
            .is_empty());
        assert!(stream.feed("/></host>").len() == 1);
        // Broken XML is said once, and nothing more is read.
        let mut stream = XmlStream::default();
        stream.feed("<nmaprun><host a=\"1\" a=\"2\"></host>");
        assert!(stream.error.is_some());
        assert!(stream.feed("<host></host>").is_empty());
    }

    #[test]
    fn findings_have_the_nmap_engines_titles_types_and_metadata() {
        let assets = [
            asset("localhost", Datatype::Fqdn),
            asset("nowhere.invalid", Datatype::Domain),
            asset("10.9.9.11", Datatype::Ip),
            asset("http://localhost:18080/x", Datatype::Url),
        ];
        let opts = options(json!({"ports": ["-"], "script_output_fields": ["os"]}));
        let mut findings = Findings::new(&assets, &opts);
        let hosts = hosts(LOCALHOST);
        let first = findings.host(&hosts[0]);
        let titles: Vec<(&str, &str)> = first
            .iter()
            .map(|f| (f.title.as_str(), f.kind.as_str()))
            .collect();
        assert_eq!(
            titles,
            [
                ("Host 'localhost' has ip: '127.0.0.1'", "host_ip"),
                ("Service 'http' is running on port 'tcp/18080'", "port_info"),
                ("Port 'tcp/18080' is open", "port_status"),
                ("Host 'localhost' is up", "host_availability"),
            ]
        );
        // The name, the URL whose host it is, then its address.
        assert_eq!(
            first[0].target.addr,
            ["localhost", "http://localhost:18080/x"]
        );
        assert_eq!(
            first[1].target.addr,
            ["localhost", "http://localhost:18080/x", "127.0.0.1"]
        );
        let service = &first[1];
        assert_eq!(service.target.port_id, Some(18080));
        assert_eq!(
            service.vuln_refs["CPE"],
            ["cpe:/a:python:simplehttpserver:0.6"]
        );
        assert_eq!(
            service.links,
            [format!(
                "{NVD_CPE_SEARCH}cpe:/a:python:simplehttpserver:0.6"
            )]
        );
        let raw: Value = serde_json::from_str(service.raw.as_deref().unwrap()).unwrap();
        assert_eq!(raw["product"], "SimpleHTTPServer");
        assert_eq!(raw["version"], "0.6");
        assert_eq!(raw["port_id"], "18080");
        assert_eq!(
            raw["script_output"],
            "Directory listing for /\nsecond line\n"
        );
        assert!(service
            .description
            .contains("CPE vector has been identified: cpe:/a:python:simplehttpserver:0.6"));

        // A host down is said to be when an asset names it, not as a member of a range.
        assert_eq!(findings.host(&hosts[1]), []);
        let named = [asset("10.9.9.9", Datatype::Ip)];
        let down = Findings::new(&named, &opts).host(&hosts[1]);
        assert_eq!(down.len(), 1);
        assert_eq!(down[0].title, "Host '10.9.9.9' is down");
        assert_eq!(down[0].target.addr, ["10.9.9.9"]);

        let third = findings.host(&hosts[2]);
        let titles: Vec<&str> = third.iter().map(|f| f.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "OS: Linux 5.0 - 5.4",
                "All Ports are closed",
                "Host '10.9.9.10' is up",
                "Script 'smb-os-discovery' has given results",
                "Script results 'smb-os-discovery/os' set to 'Windows & more'",
            ]
        );
        assert_eq!(third[0].confidence, Confidence::Undefined);
        assert_eq!(third[0].kind, "host_osinfo");
        assert_eq!(third[3].kind, "host_script");
        assert!(third[3].description.ends_with("\n\n  OS: Windows"));
        assert_eq!(third[4].kind, "host_script_advanced");

        // A name nmap did not resolve, and an address it did not list once every port was
        // asked for.
        let end = findings.end();
        let titles: Vec<(&str, Severity)> =
            end.iter().map(|f| (f.title.as_str(), f.severity)).collect();
        assert_eq!(
            titles,
            [
                ("Failed to resolve 'nowhere.invalid'", Severity::Low),
                ("Host '10.9.9.11' is down", Severity::Low),
            ]
        );
        assert_eq!(end[0].kind, "nmap_error_unresolved");
        // Not without every port or a fast scan.
        let some = options(json!({"ports": ["80"]}));
        let mut findings = Findings::new(&assets, &some);
        for host in &hosts {
            findings.host(host);
        }
        assert_eq!(findings.end().len(), 1);
    }

    #[test]
    fn titles_and_types_stay_within_patrowl_managers_columns() {
        // The longest of each kind, with nmap's values at their usual longest.
        let assets = [asset("localhost", Datatype::Fqdn)];
        let opts = options(json!({"ports": "-", "script_output_fields": ["os", "title"]}));
        let mut findings = Findings::new(&assets, &opts);
        let mut all = Vec::new();
        for host in hosts(LOCALHOST) {
            all.extend(findings.host(&host));
        }
        all.extend(findings.end());
        all.push(fallback_finding(&assets, &["x".into()]));
        for finding in &all {
            assert!(finding.title.chars().count() <= 256, "{}", finding.title);
            assert!(finding.kind.chars().count() <= 50, "{}", finding.kind);
        }
    }

    #[test]
    fn a_banner_is_what_a_service_says_first_without_nul() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let speaker = std::thread::spawn(move || {
            use std::io::Write;
            let (mut stream, _) = listener.accept().unwrap();
            stream.write_all(b"SSH-2.0-OpenSSH_9.2\0\r\n").unwrap();
        });
        assert_eq!(grab_banner("127.0.0.1", port), "SSH-2.0-OpenSSH_9.2\r\n");
        speaker.join().unwrap();
        // Nothing listens: no banner.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert_eq!(grab_banner("127.0.0.1", port), "");
    }

    #[test]
    fn options_become_nmaps_arguments_without_a_shell() {
        let assets = [
            asset("10.0.0.1-10.0.0.6", Datatype::IpRange),
            asset("10.1.0.0/16", Datatype::IpSubnet),
            asset("https://[::1]:8443/a", Datatype::Url),
            asset("example.org", Datatype::Domain),
            asset("example.org", Datatype::Fqdn),
        ];
        let opts = options(json!({
            "ports": ["22", "80-81", "U:53", "-"],
            "top_ports": "100",
            "detect_service_version": 1,
            "no_ping": "1",
            "no_dns": 0,
            "script": "libs/vulners.nse,http-title",
            "script_args": "mincvss=5.0 ; rm -rf /",
            "timing-template": 4,
            "max-rtt-timeout": "100ms",
            "syn_scan": 1,
            "detect_os": true,
            "scan_udp": 1,
            "all_scan": 1,
        }));
        let plan = plan(&opts, &assets, true, 65_536).unwrap();
        assert_eq!(
            plan.args.join(" "),
            "-vvv --noninteractive -oX - -iL - --privileged -sU --max-retries 3 -sS -A -sV \
             -O --osscan-guess --max-os-tries 1 -Pn -p22,80-81,U:53,- --top-ports 100 \
             --script vulners.nse,http-title --script-args mincvss=5.0 ; rm -rf / \
             --max-rtt-timeout 100ms -T4"
        );
        // One argument each, as they go to nmap.
        assert!(plan.args.contains(&"mincvss=5.0 ; rm -rf /".to_owned()));
        assert_eq!(
            plan.hosts,
            [
                "10.0.0.1/32",
                "10.0.0.2/31",
                "10.0.0.4/31",
                "10.0.0.6/32",
                "10.1.0.0/16",
                "::1",
                "example.org"
            ]
        );
        assert!(plan.fallbacks.is_empty());

        // Without raw sockets: a connect scan, no OS detection or UDP, and said so.
        let plan = super::plan(&opts, &assets, false, 65_536).unwrap();
        let args = plan.args.join(" ");
        assert!(
            args.contains("--unprivileged -sT -sV -sC -sV -Pn"),
            "{args}"
        );
        assert!(!args.contains("-O") && !args.contains("-sU") && !args.contains("-sS"));
        assert_eq!(plan.fallbacks.len(), 4, "{:?}", plan.fallbacks);
        assert!(plan.fallbacks[0].starts_with("a UDP scan (-sU) needs root"));
    }

    #[test]
    fn what_nmap_would_refuse_or_misread_is_refused_with_its_reason() {
        let refused = |value: Value| plan(&options(value), &[], true, 256).unwrap_err();
        assert!(refused(json!({"ports": ["http"]})).contains("\"http\" is not a port"));
        assert!(refused(json!({"ports": ["0"]})).contains("is not a port"));
        assert!(refused(json!({"ports": []})).contains("options.ports is empty"));
        assert!(refused(json!({"ports": "80", "fast_scan": 1})).contains("-F with -p"));
        assert!(refused(json!({"top_ports": 0})).contains("options.top_ports"));
        assert!(refused(json!({"script": "$(id)"})).contains("options.script"));
        // A path names the shipped script of its file name, never a file of the server.
        let shipped = plan(&options(json!({"script": "../../tmp/x.nse"})), &[], true, 1);
        assert!(shipped
            .unwrap()
            .args
            .ends_with(&["--script".into(), "x.nse".into()]));
        assert!(refused(json!({"script": "--x"})).contains("options.script"));
        assert!(refused(json!({"script_args": "a\nb"})).contains("control character"));
        assert!(
            refused(json!({"script_args": "a".repeat(MAX_OPTION_BYTES + 1)}))
                .contains("longer than 4096 bytes")
        );
        assert!(refused(json!({"timing-template": "fast"})).contains("timing-template"));
        assert!(refused(json!({"max-rtt-timeout": "soon"})).contains("max-rtt-timeout"));
        assert!(refused(json!({"host_file_path": "/etc/hosts"})).contains("reads no file"));
        assert!(refused(json!({"script_output_fields": "os"})).contains("list of keys"));
        // Falsy values are left out, as the nmap engine tests them.
        assert!(plan(
            &options(json!({"banner": 0, "host_file_path": ""})),
            &[],
            true,
            1
        )
        .is_ok());

        let target = |value: &str, datatype| targets(&asset(value, datatype), 256);
        assert!(target("10.0.0.0/16", Datatype::IpSubnet)
            .unwrap_err()
            .contains("65536 hosts, more than the engine's max_hosts (256)"));
        assert!(target("10.0.1.0-10.0.2.255", Datatype::IpRange).is_err());
        assert_eq!(
            target("10.0.0.250-255", Datatype::IpRange).unwrap(),
            ["10.0.0.250/31", "10.0.0.252/30"]
        );
        for (bad, datatype) in [
            ("two names", Datatype::Fqdn),
            ("-oN/tmp/x", Datatype::Domain),
            ("a#b", Datatype::Fqdn),
            ("not an ip", Datatype::Ip),
            ("mailto:x", Datatype::Url),
            ("keyword", Datatype::Keyword),
        ] {
            assert!(target(bad, datatype).is_err(), "{bad}");
        }
    }
}
