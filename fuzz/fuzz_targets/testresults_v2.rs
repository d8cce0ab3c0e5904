//! A test-results upload read as subunit v2 whatever it looks like, bytes outside the protocol
//! skipped or refused as the first byte says.
#![no_main]

use annals::testresults::{parse_as, Format, Limits, NonSubunit};
use annals_fuzz::{testresults_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        non_subunit: if mode & 1 == 0 {
            NonSubunit::Skip
        } else {
            NonSubunit::Reject
        },
        ..Limits::default()
    };
    let result = within("parse", testresults_bound(input, &limits), || {
        parse_as(Format::SubunitV2, input, &limits)
    });
    if let Ok(run) = result {
        assert_eq!(run.summary.total, run.tests.len() as u64);
    }
});
