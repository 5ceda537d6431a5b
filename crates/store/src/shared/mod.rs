//! Trait implementations whose SQL is the same on SQLite and PostgreSQL, written once as macros
//! and instantiated by each store.

pub(crate) mod blueprints;
pub(crate) mod connections;
pub(crate) mod console;
pub(crate) mod credentials;
pub(crate) mod event_types;
pub(crate) mod history;
pub(crate) mod limits;
pub(crate) mod operators;
pub(crate) mod queue;
pub(crate) mod rules;
pub(crate) mod workspaces;
