//! A test-results upload as the Refstack face takes it: the detection, then the parse of
//! whichever format it found. The format parsed must be the one detected, and a parsed run
//! must hold tests that its summary counts.
#![no_main]

use annals::testresults::{detect, parse, Limits};
use annals_fuzz::{linear_bound, testresults_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let format = within("detect", linear_bound(data), || detect(data));
    let result = within("parse", testresults_bound(data, &limits), || {
        parse(data, &limits)
    });
    if let Ok(run) = result {
        assert_eq!(
            Some(run.format),
            format,
            "parsed as another format than detected"
        );
        assert!(!run.tests.is_empty(), "a run without tests");
        assert_eq!(run.summary.total, run.tests.len() as u64);
    }
});
