//! Turning an entity's typed events into stored payloads and back, through upcasters for old
//! schema versions. It owns the payload format (MessagePack with named fields); it never touches
//! storage.

use serde::{de::DeserializeOwned, Serialize};

use super::envelope::RecordedEvent;

/// One entity kind's event enum. Each variant has a stable type name and a schema version; a
/// change to a variant's fields is a new version, with its old versions still decoded by
/// [`DomainEvent::decode`] (the upcasters).
pub trait DomainEvent: Sized {
    /// The stable type name of this event, such as `ScanStarted`.
    fn event_type(&self) -> &'static str;
    /// The schema version this build writes for this event's type.
    fn schema_version(&self) -> u16;
    /// The payload: this variant's fields as MessagePack with named fields.
    fn encode_payload(&self) -> Vec<u8>;
    /// Decodes a payload written under any known type name and schema version. An unknown type
    /// or version, or a payload that does not match, is an error.
    fn decode(event_type: &str, schema_version: u16, payload: &[u8]) -> Result<Self, CodecError>;

    /// Decodes a stored event's payload.
    fn from_recorded(event: &RecordedEvent) -> Result<Self, CodecError> {
        Self::decode(&event.event_type, event.schema_version, &event.payload)
    }
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type {event_type:?} (schema version {schema_version})")]
    UnknownType {
        event_type: String,
        schema_version: u16,
    },
    #[error("event type {event_type:?} has no schema version {schema_version}")]
    UnknownVersion {
        event_type: String,
        schema_version: u16,
    },
    #[error("the payload of {event_type:?} v{schema_version} does not decode: {source}")]
    Payload {
        event_type: String,
        schema_version: u16,
        source: rmp_serde::decode::Error,
    },
}

impl CodecError {
    /// The error for a type name no decoder knows.
    pub fn unknown_type(event_type: &str, schema_version: u16) -> CodecError {
        CodecError::UnknownType {
            event_type: event_type.to_owned(),
            schema_version,
        }
    }

    /// The error for a known type name at a version no decoder knows.
    pub fn unknown_version(event_type: &str, schema_version: u16) -> CodecError {
        CodecError::UnknownVersion {
            event_type: event_type.to_owned(),
            schema_version,
        }
    }
}

/// Encodes one variant's fields as MessagePack with named fields, so fields can be added later.
pub fn to_payload<T: Serialize>(fields: &T) -> Vec<u8> {
    // Payload structs are plain data with string keys; encoding them into a Vec cannot fail.
    rmp_serde::to_vec_named(fields).expect("event payloads always encode")
}

/// Decodes one variant's fields, naming the type and version in the error.
pub fn from_payload<T: DeserializeOwned>(
    event_type: &str,
    schema_version: u16,
    payload: &[u8],
) -> Result<T, CodecError> {
    rmp_serde::from_slice(payload).map_err(|source| CodecError::Payload {
        event_type: event_type.to_owned(),
        schema_version,
        source,
    })
}

/// Renders any payload as JSON without knowing its type: named-field MessagePack maps onto JSON
/// objects. Binary fields become arrays of numbers.
pub fn payload_to_json(payload: &[u8]) -> Result<serde_json::Value, rmp_serde::decode::Error> {
    rmp_serde::from_slice(payload)
}

/// Renders a stored event as JSON: its envelope, its metadata, its payload decoded, its hash in
/// hex. A payload that does not map onto JSON is rendered as `null` with a `payload_error`.
pub fn render(event: &RecordedEvent) -> serde_json::Value {
    let mut rendered = serde_json::json!({
        "position": event.position,
        "stream": event.stream,
        "version": event.version,
        "event_id": event.event_id,
        "type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "metadata": event.metadata,
        "payload": serde_json::Value::Null,
        "hash": hex::encode(event.hash),
    });
    match payload_to_json(&event.payload) {
        Ok(payload) => rendered["payload"] = payload,
        Err(error) => rendered["payload_error"] = error.to_string().into(),
    }
    rendered
}
