//! Mailchimp: audience members are upserted at `PUT /lists/{id}/members/{md5(email)}`, which is
//! safe to retry; removal unsubscribes. An API key names its data centre after the dash.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Mailchimp;

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("FNAME", "payload.first_name"), ("LNAME", "payload.last_name"), ("PHONE", "payload.phone")];
const MESSAGE: &[&str] = &["detail", "title"];

#[async_trait::async_trait]
impl Connector for Mailchimp {
    fn catalog(&self) -> CatalogEntry {
        let list = |extra: bool| {
            let mut f = vec![FieldSpec::new("id", "Audience id", "string", true)];
            if extra {
                f.push(
                    FieldSpec::new("status_if_new", "Status of new members", "select", false)
                        .options(&["subscribed", "pending", "transactional"])
                        .default(json!("subscribed"))
                        .describe("pending sends Mailchimp's double opt-in e-mail"),
                );
            }
            f.push(vendor::mapping_field());
            f
        };
        CatalogEntry::new("mailchimp", "Mailchimp", "Adds the event's person to a Mailchimp audience, or unsubscribes them.", "api_key")
            .auth_fields(vec![
                FieldSpec::new("api_key", "API key", "secret", true).describe("An API key; its suffix (-us6) names the data centre")
            ])
            .config(vec![vendor::base_url_field("https://{dc}.api.mailchimp.com")])
            .action("add_to_list", "Add to audience", list(true))
            .action("remove_from_list", "Remove from audience", list(false))
            .limits(Some(10), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let origin = match ctx.connection.config.get("base_url").and_then(Value::as_str) {
            Some(base) => base.to_owned(),
            None => match key.rsplit_once('-') {
                Some((_, dc)) if !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    format!("https://{dc}.api.mailchimp.com")
                }
                _ => return Err(Classified::permanent("the API key names no data centre (it should end in -us6 or similar)")),
            },
        };
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person).to_lowercase();
        let hash = format!("{:x}", Md5::digest(email.as_bytes()));
        let url = vendor::endpoint_at(&origin, &["3.0", "lists", ctx.action_str("id")?, "members", &hash])?;
        if ctx.rule.action == "remove_from_list" {
            let request = OutboundRequest::json(Method::PATCH, url, &json!({"status": "unsubscribed"})).basic("switchyard", key)?;
            let answer = exchange.send(request).await?;
            // Someone who was never a member is already where the rule wants them.
            if answer.status == 404 {
                return Ok(());
            }
            return match vendor::classify_with_message(&answer, MESSAGE) {
                c if c.outcome == crate::Outcome::Success => Ok(()),
                c => Err(c),
            };
        }
        let status = ctx.action_config().get("status_if_new").and_then(Value::as_str).unwrap_or("subscribed");
        let body = json!({"email_address": email, "status_if_new": status, "merge_fields": vendor::attributes(&person)});
        let request = OutboundRequest::json(Method::PUT, url, &body).basic("switchyard", key)?;
        exchange.expect(request, |r| vendor::classify_with_message(r, MESSAGE)).await.map(|_| ())
    }
}
