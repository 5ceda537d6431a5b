//! Destinations: the connector interface, one module per destination, and the guarded HTTP client
//! every connector sends through.
//!
//! A [`Connector`] knows its catalog entry, validates connection and rule settings against it,
//! builds the HTTP request for one delivery, and classifies the response. Sending, timeouts,
//! address checks and reading the response are shared ([`http::Sender`]), as is the normalisation
//! of "retry later" signals ([`outcome`]).

pub mod catalog;
pub mod exchange;
pub mod fields;
pub mod guard;
pub mod http;
pub mod mapping;
pub mod outcome;
pub mod sandbox;
pub mod template;
pub mod vendor;
pub mod webhook;

mod activecampaign;
mod aweber;
mod customerio;
mod discord;
mod hubspot;
mod intercom;
mod mailchimp;
mod mailerlite;
mod resend;
mod salesforce;
mod sendgrid;
mod slack;
mod zoom;

use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use switchyard_core::model::{Connection, Event, Rule};

pub use catalog::CatalogEntry;
pub use exchange::Exchange;
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

impl OpenedSecrets {
    /// A credential field as text, or a permanent failure naming it.
    pub fn credential(&self, key: &str) -> Result<&str, Classified> {
        self.credentials
            .as_ref()
            .and_then(|c| c.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Classified::permanent(format!("the connection has no {key} credential")))
    }
}

impl std::fmt::Debug for OpenedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OpenedSecrets([redacted])")
    }
}

/// Everything a connector needs to build one attempt's requests.
pub struct DeliveryContext<'a> {
    pub delivery_id: &'a str,
    pub attempt: u32,
    pub event: &'a Event,
    pub rule: &'a Rule,
    pub connection: &'a Connection,
    pub secrets: &'a OpenedSecrets,
    /// Unix seconds of this attempt, used in signatures.
    pub timestamp: i64,
    /// Where the rule's templates render.
    pub renderer: &'a sandbox::Renderer,
}

impl DeliveryContext<'_> {
    /// What templates and mappings see: `event`, `payload`, `resource`, `resource_id`,
    /// `workspace_id`, `occurred_at` (the received time when the event named none), `event_id`.
    pub fn template_context(&self) -> Result<Value, Classified> {
        let e = self.event;
        let payload: Value = serde_json::from_str(&e.payload).map_err(|_| Classified::permanent("the stored payload is not JSON"))?;
        Ok(serde_json::json!({
            "event": e.event,
            "event_id": e.id.as_str(),
            "payload": payload,
            "resource": e.resource,
            "resource_id": e.resource_id,
            "workspace_id": e.workspace_id.as_str(),
            "occurred_at": switchyard_core::rfc3339(e.occurred_at.unwrap_or(e.received_at)),
        }))
    }

    /// The rule's action settings.
    pub fn action_config(&self) -> &Value {
        &self.rule.action_config
    }

    /// A text setting of the rule's action, or a permanent failure naming it.
    pub fn action_str(&self, key: &str) -> Result<&str, Classified> {
        self.rule
            .action_config
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Classified::permanent(format!("the rule's action_config has no {key}")))
    }
}

/// One choice a destination offers for a setting: a channel, a list, a property.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Choice {
    /// What the setting stores (an id).
    pub value: String,
    /// What people see (a name).
    pub label: String,
}

/// What listing a destination's choices needs.
pub struct OptionsContext<'a> {
    pub connection: &'a Connection,
    pub secrets: &'a OpenedSecrets,
}

/// The most choices one listing returns; pages beyond are not fetched.
pub const MAX_CHOICES: usize = 1000;

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

impl From<BuildError> for Classified {
    fn from(e: BuildError) -> Self {
        Classified::permanent(e.0)
    }
}

/// An attempt's end: `Ok` when the destination accepted it, else why not and what to do next.
pub type Delivered = Result<(), Classified>;

#[async_trait]
pub trait Connector: Send + Sync {
    /// What the integrations catalog shows for this destination.
    fn catalog(&self) -> CatalogEntry;

    /// Checks a connection's `config` and returns it normalised (defaults filled in).
    fn validate_config(&self, config: &Value, ctx: &ValidationContext) -> Result<Value, Vec<FieldError>> {
        fields::validate(&self.catalog().config_fields, config, "config", ctx)
    }

    /// Checks a connection's write-only `credentials`.
    fn validate_credentials(&self, credentials: &Value, ctx: &ValidationContext) -> Result<(), Vec<FieldError>> {
        fields::validate(&self.catalog().auth.fields, credentials, "credentials", ctx).map(|_| ())
    }

    /// Checks a rule's `action` and `action_config` (templates compile, mappings parse) and
    /// returns the config normalised.
    fn validate_action(&self, action: &str, action_config: &Value) -> Result<Value, Vec<FieldError>> {
        let catalog = self.catalog();
        match catalog.actions.iter().find(|a| a.key == action) {
            Some(spec) => fields::validate(&spec.fields, action_config, "action_config", &ValidationContext::default()),
            None => {
                let known: Vec<_> = catalog.actions.iter().map(|a| a.key.as_str()).collect();
                Err(vec![FieldError::new("action", format!("{} has no action {action:?}; it offers {}", catalog.name, known.join(", ")))])
            }
        }
    }

    /// Config keys that hold secrets (a Discord webhook URL carries its token): they are moved
    /// into the encrypted credentials when a connection is saved, and never shown again.
    fn secret_config_keys(&self) -> &'static [&'static str] {
        &[]
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

    /// Makes one attempt: sends what the action needs through `exchange` and judges the answers.
    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered;

    /// Lists the choices of `set` (a name the catalog gives in a field's `choices`) from the
    /// destination itself, with the connection's credentials. `None` when there is no such set.
    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        let _ = (set, ctx, exchange);
        None
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
        connectors.insert("slack", Arc::new(slack::Slack));
        connectors.insert("discord", Arc::new(discord::Discord));
        connectors.insert("hubspot", Arc::new(hubspot::HubSpot));
        connectors.insert("salesforce", Arc::new(salesforce::Salesforce));
        connectors.insert("mailchimp", Arc::new(mailchimp::Mailchimp));
        connectors.insert("sendgrid", Arc::new(sendgrid::SendGrid));
        connectors.insert("resend", Arc::new(resend::Resend));
        connectors.insert("intercom", Arc::new(intercom::Intercom));
        connectors.insert("customerio", Arc::new(customerio::CustomerIo));
        connectors.insert("activecampaign", Arc::new(activecampaign::ActiveCampaign));
        connectors.insert("mailerlite", Arc::new(mailerlite::MailerLite));
        connectors.insert("aweber", Arc::new(aweber::AWeber));
        connectors.insert("zoom", Arc::new(zoom::Zoom));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `rate_limit_per_minute` counts deliveries: a default times the requests one delivery may
    /// send stays within the vendor's own limit.
    #[test]
    fn default_rate_limits_keep_every_delivery_s_requests_within_the_vendor_s_limit() {
        let registry = Registry::default();
        let limit = |kind: &str| registry.get(kind).unwrap().catalog().limits.rate_limit_per_minute;
        // (type, default deliveries a minute, requests a delivery may send, vendor's requests a minute)
        for (kind, per_minute, requests, vendor) in [
            ("activecampaign", 100, 3, 5 * 60), // 5 a second; a tag removal: look-up, tag links, delete
            ("resend", 60, 2, 2 * 60),          // 2 a second; add_to_segment: contact, then membership
            ("mailerlite", 60, 2, 120),         // removal: look-up, then leave
            ("aweber", 60, 2, 120),             // find, then write
        ] {
            assert_eq!(limit(kind), Some(per_minute), "{kind}");
            assert!(per_minute * requests <= vendor, "{kind}");
        }
        assert_eq!(limit("slack"), Some(60));
        assert_eq!(limit("discord"), Some(30));
        assert_eq!(limit("hubspot"), Some(600));
    }

    #[test]
    fn discord_s_webhook_url_is_a_required_secret_so_its_auth_is_api_key() {
        let catalog = Registry::default().get("discord").unwrap().catalog();
        assert_eq!(catalog.auth.kind, "api_key");
        assert_eq!(catalog.auth.fields.iter().map(|f| (f.key.as_str(), f.required)).collect::<Vec<_>>(), [("webhook_url", true)]);
        // Only the generic webhook needs no credential.
        let none: Vec<_> = Registry::default().catalog().into_iter().filter(|c| c.auth.kind == "none").map(|c| c.kind).collect();
        assert_eq!(none, ["webhook"]);
    }
}
