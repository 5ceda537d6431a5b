//! The generic webhook: an HTTP request to a URL the customer owns, signed per Standard Webhooks.

use crate::catalog::{ActionSpec, AuthSpec, CatalogEntry, FieldSpec};
use crate::outcome::classify_http;
use crate::{guard, BuildError, Connector, Delivered, DeliveryContext, Exchange, FieldError, OutboundRequest, ValidationContext};
use base64::Engine as _;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

pub struct Webhook;

/// Headers a connection may not set: they are Switchyard's to send.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "user-agent",
    "authorization",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    // Hop-by-hop and connection-control headers: they would change how the request travels, not
    // what it says.
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "http2-settings",
];
/// The most headers a connection may add (static and secret together).
pub const MAX_HEADERS: usize = 32;
/// The longest header name and value accepted.
pub const MAX_HEADER_NAME: usize = 128;
pub const MAX_HEADER_VALUE: usize = 4096;
const CONFIG_KEYS: &[&str] = &["url", "method", "headers", "format", "signing"];

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: String,
    workspace_id: &'a str,
    resource: Option<&'a str>,
    resource_id: Option<&'a str>,
    data: &'a RawValue,
}

#[async_trait::async_trait]
impl Connector for Webhook {
    fn catalog(&self) -> CatalogEntry {
        CatalogEntry {
            kind: "webhook".into(),
            name: "Webhook".into(),
            description: "Sends each event as an HTTP request to a URL you own, signed per Standard Webhooks.".into(),
            auth: AuthSpec {
                kind: "none".into(),
                fields: vec![
                    FieldSpec::new("username", "Basic auth user", "string", false),
                    FieldSpec::new("password", "Basic auth password", "secret", false),
                    FieldSpec::new("bearer_token", "Bearer token", "secret", false),
                    FieldSpec::new("headers", "Secret headers", "object", false)
                        .describe("Headers sent with every request and stored encrypted, e.g. {\"X-Api-Key\": \"...\"}"),
                ],
            },
            config_fields: vec![
                FieldSpec::new("url", "URL", "url", true),
                FieldSpec::new("method", "Method", "select", false).options(&["POST", "PUT", "PATCH"]).default(json!("POST")),
                FieldSpec::new("headers", "Static headers", "object", false),
                FieldSpec::new("format", "Body", "select", false)
                    .options(&["envelope", "raw"])
                    .default(json!("envelope"))
                    .describe("envelope wraps the payload with the event's metadata; raw sends the payload alone"),
                FieldSpec::new("signing", "Signing", "select", false).options(&["standard", "none"]).default(json!("standard")),
            ],
            actions: vec![ActionSpec { key: "send_webhook".into(), name: "Send webhook".into(), fields: vec![] }],
            retries_may_duplicate: true,
            limits: Default::default(),
        }
    }

    fn validate_config(&self, config: &Value, ctx: &ValidationContext) -> Result<Value, Vec<FieldError>> {
        let Some(obj) = config.as_object() else {
            return Err(vec![FieldError::new("config", "must be an object")]);
        };
        let mut errors = Vec::new();
        for key in obj.keys().filter(|k| !CONFIG_KEYS.contains(&k.as_str())) {
            errors.push(FieldError::new(format!("config.{key}"), "unknown field"));
        }
        match obj.get("url").and_then(Value::as_str) {
            None => errors.push(FieldError::new("config.url", "is required")),
            Some(raw) => match url::Url::parse(raw) {
                Err(_) => errors.push(FieldError::new("config.url", "is not a valid URL")),
                Ok(url) => {
                    if let Err(e) = guard::check_url(&url, ctx.allow_private_destinations) {
                        errors.push(FieldError::new("config.url", e));
                    }
                }
            },
        }
        let method = obj.get("method").map(|m| m.as_str().unwrap_or_default().to_ascii_uppercase()).unwrap_or_else(|| "POST".into());
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            errors.push(FieldError::new("config.method", "must be POST, PUT or PATCH"));
        }
        let format = choice(obj, "format", &["envelope", "raw"], &mut errors);
        let signing = choice(obj, "signing", &["standard", "none"], &mut errors);
        if let Some(headers) = obj.get("headers") {
            check_headers(headers, "config.headers", &mut errors);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(json!({
            "url": obj["url"],
            "method": method,
            "headers": obj.get("headers").cloned().unwrap_or_else(|| json!({})),
            "format": format,
            "signing": signing,
        }))
    }

    fn validate_credentials(&self, credentials: &Value, _ctx: &ValidationContext) -> Result<(), Vec<FieldError>> {
        let Some(obj) = credentials.as_object() else {
            return Err(vec![FieldError::new("credentials", "must be an object")]);
        };
        let mut errors = Vec::new();
        for (key, value) in obj {
            match key.as_str() {
                "username" | "password" | "bearer_token" if !value.is_string() => {
                    errors.push(FieldError::new(format!("credentials.{key}"), "must be a string"))
                }
                "username" | "password" | "bearer_token" => {}
                "headers" => check_headers(value, "credentials.headers", &mut errors),
                _ => errors.push(FieldError::new(
                    format!("credentials.{key}"),
                    "unknown field; use username and password, bearer_token, or headers",
                )),
            }
        }
        if let Some(n) = obj.get("headers").and_then(Value::as_object).map(|h| h.len()).filter(|n| *n > MAX_HEADERS) {
            errors.push(FieldError::new("credentials.headers", format!("holds {n} headers; the limit is {MAX_HEADERS}")));
        }
        if obj.contains_key("bearer_token") && (obj.contains_key("username") || obj.contains_key("password")) {
            errors.push(FieldError::new("credentials", "use either basic auth (username, password) or bearer_token, not both"));
        }
        if obj.contains_key("password") && !obj.contains_key("username") {
            errors.push(FieldError::new("credentials.username", "is required with a password"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn signs_requests(&self, config: &Value) -> bool {
        config.get("signing").and_then(Value::as_str) != Some("none")
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let request = self.build_request(ctx)?;
        exchange.expect(request, classify_http).await.map(|_| ())
    }
}

impl Webhook {
    fn build_request(&self, ctx: &DeliveryContext<'_>) -> Result<OutboundRequest, BuildError> {
        let config = &ctx.connection.config;
        let url = config.get("url").and_then(Value::as_str).ok_or_else(|| BuildError("the connection has no URL".into()))?;
        let url = url::Url::parse(url).map_err(|_| BuildError("the connection's URL is invalid".into()))?;
        let method = match config.get("method").and_then(Value::as_str).unwrap_or("POST") {
            "PUT" => reqwest::Method::PUT,
            "PATCH" => reqwest::Method::PATCH,
            _ => reqwest::Method::POST,
        };
        let event = ctx.event;
        let body = if config.get("format").and_then(Value::as_str) == Some("raw") {
            event.payload.clone().into_bytes()
        } else {
            let data: &RawValue = serde_json::from_str(&event.payload).map_err(|_| BuildError("the stored payload is not JSON".into()))?;
            serde_json::to_vec(&Envelope {
                id: event.id.as_str(),
                kind: &event.event,
                timestamp: switchyard_core::rfc3339(event.occurred_at.unwrap_or(event.received_at)),
                workspace_id: event.workspace_id.as_str(),
                resource: event.resource.as_deref(),
                resource_id: event.resource_id.as_deref(),
                data,
            })
            .map_err(|e| BuildError(format!("could not encode the envelope: {e}")))?
        };

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(map) = config.get("headers").and_then(Value::as_object) {
            append_headers(&mut headers, map, false)?;
        }
        if let Some(creds) = ctx.secrets.credentials.as_ref().and_then(Value::as_object) {
            if let Some(token) = creds.get("bearer_token").and_then(Value::as_str) {
                headers.insert(AUTHORIZATION, sensitive(&format!("Bearer {token}"))?);
            } else if let Some(user) = creds.get("username").and_then(Value::as_str) {
                let pass = creds.get("password").and_then(Value::as_str).unwrap_or_default();
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                headers.insert(AUTHORIZATION, sensitive(&format!("Basic {encoded}"))?);
            }
            if let Some(map) = creds.get("headers").and_then(Value::as_object) {
                // Secret headers: never recorded, however short.
                append_headers(&mut headers, map, true)?;
            }
        }
        headers.insert("webhook-id", HeaderValue::from_str(ctx.delivery_id).map_err(|_| BuildError("bad delivery id".into()))?);
        headers.insert("webhook-timestamp", HeaderValue::from(ctx.timestamp));
        if self.signs_requests(config) && !ctx.secrets.signing_secrets.is_empty() {
            let mut signatures = Vec::with_capacity(ctx.secrets.signing_secrets.len());
            for secret in &ctx.secrets.signing_secrets {
                signatures.push(
                    switchyard_core::crypto::sign_webhook(secret, ctx.delivery_id, ctx.timestamp, &body)
                        .map_err(|e| BuildError(e.to_string()))?,
                );
            }
            headers
                .insert("webhook-signature", HeaderValue::from_str(&signatures.join(" ")).map_err(|_| BuildError("bad signature".into()))?);
        }
        Ok(OutboundRequest { method, url, headers, body: body.into() })
    }
}

fn choice(obj: &Map<String, Value>, key: &str, allowed: &[&str], errors: &mut Vec<FieldError>) -> String {
    match obj.get(key) {
        None => allowed[0].to_owned(),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => s.clone(),
        Some(_) => {
            errors.push(FieldError::new(format!("config.{key}"), format!("must be one of {}", allowed.join(", "))));
            allowed[0].to_owned()
        }
    }
}

fn check_headers(headers: &Value, field: &str, errors: &mut Vec<FieldError>) {
    let Some(map) = headers.as_object() else {
        errors.push(FieldError::new(field, "must be an object of header names to string values"));
        return;
    };
    if map.len() > MAX_HEADERS {
        errors.push(FieldError::new(field, format!("holds {} headers; the limit is {MAX_HEADERS}", map.len())));
        return;
    }
    for (name, value) in map {
        let f = format!("{field}.{}", name.chars().take(MAX_HEADER_NAME).collect::<String>());
        if name.len() > MAX_HEADER_NAME {
            errors.push(FieldError::new(&f, format!("is longer than {MAX_HEADER_NAME} characters")));
        } else if value.as_str().is_some_and(|v| v.len() > MAX_HEADER_VALUE) {
            errors.push(FieldError::new(&f, format!("has a value longer than {MAX_HEADER_VALUE} bytes")));
        } else if HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(FieldError::new(&f, "is not a valid header name"));
        } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            errors.push(FieldError::new(&f, "is set by Switchyard and cannot be overridden"));
        } else if value.as_str().is_none_or(|v| HeaderValue::from_str(v).is_err()) {
            errors.push(FieldError::new(&f, "must be a string of visible ASCII characters"));
        }
    }
}

fn append_headers(headers: &mut HeaderMap, map: &Map<String, Value>, secret: bool) -> Result<(), BuildError> {
    for (name, value) in map {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| BuildError(format!("invalid header name {name:?}")))?;
        let mut value = value
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .ok_or_else(|| BuildError(format!("invalid value for header {name}")))?;
        value.set_sensitive(secret);
        headers.insert(name, value);
    }
    Ok(())
}

fn sensitive(value: &str) -> Result<HeaderValue, BuildError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| BuildError("credentials contain characters not allowed in a header".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(config: Value) -> Result<Value, Vec<FieldError>> {
        Webhook.validate_config(&config, &ValidationContext { allow_private_destinations: false })
    }

    #[test]
    fn config_defaults_are_filled_in() {
        let c = validate(json!({"url": "https://example.com/hook"})).unwrap();
        assert_eq!(c["method"], "POST");
        assert_eq!(c["format"], "envelope");
        assert_eq!(c["signing"], "standard");
    }

    #[test]
    fn bad_config_names_each_field() {
        let errors =
            validate(json!({"url": "nope", "method": "GET", "format": "xml", "headers": {"Content-Type": "x"}, "extra": 1})).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in ["config.url", "config.method", "config.format", "config.headers.Content-Type", "config.extra"] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn credentials_take_one_auth_scheme() {
        assert!(Webhook.validate_credentials(&json!({"username": "u", "password": "p"}), &Default::default()).is_ok());
        assert!(Webhook.validate_credentials(&json!({"bearer_token": "t"}), &Default::default()).is_ok());
        assert!(Webhook.validate_credentials(&json!({"bearer_token": "t", "username": "u"}), &Default::default()).is_err());
        assert!(Webhook.validate_credentials(&json!({"api_key": "t"}), &Default::default()).is_err());
        assert!(Webhook.validate_credentials(&json!({"headers": {"X-Api-Key": "k"}}), &Default::default()).is_ok());
    }
}
