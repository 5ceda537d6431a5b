//! Resend: e-mail from a template, sent with `Idempotency-Key` = the delivery id so a retry
//! never sends twice; contacts are created and put in or taken out of segments.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Resend;

const ORIGIN: &str = "https://api.resend.com";
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("first_name", "payload.first_name"), ("last_name", "payload.last_name")];
const MESSAGE: &[&str] = &["message"];

#[async_trait::async_trait]
impl Connector for Resend {
    fn catalog(&self) -> CatalogEntry {
        let segment = || vec![FieldSpec::new("id", "Segment id", "string", true), vendor::mapping_field()];
        CatalogEntry::new("resend", "Resend", "Sends templated e-mail through Resend and manages contacts in segments.", "api_key")
            .auth_fields(vec![
                FieldSpec::new("api_key", "API key", "secret", true).describe("An API key (re_...) with sending and contacts access")
            ])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action(
                "send_email_template",
                "Send template",
                vec![
                    FieldSpec::new("id", "Template id", "string", true)
                        .describe("A published Resend template; it receives the payload as variables"),
                    FieldSpec::new("from", "From", "string", true).describe("A sender on a verified domain, e.g. Acme <hi@acme.com>"),
                    FieldSpec::new("subject", "Subject", "template", false).describe("Overrides the template's subject"),
                    vendor::mapping_field(),
                ],
            )
            .action("add_to_segment", "Add to segment", segment())
            .action("remove_from_segment", "Remove from segment", segment())
            // 2 requests a second at the vendor, and add_to_segment sends 2: 60 deliveries a minute.
            .limits(Some(2), Some(60))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let config = &ctx.connection.config;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person).to_owned();
        let classify = |r: &crate::http::ResponseSummary| vendor::classify_with_message(r, MESSAGE);
        if ctx.rule.action == "send_email_template" {
            let variables = context.get("payload").cloned().unwrap_or(Value::Null);
            let mut body = json!({
                "from": ctx.action_str("from")?,
                "to": [email],
                "template": {"id": ctx.action_str("id")?, "variables": variables},
            });
            if let Some(subject) = vendor::render_optional(ctx, "subject", &context).await? {
                body["subject"] = json!(subject);
            }
            let request = OutboundRequest::json(Method::POST, vendor::endpoint(config, ORIGIN, &["emails"])?, &body)
                .bearer(key)?
                .header("idempotency-key", ctx.delivery_id)?;
            return exchange.expect(request, classify).await.map(|_| ());
        }
        let segment = ctx.action_str("id")?;
        let membership = vendor::endpoint(config, ORIGIN, &["contacts", &email, "segments", segment])?;
        if ctx.rule.action == "remove_from_segment" {
            let answer = exchange.send(OutboundRequest::empty(Method::DELETE, membership).bearer(key)?).await?;
            if answer.status == 404 {
                return Ok(()); // no such contact or not in the segment: already removed
            }
            return match classify(&answer) {
                c if c.outcome == crate::Outcome::Success => Ok(()),
                c => Err(c),
            };
        }
        let mut contact = vendor::attributes(&person);
        contact.insert("email".into(), json!(email));
        let create =
            OutboundRequest::json(Method::POST, vendor::endpoint(config, ORIGIN, &["contacts"])?, &Value::Object(contact)).bearer(key)?;
        let answer = exchange.send(create).await?;
        // A contact that exists already is fine: it goes into the segment all the same.
        if !matches!(answer.status, 200..=299 | 409) {
            let verdict = classify(&answer);
            let exists = answer.status == 422 && vendor::error_message(&answer, MESSAGE).is_some_and(|m| m.contains("already exists"));
            if !exists {
                return Err(verdict);
            }
        }
        let add = OutboundRequest::empty(Method::POST, membership).bearer(key)?;
        exchange.expect(add, classify).await.map(|_| ())
    }
}
