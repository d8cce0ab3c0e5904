//! Subunit v2: binary packets, read in place (no copy of a packet, nothing allocated from a
//! length the upload claims), checked against their CRC32, and folded into test results the way
//! testtools' `StreamToDict` folds them. Knows nothing of v1 or JSON.
//!
//! A packet (testing-cabal/subunit README, python-subunit `v2.py`):
//!
//! ```text
//! 0xB3 | flags: u16 BE | length: varint, whole packet, < 4 MiB
//!      | timestamp? (u32 BE seconds, varint nanoseconds) | test id? | tags? (varint count, strings)
//!      | mime type? | file? (name, varint length, bytes) | route code? | CRC32 BE of all before
//! ```
//!
//! Strings are a varint length and UTF-8 without NUL. A varint's first two bits give its size
//! (1 to 4 octets); the packet length may use at most 3. Flags: version `0x2` in the top nibble,
//! then test id `0x0800`, route code `0x0400`, timestamp `0x0200`, runnable `0x0100`, tags
//! `0x0080`, file `0x0040`, mime `0x0020`, EOF `0x0010`, and the status in the low 3 bits.

use std::collections::HashMap;

use super::collector::{at_char_boundary, Collector, Timestamp};
use super::error::{ParseError, V2Problem};
use super::values::{Format, Limits, Outcome, TestRun};

const SIGNATURE: u8 = 0xB3;
const FLAG_TEST_ID: u16 = 0x0800;
const FLAG_ROUTE_CODE: u16 = 0x0400;
const FLAG_TIMESTAMP: u16 = 0x0200;
const FLAG_TAGS: u16 = 0x0080;
const FLAG_FILE_CONTENT: u16 = 0x0040;
const FLAG_MIME_TYPE: u16 = 0x0020;
/// Signature, flags and the shortest length.
const MIN_HEADER: usize = 4;
const CRC_BYTES: usize = 4;

/// The status field of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PacketStatus {
    /// No status: the packet carries a file or a timestamp only.
    Unchanged,
    Exists,
    InProgress,
    Final(Outcome),
}

impl PacketStatus {
    fn from_flags(flags: u16) -> PacketStatus {
        match flags & 0x7 {
            0 => PacketStatus::Unchanged,
            1 => PacketStatus::Exists,
            2 => PacketStatus::InProgress,
            3 => PacketStatus::Final(Outcome::Success),
            4 => PacketStatus::Final(Outcome::Uxsuccess),
            5 => PacketStatus::Final(Outcome::Skip),
            6 => PacketStatus::Final(Outcome::Fail),
            _ => PacketStatus::Final(Outcome::Xfail),
        }
    }
}

/// The fields of one packet that make a result, borrowed from the upload.
#[derive(Debug)]
struct Packet<'a> {
    /// Bytes the packet takes, signature to CRC.
    len: usize,
    status: PacketStatus,
    timestamp: Option<Timestamp>,
    test_id: Option<&'a str>,
    route_code: Option<&'a str>,
}

/// Where the first packet starts: a `0xB3` at a UTF-8 character boundary followed by flags of
/// version 2, or ending the input (a packet cut off). `None` when there is none.
pub(super) fn find_packet_start(input: &[u8]) -> Option<usize> {
    memchr::memchr_iter(SIGNATURE, input).find(|&at| {
        at_char_boundary(input, 0, at) && input.get(at + 1).is_none_or(|flags| flags >> 4 == 0x2)
    })
}

/// A test whose final status has not come yet.
struct OpenTest {
    id: String,
    start: Option<Timestamp>,
    /// Order of first appearance, so that tests left open are reported in stream order.
    seen: usize,
}

pub(super) fn parse(input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    let mut out = Collector::new(limits);
    // Keyed by route code, NUL, test id: NUL cannot occur in either, and one key string can be
    // rebuilt in a reused buffer for each lookup.
    let mut open: HashMap<String, OpenTest> = HashMap::new();
    let mut key = String::new();
    let mut seen = 0usize;
    // Where the bytes outside packets started: UTF-8 characters are tracked from there.
    let mut after_packet = 0;
    let mut at = 0;
    while at < input.len() {
        if input[at] != SIGNATURE || !at_char_boundary(input, after_packet, at) {
            let next =
                memchr::memchr(SIGNATURE, &input[at + 1..]).map_or(input.len(), |n| at + 1 + n);
            out.non_subunit(at, next - at)?;
            at = next;
            continue;
        }
        let packet = read_packet(input, at)?;
        if let Some(time) = packet.timestamp {
            out.saw_time(time);
        }
        if let Some(id) = packet.test_id {
            key.clear();
            key.push_str(packet.route_code.unwrap_or(""));
            key.push('\0');
            key.push_str(id);
            if !open.contains_key(key.as_str()) {
                out.check_room(open.len() + 1, at)?;
                open.insert(
                    key.clone(),
                    OpenTest {
                        id: id.to_owned(),
                        start: packet.timestamp,
                        seen,
                    },
                );
                seen += 1;
            }
            match packet.status {
                PacketStatus::Unchanged | PacketStatus::InProgress => {}
                // A listing, not a run: the test is known, not executed.
                PacketStatus::Exists => {
                    open.remove(key.as_str());
                }
                PacketStatus::Final(outcome) => {
                    if let Some(test) = open.remove(key.as_str()) {
                        out.finished(test.id, outcome, test.start, packet.timestamp, at)?;
                    }
                }
            }
        }
        at += packet.len;
        after_packet = at;
    }
    let mut left_open: Vec<OpenTest> = open.into_values().collect();
    left_open.sort_by_key(|test| test.seen);
    for test in left_open {
        out.finished(test.id, Outcome::Incomplete, test.start, None, input.len())?;
    }
    out.finish(Format::SubunitV2)
}

/// Reads and checks the packet that starts at `start` (its signature byte).
fn read_packet(input: &[u8], start: usize) -> Result<Packet<'_>, ParseError> {
    let error = |offset: usize, problem: V2Problem| ParseError::V2 { offset, problem };
    let rest = &input[start..];
    // The packet needs `needed` bytes from its start.
    let need = |needed: usize| {
        if rest.len() < needed {
            return Err(error(
                start,
                V2Problem::Truncated {
                    needed,
                    available: rest.len(),
                },
            ));
        }
        Ok(())
    };
    need(MIN_HEADER)?;
    let flags = u16::from_be_bytes([rest[1], rest[2]]);
    let version = (flags >> 12) as u8;
    if version != 2 {
        return Err(error(start, V2Problem::Version { version }));
    }
    let length_octets = varint_octets(rest[3]);
    if length_octets == 4 {
        return Err(error(start + 3, V2Problem::LengthTooLong));
    }
    let header = 3 + length_octets;
    need(header)?;
    let (length, _) = varint(&rest[3..header]).ok_or_else(|| {
        error(
            start + 3,
            V2Problem::FieldOverrun {
                field: "packet length",
            },
        )
    })?;
    let length = length as usize;
    // The check whose absence lets a crafted packet panic the crates.io `subunit` 0.3.1.
    let minimum = header + CRC_BYTES;
    if length < minimum {
        return Err(error(start, V2Problem::LengthTooSmall { length, minimum }));
    }
    need(length)?;
    let packet = &rest[..length];
    let (covered, crc) = packet.split_at(length - CRC_BYTES);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(covered);
    if computed != stored {
        return Err(error(start, V2Problem::Crc { computed, stored }));
    }

    let mut fields = Fields {
        body: covered,
        at: header,
        base: start,
    };
    let timestamp = if flags & FLAG_TIMESTAMP != 0 {
        let seconds = fields.bytes(4, "timestamp")?;
        let seconds = u32::from_be_bytes([seconds[0], seconds[1], seconds[2], seconds[3]]);
        let nanoseconds_at = fields.offset();
        let nanoseconds = fields.varint("timestamp")?;
        if nanoseconds >= 1_000_000_000 {
            return Err(error(
                nanoseconds_at,
                V2Problem::Nanoseconds { nanoseconds },
            ));
        }
        Some(Timestamp(
            i64::from(seconds) * 1_000_000_000 + i64::from(nanoseconds),
        ))
    } else {
        None
    };
    let test_id = if flags & FLAG_TEST_ID != 0 {
        Some(fields.string("test id")?)
    } else {
        None
    };
    if flags & FLAG_TAGS != 0 {
        // Each tag takes at least one octet, so a huge count fails at the end of the packet.
        for _ in 0..fields.varint("tags")? {
            fields.string("tags")?;
        }
    }
    if flags & FLAG_MIME_TYPE != 0 {
        fields.string("mime type")?;
    }
    if flags & FLAG_FILE_CONTENT != 0 {
        fields.string("file name")?;
        let length = fields.varint("file content")?;
        fields.bytes(length as usize, "file content")?;
    }
    let route_code = if flags & FLAG_ROUTE_CODE != 0 {
        Some(fields.string("route code")?)
    } else {
        None
    };
    if fields.at != fields.body.len() {
        return Err(error(
            fields.offset(),
            V2Problem::TrailingBytes {
                count: fields.body.len() - fields.at,
            },
        ));
    }
    Ok(Packet {
        len: length,
        status: PacketStatus::from_flags(flags),
        timestamp,
        test_id,
        route_code,
    })
}

/// Octets of the varint whose first octet is `first`.
fn varint_octets(first: u8) -> usize {
    usize::from(first >> 6) + 1
}

/// Decodes the varint at the start of `bytes`: its value and octets, or `None` if cut off.
fn varint(bytes: &[u8]) -> Option<(u32, usize)> {
    let first = *bytes.first()?;
    let octets = varint_octets(first);
    let rest = bytes.get(1..octets)?;
    let value = rest.iter().fold(u32::from(first & 0x3F), |value, &b| {
        (value << 8) | u32::from(b)
    });
    Some((value, octets))
}

/// A cursor over the fields of a packet whose CRC has been checked.
struct Fields<'a> {
    /// The packet without its CRC.
    body: &'a [u8],
    at: usize,
    /// Where the packet starts in the upload.
    base: usize,
}

impl<'a> Fields<'a> {
    fn offset(&self) -> usize {
        self.base + self.at
    }

    fn overrun(&self, field: &'static str) -> ParseError {
        ParseError::V2 {
            offset: self.offset(),
            problem: V2Problem::FieldOverrun { field },
        }
    }

    fn bytes(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let end = self
            .at
            .checked_add(len)
            .filter(|&end| end <= self.body.len())
            .ok_or_else(|| self.overrun(field))?;
        let bytes = &self.body[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn varint(&mut self, field: &'static str) -> Result<u32, ParseError> {
        let (value, octets) = varint(&self.body[self.at..]).ok_or_else(|| self.overrun(field))?;
        self.at += octets;
        Ok(value)
    }

    fn string(&mut self, field: &'static str) -> Result<&'a str, ParseError> {
        let len = self.varint(field)?;
        let at = self.offset();
        let bytes = self.bytes(len as usize, field)?;
        let problem = if bytes.contains(&0) {
            V2Problem::Nul { field }
        } else {
            match std::str::from_utf8(bytes) {
                Ok(text) => return Ok(text),
                Err(_) => V2Problem::NotUtf8 { field },
            }
        };
        Err(ParseError::V2 {
            offset: at,
            problem,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_take_one_to_four_octets() {
        assert_eq!(varint(&[0x3F]), Some((63, 1)));
        assert_eq!(varint(&[0x40, 0x40]), Some((64, 2)));
        assert_eq!(varint(&[0xBF, 0xFF, 0xFF]), Some((0x3F_FFFF, 3)));
        assert_eq!(varint(&[0xFF, 0xFF, 0xFF, 0xFF]), Some((0x3FFF_FFFF, 4)));
        assert_eq!(varint(&[0x80, 0x01]), None);
        assert_eq!(varint(&[]), None);
    }

    #[test]
    fn a_length_too_small_for_the_crc_is_an_error() {
        // The crafted packet that panics subunit 0.3.1: a length of 5.
        let packet = [0xB3, 0x20, 0x00, 0x05, 0, 0, 0, 0];
        assert_eq!(
            read_packet(&packet, 0).unwrap_err(),
            ParseError::V2 {
                offset: 0,
                problem: V2Problem::LengthTooSmall {
                    length: 5,
                    minimum: 8
                }
            }
        );
    }

    #[test]
    fn packet_starts_need_a_boundary_and_version_two() {
        assert_eq!(find_packet_start(b"abc\xB3\x29"), Some(3));
        assert_eq!(find_packet_start(b"abc\xB3\x39"), None);
        assert_eq!(find_packet_start("x³\x29".as_bytes()), None);
    }
}
