//! Writers of subunit v2 and v1 streams, for tests and benchmarks to generate their fixtures, and
//! a fixed corpus of damaged uploads for the tests of the faces that take them; nothing in the
//! server writes subunit. The writers write what python-subunit writes (`v2.py`'s
//! `StreamResultToBytes`, `TestProtocolClient`), and only well-formed streams.

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

/// An upload that [`super::parse`] must reject, and what was done to it.
#[derive(Debug, Clone)]
pub struct DamagedUpload {
    pub what: String,
    pub bytes: Vec<u8>,
}

/// A fixed corpus of hostile uploads, every one an error for [`super::parse`] under
/// [`super::Limits`] with `max_input_bytes` (other fields at their defaults): subunit v2 runs cut
/// inside a packet or with one bit flipped (never in a packet's signature, whose loss only turns
/// the packet into skipped bytes), packets built to crash parsers, JSON results cut short, v1
/// directives that cannot be read, text with no tests, and an upload one byte over the limit.
/// The same on every call, for tests of the faces that take uploads.
pub fn damaged_uploads(max_input_bytes: usize) -> Vec<DamagedUpload> {
    // xorshift64: a fixed sequence without a dependency.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % bound as u64) as usize
    };
    let mut corpus = Vec::new();
    let mut add = |what: String, bytes: Vec<u8>| corpus.push(DamagedUpload { what, bytes });

    let mut writer = V2Writer::new();
    let mut starts = Vec::new();
    let traceback: &[u8] = b"Traceback (most recent call last):\nAssertionError\n";
    for n in 0..12u32 {
        let id = format!("tempest.api.compute.test_servers.ServersTest.test_{n}[id-{n:08x}-9977-400a-936f-abcfbec1218f]");
        let status = [
            PacketStatus::Success,
            PacketStatus::Fail,
            PacketStatus::Skip,
        ][n as usize % 3];
        let packets = [
            Packet {
                test_id: Some(&id),
                status: PacketStatus::InProgress,
                timestamp: Some((1_700_000_000 + n, 0)),
                tags: &["worker-0"],
                route_code: Some("0"),
                ..Packet::default()
            },
            Packet {
                test_id: Some(&id),
                mime_type: Some("text/plain;charset=utf8"),
                file: Some(("traceback", traceback)),
                eof: true,
                route_code: Some("0"),
                ..Packet::default()
            },
            Packet {
                test_id: Some(&id),
                status,
                timestamp: Some((1_700_000_001 + n, 500)),
                route_code: Some("0"),
                ..Packet::default()
            },
        ];
        for packet in &packets {
            starts.push(writer.len());
            writer.packet(packet);
        }
    }
    let stream = writer.into_bytes();
    let is_start = |at: usize| starts.binary_search(&at).is_ok();
    for _ in 0..40 {
        let cut = loop {
            let cut = 1 + next(stream.len() - 1);
            if !is_start(cut) {
                break cut;
            }
        };
        add(
            format!("subunit v2 cut at byte {cut}"),
            stream[..cut].to_vec(),
        );
    }
    for _ in 0..80 {
        let at = loop {
            let at = next(stream.len());
            if !is_start(at) {
                break at;
            }
        };
        let bit = next(8);
        let mut flipped = stream.clone();
        flipped[at] ^= 1 << bit;
        add(
            format!("subunit v2 with bit {bit} of byte {at} flipped"),
            flipped,
        );
    }
    // The packet that panics the crates.io `subunit` 0.3.1: a length too small for its CRC.
    add(
        "subunit v2 packet whose length leaves no room for its CRC".into(),
        vec![0xB3, 0x29, 0x03, 0x05, 0x00, 0x00, 0x00, 0x00],
    );
    add(
        "subunit v2 packet claiming 4 MiB in 8 bytes".into(),
        vec![0xB3, 0x29, 0x03, 0xBF, 0xFF, 0xFF, 0x01, b'a'],
    );
    add(
        "subunit v2 packet with a 4-octet length".into(),
        vec![
            0xB3, 0x29, 0x03, 0xC0, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    );
    // A test id, then a tag count of 2^30 - 1 and one tag, under a correct CRC.
    let mut tags_bomb = vec![
        0xB3, 0x28, 0x80, 16, 0x01, b'a', 0xFF, 0xFF, 0xFF, 0xFF, 0x01, b't',
    ];
    let crc = crc32fast::hash(&tags_bomb);
    tags_bomb.extend_from_slice(&crc.to_be_bytes());
    add("subunit v2 packet announcing 2^30 tags".into(), tags_bomb);

    let json = br#"{"cpid": "6b678f2c7fa94c7e942728b300451b56", "duration_seconds": 60, "results": [{"name": "tempest.api.a.T.test_x", "uuid": "0146f675-ffbd-4208-b3a4-60eb628dbc5e"}, {"name": "tempest.api.a.T.test_y"}]}"#;
    for _ in 0..10 {
        let cut = 1 + next(json.len() - 1);
        add(
            format!("JSON results cut at byte {cut}"),
            json[..cut].to_vec(),
        );
    }
    add(
        "JSON results without any result".into(),
        br#"{"cpid": "c", "duration_seconds": 1, "results": []}"#.to_vec(),
    );
    add(
        "JSON parsed results whose summary disagrees".into(),
        br#"{"summary": {"PASS": 5, "FAIL": 0, "FAIL_SETUP": 0, "ERROR": 0, "SKIP": 0, "Total": 5}, "data": {"a.T": [["test_x", "PASS", 0.1]]}}"#.to_vec(),
    );
    add(
        "JSON results with 100,000 brackets left open".into(),
        [
            &br#"{"cpid": "c", "duration_seconds": 1, "results": [{"name": "a", "x": "#[..],
            &b"[".repeat(100_000)[..],
        ]
        .concat(),
    );
    add(
        "subunit v1 with a `time:` that is no time".into(),
        b"test: a\ntime: tomorrow\nsuccess: a\n".to_vec(),
    );
    add(
        "subunit v1 multipart detail with a chunk length that is no number".into(),
        b"test: a\nfailure: a [ multipart\nContent-Type: text/plain\nlog\nzz\r\n]\n".to_vec(),
    );
    add(
        "text with no test in it".into(),
        b"<html><body>Not a test run</body></html>\n".to_vec(),
    );
    add("an empty upload".into(), Vec::new());
    let mut oversized = stream.repeat(max_input_bytes / stream.len() + 1);
    oversized.truncate(max_input_bytes + 1);
    add(format!("an upload of {} bytes", oversized.len()), oversized);
    corpus
}
