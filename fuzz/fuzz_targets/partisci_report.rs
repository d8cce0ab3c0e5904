//! A Partisci version report as `POST /api/v1/update/` takes it.
#![no_main]

use annals::domain::inventory::values::VersionReport;
use annals_fuzz::{linear_bound, within};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(report) = within("VersionReport", linear_bound(data), || {
        VersionReport::parse(data)
    }) {
        let _ = (
            report.app_id(),
            report.ver(),
            report.host(),
            report.instance(),
        );
    }
});
