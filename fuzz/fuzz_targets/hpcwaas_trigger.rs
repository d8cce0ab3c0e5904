//! An HPCWaaS trigger body (`{"inputs":{…}}`).
#![no_main]

use annals::http::hpcwaas::parse_inputs;
use annals_fuzz::{json_value_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = within("trigger", json_value_bound(data), || parse_inputs(data));
});
