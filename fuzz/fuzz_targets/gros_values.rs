//! The GROS controller's values: the first byte picks the parser (project key, agent name,
//! network, gatherer version, request parameters), the rest is the text.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use annals::domain::gros::values::{AgentName, GathererVersion, Network, ProjectKey};
use annals::http::gros::parse_form;
use annals_fuzz::{json_value_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    // A few bytes per `-` for the version's parts: a value's bound is that of a JSON value.
    within("gros value", json_value_bound(rest), || match which % 5 {
        0 => drop(ProjectKey::parse(text)),
        1 => drop(AgentName::parse(text)),
        2 => {
            if let Ok(network) = Network::parse(text) {
                for address in [
                    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    IpAddr::V6(Ipv6Addr::LOCALHOST),
                ] {
                    network.contains(address);
                }
            }
        }
        3 => {
            let (expected, raw) = text.split_once('\n').unwrap_or(("", text));
            drop(GathererVersion::parse(raw, expected));
        }
        _ => drop(parse_form(text)),
    });
});
