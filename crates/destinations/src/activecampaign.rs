//! ActiveCampaign: contacts are synced by e-mail (`/contact/sync`, an upsert), then subscribed to
//! or unsubscribed from a list, or tagged and untagged.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::Classified;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::header::HeaderName;
use reqwest::Method;
use serde_json::{json, Value};

pub struct ActiveCampaign;

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("firstName", "payload.first_name"), ("lastName", "payload.last_name"), ("phone", "payload.phone")];
const MESSAGE: &[&str] = &["errors.0.title", "message"];

#[async_trait::async_trait]
impl Connector for ActiveCampaign {
    fn catalog(&self) -> CatalogEntry {
        let id = |label: &str| vec![FieldSpec::new("id", label, "string", true), vendor::mapping_field()];
        CatalogEntry::new(
            "activecampaign",
            "ActiveCampaign",
            "Syncs the event's person as an ActiveCampaign contact and manages lists and tags.",
            "api_key",
        )
        .auth_fields(vec![FieldSpec::new("api_key", "API key", "secret", true)])
        .config(vec![
            FieldSpec::new("account", "Account", "string", false).describe("Your account name: {account}.api-us1.com"),
            vendor::base_url_field("https://{account}.api-us1.com"),
        ])
        .action("add_to_list", "Subscribe to list", id("List id"))
        .action("remove_from_list", "Unsubscribe from list", id("List id"))
        .action("add_tag", "Add tag", id("Tag id"))
        .action("remove_tag", "Remove tag", id("Tag id"))
        .limits(Some(5), Some(300))
    }

    fn validate_config(&self, config: &Value, ctx: &crate::ValidationContext) -> Result<Value, Vec<crate::FieldError>> {
        let out = crate::fields::validate(&self.catalog().config_fields, config, "config", ctx)?;
        if out.get("account").is_none() && out.get("base_url").is_none() {
            return Err(vec![crate::FieldError::new("config.account", "is required (or give base_url)")]);
        }
        Ok(out)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let config = &ctx.connection.config;
        let origin = match (config.get("base_url").and_then(Value::as_str), config.get("account").and_then(Value::as_str)) {
            (Some(base), _) => base.to_owned(),
            (None, Some(account)) => format!("https://{account}.api-us1.com"),
            _ => return Err(Classified::permanent("the connection has neither account nor base_url")),
        };
        let api = |segments: &[&str]| {
            let mut all = vec!["api", "3"];
            all.extend_from_slice(segments);
            vendor::endpoint_at(&origin, &all)
        };
        let auth = |r: OutboundRequest| r.secret_header(HeaderName::from_static("api-token"), key);
        let classify = |r: &ResponseSummary| vendor::classify_with_message(r, MESSAGE);

        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let synced = exchange
            .expect(auth(OutboundRequest::json(Method::POST, api(&["contact", "sync"])?, &json!({"contact": person})))?, classify)
            .await?;
        let contact = serde_json::from_slice::<Value>(&synced.body)
            .ok()
            .and_then(|b| b.pointer("/contact/id").map(|id| id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string())))
            .ok_or_else(|| Classified::retry(None, "ActiveCampaign's sync answer had no contact id"))?;
        let target = ctx.action_str("id")?;
        match ctx.rule.action.as_str() {
            "add_to_list" | "remove_from_list" => {
                let status = if ctx.rule.action == "add_to_list" { 1 } else { 2 };
                let body = json!({"contactList": {"list": target, "contact": contact, "status": status}});
                exchange.expect(auth(OutboundRequest::json(Method::POST, api(&["contactLists"])?, &body))?, classify).await.map(|_| ())
            }
            "add_tag" => {
                let body = json!({"contactTag": {"contact": contact, "tag": target}});
                exchange.expect(auth(OutboundRequest::json(Method::POST, api(&["contactTags"])?, &body))?, classify).await.map(|_| ())
            }
            _ => {
                let tags = exchange
                    .expect(auth(OutboundRequest::empty(Method::GET, api(&["contacts", &contact, "contactTags"])?))?, classify)
                    .await?;
                let body: Value = serde_json::from_slice(&tags.body).unwrap_or(Value::Null);
                let as_text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                let found = body.get("contactTags").and_then(Value::as_array).and_then(|all| {
                    all.iter().find(|t| t.get("tag").map(as_text).as_deref() == Some(target)).and_then(|t| t.get("id")).map(as_text)
                });
                let Some(link) = found else { return Ok(()) }; // not tagged: nothing to remove
                let answer = exchange.send(auth(OutboundRequest::empty(Method::DELETE, api(&["contactTags", &link])?))?).await?;
                match classify(&answer) {
                    c if c.outcome == crate::Outcome::Success || answer.status == 404 => Ok(()),
                    c => Err(c),
                }
            }
        }
    }
}
