//! Turning an entity's typed events into stored payloads and back, through upcasters for old
//! schema versions. It owns the payload format (MessagePack with named fields); it never touches
//! storage.

use serde::{de::DeserializeOwned, Serialize};

use super::envelope::RecordedEvent;

/// One entity kind's event enum. Each variant has a stable type name and a schema version; a
/// change to a variant's fields is a new version, with its old versions still decoded by
/// [`DomainEvent::decode`] (the upcasters).
pub trait DomainEvent: Sized {
    /// Every type name this kind writes, each once: what a tool that must handle every event
    /// (a renderer, an exporter) walks to check that it does.
    const TYPES: &'static [&'static str];
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

/// Declares one entity kind's event enum and its [`DomainEvent`] implementation, once: each
/// variant wraps its payload struct, its type string is the variant's name, and its schema
/// version is the one this build writes. A variant written with its fields in braces declares
/// its payload struct here too, named as the variant: its doc comment, the fields listed, then
/// `at`, when it happened (microseconds, as every payload time is), deriving what the enum
/// derives plus `Serialize` and `Deserialize`. A variant written `Variant(Struct)` wraps a
/// struct declared elsewhere. Old versions follow `upcasts`, each with the struct its payloads
/// decode to and turned into the current one by `From` (the upcaster):
///
/// ```text
/// domain_events! {
///     #[derive(Clone, Debug, PartialEq, Eq)]
///     pub enum JobEvent {
///         JobStarted version 1 { pub name: String },
///         LineRecorded version 2 upcasts { 1 => LineRecordedV1 } { pub line: String },
///         Reported(Report) version 1,
///     }
/// }
/// ```
///
/// It writes `TYPES` in declaration order, `event_type`, `schema_version`, `encode_payload`
/// (MessagePack with named fields) and `decode`: the current version and every old one listed
/// decode; another version of a known type is [`CodecError::UnknownVersion`], any other type
/// [`CodecError::UnknownType`].
macro_rules! domain_events {
    // The payload type of a variant: the struct it names, or the one written for it.
    (@payload $variant:ident) => { $variant };
    (@payload $variant:ident $payload:ty) => { $payload };

    // The payload struct of a variant declared with its fields; nothing for one that names a
    // struct declared elsewhere.
    (@struct [$(#[$meta:meta])*] ($($derive:path),+ $(,)?) $vis:vis $variant:ident) => {};
    (
        @struct [$(#[$meta:meta])*] ($($derive:path),+ $(,)?) $vis:vis $variant:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $field_ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive($($derive,)+ ::serde::Serialize, ::serde::Deserialize)]
        $vis struct $variant {
            $($(#[$field_meta])* pub $field: $field_ty,)*
            #[serde(with = "chrono::serde::ts_microseconds")]
            pub at: ::chrono::DateTime<::chrono::Utc>,
        }
    };

    (
        $(#[doc = $doc:expr])*
        #[derive $derives:tt]
        $vis:vis enum $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident $(($payload:ty))? version $version:literal
                $(upcasts { $($old:literal => $old_payload:ty),+ $(,)? })?
                $({ $($fields:tt)* })?
            ),+ $(,)?
        }
    ) => {
        $(#[doc = $doc])*
        #[derive $derives]
        $vis enum $name {
            $(
                $(#[$variant_meta])*
                $variant($crate::events::codec::domain_events!(@payload $variant $($payload)?)),
            )+
        }

        $(
            $crate::events::codec::domain_events! {
                @struct [$(#[$variant_meta])*] $derives $vis $variant $({ $($fields)* })?
            }
        )+

        impl $crate::events::DomainEvent for $name {
            const TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn event_type(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => stringify!($variant),)+
                }
            }

            fn schema_version(&self) -> u16 {
                match self {
                    $($name::$variant(_) => $version,)+
                }
            }

            fn encode_payload(&self) -> Vec<u8> {
                match self {
                    $($name::$variant(fields) => $crate::events::codec::to_payload(fields),)+
                }
            }

            fn decode(
                event_type: &str,
                schema_version: u16,
                payload: &[u8],
            ) -> Result<Self, $crate::events::CodecError> {
                use $crate::events::codec::from_payload;
                let (t, v) = (event_type, schema_version);
                match t {
                    $(
                        stringify!($variant) => match v {
                            $version => Ok($name::$variant(from_payload(t, v, payload)?)),
                            $($(
                                $old => Ok($name::$variant(From::from(
                                    from_payload::<$old_payload>(t, v, payload)?,
                                ))),
                            )+)?
                            _ => Err($crate::events::CodecError::unknown_version(t, v)),
                        },
                    )+
                    _ => Err($crate::events::CodecError::unknown_type(t, v)),
                }
            }
        }
    };
}
pub(crate) use domain_events;

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
/// objects. What JSON has no form for is written so that nothing is lost or hidden from an
/// auditor: binary (a `Uuid` is 16 bytes of binary in MessagePack) as lower-case hex, a map key
/// that is not a string as its JSON text, a float JSON cannot hold (NaN, infinities) as a string,
/// an extension as `[tag, "hex"]`.
pub fn payload_to_json(payload: &[u8]) -> Result<serde_json::Value, rmp_serde::decode::Error> {
    use serde::de::DeserializeSeed;
    let mut decoder = rmp_serde::Deserializer::from_read_ref(payload);
    JsonOf.deserialize(&mut decoder)
}

/// Reads any self-describing value into JSON; see [`payload_to_json`].
#[derive(Clone, Copy)]
struct JsonOf;

impl<'de> serde::de::DeserializeSeed<'de> for JsonOf {
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonOf {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any MessagePack value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_i128<E>(self, v: i128) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_string()))
    }

    fn visit_u128<E>(self, v: u128) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(serde_json::Number::from_f64(v)
            .map_or_else(|| serde_json::Value::String(v.to_string()), Into::into))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
        Ok(serde_json::Value::String(hex::encode(v)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(items.into())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key_seed(self)? {
            let key = match key {
                serde_json::Value::String(key) => key,
                other => other.to_string(),
            };
            object.insert(key, map.next_value_seed(self)?);
        }
        Ok(object.into())
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Said {
        words: String,
        loud: bool,
    }

    /// `Said` v1: no `loud`.
    #[derive(Deserialize, Serialize)]
    struct SaidV1 {
        words: String,
    }

    impl From<SaidV1> for Said {
        fn from(v1: SaidV1) -> Said {
            Said {
                words: v1.words,
                loud: false,
            }
        }
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Left {
        at: u64,
    }

    domain_events! {
        #[derive(Clone, Debug, PartialEq)]
        enum TalkEvent {
            Said(Said) version 2 upcasts { 1 => SaidV1 },
            Left(Left) version 1,
            /// Someone came in.
            Joined version 1 {
                #[serde(default)]
                pub name: String,
                pub late: bool,
            },
        }
    }

    /// What `Joined` would be if written by hand.
    #[derive(Serialize)]
    struct JoinedByHand {
        name: String,
        late: bool,
        #[serde(with = "chrono::serde::ts_microseconds")]
        at: chrono::DateTime<chrono::Utc>,
    }

    #[test]
    fn a_payload_declared_with_its_fields_encodes_as_the_struct_written_by_hand() {
        let at = chrono::DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let joined = TalkEvent::Joined(Joined {
            name: "ann".into(),
            late: true,
            at,
        });
        let by_hand = JoinedByHand {
            name: "ann".into(),
            late: true,
            at,
        };
        assert_eq!(joined.encode_payload(), to_payload(&by_hand));
        assert_eq!(
            TalkEvent::decode("Joined", 1, &joined.encode_payload()).unwrap(),
            joined
        );
        // A field's own attributes are kept: `name` may be missing.
        let unnamed = to_payload(&serde_json::json!({"late": false, "at": 7}));
        assert_eq!(
            TalkEvent::decode("Joined", 1, &unnamed).unwrap(),
            TalkEvent::Joined(Joined {
                name: String::new(),
                late: false,
                at: chrono::DateTime::from_timestamp_micros(7).unwrap(),
            })
        );
    }

    #[test]
    fn a_declared_kind_encodes_its_fields_by_name_and_reads_old_versions() {
        assert_eq!(TalkEvent::TYPES, ["Said", "Left", "Joined"]);
        let said = Said {
            words: "hi".into(),
            loud: true,
        };
        let event = TalkEvent::Said(said.clone());
        assert_eq!((event.event_type(), event.schema_version()), ("Said", 2));
        assert_eq!(
            event.encode_payload(),
            rmp_serde::to_vec_named(&said).unwrap()
        );
        let decoded = TalkEvent::decode("Said", 2, &event.encode_payload()).unwrap();
        assert_eq!(decoded, event);
        let left = TalkEvent::Left(Left { at: 7 });
        assert_eq!((left.event_type(), left.schema_version()), ("Left", 1));
        assert_eq!(
            TalkEvent::decode("Left", 1, &left.encode_payload()).unwrap(),
            left
        );

        let v1 = to_payload(&SaidV1 { words: "hi".into() });
        assert_eq!(
            TalkEvent::decode("Said", 1, &v1).unwrap(),
            TalkEvent::Said(Said {
                words: "hi".into(),
                loud: false,
            })
        );
        assert!(matches!(
            TalkEvent::decode("Said", 3, &v1),
            Err(CodecError::UnknownVersion {
                schema_version: 3,
                ..
            })
        ));
        assert!(matches!(
            TalkEvent::decode("Left", 2, &v1),
            Err(CodecError::UnknownVersion { .. })
        ));
        assert!(matches!(
            TalkEvent::decode("Shouted", 1, &v1),
            Err(CodecError::UnknownType { .. })
        ));
        assert!(matches!(
            TalkEvent::decode("Left", 1, &v1),
            Err(CodecError::Payload { .. })
        ));
    }

    #[test]
    fn what_json_cannot_hold_renders_without_loss() {
        #[derive(Serialize)]
        struct Odd {
            id: uuid::Uuid,
            #[serde(with = "serde_bytes")]
            raw: Vec<u8>,
            by_number: std::collections::BTreeMap<u8, bool>,
            nan: f64,
            nothing: Option<u8>,
        }
        let odd = Odd {
            id: uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef),
            raw: vec![0, 255],
            by_number: [(7, true)].into(),
            nan: f64::NAN,
            nothing: None,
        };
        let rendered = payload_to_json(&to_payload(&odd)).unwrap();
        assert_eq!(
            rendered,
            serde_json::json!({
                "id": "0123456789abcdef0123456789abcdef",
                "raw": "00ff",
                "by_number": {"7": true},
                "nan": "NaN",
                "nothing": null,
            })
        );
    }
}
