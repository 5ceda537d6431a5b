//! Intercom: to tag, the person is created as a contact (or, when Intercom answers 409 because
//! they exist, updated under the id it names), then tagged. To untag, the contact is searched for
//! by e-mail, never created.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::Classified;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Intercom;

const ORIGIN: &str = "https://api.intercom.io";
const VERSION: &str = "2.11";
const DEFAULT_MAPPING: &[(&str, &str)] = &[("email", "payload.email"), ("name", "payload.name"), ("phone", "payload.phone")];
const MESSAGE: &[&str] = &["errors.0.message", "message"];

#[async_trait::async_trait]
impl Connector for Intercom {
    fn catalog(&self) -> CatalogEntry {
        let tag = || vec![FieldSpec::new("id", "Tag id", "string", true), vendor::mapping_field()];
        CatalogEntry::new("intercom", "Intercom", "Creates or updates the event's person as an Intercom contact and tags them.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)])
            .config(vec![
                vendor::base_url_field(ORIGIN).describe("https://api.eu.intercom.io or https://api.au.intercom.io for other regions")
            ])
            .action("add_tag", "Add tag", tag())
            .action("remove_tag", "Remove tag", tag())
            .limits(Some(10), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let config = &ctx.connection.config;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let classify = |r: &ResponseSummary| vendor::classify_with_message(r, MESSAGE);
        let request = |method: Method, segments: &[&str], body: Option<&Value>| -> Result<OutboundRequest, Classified> {
            let url = vendor::endpoint(config, ORIGIN, segments)?;
            let req = match body {
                Some(b) => OutboundRequest::json(method, url, b),
                None => OutboundRequest::empty(method, url),
            };
            Ok(req.bearer(token)?.header("intercom-version", VERSION)?)
        };

        let tag = ctx.action_str("id")?;
        if ctx.rule.action == "remove_tag" {
            // Search, not create: someone Intercom does not know carries no tag.
            let query = json!({"query": {"field": "email", "operator": "=", "value": vendor::email(&person)}});
            let found = exchange.expect(request(Method::POST, &["contacts", "search"], Some(&query))?, classify).await?;
            let Some(id) = serde_json::from_slice::<Value>(&found.body).ok().and_then(|b| text_id(b.pointer("/data/0/id"))) else {
                return Ok(()); // no such contact
            };
            let answer = exchange.send(request(Method::DELETE, &["contacts", &id, "tags", tag], None)?).await?;
            if answer.status == 404 {
                return Ok(()); // the tag was not on the contact
            }
            return match classify(&answer) {
                c if c.outcome == crate::Outcome::Success => Ok(()),
                c => Err(c),
            };
        }

        let mut contact = vendor::attributes(&person);
        contact.insert("email".into(), json!(vendor::email(&person)));
        contact.insert("role".into(), json!("user"));
        let created = exchange.send(request(Method::POST, &["contacts"], Some(&Value::Object(contact.clone())))?).await?;
        let id = if created.status == 409 {
            // A conflict that names no contact cannot be resolved by trying again.
            let id = conflict_id(&created).ok_or_else(|| {
                Classified::permanent("Intercom reported a conflict without the contact's id")
                    .with_detail(&vendor::error_message(&created, MESSAGE).unwrap_or_default())
            })?;
            contact.remove("role");
            exchange.expect(request(Method::PUT, &["contacts", &id], Some(&Value::Object(contact)))?, classify).await?;
            id
        } else {
            match classify(&created) {
                c if c.outcome != crate::Outcome::Success => return Err(c),
                _ => body_id(&created).ok_or_else(|| Classified::retry(None, "Intercom's answer had no contact id"))?,
            }
        };
        exchange.expect(request(Method::POST, &["contacts", &id, "tags"], Some(&json!({"id": tag})))?, classify).await.map(|_| ())
    }
}

fn body_id(r: &ResponseSummary) -> Option<String> {
    text_id(serde_json::from_slice::<Value>(&r.body).ok()?.get("id"))
}

fn text_id(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The existing contact's id from a 409: "A contact matching those details already exists with id=5f2b...".
fn conflict_id(r: &ResponseSummary) -> Option<String> {
    let message = vendor::error_message(r, MESSAGE)?;
    let (_, rest) = message.split_once("id=")?;
    let id: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_conflict_names_the_existing_contact() {
        let r = ResponseSummary {
            status: 409,
            headers: Default::default(),
            body: bytes::Bytes::from_static(
                br#"{"type":"error.list","errors":[{"code":"conflict","message":"A contact matching those details already exists with id=5f2b9c1a"}]}"#,
            ),
        };
        assert_eq!(conflict_id(&r).as_deref(), Some("5f2b9c1a"));
    }
}
