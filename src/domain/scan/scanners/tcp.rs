//! The `tcp` scanner: a TCP connect scan of the ports a scan asks for (`ports`, with ranges
//! such as `1-1024`, and `top_ports`) on `ip`, `ip-range`, `ip-subnet`, `fqdn` and `domain`
//! assets, many connections at once, each with a timeout. Every open port is a `port_info`
//! finding in the nmap engine's style, with a service name guessed from the port; each host
//! gets a summary finding. It sends nothing but the connection's handshake.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures_util::{stream, StreamExt};
use ipnet::{IpNet, Ipv4AddrRange, Ipv6AddrRange};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::values::{report, Ended, Job, Reported, TcpSettings};
use crate::domain::scan::Progress;
use crate::domain::scan::{Asset, Confidence, Datatype, Finding, Severity, Target};

/// The most common TCP ports, most common first, after nmap's frequency list; `top_ports: N`
/// takes the first N (all of them past its length).
pub const TOP_PORTS: [u16; 100] = [
    80, 23, 443, 21, 22, 25, 3389, 110, 445, 139, 143, 53, 135, 3306, 8080, 1723, 111, 995, 993,
    5900, 1025, 587, 8888, 199, 1720, 465, 548, 113, 81, 6001, 10000, 514, 5060, 179, 1026, 2000,
    8443, 8000, 32768, 554, 26, 1433, 49152, 2001, 515, 8008, 49154, 1027, 5666, 646, 5000, 5631,
    631, 49153, 8081, 2049, 88, 79, 5800, 106, 2121, 1110, 49155, 6000, 513, 990, 5357, 427, 49156,
    543, 544, 5101, 144, 7, 389, 8009, 3128, 444, 9999, 5009, 7070, 5190, 3000, 5432, 1900, 3986,
    13, 1029, 9, 5051, 6646, 49157, 1028, 873, 1755, 2717, 4899, 9100, 119, 37,
];

/// The largest `top_ports`: how many ports [`TOP_PORTS`] lists.
pub const MAX_TOP_PORTS: usize = TOP_PORTS.len();

/// The options of Patrowl's nmap engine (its `nmap.json` and `engine-nmap.py`) that this
/// scanner does not do, with why. A policy that sets one (to a value Python takes as true, as
/// the nmap engine tests it) is refused rather than run as a plain connect scan, which would
/// report less than it asked for without saying so. The nmap options not named here either
/// are what a connect scan does anyway (`ports`, `top_ports`, `fast_scan`, `tcp_scan`,
/// `no_ping`, `no_dns`, `show_open_ports`), or keys nmap's engine ignores too.
pub const NOT_IMPLEMENTED: [(&str, &str); 20] = [
    ("script", "NSE scripts need nmap"),
    ("script_args", "NSE scripts need nmap"),
    ("script_output_fields", "NSE scripts need nmap"),
    ("script_scan", "NSE scripts (-sC) need nmap"),
    ("detect_os", "it does no OS detection"),
    (
        "detect_service_version",
        "it does no service version detection (the service is only guessed from the port)",
    ),
    (
        "all_scan",
        "it does no OS or version detection, scripts or traceroute (-A)",
    ),
    ("banner", "it reads no banners"),
    ("scan_udp", "it scans TCP only"),
    ("syn_scan", "it makes full TCP connections, not SYN probes"),
    ("ping_scan", "it does no host discovery without ports (-sP)"),
    ("fragment_packets", "it sends no raw packets"),
    (
        "host_file_path",
        "it reads hosts from the assets only, not from a file",
    ),
    ("aggressive_scan", TIMING),
    ("slow_scan", TIMING),
    ("timing-template", TIMING),
    ("min-rate", TIMING),
    ("max-rtt-timeout", TIMING),
    ("max-parallelism", TIMING),
    ("min-hostgroup", TIMING),
];

/// Why nmap's timing options are refused.
const TIMING: &str =
    "its timing is the engine's `concurrency` and `connect_timeout_ms`, not a scan's options";

/// Whether Python takes `value` as true, as the nmap engine's `options.get(key)` does: not
/// null, false, zero, or an empty string, list or object.
pub(super) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Refuses the nmap options this scanner does not do (see [`NOT_IMPLEMENTED`]), and checks
/// the ports.
pub fn check_options(options: &Map<String, Value>) -> Result<(), String> {
    let asked: Vec<String> = NOT_IMPLEMENTED
        .iter()
        .filter(|(key, _)| options.get(*key).is_some_and(truthy))
        .map(|(key, why)| format!("options.{key} ({why})"))
        .collect();
    if !asked.is_empty() {
        // The options first: PatrowlManager shows only the beginning of a refusal's reason.
        return Err(format!(
            "{}: the tcp scanner does not implement them; leave them out or set them to 0",
            asked.join(", ")
        ));
    }
    ports(options).map(drop)
}

/// The service usually found on a port, as nmap's services file names it.
pub fn service(port: u16) -> &'static str {
    match port {
        7 => "echo",
        21 => "ftp",
        22 => "ssh",
        23 => "telnet",
        25 => "smtp",
        53 => "domain",
        80 | 8008 => "http",
        81 => "hosts2-ns",
        88 => "kerberos-sec",
        110 => "pop3",
        111 => "rpcbind",
        119 => "nntp",
        135 => "msrpc",
        139 => "netbios-ssn",
        143 => "imap",
        389 => "ldap",
        443 => "https",
        445 => "microsoft-ds",
        465 => "smtps",
        514 => "shell",
        548 => "afp",
        554 => "rtsp",
        587 => "submission",
        631 => "ipp",
        873 => "rsync",
        993 => "imaps",
        995 => "pop3s",
        1433 => "ms-sql-s",
        1723 => "pptp",
        2049 => "nfs",
        3000 => "ppp",
        3128 => "squid-http",
        3306 => "mysql",
        3389 => "ms-wbt-server",
        5060 => "sip",
        5432 => "postgresql",
        5900 => "vnc",
        6000 => "X11",
        6379 => "redis",
        8000 => "http-alt",
        8080 => "http-proxy",
        8443 => "https-alt",
        9100 => "jetdirect",
        9200 => "elasticsearch",
        27017 => "mongodb",
        _ => "unknown",
    }
}

/// The ports a scan asks for: `ports` (numbers, `"80"`, `"1-1024"`, or one string of them
/// separated by commas) and `top_ports` (a number), together; sorted, each once.
pub fn ports(options: &Map<String, Value>) -> Result<Vec<u16>, String> {
    // Ranges, merged once at the end: a body of many wide ranges (`-,-,-,…`) costs one pass
    // over the ports, not one per range.
    let mut ports: Vec<(u16, u16)> = Vec::new();
    let mut add_text = |text: &str| -> Result<(), String> {
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let port = |p: &str| {
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        format!("options.ports: {part:?} is not a port or a range (1 to 65535)")
                    })
            };
            match part.split_once('-') {
                Some((low, high)) => {
                    // As nmap reads `-p`: a range's missing end is the first or the last
                    // port, so `-` alone (PatrowlManager's "List open ports (all)") is every
                    // port.
                    let low = if low.trim().is_empty() { 1 } else { port(low)? };
                    let high = if high.trim().is_empty() {
                        u16::MAX
                    } else {
                        port(high)?
                    };
                    if low > high {
                        return Err(format!("options.ports: the range {part:?} is backwards"));
                    }
                    ports.push((low, high));
                }
                None => {
                    let port = port(part)?;
                    ports.push((port, port));
                }
            }
        }
        Ok(())
    };
    match options.get("ports") {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => add_text(text)?,
        Some(Value::Number(n)) => add_text(&n.to_string())?,
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(text) => add_text(text)?,
                    Value::Number(n) => add_text(&n.to_string())?,
                    other => {
                        return Err(format!("options.ports: {other} is not a port or a range"))
                    }
                }
            }
        }
        Some(other) => return Err(format!("options.ports: {other} is not a list of ports")),
    }
    match options.get("top_ports") {
        None | Some(Value::Null) => {}
        Some(value) => {
            let n = value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| format!("options.top_ports: {value} is not a number of ports"))?;
            if n > MAX_TOP_PORTS as u64 {
                return Err(format!(
                    "options.top_ports: {n} is more than the {MAX_TOP_PORTS} most common ports \
                     this scanner knows; name the ports in options.ports instead"
                ));
            }
            ports.extend(TOP_PORTS.iter().take(n as usize).map(|&p| (p, p)));
        }
    }
    // nmap's `-F`: its 100 most common ports, which are `TOP_PORTS`.
    if options.get("fast_scan").is_some_and(truthy) {
        ports.extend(TOP_PORTS.map(|p| (p, p)));
    }
    // Neither given: the most common ports, as nmap scans by default.
    if ports.is_empty() && options.get("ports").is_none() && options.get("top_ports").is_none() {
        ports.extend(TOP_PORTS.map(|p| (p, p)));
    }
    if ports.is_empty() {
        return Err("no ports to scan: options.ports and options.top_ports name none".into());
    }
    ports.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::with_capacity(ports.len());
    for (low, high) in ports {
        match merged.last_mut() {
            Some(last) if u32::from(low) <= u32::from(last.1) + 1 => last.1 = last.1.max(high),
            _ => merged.push((low, high)),
        }
    }
    Ok(merged
        .into_iter()
        .flat_map(|(low, high)| low..=high)
        .collect())
}

/// The addresses of an `ip`, `ip-range` (`10.0.0.1-10.0.0.9` or `10.0.0.1-9`) or `ip-subnet`
/// (`10.0.0.0/28`) asset, at most `max_hosts` of them. `None` for a name to resolve.
pub fn addresses(asset: &Asset, max_hosts: usize) -> Result<Option<Vec<IpAddr>>, String> {
    let value = asset.value.trim();
    let too_many = |n: u128| {
        format!("asset {value:?} holds {n} hosts, more than this engine's max_hosts ({max_hosts})")
    };
    let bad = |what: &str| format!("asset {value:?} is not {what}");
    match asset.datatype {
        Datatype::Ip => value
            .parse::<IpAddr>()
            .map(|ip| Some(vec![ip]))
            .map_err(|_| bad("an IP address")),
        Datatype::IpRange => {
            let (low, high) = value
                .split_once('-')
                .ok_or_else(|| bad("a range such as 10.0.0.1-10.0.0.9"))?;
            let low: Ipv4Addr = low.trim().parse().map_err(|_| bad("an IPv4 range"))?;
            let high: Ipv4Addr = match high.trim().parse::<u8>() {
                Ok(last) => {
                    let [a, b, c, _] = low.octets();
                    Ipv4Addr::new(a, b, c, last)
                }
                Err(_) => high.trim().parse().map_err(|_| bad("an IPv4 range"))?,
            };
            if low > high {
                return Err(format!("asset {value:?}: the range is backwards"));
            }
            let n = u128::from(u32::from(high) - u32::from(low)) + 1;
            if n > max_hosts as u128 {
                return Err(too_many(n));
            }
            Ok(Some(
                Ipv4AddrRange::new(low, high).map(IpAddr::V4).collect(),
            ))
        }
        Datatype::IpSubnet => {
            let (base, bits) = value
                .split_once('/')
                .ok_or_else(|| bad("a subnet such as 10.0.0.0/28"))?;
            let bits: u32 = bits.trim().parse().map_err(|_| bad("a subnet"))?;
            let base = base.trim().parse::<IpAddr>().map_err(|_| bad("a subnet"))?;
            let (width, too_long) = match base {
                IpAddr::V4(_) => (32, "an IPv4 subnet (a prefix of 0 to 32 bits)"),
                IpAddr::V6(_) => (128, "an IPv6 subnet (a prefix of 0 to 128 bits)"),
            };
            let net = u8::try_from(bits)
                .ok()
                .and_then(|bits| IpNet::new(base, bits).ok())
                .ok_or_else(|| bad(too_long))?;
            // How many hosts, without overflow: 2^128 does not fit, and is named as the
            // largest number that does.
            let size = width - bits;
            let n = if size >= 127 {
                u128::MAX
            } else {
                1u128 << size
            };
            if n > max_hosts as u128 {
                return Err(too_many(n));
            }
            // Every address of the subnet, its network and broadcast addresses included: a
            // scan is asked for the block as written.
            Ok(Some(match net {
                IpNet::V4(net) => Ipv4AddrRange::new(net.network(), net.broadcast())
                    .map(IpAddr::V4)
                    .collect(),
                IpNet::V6(net) => Ipv6AddrRange::new(net.network(), net.broadcast())
                    .map(IpAddr::V6)
                    .collect(),
            }))
        }
        Datatype::Fqdn | Datatype::Domain => {
            if value.is_empty() || value.len() > 253 || value.contains(char::is_whitespace) {
                return Err(bad("a host name"));
            }
            Ok(None)
        }
        other => Err(format!(
            "asset {value:?}: the tcp scanner cannot scan a {}",
            other.as_str()
        )),
    }
}

/// Checks the ports and every asset's addresses.
pub fn check(
    settings: &TcpSettings,
    assets: &[Asset],
    options: &Map<String, Value>,
) -> Result<(), String> {
    check_options(options)?;
    for asset in assets {
        addresses(asset, settings.max_hosts)?;
    }
    Ok(())
}

/// Scans every asset's hosts, `concurrency` connections at once across all of them (a range of
/// silent hosts takes as long as its probes over `concurrency` timeouts, not a timeout per
/// host), with each host's summary, and each asset done, in the assets' order.
pub async fn scan(settings: &TcpSettings, job: &Job, progress: &mpsc::Sender<Reported>) -> Ended {
    let timeout = settings.connect_timeout;
    scan_with(settings, job, progress, move |address| async move {
        matches!(
            tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await,
            Ok(Ok(_))
        )
    })
    .await
}

/// What [`scan`] does, with `probe` telling whether a port is open.
async fn scan_with<P, F>(
    settings: &TcpSettings,
    job: &Job,
    progress: &mpsc::Sender<Reported>,
    probe: P,
) -> Ended
where
    P: Fn(SocketAddr) -> F,
    F: std::future::Future<Output = bool>,
{
    let ports = match ports(&job.options) {
        Ok(ports) => ports,
        Err(reason) => return failed(reason),
    };
    let mut raw = String::new();
    // Every asset's hosts first (names resolved one after the other), each with its asset;
    // `ends[a]`: where asset `a`'s hosts end in `hosts`.
    let mut hosts: Vec<(usize, IpAddr)> = Vec::new();
    let mut ends = Vec::with_capacity(job.assets.len());
    let mut unresolved_of: Vec<Option<(Finding, String)>> = vec![None; job.assets.len()];
    for (a, asset) in job.assets.iter().enumerate() {
        let found = match addresses(asset, settings.max_hosts) {
            Ok(Some(found)) => found,
            Ok(None) => match tokio::net::lookup_host((asset.value.trim(), 0)).await {
                Ok(found) => {
                    let mut found: Vec<IpAddr> = found.map(|a| a.ip()).collect();
                    found.sort();
                    found.dedup();
                    found
                }
                Err(error) => {
                    let error = error.to_string();
                    unresolved_of[a] = Some((unresolved(asset, &error), error));
                    Vec::new()
                }
            },
            Err(reason) => return failed(reason),
        };
        hosts.extend(found.into_iter().map(|host| (a, host)));
        ends.push(hosts.len());
    }
    let probes = hosts.iter().enumerate().flat_map(|(h, (_, host))| {
        ports
            .iter()
            .map(move |port| (h, SocketAddr::new(*host, *port)))
    });
    let mut results = stream::iter(probes.map(|(h, address)| {
        let open = probe(address);
        async move { (h, address.port(), open.await) }
    }))
    .buffer_unordered(settings.concurrency);
    let mut open: Vec<Vec<u16>> = vec![Vec::new(); hosts.len()];
    let mut left: Vec<usize> = vec![ports.len(); hosts.len()];
    // The next host to summarize and the next asset to say done, in order.
    let (mut next_host, mut next_asset) = (0, 0);
    loop {
        // Whatever is done, in order: an asset's unresolved name, its hosts' summaries, the
        // asset itself.
        while next_asset < job.assets.len() {
            let asset = &job.assets[next_asset];
            if let Some((finding, error)) = unresolved_of[next_asset].take() {
                let _ = writeln!(raw, "{}: not resolved: {error}", asset.value);
                if !report(progress, Progress::Finding(Box::new(finding))).await {
                    return stopped();
                }
            }
            while next_host < ends[next_asset] && left[next_host] == 0 {
                let host = hosts[next_host].1;
                let found = &mut open[next_host];
                found.sort_unstable();
                let _ = writeln!(
                    raw,
                    "{} {host}: {} open of {} scanned",
                    asset.value,
                    found.len(),
                    ports.len()
                );
                let summary = summary(asset, host, found, ports.len());
                if !report(progress, Progress::Finding(Box::new(summary))).await {
                    return stopped();
                }
                next_host += 1;
            }
            if next_host < ends[next_asset] {
                break;
            }
            if !report(progress, Progress::AssetDone(asset.value.clone())).await {
                return stopped();
            }
            next_asset += 1;
        }
        let Some((h, port, is_open)) = results.next().await else {
            break;
        };
        left[h] -= 1;
        if is_open {
            let (a, host) = hosts[h];
            let asset = &job.assets[a];
            open[h].push(port);
            let _ = writeln!(
                raw,
                "{} {host} {port}/tcp open {}",
                asset.value,
                service(port)
            );
            let finding = open_port(asset, host, port);
            if !report(progress, Progress::Finding(Box::new(finding))).await {
                return stopped();
            }
        }
    }
    Ended {
        result: Ok(()),
        raw: vec![("tcp.txt".into(), raw.into_bytes())],
    }
}

fn failed(reason: String) -> Ended {
    Ended {
        result: Err(reason),
        raw: Vec::new(),
    }
}

fn stopped() -> Ended {
    failed("stopped".into())
}

/// The address a finding about `host` is filed under: the host itself when the asset is a
/// range or subnet, as the nmap engine reports each host it finds. PatrowlManager files a
/// finding under its address, creating the host's asset below the range or subnet, and keeps
/// one finding per address and title: under the range's value, the same port open on two
/// hosts would be one finding. A name or a single address stays as the asset says it.
fn host_addr(asset: &Asset, host: IpAddr) -> String {
    match asset.datatype {
        Datatype::IpRange | Datatype::IpSubnet => host.to_string(),
        _ => asset.value.clone(),
    }
}

fn open_port(asset: &Asset, host: IpAddr, port: u16) -> Finding {
    let service = service(port);
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title: format!("Port '{port}/tcp' is open (service: {service})"),
        description: format!(
            "Port {port}/tcp of {} ({host}) accepts TCP connections. The service usually \
             found on this port is {service}.",
            asset.value
        ),
        solution: "n/a".into(),
        kind: "port_info".into(),
        target: Target {
            addr: vec![host_addr(asset, host)],
            protocol: Some("tcp".into()),
            port_id: Some(port),
            port_type: Some("tcp".into()),
        },
        raw: Some(
            serde_json::json!({"ip": host.to_string(), "port": port, "state": "open",
                "service": service})
            .to_string(),
        ),
        tags: vec!["port".into(), service.into()],
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

fn summary(asset: &Asset, host: IpAddr, open: &[u16], scanned: usize) -> Finding {
    let list: Vec<String> = open.iter().map(u16::to_string).collect();
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title: format!(
            "Host '{}' ({host}): {} open port(s) of {scanned} scanned",
            asset.value,
            open.len()
        ),
        description: if open.is_empty() {
            format!("No port of the {scanned} scanned accepts TCP connections on {host}.")
        } else {
            format!(
                "Open TCP ports on {host}: {}. {} other port(s) scanned are closed or \
                 filtered.",
                list.join(", "),
                scanned - open.len()
            )
        },
        solution: "n/a".into(),
        kind: "port_summary".into(),
        target: Target {
            addr: vec![host_addr(asset, host)],
            protocol: Some("tcp".into()),
            port_id: None,
            port_type: None,
        },
        raw: Some(
            serde_json::json!({"ip": host.to_string(), "open_ports": open, "scanned": scanned})
                .to_string(),
        ),
        tags: vec!["summary".into()],
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

fn unresolved(asset: &Asset, error: &str) -> Finding {
    Finding {
        severity: Severity::Info,
        confidence: Confidence::Certain,
        title: format!("Host '{}' could not be resolved", asset.value),
        description: format!(
            "The name {} has no address this server can find ({error}); none of its ports \
             were scanned.",
            asset.value
        ),
        solution: "Check the asset's name.".into(),
        kind: "host_availability".into(),
        target: Target {
            addr: vec![asset.value.clone()],
            ..Target::default()
        },
        raw: None,
        tags: Vec::new(),
        links: Vec::new(),
        vuln_refs: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::scan::scanners::values::test_asset as asset;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn ports_come_as_numbers_strings_ranges_and_top_ports() {
        assert_eq!(
            ports(&options(json!({"ports": ["22", 80, "8000-8002"]}))).unwrap(),
            [22, 80, 8000, 8001, 8002]
        );
        assert_eq!(
            ports(&options(json!({"ports": "443, 1-3"}))).unwrap(),
            [1, 2, 3, 443]
        );
        assert_eq!(
            ports(&options(json!({"top_ports": 3}))).unwrap(),
            [23, 80, 443]
        );
        assert_eq!(
            ports(&options(json!({"top_ports": 100}))).unwrap().len(),
            MAX_TOP_PORTS
        );
        assert_eq!(ports(&options(json!({}))).unwrap().len(), 100);
        assert_eq!(ports(&options(json!({"fast_scan": 1}))).unwrap().len(), 100);
        // nmap's open ranges: `-` is every port.
        assert_eq!(
            ports(&options(json!({"ports": ["-"]}))).unwrap().len(),
            65535
        );
        assert_eq!(
            ports(&options(json!({"ports": "-3, 65534-"}))).unwrap(),
            [1, 2, 3, 65534, 65535]
        );
        // Overlapping, repeated and adjacent ranges: each port once, in order.
        assert_eq!(
            ports(&options(json!({"ports": "5-7, 3, 6-9, 10, 3-4, 9"}))).unwrap(),
            [3, 4, 5, 6, 7, 8, 9, 10]
        );
        let many = vec!["-"; 20_000].join(",");
        assert_eq!(
            ports(&options(json!({"ports": many}))).unwrap().len(),
            65535
        );
        for bad in [
            json!({"ports": []}),
            json!({"ports": ["0"]}),
            json!({"ports": ["9-1"]}),
            json!({"ports": ["http"]}),
            json!({"ports": {"a": 1}}),
            json!({"top_ports": "x"}),
            json!({"top_ports": 101}),
            json!({"ports": ["-0"]}),
        ] {
            assert!(ports(&options(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_and_subnets_are_bounded() {
        let hosts = addresses(&asset("10.0.0.1-10.0.0.3", Datatype::IpRange), 256).unwrap();
        assert_eq!(hosts.unwrap().len(), 3);
        let hosts = addresses(&asset("10.0.0.250-255", Datatype::IpRange), 256).unwrap();
        assert_eq!(hosts.unwrap().len(), 6);
        let hosts = addresses(&asset("10.0.0.7/30", Datatype::IpSubnet), 256).unwrap();
        assert_eq!(
            hosts.unwrap(),
            (4..8)
                .map(|i| IpAddr::V4(Ipv4Addr::new(10, 0, 0, i)))
                .collect::<Vec<_>>()
        );
        let error = addresses(&asset("10.0.0.0/16", Datatype::IpSubnet), 256).unwrap_err();
        assert!(error.contains("65536 hosts"), "{error}");
        let hosts = addresses(&asset("::1/120", Datatype::IpSubnet), 256).unwrap();
        assert_eq!(hosts.unwrap().len(), 256);
        let error = addresses(&asset("::/0", Datatype::IpSubnet), 256).unwrap_err();
        assert!(error.contains(&format!("{} hosts", u128::MAX)), "{error}");
        assert_eq!(
            addresses(&asset("10.0.0.0/33", Datatype::IpSubnet), 256).unwrap_err(),
            "asset \"10.0.0.0/33\" is not an IPv4 subnet (a prefix of 0 to 32 bits)"
        );
        assert_eq!(
            addresses(&asset("::/129", Datatype::IpSubnet), 256).unwrap_err(),
            "asset \"::/129\" is not an IPv6 subnet (a prefix of 0 to 128 bits)"
        );
        let hosts = addresses(&asset("10.0.0.255/32", Datatype::IpSubnet), 256).unwrap();
        assert_eq!(hosts.unwrap(), [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 255))]);
        assert!(addresses(&asset("10.0.0.9-10.0.0.1", Datatype::IpRange), 256).is_err());
        assert!(addresses(&asset("nope", Datatype::Ip), 256).is_err());
        assert_eq!(
            addresses(&asset("example.org", Datatype::Fqdn), 256).unwrap(),
            None
        );
    }

    #[test]
    fn nmap_options_it_does_not_do_are_refused_when_python_takes_them_as_true() {
        for off in [json!(0), json!(false), json!(""), json!(null), json!([])] {
            assert!(check_options(&options(json!({"detect_os": off}))).is_ok());
        }
        for on in [json!(1), json!(true), json!("0"), json!(["x"]), json!(0.5)] {
            let error = check_options(&options(json!({"detect_os": on}))).unwrap_err();
            assert!(
                error.contains("options.detect_os (it does no OS detection)"),
                "{error}"
            );
        }
        // Keys of nmap's engine that a connect scan does anyway, and unknown keys, pass.
        assert!(check_options(&options(
            json!({"no_ping": 1, "no_dns": 1, "tcp_scan": 1, "show_open_ports": 1, "depth": 3})
        ))
        .is_ok());
    }

    /// A /24 of silent hosts and one more address, 100 ports each, 256 connections at once,
    /// each timing out after 1 s: 25,700 probes take 101 timeouts, not one per host (257), and
    /// each host's summary and each asset come in order.
    #[tokio::test(start_paused = true)]
    async fn connections_are_spread_across_hosts() {
        let settings = TcpSettings {
            concurrency: 256,
            connect_timeout: std::time::Duration::from_secs(1),
            max_hosts: 256,
        };
        let job = Job {
            engine: "tcp".into(),
            scan_id: "1".into(),
            assets: vec![
                asset("10.0.0.0/24", Datatype::IpSubnet),
                asset("10.0.1.7", Datatype::Ip),
            ],
            options: Map::new(),
            run_dir: std::path::PathBuf::new(),
            follow: None,
        };
        let (sender, mut reports) = mpsc::channel::<Reported>(1024);
        let collected = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(reported) = reports.recv().await {
                all.push(reported.progress);
            }
            all
        });
        let started = tokio::time::Instant::now();
        let ended = scan_with(&settings, &job, &sender, |address: SocketAddr| async move {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            // One open port, on the last host of the subnet.
            address == "10.0.0.255:80".parse::<SocketAddr>().unwrap()
        })
        .await;
        drop(sender);
        assert_eq!(ended.result, Ok(()));
        assert_eq!(started.elapsed(), std::time::Duration::from_secs(101));
        let all = collected.await.unwrap();
        // An open port is reported as it is found; the rest in order.
        let open: Vec<&Finding> = all
            .iter()
            .filter_map(|p| match p {
                Progress::Finding(f) if f.kind == "port_info" => Some(&**f),
                _ => None,
            })
            .collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].target.port_id, Some(80));
        let order: Vec<String> = all
            .iter()
            .filter_map(|p| match p {
                Progress::Finding(f) if f.kind == "port_info" => None,
                Progress::Finding(f) => Some(f.target.addr[0].clone()),
                Progress::AssetDone(a) => Some(format!("done {a}")),
            })
            .collect();
        let mut expected: Vec<String> = (0..=255).map(|i| format!("10.0.0.{i}")).collect();
        expected.extend(["done 10.0.0.0/24", "10.0.1.7", "done 10.0.1.7"].map(String::from));
        assert_eq!(order, expected);
    }

    #[test]
    fn services_are_guessed_from_the_port() {
        assert_eq!(service(22), "ssh");
        assert_eq!(service(443), "https");
        assert_eq!(service(41234), "unknown");
    }
}
