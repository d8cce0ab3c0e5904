//! Given/when/then scenarios for an entity's rules, run without an actor system or a log: given
//! past events, when a command arrives at a set time, then these events (or this rejection).

use chrono::{DateTime, Utc};

use super::entity::{Ctx, Entity, ManualClock};

/// The past of an entity, built from events.
pub struct Given<E: Entity> {
    state: E::State,
    clock: ManualClock,
}

/// Starts a scenario from past events, at the Unix epoch.
pub fn given<E: Entity>(events: impl IntoIterator<Item = E::Event>) -> Given<E> {
    let mut state = E::State::default();
    for event in events {
        E::apply(&mut state, &event);
    }
    Given {
        state,
        clock: ManualClock::at(DateTime::UNIX_EPOCH),
    }
}

impl<E: Entity> Given<E> {
    /// Sets the time at which the command is decided.
    pub fn at(self, now: DateTime<Utc>) -> Self {
        self.clock.set(now);
        self
    }

    /// Decides a command.
    pub fn when(self, command: E::Command) -> Then<E> {
        let decided = E::decide(&self.state, &command, &Ctx::new(&self.clock));
        Then {
            state: self.state,
            decided,
        }
    }
}

/// What a command decided.
pub struct Then<E: Entity> {
    state: E::State,
    decided: Result<Vec<E::Event>, E::Rejection>,
}

impl<E: Entity> Then<E> {
    /// Asserts the events, and returns the state with them applied.
    #[track_caller]
    pub fn then(self, expected: Vec<E::Event>) -> E::State {
        match self.decided {
            Ok(events) => {
                assert_eq!(events, expected, "the command decided other events");
                let mut state = self.state;
                for event in &events {
                    E::apply(&mut state, event);
                }
                state
            }
            Err(rejection) => {
                panic!("expected events {expected:?}, the command was rejected: {rejection:?}")
            }
        }
    }

    /// Asserts the rejection.
    #[track_caller]
    pub fn then_rejected(self, expected: E::Rejection) {
        match self.decided {
            Ok(events) => panic!("expected rejection {expected:?}, the command decided {events:?}"),
            Err(rejection) => assert_eq!(rejection, expected),
        }
    }
}
