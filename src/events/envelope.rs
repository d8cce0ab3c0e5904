//! The event envelope: what every stored event carries besides its payload, and how it is encoded
//! and chained. It knows nothing of storage or of any entity's event types.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A global position in the log: 1 for the first event, gapless, strictly increasing in commit
/// order. Position 0 means "before the first event".
pub type Position = u64;

/// A version within one stream: 1 for its first event, gapless. Version 0 means "no event yet".
pub type Version = u64;

/// A SHA-256 digest chaining an event to the one before it in global order.
pub type Hash = [u8; 32];

/// The hash that the first event of a log chains to.
pub const GENESIS_HASH: Hash = [0; 32];

/// The longest stream id accepted, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 200;

/// The name of a stream: `<kind>-<id>`, such as `scan-nmap-42` or `host-web01`.
///
/// The kind (the category) is lower-case ASCII letters, digits and `_`; the id is any non-empty
/// text without control characters. Control characters are refused because the store separates
/// a stream id from what follows it in a key with a NUL byte.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamId(String);

impl StreamId {
    /// Checks a stream id; see the type's documentation for the rules.
    pub fn parse(raw: impl Into<String>) -> Result<StreamId, InvalidStreamId> {
        let raw = raw.into();
        let Some((category, id)) = raw.split_once('-') else {
            return Err(InvalidStreamId(raw, "it has no '-' between kind and id"));
        };
        if category.is_empty()
            || !category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(InvalidStreamId(
                raw,
                "its kind must be lower-case letters, digits or '_'",
            ));
        }
        if id.is_empty() {
            return Err(InvalidStreamId(raw, "its id is empty"));
        }
        if raw.chars().any(char::is_control) {
            return Err(InvalidStreamId(raw, "it contains a control character"));
        }
        if raw.len() > MAX_STREAM_ID_LEN {
            return Err(InvalidStreamId(raw, "it is longer than 200 bytes"));
        }
        Ok(StreamId(raw))
    }

    /// Builds `<kind>-<id>` from its two parts.
    pub fn of(kind: &str, id: &str) -> Result<StreamId, InvalidStreamId> {
        StreamId::parse(format!("{kind}-{id}"))
    }

    /// The kind before the first `-`: `scan` for `scan-nmap-42`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or("", |(category, _)| category)
    }

    /// The entity id after the first `-`: `nmap-42` for `scan-nmap-42`.
    pub fn entity_id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for StreamId {
    type Error = InvalidStreamId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        StreamId::parse(raw)
    }
}

impl From<StreamId> for String {
    fn from(id: StreamId) -> String {
        id.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream id {0:?}: {1}")]
pub struct InvalidStreamId(String, &'static str);

/// Who or what caused an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// An HTTP request: the peer address and, when authenticated, the user.
    Http { addr: String, user: Option<String> },
    /// A UDP datagram from this peer.
    Udp { addr: String },
    /// annals itself: start-up reconciliation, a timer, a finished child process.
    System,
}

/// The metadata of an event, chosen by whoever appends it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Groups every event that one outside request led to.
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this one.
    pub causation_id: Option<Uuid>,
    pub origin: Origin,
}

impl Metadata {
    /// Metadata for events annals causes itself.
    pub fn system() -> Metadata {
        Metadata {
            correlation_id: None,
            causation_id: None,
            origin: Origin::System,
        }
    }
}

/// An event about to be appended: everything but what the journal assigns.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Chosen by the writer; a retried append with the same id in the same stream is
    /// acknowledged without being written twice.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    /// MessagePack with named fields.
    pub payload: Vec<u8>,
    pub metadata: Metadata,
}

/// An event as stored: the new event plus what the journal assigned when it committed it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: StreamId,
    pub version: Version,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    pub recorded_at: DateTime<Utc>,
    pub metadata: Metadata,
    /// MessagePack with named fields; decode it with [`crate::events::codec`].
    pub payload: Vec<u8>,
    /// SHA-256 over the previous event's hash and this event's encoded body.
    pub hash: Hash,
}

/// The stored body of an event, the bytes its hash covers: a MessagePack array of these fields
/// in this order. The order is part of the on-disk format: fields are only ever appended, with
/// a serde default, so that older records still decode. Metadata is stored flat, so that
/// reading a body allocates nothing.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    position: Position,
    #[serde(borrow)]
    stream: &'a str,
    version: Version,
    event_id: Uuid,
    #[serde(borrow)]
    event_type: &'a str,
    schema_version: u16,
    /// Microseconds since the Unix epoch, UTC.
    recorded_at_us: i64,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    /// `system`, `http` or `udp`.
    #[serde(borrow)]
    origin_kind: &'a str,
    #[serde(borrow)]
    origin_addr: Option<&'a str>,
    #[serde(borrow)]
    origin_user: Option<&'a str>,
    #[serde(with = "serde_bytes", borrow)]
    payload: &'a [u8],
}

/// Why stored bytes could not be read back as an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the stored record is {0} bytes, shorter than its 32-byte hash")]
    TooShort(usize),
    #[error("the stored body is not a valid event envelope: {0}")]
    Body(#[from] rmp_serde::decode::Error),
    #[error("the stored stream id is invalid: {0}")]
    Stream(#[from] InvalidStreamId),
    #[error("the stored time {0} µs is out of range")]
    Time(i64),
    #[error("the stored origin {0:?} is unknown or incomplete")]
    Origin(String),
}

/// A stored event read in place: what folding and filtering need, without allocating.
pub struct EventView<'a> {
    body: Body<'a>,
    hash: &'a [u8],
}

impl<'a> EventView<'a> {
    /// Reads a stored record (hash followed by body).
    pub fn parse(record: &'a [u8]) -> Result<EventView<'a>, DecodeError> {
        if record.len() < 32 {
            return Err(DecodeError::TooShort(record.len()));
        }
        let (hash, body) = record.split_at(32);
        Ok(EventView {
            body: rmp_serde::from_slice(body)?,
            hash,
        })
    }

    pub fn position(&self) -> Position {
        self.body.position
    }

    pub fn version(&self) -> Version {
        self.body.version
    }

    pub fn event_id(&self) -> Uuid {
        self.body.event_id
    }

    /// The stream id as stored (checked by [`EventView::to_recorded`]).
    pub fn stream(&self) -> &'a str {
        self.body.stream
    }

    pub fn event_type(&self) -> &'a str {
        self.body.event_type
    }

    pub fn schema_version(&self) -> u16 {
        self.body.schema_version
    }

    pub fn payload(&self) -> &'a [u8] {
        self.body.payload
    }

    pub fn recorded_at(&self) -> Result<DateTime<Utc>, DecodeError> {
        DateTime::from_timestamp_micros(self.body.recorded_at_us)
            .ok_or(DecodeError::Time(self.body.recorded_at_us))
    }

    /// Copies the view into an owned event, checking every field.
    pub fn to_recorded(&self) -> Result<RecordedEvent, DecodeError> {
        let body = &self.body;
        let origin = match (body.origin_kind, body.origin_addr) {
            ("system", _) => Origin::System,
            ("http", Some(addr)) => Origin::Http {
                addr: addr.to_owned(),
                user: body.origin_user.map(str::to_owned),
            },
            ("udp", Some(addr)) => Origin::Udp {
                addr: addr.to_owned(),
            },
            (other, _) => return Err(DecodeError::Origin(other.to_owned())),
        };
        Ok(RecordedEvent {
            position: body.position,
            stream: StreamId::parse(body.stream)?,
            version: body.version,
            event_id: body.event_id,
            event_type: body.event_type.to_owned(),
            schema_version: body.schema_version,
            recorded_at: self.recorded_at()?,
            metadata: Metadata {
                correlation_id: body.correlation_id,
                causation_id: body.causation_id,
                origin,
            },
            payload: body.payload.to_vec(),
            hash: self.hash.try_into().expect("split at 32"),
        })
    }
}

impl RecordedEvent {
    /// Encodes the body of an event and chains it: returns the stored record (hash followed by
    /// body) and the event's hash.
    pub(crate) fn seal(
        prev: &Hash,
        position: Position,
        stream: &StreamId,
        version: Version,
        recorded_at: DateTime<Utc>,
        event: &NewEvent,
    ) -> (Vec<u8>, Hash) {
        let (origin_kind, origin_addr, origin_user) = match &event.metadata.origin {
            Origin::System => ("system", None, None),
            Origin::Http { addr, user } => ("http", Some(addr.as_str()), user.as_deref()),
            Origin::Udp { addr } => ("udp", Some(addr.as_str()), None),
        };
        let body = Body {
            position,
            stream: stream.as_str(),
            version,
            event_id: event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at_us: recorded_at.timestamp_micros(),
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
            origin_kind,
            origin_addr,
            origin_user,
            payload: &event.payload,
        };
        let mut record = Vec::with_capacity(32 + 96 + event.payload.len());
        record.extend_from_slice(&GENESIS_HASH);
        // Encoding plain fields into a Vec cannot fail.
        rmp_serde::encode::write(&mut record, &body).expect("an event body always encodes");
        let hash = chain(prev, &record[32..]);
        record[..32].copy_from_slice(&hash);
        (record, hash)
    }

    /// Decodes a stored record (hash followed by body).
    pub fn open(record: &[u8]) -> Result<RecordedEvent, DecodeError> {
        EventView::parse(record)?.to_recorded()
    }
}

/// The hash of a stored record's body, chained to the hash of the event before it.
pub fn chain(prev: &Hash, body: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(body);
    hasher.finalize().into()
}

/// Splits a stored record into the hash it claims and the body that hash should cover.
pub fn split_record(record: &[u8]) -> Option<(&[u8], &[u8])> {
    (record.len() >= 32).then(|| record.split_at(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_are_checked() {
        let id = StreamId::parse("scan-nmap-42").unwrap();
        assert_eq!(id.category(), "scan");
        assert_eq!(id.entity_id(), "nmap-42");
        for bad in ["scan", "-x", "Scan-x", "scan-", "scan-a\0b", "sc an-x"] {
            assert!(StreamId::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(StreamId::parse(format!("host-{}", "a".repeat(200))).is_err());
    }

    #[test]
    fn a_sealed_event_opens_to_the_same_fields() {
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "JobStarted".into(),
            schema_version: 2,
            payload: vec![0x80],
            metadata: Metadata::system(),
        };
        let stream = StreamId::parse("job-1").unwrap();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let (record, hash) = RecordedEvent::seal(&GENESIS_HASH, 7, &stream, 3, at, &event);
        let opened = RecordedEvent::open(&record).unwrap();
        assert_eq!(opened.position, 7);
        assert_eq!(opened.version, 3);
        assert_eq!(opened.stream, stream);
        assert_eq!(opened.recorded_at, at);
        assert_eq!(opened.payload, event.payload);
        assert_eq!(opened.hash, hash);
        assert_eq!(hash, chain(&GENESIS_HASH, &record[32..]));
    }
}
