//! MailerLite: `POST /api/subscribers` upserts by e-mail and joins the group in the same call.
//! Leaving a group needs the subscriber's id, which `GET /api/subscribers/{email}` returns without
//! creating anyone.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::Classified;
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct MailerLite;

const ORIGIN: &str = "https://connect.mailerlite.com";
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("name", "payload.first_name"), ("last_name", "payload.last_name"), ("phone", "payload.phone")];
const MESSAGE: &[&str] = &["message"];

#[async_trait::async_trait]
impl Connector for MailerLite {
    fn catalog(&self) -> CatalogEntry {
        let group = || vec![FieldSpec::new("id", "Group id", "string", true).choices("groups"), vendor::mapping_field()];
        CatalogEntry::new("mailerlite", "MailerLite", "Adds the event's person to a MailerLite group, or takes them out of it.", "api_key")
            .auth_fields(vec![FieldSpec::new("api_key", "API token", "secret", true)])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action("add_to_group", "Add to group", group())
            .action("remove_from_group", "Remove from group", group())
            // 120 requests a minute at the vendor, and a removal sends 2: 60 deliveries a minute.
            .limits(Some(4), Some(60))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let config = &ctx.connection.config;
        let classify = |r: &ResponseSummary| vendor::classify_with_message(r, MESSAGE);
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let group = ctx.action_str("id")?;
        let email = vendor::email(&person);
        if ctx.rule.action == "add_to_group" {
            let body = json!({"email": email, "fields": vendor::attributes(&person), "groups": [group]});
            let upsert =
                OutboundRequest::json(Method::POST, vendor::endpoint(config, ORIGIN, &["api", "subscribers"])?, &body).bearer(key)?;
            return exchange.expect(upsert, classify).await.map(|_| ());
        }
        // Look the subscriber up without creating them: someone MailerLite does not know is in no group.
        let find = OutboundRequest::empty(Method::GET, vendor::endpoint(config, ORIGIN, &["api", "subscribers", email])?).bearer(key)?;
        let answer = exchange.send(find).await?;
        if answer.status == 404 {
            return Ok(()); // no such subscriber
        }
        let verdict = classify(&answer);
        if verdict.outcome != crate::Outcome::Success {
            return Err(verdict);
        }
        let id = serde_json::from_slice::<Value>(&answer.body)
            .ok()
            .and_then(|b| b.pointer("/data/id").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| Classified::retry(None, "MailerLite's answer had no subscriber id"))?;
        let leave =
            OutboundRequest::empty(Method::DELETE, vendor::endpoint(config, ORIGIN, &["api", "subscribers", &id, "groups", group])?)
                .bearer(key)?;
        let answer = exchange.send(leave).await?;
        match classify(&answer) {
            c if c.outcome == crate::Outcome::Success || answer.status == 404 => Ok(()),
            c => Err(c),
        }
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        (set == "groups").then_some(())?;
        Some(groups(ctx, exchange).await)
    }
}

/// The account's groups, by page (`meta.last_page` says how many).
async fn groups(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let key = ctx.secrets.credential("api_key")?;
    let config = &ctx.connection.config;
    let next = |page: usize, previous: Option<&Value>| {
        let last = previous.and_then(|b| b.pointer("/meta/last_page")).and_then(Value::as_u64).unwrap_or(0);
        if page > 0 && page as u64 >= last {
            return Ok(None);
        }
        let mut url = vendor::endpoint(config, ORIGIN, &["api", "groups"])?;
        url.query_pairs_mut().append_pair("limit", "100").append_pair("page", &(page + 1).to_string());
        Ok(Some(OutboundRequest::empty(Method::GET, url).bearer(key)?))
    };
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), |b| vendor::choices_at(b, "/data", "/id", "/name")).await
}
