//! A test-results upload read as JSON (refstack-client's results or the 2014 parsed results)
//! whatever it looks like; a parsed run's 2014 view must hold every test once.
#![no_main]

use annals::testresults::{parse_as, Format, Limits};
use annals_fuzz::{testresults_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let result = within("parse", testresults_bound(data, &limits), || {
        parse_as(Format::ParsedResultsJson, data, &limits)
    });
    if let Ok(run) = result {
        assert_eq!(run.summary.total, run.tests.len() as u64);
        let parsed = run.to_parsed_results();
        let listed: usize = parsed.data.values().map(Vec::len).sum();
        assert_eq!(listed, run.tests.len());
    }
});
