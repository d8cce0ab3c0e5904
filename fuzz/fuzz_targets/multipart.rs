//! The multipart reader of `POST /v1/post-result`: the first byte says how many of the next
//! bytes are the boundary (as the content type would give it), the rest is the body.
#![no_main]

use annals::http::refstack::multipart::file_field;
use annals_fuzz::{linear_bound, within};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&length, rest)) = data.split_first() else {
        return;
    };
    let length = usize::from(length % 80).min(rest.len());
    let Ok(boundary) = std::str::from_utf8(&rest[..length]) else {
        return;
    };
    let body = Bytes::copy_from_slice(&rest[length..]);
    let boundary = (!boundary.is_empty()).then_some(boundary);
    let result = within("file_field", linear_bound(&body), || {
        file_field(&body, boundary)
    });
    if let Ok(file) = result {
        assert!(file.len() <= body.len());
    }
});
