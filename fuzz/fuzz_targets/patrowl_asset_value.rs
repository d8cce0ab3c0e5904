//! One Patrowl asset's value as the scanners read it: the first byte picks the datatype, the
//! rest is the value; the hosts check, then the addresses at the default `max_hosts`.
#![no_main]

use annals::domain::scan::{Asset, Datatype, MAX_ASSET_BYTES};
use annals::domain::scan::scanners::{check_hosts, tcp::addresses};
use annals_fuzz::{linear_bound, within};
use libfuzzer_sys::fuzz_target;

/// `[engines.*] max_hosts`'s default.
const MAX_HOSTS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(value) = std::str::from_utf8(rest) else {
        return;
    };
    if value.len() > MAX_ASSET_BYTES {
        return;
    }
    let asset = Asset {
        id: String::new(),
        value: value.to_owned(),
        criticity: String::new(),
        datatype: Datatype::ALL[usize::from(which) % Datatype::ALL.len()],
    };
    let hosts = MAX_HOSTS * std::mem::size_of::<std::net::IpAddr>();
    within("asset", linear_bound(rest) + 2 * hosts, || {
        let _ = check_hosts(std::slice::from_ref(&asset));
        if let Ok(Some(addresses)) = addresses(&asset, MAX_HOSTS) {
            assert!(!addresses.is_empty() && addresses.len() <= MAX_HOSTS);
        }
    });
});
