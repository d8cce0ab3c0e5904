//! Reading the `file` field of a `multipart/form-data` body already read whole under the face's
//! limit: the boundary from the content type, the parts between its delimiters, and the part
//! whose `Content-Disposition` names `file`. It returns a slice of the body, copying nothing,
//! and never indexes past what it checked: a malformed envelope is an error, never a panic.

use actix_web::http::header::{ContentDisposition, HeaderValue};
use actix_web::web::Bytes;
use memchr::memmem;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the multipart content type has no boundary")]
    NoBoundary,
    #[error("the multipart body is malformed: {0}")]
    Malformed(&'static str),
    #[error("No file was posted: the multipart body has no `file` field")]
    NoFile,
}

/// The longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;
/// The most header bytes one part may have.
const MAX_PART_HEADERS: usize = 16 * 1024;

/// The content of the part named `file` in `body`, whose content type gave `boundary`.
pub fn file_field(body: &Bytes, boundary: Option<&str>) -> Result<Bytes, MultipartError> {
    let boundary = boundary
        .filter(|b| !b.is_empty() && b.len() <= MAX_BOUNDARY)
        .ok_or(MultipartError::NoBoundary)?;
    let delimiter = format!("--{boundary}");
    let between = format!("\r\n--{boundary}");
    let data: &[u8] = body;
    // The first delimiter opens the body or follows the preamble's last line break.
    let mut at = if data.starts_with(delimiter.as_bytes()) {
        delimiter.len()
    } else {
        memmem::find(data, between.as_bytes())
            .map(|found| found + between.len())
            .ok_or(MultipartError::Malformed("no boundary delimiter"))?
    };
    loop {
        let rest = &data[at..];
        if rest.starts_with(b"--") {
            return Err(MultipartError::NoFile);
        }
        // Transport padding, then the line break that ends the delimiter line.
        let line_end = memmem::find(rest, b"\r\n")
            .ok_or(MultipartError::Malformed("a delimiter line does not end"))?;
        if !rest[..line_end].iter().all(|b| *b == b' ' || *b == b'\t') {
            return Err(MultipartError::Malformed("text after a boundary delimiter"));
        }
        let part_start = at + line_end + 2;
        let part = &data[part_start..];
        let headers_end = if part.starts_with(b"\r\n") {
            0
        } else {
            memmem::find(part, b"\r\n\r\n")
                .map(|end| end + 2)
                .ok_or(MultipartError::Malformed("a part's headers do not end"))?
        };
        if headers_end > MAX_PART_HEADERS {
            return Err(MultipartError::Malformed("a part's headers are too long"));
        }
        let headers = &part[..headers_end];
        let content_start = part_start + headers_end + 2;
        let content_len = memmem::find(&data[content_start..], between.as_bytes()).ok_or(
            MultipartError::Malformed("a part is not closed by a delimiter"),
        )?;
        if names_file(headers) {
            return Ok(body.slice(content_start..content_start + content_len));
        }
        at = content_start + content_len + between.len();
    }
}

/// Whether a part's headers have `Content-Disposition: form-data; name="file"`. The header is
/// read by actix-web's own parser, which honours quoted strings and escapes: a `;` or `name=`
/// inside another parameter's quoted value (`filename="a;name=file"`) is only text.
fn names_file(headers: &[u8]) -> bool {
    headers
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let (name, value) = (&line[..colon], &line[colon + 1..]);
            name.trim_ascii()
                .eq_ignore_ascii_case(b"content-disposition")
                .then(|| HeaderValue::from_bytes(value.trim_ascii()).ok())
                .flatten()
        })
        .filter_map(|value| ContentDisposition::from_raw(&value).ok())
        .any(|disposition| disposition.is_form_data() && disposition.get_name() == Some("file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, &[u8])]) -> Bytes {
        let mut out = b"preamble\r\n".to_vec();
        for (name, content) in parts {
            out.extend_from_slice(b"--XyZ\r\n");
            out.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"r\"\r\n")
                    .as_bytes(),
            );
            out.extend_from_slice(b"Content-Type: application/octet-stream\r\n\r\n");
            out.extend_from_slice(content);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"--XyZ--\r\n");
        Bytes::from(out)
    }

    #[test]
    fn the_file_part_is_found_byte_exact_among_others() {
        let binary: Vec<u8> = (0..=255u8).chain(*b"\r\n--Xy\r\n").collect();
        let body = body(&[("other", b"x"), ("file", &binary)]);
        assert_eq!(file_field(&body, Some("XyZ")).unwrap(), binary);
    }

    fn one_part(disposition: &str) -> Bytes {
        Bytes::from(format!(
            "--XyZ\r\nContent-Disposition: {disposition}\r\n\r\ncontent\r\n--XyZ--\r\n"
        ))
    }

    #[test]
    fn the_disposition_is_read_with_its_quoted_strings() {
        for other in [
            r#"form-data; name="other"; filename="a;name=file""#,
            r#"form-data; name="other"; filename="a; name=\"file\"""#,
            r#"form-data; name="files""#,
            r#"form-data; name="x"; name2="file""#,
            r#"attachment; name="file""#,
        ] {
            assert_eq!(
                file_field(&one_part(other), Some("XyZ")),
                Err(MultipartError::NoFile),
                "{other}"
            );
        }
        for file in [
            r#"form-data; name="file""#,
            r#"form-data; filename="a;b"; name="file""#,
            r#"Form-Data; NAME=file"#,
            r#"form-data;name="file";filename="r.json""#,
        ] {
            assert_eq!(
                file_field(&one_part(file), Some("XyZ")),
                Ok(Bytes::from_static(b"content")),
                "{file}"
            );
        }
    }

    #[test]
    fn a_body_without_a_file_part_says_so() {
        let body = body(&[("other", b"x")]);
        assert_eq!(file_field(&body, Some("XyZ")), Err(MultipartError::NoFile));
        assert_eq!(file_field(&body, None), Err(MultipartError::NoBoundary));
    }

    #[test]
    fn every_truncation_of_an_envelope_is_an_error_or_the_file_never_a_panic() {
        let body = body(&[("file", b"content")]);
        for end in 0..body.len() {
            let cut = body.slice(..end);
            if let Ok(file) = file_field(&cut, Some("XyZ")) {
                assert_eq!(file, &b"content"[..]);
            }
        }
        for i in 0..body.len() {
            let mut flipped = body.to_vec();
            flipped[i] ^= 0x55;
            let _ = file_field(&Bytes::from(flipped), Some("XyZ"));
        }
    }
}
