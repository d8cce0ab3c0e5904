//! A `POST /v1/results/` body (refstack-client's results).
#![no_main]

use annals::testresults::{Limits, UploadedResults};
use annals_fuzz::{testresults_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let result = within("parse", testresults_bound(data, &limits), || {
        UploadedResults::parse(data, &limits)
    });
    if let Ok(results) = result {
        assert!(!results.results.is_empty());
        assert!(results.results.len() <= limits.max_tests);
    }
});
