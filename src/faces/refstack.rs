//! The test results face: Refstack's v1 test runs and its later results API, on the main
//! listener only.

use actix_web::{web, ResponseError};

use super::{face_common, Start, Started};
use crate::config::{FaceSection, RefstackSection};
use crate::domain::results::Results;
use crate::domain::testrun::TestRuns;
use crate::http::refstack;

pub struct Refstack;

face_common!(Refstack: refstack, RefstackApi, [
            "/v1",
            "/update-test-status",
            "/post-result",
            "/get-miniconf",
            "/get-testcases"
        ], |path| {
    refstack::RefstackError::not_found(format!("{path} is not a route of the test results API"))
        .error_response()
});

impl Refstack {
    async fn launch(start: Start<'_>, section: &RefstackSection) -> anyhow::Result<Started> {
        let blobs = start.stores.blobs()?;
        let limits = crate::testresults::Limits {
            max_input_bytes: (section.max_upload_kb * 1024) as usize,
            max_tests: section.max_tests,
            ..crate::testresults::Limits::default()
        };
        let core = start.core();
        let runs = TestRuns::start(&core, blobs.clone(), limits.clone());
        let results = Results::start(&core, blobs, limits).await?;
        Ok(Started::sharing(web::Data::new(refstack::Refstack {
            runs,
            results,
            gate: start.gate(section.auth, section.max_body()),
            max_upload: (section.max_upload_kb * 1024) as usize,
        })))
    }
}
