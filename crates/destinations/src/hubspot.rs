//! HubSpot: contacts are upserted by e-mail (batch upsert, safe to retry), then added to or
//! removed from a list by record id, or given a property value.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct HubSpot;

const ORIGIN: &str = "https://api.hubapi.com";
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("firstname", "payload.first_name"), ("lastname", "payload.last_name"), ("phone", "payload.phone")];
const MESSAGE: &[&str] = &["message"];

#[async_trait::async_trait]
impl Connector for HubSpot {
    fn catalog(&self) -> CatalogEntry {
        let list = || vec![FieldSpec::new("id", "List id", "string", true), vendor::mapping_field()];
        CatalogEntry::new("hubspot", "HubSpot", "Creates or updates the event's contact in HubSpot, and manages list membership.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)
                .describe("A private app token (pat-...) or an OAuth access token with crm.objects.contacts.write and crm.lists.write")])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action("add_to_list", "Add to list", list())
            .action("remove_from_list", "Remove from list", list())
            .action(
                "update_property",
                "Update property",
                vec![
                    FieldSpec::new("id", "Property", "string", true).describe("The property's internal name, e.g. lifecyclestage"),
                    FieldSpec::new("value", "Value", "template", true),
                    vendor::mapping_field(),
                ],
            )
            .limits(Some(10), Some(600))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let mut properties = vendor::attributes(&person);
        if ctx.rule.action == "update_property" {
            properties.insert(ctx.action_str("id")?.to_owned(), Value::String(vendor::render(ctx, "value", &context)?));
        }
        let config = &ctx.connection.config;
        let upsert = OutboundRequest::json(
            Method::POST,
            vendor::endpoint(config, ORIGIN, &["crm", "v3", "objects", "contacts", "batch", "upsert"])?,
            &json!({"inputs": [{"id": vendor::email(&person), "idProperty": "email", "properties": properties}]}),
        )
        .bearer(token)?;
        let answer = exchange.expect(upsert, |r| vendor::classify_with_message(r, MESSAGE)).await?;
        let record: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let Some(id) = record.pointer("/results/0/id").and_then(Value::as_str).map(str::to_owned) else {
            return Err(Classified::retry(None, "HubSpot's upsert answer had no record id"));
        };
        let change = match ctx.rule.action.as_str() {
            "add_to_list" => "add",
            "remove_from_list" => "remove",
            _ => return Ok(()),
        };
        let membership = OutboundRequest::json(
            Method::PUT,
            vendor::endpoint(config, ORIGIN, &["crm", "v3", "lists", ctx.action_str("id")?, "memberships", change])?,
            &json!([id]),
        )
        .bearer(token)?;
        exchange.expect(membership, |r| vendor::classify_with_message(r, MESSAGE)).await.map(|_| ())
    }
}
