//! Side effects after durability: how an entity kind starts real work (a scan, a child process)
//! once the events that call for it are durable, and feeds the results back as commands. The
//! hook is called by the host actor after the append is acknowledged and applied; it must not
//! block, so it spawns its work.

use super::directory::Entities;
use super::entity::Entity;

/// The side effects of one entity kind.
pub trait Effects<E: Entity>: Send + Sync + 'static {
    /// Called once per successful command, after its `events` are durable and folded into
    /// `state`. Work that takes time runs in a spawned task and reports back through
    /// `entities.execute(id, …)`, which makes its results events like any other command's.
    ///
    /// A crash between the append and this call loses the work, never the events: start-up
    /// reconciliation ([`Entity::on_restart`]) settles entities whose work died.
    fn after_commit(&self, id: &str, state: &E::State, events: &[E::Event], entities: &Entities<E>);
}

/// The effects of a kind that has none.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoEffects;

impl<E: Entity> Effects<E> for NoEffects {
    fn after_commit(&self, _: &str, _: &E::State, _: &[E::Event], _: &Entities<E>) {}
}
