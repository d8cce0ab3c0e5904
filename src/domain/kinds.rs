//! The registry of entity kinds known to this build, by stream category, for the tools that
//! work on any stream (`annals replay`, the event API). Each face adds its kind to
//! `known_kinds!` here.

use serde::Serialize;

use super::gros::{GrosAgent, GrosProject};
use super::inventory::HostRecord;
use super::results::Submission;
use super::scan::ScanRecord;
use super::sshkey::SshKey;
use super::testrun::TestRunRecord;
use super::workflow::Execution;
use crate::events::{DomainEvent, EventLog, StreamId, Version};
use crate::runtime::entity::Entity;
use crate::runtime::job::Job;
use crate::runtime::state::{self, LoadError, ReplayUntil};

/// A state replayed for audit, as JSON.
#[derive(Debug, Serialize)]
pub struct Replayed {
    pub stream: StreamId,
    /// The version of the last event folded in (0: none).
    pub version: Version,
    pub state: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no entity kind is called {0:?}; known kinds: {known}", known = KINDS.join(", "))]
    UnknownKind(String),
    /// No event was ever appended to the stream: there is no state to show, not even an empty
    /// one, which would read as an entity that exists.
    #[error("no such stream: {0} has no event")]
    NoSuchStream(StreamId),
    /// The point asked for comes before the stream's first event: the entity did not exist yet,
    /// and its empty state would read as one that did.
    #[error("{0} had no event yet at that point: its first event comes later")]
    NotYet(StreamId),
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// Something done with one entity kind, whichever it is: what [`with_kind`] and
/// [`each_kind`] run, so that a tool written once works on every kind.
pub trait KindVisitor {
    type Output;
    fn visit<E: Entity>(&mut self) -> Self::Output;
}

/// Declares the kinds this build knows, each once, in the order tools list them.
macro_rules! known_kinds {
    ($($kind:ident),+ $(,)?) => {
        /// Every kind `replay` knows.
        pub const KINDS: &[&str] = &[$($kind::KIND),+];

        /// Runs `visitor` on the kind whose stream category is `category`, if one is.
        pub fn with_kind<V: KindVisitor>(category: &str, visitor: &mut V) -> Option<V::Output> {
            $(
                if category == $kind::KIND {
                    return Some(visitor.visit::<$kind>());
                }
            )+
            None
        }

        /// Runs `visitor` on every kind, in the order of [`KINDS`].
        pub fn each_kind<V: KindVisitor>(visitor: &mut V) -> [V::Output; KINDS.len()] {
            [$(visitor.visit::<$kind>()),+]
        }
    };
}

known_kinds!(
    Job,
    HostRecord,
    TestRunRecord,
    Submission,
    ScanRecord,
    Execution,
    SshKey,
    GrosAgent,
    GrosProject,
);

/// Every kind with the event types it writes, in the order of [`KINDS`].
pub fn event_types() -> [(&'static str, &'static [&'static str]); KINDS.len()] {
    struct TypesOf;
    impl KindVisitor for TypesOf {
        type Output = (&'static str, &'static [&'static str]);
        fn visit<E: Entity>(&mut self) -> Self::Output {
            (E::KIND, <E::Event as DomainEvent>::TYPES)
        }
    }
    each_kind(&mut TypesOf)
}

/// Replays a stream of any known kind from its first event up to `until`.
pub fn replay(
    log: &EventLog,
    stream: &StreamId,
    until: ReplayUntil,
) -> Result<Replayed, ReplayError> {
    struct Replay<'a> {
        log: &'a EventLog,
        stream: &'a StreamId,
        until: ReplayUntil,
    }
    impl KindVisitor for Replay<'_> {
        type Output = Result<Replayed, ReplayError>;
        fn visit<E: Entity>(&mut self) -> Self::Output {
            replay_as::<E>(self.log, self.stream, self.until)
        }
    }
    let category = stream.category();
    with_kind(category, &mut Replay { log, stream, until })
        .unwrap_or_else(|| Err(ReplayError::UnknownKind(category.to_owned())))
}

fn replay_as<E: Entity>(
    log: &EventLog,
    stream: &StreamId,
    until: ReplayUntil,
) -> Result<Replayed, ReplayError> {
    if log.stream_version(stream).map_err(LoadError::from)? == 0 {
        return Err(ReplayError::NoSuchStream(stream.clone()));
    }
    let loaded = state::replay::<E>(log, stream, until)?;
    if loaded.version == 0 {
        return Err(ReplayError::NotYet(stream.clone()));
    }
    Ok(Replayed {
        stream: stream.clone(),
        version: loaded.version,
        // Entity states are plain data with string keys; they always render as JSON.
        state: serde_json::to_value(&loaded.state).expect("entity states render as JSON"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::CodecError;

    /// What a kind's decoder says of each type it lists: the versions it reads.
    struct DecodedVersions;

    impl KindVisitor for DecodedVersions {
        type Output = (&'static str, Vec<(&'static str, Vec<u16>)>, bool);
        fn visit<E: Entity>(&mut self) -> Self::Output {
            // An empty map: every known type and version gets as far as its fields.
            let empty = [0x80];
            // Versions far past any a kind has reached (the highest is 2) are not probed.
            let versions = |event_type: &str| {
                (0..=16)
                    .filter(|&version| {
                        !matches!(
                            E::Event::decode(event_type, version, &empty),
                            Err(CodecError::UnknownVersion { .. } | CodecError::UnknownType { .. })
                        )
                    })
                    .collect()
            };
            let unlisted_refused = matches!(
                E::Event::decode("NoSuchEvent", 1, &empty),
                Err(CodecError::UnknownType { .. })
            );
            let types = <E::Event as DomainEvent>::TYPES;
            let listed = types.iter().map(|t| (*t, versions(t))).collect();
            (E::KIND, listed, unlisted_refused)
        }
    }

    #[test]
    fn every_listed_type_decodes_and_no_other() {
        let mut kinds = std::collections::BTreeSet::new();
        for (kind, listed, unlisted_refused) in each_kind(&mut DecodedVersions) {
            assert!(kinds.insert(kind), "{kind} is declared twice");
            assert!(unlisted_refused, "{kind} decodes a type it does not list");
            let mut types = std::collections::BTreeSet::new();
            for (event_type, versions) in listed {
                assert!(types.insert(event_type), "{kind} lists {event_type} twice");
                assert!(
                    !versions.is_empty(),
                    "{kind} lists {event_type} but decodes no version of it"
                );
                assert!(
                    !versions.contains(&0),
                    "{kind}'s {event_type} decodes version 0"
                );
            }
        }
        assert_eq!(kinds.len(), KINDS.len());
    }

    /// `docs/events.md` names, under each kind's heading, every type with every version its
    /// decoder reads: the documented types and versions and the declared ones are the same.
    #[test]
    fn docs_list_every_type_and_version_each_kind_decodes() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/events.md");
        let docs = std::fs::read_to_string(path).expect("docs/events.md is readable");
        let mut documented = std::collections::BTreeSet::new();
        let mut kind = None;
        for line in docs.lines() {
            if let Some(heading) = line.strip_prefix("### `") {
                kind = heading.split('`').next().map(str::to_owned);
            } else if let (Some(kind), Some(row)) = (&kind, line.strip_prefix("| `")) {
                let mut cells = row.split('|').map(str::trim);
                let event_type = cells.next().unwrap_or_default().trim_end_matches('`');
                if let Some(Ok(version)) = cells.next().map(str::parse::<u16>) {
                    documented.insert((kind.clone(), event_type.to_owned(), version));
                }
            }
        }
        let mut declared = std::collections::BTreeSet::new();
        for (kind, listed, _) in each_kind(&mut DecodedVersions) {
            for (event_type, versions) in listed {
                for version in versions {
                    declared.insert((kind.to_owned(), event_type.to_owned(), version));
                }
            }
        }
        assert_eq!(documented, declared);
    }

    #[test]
    fn a_stream_of_no_known_kind_is_refused_by_name() {
        struct Kind;
        impl KindVisitor for Kind {
            type Output = &'static str;
            fn visit<E: Entity>(&mut self) -> &'static str {
                E::KIND
            }
        }
        for kind in KINDS {
            assert_eq!(with_kind(kind, &mut Kind), Some(*kind));
        }
        assert_eq!(with_kind("nope", &mut Kind), None);
    }
}
