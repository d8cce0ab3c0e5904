//! Writers of subunit v2 and v1 streams, for tests and benchmarks to generate their fixtures;
//! nothing in the server writes subunit. They write what python-subunit writes (`v2.py`'s
//! `StreamResultToBytes`, `TestProtocolClient`), and only well-formed streams: hostile bytes
//! are made by the tests themselves.

/// A v2 packet's status (the low 3 bits of its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketStatus {
    None = 0,
    Exists = 1,
    InProgress = 2,
    Success = 3,
    Uxsuccess = 4,
    Skip = 5,
    Fail = 6,
    Xfail = 7,
}

/// The fields of one v2 packet; [`Packet::default`] is an empty packet with no status.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    pub test_id: Option<&'a str>,
    pub status: PacketStatus,
    /// Seconds since the epoch and nanoseconds.
    pub timestamp: Option<(u32, u32)>,
    pub tags: &'a [&'a str],
    pub mime_type: Option<&'a str>,
    /// File name and content.
    pub file: Option<(&'a str, &'a [u8])>,
    pub eof: bool,
    pub route_code: Option<&'a str>,
    pub runnable: bool,
}

impl Default for Packet<'_> {
    fn default() -> Self {
        Packet {
            test_id: None,
            status: PacketStatus::None,
            timestamp: None,
            tags: &[],
            mime_type: None,
            file: None,
            eof: false,
            route_code: None,
            runnable: true,
        }
    }
}

/// Appends a subunit varint (1 to 4 octets, 30 bits at most).
///
/// # Panics
/// On values of 2^30 or more, which subunit cannot encode: a bug in the calling test.
pub fn write_varint(out: &mut Vec<u8>, value: usize) {
    match value {
        0..=0x3F => out.push(value as u8),
        0x40..=0x3FFF => out.extend_from_slice(&(value as u16 | 0x4000).to_be_bytes()),
        0x4000..=0x3F_FFFF => out.extend_from_slice(&(value as u32 | 0x80_0000).to_be_bytes()[1..]),
        0x40_0000..=0x3FFF_FFFF => {
            out.extend_from_slice(&(value as u32 | 0xC000_0000).to_be_bytes())
        }
        _ => panic!("{value} does not fit a subunit varint"),
    }
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    write_varint(out, text.len());
    out.extend_from_slice(text.as_bytes());
}

/// Encodes one packet.
///
/// # Panics
/// When the packet would not fit the 4 MiB that its length can say: a bug in the calling test.
pub fn encode_packet(packet: &Packet) -> Vec<u8> {
    let mut flags: u16 = 0x2000 | packet.status as u16;
    let mut body = Vec::new();
    if let Some((seconds, nanoseconds)) = packet.timestamp {
        flags |= 0x0200;
        body.extend_from_slice(&seconds.to_be_bytes());
        write_varint(&mut body, nanoseconds as usize);
    }
    if let Some(id) = packet.test_id {
        flags |= 0x0800;
        write_string(&mut body, id);
    }
    if !packet.tags.is_empty() {
        flags |= 0x0080;
        write_varint(&mut body, packet.tags.len());
        for tag in packet.tags {
            write_string(&mut body, tag);
        }
    }
    if packet.runnable {
        flags |= 0x0100;
    }
    if let Some(mime) = packet.mime_type {
        flags |= 0x0020;
        write_string(&mut body, mime);
    }
    if let Some((name, content)) = packet.file {
        flags |= 0x0040;
        write_string(&mut body, name);
        write_varint(&mut body, content.len());
        body.extend_from_slice(content);
    }
    if packet.eof {
        flags |= 0x0010;
    }
    if let Some(route) = packet.route_code {
        flags |= 0x0400;
        write_string(&mut body, route);
    }
    // The length counts itself: pick its size as python-subunit does.
    let base = 1 + 2 + body.len() + 4;
    let length = if base < 0x3F {
        base + 1
    } else if base <= 0x3FFF - 2 {
        base + 2
    } else if base <= 0x3F_FFFF - 3 {
        base + 3
    } else {
        panic!("a packet of {base} bytes does not fit subunit v2's 4 MiB");
    };
    let mut out = Vec::with_capacity(length);
    out.push(0xB3);
    out.extend_from_slice(&flags.to_be_bytes());
    write_varint(&mut out, length);
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(out.len(), length);
    out
}

/// Builds a v2 stream.
#[derive(Debug, Default)]
pub struct V2Writer {
    bytes: Vec<u8>,
}

impl V2Writer {
    pub fn new() -> Self {
        V2Writer::default()
    }

    pub fn packet(&mut self, packet: &Packet) -> &mut Self {
        self.bytes.extend_from_slice(&encode_packet(packet));
        self
    }

    /// A test as testtools reports it: `inprogress` at `start`, then `status` at `stop`, with
    /// its attachments (name, MIME type, content) in between.
    pub fn test(
        &mut self,
        id: &str,
        status: PacketStatus,
        start: (u32, u32),
        stop: (u32, u32),
        attachments: &[(&str, &str, &[u8])],
    ) -> &mut Self {
        self.packet(&Packet {
            test_id: Some(id),
            status: PacketStatus::InProgress,
            timestamp: Some(start),
            ..Packet::default()
        });
        for (name, mime, content) in attachments {
            self.packet(&Packet {
                test_id: Some(id),
                mime_type: Some(mime),
                file: Some((name, content)),
                eof: true,
                timestamp: Some(stop),
                ..Packet::default()
            });
        }
        self.packet(&Packet {
            test_id: Some(id),
            status,
            timestamp: Some(stop),
            ..Packet::default()
        })
    }

    /// Bytes outside any packet (a test's stray output).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Builds a v1 stream.
#[derive(Debug, Default)]
pub struct V1Writer {
    bytes: Vec<u8>,
}

impl V1Writer {
    pub fn new() -> Self {
        V1Writer::default()
    }

    /// Any line (a newline is added).
    pub fn line(&mut self, line: &str) -> &mut Self {
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
        self
    }

    /// `time: <time>`, e.g. `2014-08-15 10:34:49.010492Z`.
    pub fn time(&mut self, time: &str) -> &mut Self {
        self.line(&format!("time: {time}"))
    }

    pub fn test(&mut self, name: &str) -> &mut Self {
        self.line(&format!("test: {name}"))
    }

    /// `<outcome>: <name>`, with `outcome` one of `success`, `failure`, `error`, `skip`,
    /// `xfail`, `uxsuccess`.
    pub fn outcome(&mut self, outcome: &str, name: &str) -> &mut Self {
        self.line(&format!("{outcome}: {name}"))
    }

    /// An outcome with bracketed details; `text`'s lines that start with `]` are quoted.
    pub fn outcome_bracketed(&mut self, outcome: &str, name: &str, text: &str) -> &mut Self {
        self.line(&format!("{outcome}: {name} ["));
        for line in text.lines() {
            if line.starts_with(']') {
                self.line(&format!(" {line}"));
            } else {
                self.line(line);
            }
        }
        self.line("]")
    }

    /// An outcome with multipart details: per part its content type, name and bytes, each sent
    /// in chunks of at most `chunk` bytes.
    pub fn outcome_multipart(
        &mut self,
        outcome: &str,
        name: &str,
        parts: &[(&str, &str, &[u8])],
        chunk: usize,
    ) -> &mut Self {
        self.line(&format!("{outcome}: {name} [ multipart"));
        for (content_type, part_name, content) in parts {
            self.line(&format!("Content-Type: {content_type}"));
            self.line(part_name);
            for piece in content.chunks(chunk.max(1)) {
                self.bytes
                    .extend_from_slice(format!("{:X}\r\n", piece.len()).as_bytes());
                self.bytes.extend_from_slice(piece);
            }
            self.bytes.extend_from_slice(b"0\r\n");
        }
        self.line("]")
    }

    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}
