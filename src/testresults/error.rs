//! Why an upload could not be read: one typed error per kind of problem, each saying where (a
//! byte offset into the upload) and what. Nothing here decides an HTTP status; every variant is
//! the client's fault, so a face answers all of them alike (400 with the message).

use super::values::Format;

/// An upload that is not a readable test run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the upload is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the upload is empty")]
    Empty,
    /// The bytes were read to the end as `format` but held no test result: plain text that is
    /// no subunit, a stream that only lists tests, an empty `data`.
    #[error("no test results found in the upload (read as {format})")]
    NoTests { format: Format },
    #[error("more than {limit} tests, at byte {offset}")]
    TooManyTests { limit: usize, offset: usize },
    /// Bytes between subunit v2 packets (or v1 lines that are not directives) while the limits
    /// say to reject them.
    #[error("bytes that are not subunit at byte {offset}")]
    NonSubunit { offset: usize },
    #[error("subunit v2: {problem}, at byte {offset}")]
    V2 { offset: usize, problem: V2Problem },
    #[error("subunit v1: {problem}, at byte {offset}")]
    V1 { offset: usize, problem: V1Problem },
    /// JSON that does not parse, or parses into neither results format. `message` is serde's.
    #[error("JSON results: {message}, at byte {offset}")]
    Json { offset: usize, message: String },
}

impl ParseError {
    /// Where in the upload the problem was found, when it has a place.
    pub fn offset(&self) -> Option<usize> {
        match self {
            ParseError::TooLarge { .. } | ParseError::Empty | ParseError::NoTests { .. } => None,
            ParseError::TooManyTests { offset, .. }
            | ParseError::NonSubunit { offset }
            | ParseError::V2 { offset, .. }
            | ParseError::V1 { offset, .. }
            | ParseError::Json { offset, .. } => Some(*offset),
        }
    }
}

/// What is wrong with a subunit v2 packet. The offset of the enclosing [`ParseError::V2`] is
/// where the packet starts, or the field for field-level problems.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2Problem {
    #[error("the packet is cut off: {needed} bytes needed, {available} left")]
    Truncated { needed: usize, available: usize },
    #[error("version {version} in the flags, expected 2")]
    Version { version: u8 },
    #[error("the packet length is encoded in 4 octets; packets are smaller than 4 MiB")]
    LengthTooLong,
    #[error("the packet length {length} is too small for its header and CRC ({minimum} bytes)")]
    LengthTooSmall { length: usize, minimum: usize },
    #[error("bad CRC32: computed {computed:#010x}, stored {stored:#010x}")]
    Crc { computed: u32, stored: u32 },
    #[error("the {field} field runs past the end of the packet")]
    FieldOverrun { field: &'static str },
    #[error("the {field} string is not UTF-8")]
    NotUtf8 { field: &'static str },
    #[error("the {field} string contains a NUL byte")]
    Nul { field: &'static str },
    #[error("the timestamp has {nanoseconds} nanoseconds, more than a second")]
    Nanoseconds { nanoseconds: u32 },
    #[error("{count} bytes after the last field, before the CRC")]
    TrailingBytes { count: usize },
}

/// What is wrong with a subunit v1 line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V1Problem {
    #[error("the test name is not UTF-8")]
    NameNotUtf8,
    #[error("`time:` is not an ISO 8601 time: {text:?}")]
    BadTime { text: String },
    #[error("a multipart detail must start with `Content-Type: type/subtype`, found {line:?}")]
    BadContentType { line: String },
    #[error("a chunk of a multipart detail must start with a hexadecimal length and CRLF")]
    BadChunkLength,
}
