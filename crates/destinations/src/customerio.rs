//! Customer.io (Track API): identify the person (`PUT /customers/{id}`), then track the event
//! under them with an id that de-duplicates retries.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::mapping::parse_instant;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct CustomerIo;

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("first_name", "payload.first_name"), ("last_name", "payload.last_name"), ("phone", "payload.phone")];

#[async_trait::async_trait]
impl Connector for CustomerIo {
    fn catalog(&self) -> CatalogEntry {
        CatalogEntry::new(
            "customerio",
            "Customer.io",
            "Identifies the event's person in Customer.io and tracks the event for them.",
            "api_key",
        )
        .auth_fields(vec![
            FieldSpec::new("site_id", "Site id", "secret", true),
            FieldSpec::new("api_key", "Tracking API key", "secret", true),
        ])
        .config(vec![
            FieldSpec::new("region", "Region", "select", false).options(&["us", "eu"]).default(json!("us")),
            vendor::base_url_field("https://track.customer.io"),
        ])
        .action(
            "track_event",
            "Track event",
            vec![
                FieldSpec::new("name", "Event name", "template", false).describe("Defaults to the event's own name"),
                FieldSpec::new("identifier", "Identifier", "select", false)
                    .options(&["email", "id"])
                    .default(json!("email"))
                    .describe("id identifies people by the mapped id field (payload.id by default); an e-mail address is then optional"),
                vendor::mapping_field(),
            ],
        )
        .limits(Some(16), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let site = ctx.secrets.credential("site_id")?;
        let key = ctx.secrets.credential("api_key")?;
        let config = &ctx.connection.config;
        let origin = match (config.get("base_url").and_then(Value::as_str), config.get("region").and_then(Value::as_str)) {
            (Some(base), _) => base.to_owned(),
            (None, Some("eu")) => "https://track-eu.customer.io".to_owned(),
            _ => "https://track.customer.io".to_owned(),
        };
        let context = ctx.template_context()?;
        let mut defaults = DEFAULT_MAPPING.to_vec();
        defaults.push(("id", "payload.id"));
        let by_id = ctx.action_config().get("identifier").and_then(Value::as_str) == Some("id");
        // Identified by id, the person needs no e-mail address (one given must be valid, though).
        let person =
            if by_id { vendor::person_email_optional(ctx, &context, &defaults)? } else { vendor::person(ctx, &context, &defaults)? };
        let identifier = if by_id {
            match person.get("id") {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => return Err(crate::Classified::permanent("the event has no id to identify the person by (payload.id)")),
            }
        } else {
            vendor::email(&person).to_owned()
        };
        let classify = |r: &crate::http::ResponseSummary| vendor::classify_with_message(r, &["meta.error", "meta.errors.0"]);

        // Every mapped field but the id, e-mail included when there is one.
        let mut attributes = person.clone();
        attributes.remove("id");
        let identify = OutboundRequest::json(
            Method::PUT,
            vendor::endpoint_at(&origin, &["api", "v1", "customers", &identifier])?,
            &Value::Object(attributes),
        )
        .basic(site, key)?;
        exchange.expect(identify, classify).await?;

        let name = match vendor::render_optional(ctx, "name", &context).await? {
            Some(n) => n,
            None => ctx.event.event.clone(),
        };
        let timestamp = context.get("occurred_at").and_then(|t| parse_instant(t).ok()).map(|t| t.timestamp());
        // Customer.io de-duplicates on a ULID `id`: the delivery's, the same on every retry.
        let id = ctx.delivery_id.trim_start_matches("dlv_");
        let body = json!({"name": name, "data": context.get("payload"), "timestamp": timestamp, "id": id});
        let track =
            OutboundRequest::json(Method::POST, vendor::endpoint_at(&origin, &["api", "v1", "customers", &identifier, "events"])?, &body)
                .basic(site, key)?;
        exchange.expect(track, classify).await.map(|_| ())
    }
}
