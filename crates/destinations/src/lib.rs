//! Destinations: the connector interface, one module per destination, and the guarded HTTP client
//! every connector sends through.
//!
//! A [`Connector`] knows its catalog entry, validates connection and rule settings against it,
//! builds the HTTP request for one delivery, and classifies the response. Sending, timeouts,
//! address checks and reading the response are shared ([`http::Sender`]), as is the normalisation
//! of "retry later" signals ([`outcome`]).

pub mod catalog;
pub mod guard;
pub mod http;
pub mod outcome;
pub mod webhook;

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_core::model::{Connection, Event, Rule};

pub use catalog::CatalogEntry;
pub use outcome::{Classified, Outcome};

/// One field-level problem with submitted settings, e.g. `config.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// What validation needs to know about the deployment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidationContext {
    pub allow_private_destinations: bool,
}

/// A connection's secrets, opened for the length of one attempt.
#[derive(Clone, Default)]
pub struct OpenedSecrets {
    pub credentials: Option<Value>,
    /// Every signing secret to sign with: the current one first, then one in its rotation window.
    pub signing_secrets: Vec<String>,
}

impl std::fmt::Debug for OpenedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedSecrets([redacted])")
    }
}

/// Everything a connector needs to build one attempt's request.
pub struct DeliveryContext<'a> {
    pub delivery_id: &'a str,
    pub attempt: u32,
    pub event: &'a Event,
    pub rule: &'a Rule,
    pub connection: &'a Connection,
    pub secrets: &'a OpenedSecrets,
    /// Unix seconds of this attempt, used in signatures.
    pub timestamp: i64,
}

/// The request a connector wants sent.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: reqwest::Method,
    pub url: url::Url,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

/// Why a request could not be built: always permanent (retrying would fail the same way).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

pub trait Connector: Send + Sync {
    /// What the integrations catalog shows for this destination.
    fn catalog(&self) -> CatalogEntry;

    /// Checks a connection's `config` and returns it normalised (defaults filled in).
    fn validate_config(&self, config: &Value, ctx: &ValidationContext) -> Result<Value, Vec<FieldError>>;

    /// Checks a connection's write-only `credentials`.
    fn validate_credentials(&self, credentials: &Value) -> Result<(), Vec<FieldError>>;

    /// Checks a rule's `action` and `action_config`.
    fn validate_action(&self, action: &str, action_config: &Value) -> Result<(), Vec<FieldError>> {
        let catalog = self.catalog();
        if catalog.actions.iter().any(|a| a.key == action) {
            let _ = action_config;
            Ok(())
        } else {
            let known: Vec<_> = catalog.actions.iter().map(|a| a.key.as_str()).collect();
            Err(vec![FieldError::new("action", format!("{} has no action {action:?}; it offers {}", catalog.name, known.join(", ")))])
        }
    }

    /// Whether connections of this kind get a signing secret.
    fn signs_requests(&self, config: &Value) -> bool {
        let _ = config;
        false
    }

    /// The action a rule gets when it names none.
    fn default_action(&self) -> String {
        self.catalog().actions.first().map(|a| a.key.clone()).unwrap_or_default()
    }

    fn build_request(&self, ctx: &DeliveryContext<'_>) -> Result<OutboundRequest, BuildError>;

    /// Classifies a response; the default follows HTTP semantics (see [`outcome::classify_http`]).
    fn classify(&self, response: &http::ResponseSummary) -> Classified {
        outcome::classify_http(response)
    }
}

/// Every connector, by type name.
#[derive(Clone)]
pub struct Registry {
    connectors: BTreeMap<&'static str, Arc<dyn Connector>>,
}

impl Default for Registry {
    fn default() -> Self {
        let mut connectors: BTreeMap<&'static str, Arc<dyn Connector>> = BTreeMap::new();
        connectors.insert("webhook", Arc::new(webhook::Webhook));
        Self { connectors }
    }
}

impl Registry {
    pub fn get(&self, kind: &str) -> Option<&Arc<dyn Connector>> {
        self.connectors.get(kind)
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.connectors.keys().copied()
    }

    pub fn catalog(&self) -> Vec<CatalogEntry> {
        self.connectors.values().map(|c| c.catalog()).collect()
    }
}
