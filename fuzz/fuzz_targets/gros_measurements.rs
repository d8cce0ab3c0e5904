//! A GROS agent's `status` measurements (a JSON list).
#![no_main]

use annals::domain::gros::values::{parse_measurements, MAX_MEASUREMENTS};
use annals_fuzz::{json_value_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(list) = within("measurements", json_value_bound(data), || {
        parse_measurements(text)
    }) {
        assert!(list.len() <= MAX_MEASUREMENTS);
    }
});
