//! A Go duration (`1h2m3.5s`), as HPCWaaS's and the event API's `timeout` parameters take it.
#![no_main]

use annals::http::params::GoDuration;
use annals_fuzz::{linear_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = within("GoDuration", linear_bound(data), || GoDuration::parse(text));
});
