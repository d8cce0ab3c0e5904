//! A test-results upload read as subunit v1 whatever it looks like, bytes outside the protocol
//! skipped or refused as the first byte says.
#![no_main]

use annals::testresults::Format;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| annals_fuzz::subunit_as(Format::SubunitV1, data));
