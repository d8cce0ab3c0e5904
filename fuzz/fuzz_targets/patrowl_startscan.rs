//! A Patrowl `startscan` body, then its assets' values as the scanners read them (the hosts
//! check, and the addresses of ip, ip-range and ip-subnet assets at the default `max_hosts`).
#![no_main]

use annals::http::patrowl::parse_startscan_assets;
use annals::domain::scan::scanners::{check_hosts, tcp::addresses};
use annals_fuzz::{json_value_bound, within, SLACK};
use libfuzzer_sys::fuzz_target;

/// `[engines.*] max_hosts`'s default.
const MAX_HOSTS: usize = 256;

fuzz_target!(|data: &[u8]| {
    within("startscan", json_value_bound(data) + SLACK, || {
        if let Ok(assets) = parse_startscan_assets(data) {
            let _ = check_hosts(&assets);
            for asset in &assets {
                if let Ok(Some(hosts)) = addresses(asset, MAX_HOSTS) {
                    assert!(hosts.len() <= MAX_HOSTS);
                }
            }
        }
    });
});
