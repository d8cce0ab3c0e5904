//! The read model of agents by status, folded from the `gros_agent` category: each agent's
//! registration and last preflight check, and how many agents each status has, kept in the same
//! step so that a query costs the statuses, not the agents. It only reads the log.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{AgentEvent, GrosAgent};
use crate::events::{CodecError, DomainEvent, RecordedEvent};
use crate::runtime::Projection;

pub struct AgentsModel;

/// Where an agent stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// A registration is under way.
    Registering,
    /// No registration went through (the one started was abandoned).
    Unregistered,
    /// Registered, with no preflight check since.
    Registered,
    /// Its last preflight check passed.
    PreflightPassed,
    /// Its last preflight check failed.
    PreflightFailed,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Registering => "registering",
            AgentStatus::Unregistered => "unregistered",
            AgentStatus::Registered => "registered",
            AgentStatus::PreflightPassed => "preflight_passed",
            AgentStatus::PreflightFailed => "preflight_failed",
        }
    }
}

/// What an agent's status is made of.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct AgentRow {
    registering: bool,
    registered: bool,
    /// The last preflight check's verdict, since the last registration.
    preflight: Option<bool>,
}

impl AgentRow {
    fn status(self) -> AgentStatus {
        match (self.registering, self.registered, self.preflight) {
            (true, _, _) => AgentStatus::Registering,
            (false, false, _) => AgentStatus::Unregistered,
            (false, true, None) => AgentStatus::Registered,
            (false, true, Some(true)) => AgentStatus::PreflightPassed,
            (false, true, Some(false)) => AgentStatus::PreflightFailed,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentsState {
    /// By agent (the stream's entity id, `<project>.<agent>`).
    agents: HashMap<String, AgentRow>,
    /// How many agents each status has; a status none has is left out.
    by_status: BTreeMap<AgentStatus, u64>,
}

impl Projection for AgentsModel {
    crate::domain::read_model_of!(GrosAgent, "gros_agents", version 1, state AgentsState);

    fn apply(&self, state: &mut AgentsState, event: &RecordedEvent) -> Result<(), CodecError> {
        let event_row = |row: &mut AgentRow| -> Result<bool, CodecError> {
            match AgentEvent::from_recorded(event)? {
                AgentEvent::RegistrationStarted(_) => row.registering = true,
                AgentEvent::AgentRegistered(_) => {
                    *row = AgentRow {
                        registering: false,
                        registered: true,
                        preflight: None,
                    }
                }
                AgentEvent::RegistrationAbandoned(_) => row.registering = false,
                AgentEvent::PreflightChecked(e) => row.preflight = Some(e.ok),
                _ => return Ok(false),
            }
            Ok(true)
        };
        let id = event.stream.entity_id();
        let before = state.agents.get(id).copied();
        let mut row = before.unwrap_or_default();
        if !event_row(&mut row)? {
            return Ok(());
        }
        if let Some(before) = before {
            let status = before.status();
            if let Some(count) = state.by_status.get_mut(&status) {
                *count -= 1;
                if *count == 0 {
                    state.by_status.remove(&status);
                }
            }
        }
        *state.by_status.entry(row.status()).or_insert(0) += 1;
        state.agents.insert(id.to_owned(), row);
        Ok(())
    }
}

impl AgentsState {
    /// How many agents there are.
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// How many agents each status has.
    pub fn by_status(&self) -> BTreeMap<&'static str, u64> {
        self.by_status
            .iter()
            .map(|(status, count)| (status.as_str(), *count))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Metadata, StreamId};

    fn event(position: u64, agent: &str, event: AgentEvent) -> RecordedEvent {
        RecordedEvent {
            position,
            stream: StreamId::of("gros_agent", agent).unwrap(),
            version: position,
            event_id: uuid::Uuid::nil(),
            event_type: event.event_type().to_owned(),
            schema_version: event.schema_version(),
            recorded_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            metadata: Metadata::system(),
            payload: event.encode_payload(),
            hash: [0; 32],
        }
    }

    #[test]
    fn each_agent_counts_once_under_its_latest_status() {
        use super::super::{
            AgentRegistered, PreflightChecked, RegistrationAbandoned, RegistrationStarted,
        };
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        let registered = || {
            AgentEvent::AgentRegistered(AgentRegistered {
                public_key: "ssh-ed25519 AAAA".into(),
                rekeyed: false,
                at,
            })
        };
        let checked = |ok| {
            AgentEvent::PreflightChecked(PreflightChecked {
                ok,
                failed: Vec::new(),
                at,
            })
        };
        let mut state = AgentsState::default();
        for (i, (agent, e)) in [
            (
                "P.a",
                AgentEvent::RegistrationStarted(RegistrationStarted { at }),
            ),
            ("P.a", registered()),
            (
                "P.b",
                AgentEvent::RegistrationStarted(RegistrationStarted { at }),
            ),
            ("P.a", checked(false)),
            ("P.a", checked(true)),
            (
                "P.c",
                AgentEvent::RegistrationStarted(RegistrationStarted { at }),
            ),
            (
                "P.c",
                AgentEvent::RegistrationAbandoned(RegistrationAbandoned {
                    reason: "gone".into(),
                    at,
                }),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            AgentsModel
                .apply(&mut state, &event(i as u64 + 1, agent, e))
                .unwrap();
        }
        assert_eq!(state.len(), 3);
        assert_eq!(
            state.by_status(),
            BTreeMap::from([
                ("preflight_passed", 1),
                ("registering", 1),
                ("unregistered", 1)
            ])
        );
    }
}
