//! End-to-end tests: each starts a real node (its own SQLite file, an ephemeral port) and real
//! loopback receivers, and speaks to both over HTTP only.

mod access;
mod blueprint_apply;
mod blueprints;
mod connectors;
mod console;
mod delivery;
mod embed;
mod hardening;
mod harness;
mod hostile;
mod ingest;
mod isolation;
mod labels;
mod limits;
mod management;
mod notifications;
mod oauth;
mod operators;
mod options;
mod rates;
mod secrets;
