//! A Partisci datagram as the UDP receiver reads it.
#![no_main]

use annals::http::partisci::udp::parse_datagram;
use annals_fuzz::{linear_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = within("datagram", linear_bound(data), || parse_datagram(data)) {
        let _ = (
            report.app_id(),
            report.ver(),
            report.host(),
            report.instance(),
        );
    }
});
