//! ActiveCampaign: to subscribe or tag, contacts are synced by e-mail (`/contact/sync`, an
//! upsert), then subscribed to a list or tagged. To unsubscribe or untag, the contact is looked up
//! by e-mail (`GET /contacts?email=`), never created.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::Classified;
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
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
        let id = |label: &str, set: &str| vec![FieldSpec::new("id", label, "string", true).choices(set), vendor::mapping_field()];
        CatalogEntry::new(
            "activecampaign",
            "ActiveCampaign",
            "Syncs the event's person as an ActiveCampaign contact and manages lists and tags.",
            "api_key",
        )
        .auth_fields(vec![FieldSpec::new("api_key", "API key", "secret", true)])
        .config(vec![
            FieldSpec::new("account", "Account", "string", false)
                .describe("Your account name: {account}.api-us1.com (letters, digits and hyphens, at most 63)"),
            vendor::base_url_field("https://{account}.api-us1.com"),
        ])
        .action("add_to_list", "Subscribe to list", id("List id", "lists"))
        .action("remove_from_list", "Unsubscribe from list", id("List id", "lists"))
        .action("add_tag", "Add tag", id("Tag id", "tags"))
        .action("remove_tag", "Remove tag", id("Tag id", "tags"))
        // 5 requests a second at the vendor, and a delivery sends up to 3: 100 deliveries a minute.
        .limits(Some(5), Some(100))
    }

    fn validate_config(&self, config: &Value, ctx: &crate::ValidationContext) -> Result<Value, Vec<crate::FieldError>> {
        let out = crate::fields::validate(&self.catalog().config_fields, config, "config", ctx)?;
        match out.get("account").and_then(Value::as_str) {
            Some(account) if !valid_account(account) => Err(vec![crate::FieldError::new(
                "config.account",
                "must be your account name alone: 1 to 63 letters, digits and hyphens (it becomes {account}.api-us1.com)",
            )]),
            None if out.get("base_url").is_none() => Err(vec![crate::FieldError::new("config.account", "is required (or give base_url)")]),
            _ => Ok(out),
        }
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let origin = origin(&ctx.connection.config)?;
        let api = |segments: &[&str]| {
            let mut all = vec!["api", "3"];
            all.extend_from_slice(segments);
            vendor::endpoint_at(&origin, &all)
        };
        let auth = |r: OutboundRequest| r.secret_header(HeaderName::from_static("api-token"), key);
        let classify = |r: &ResponseSummary| vendor::classify_with_message(r, MESSAGE);

        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let target = ctx.action_str("id")?;
        let as_text = |v: &Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
        let contact = if matches!(ctx.rule.action.as_str(), "remove_from_list" | "remove_tag") {
            // Look the contact up without creating it: someone ActiveCampaign does not know is in
            // no list and has no tag.
            let mut find = api(&["contacts"])?;
            find.query_pairs_mut().append_pair("email", vendor::email(&person));
            let found = exchange.expect(auth(OutboundRequest::empty(Method::GET, find))?, classify).await?;
            let body: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
            match body.pointer("/contacts/0/id").filter(|id| !id.is_null()) {
                Some(id) => as_text(id),
                None => return Ok(()), // no such contact
            }
        } else {
            let synced = exchange
                .expect(auth(OutboundRequest::json(Method::POST, api(&["contact", "sync"])?, &json!({"contact": person})))?, classify)
                .await?;
            serde_json::from_slice::<Value>(&synced.body)
                .ok()
                .and_then(|b| b.pointer("/contact/id").map(as_text))
                .ok_or_else(|| Classified::retry(None, "ActiveCampaign's sync answer had no contact id"))?
        };
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

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        match set {
            "lists" => Some(listing(ctx, exchange, "lists", "name").await),
            "tags" => Some(listing(ctx, exchange, "tags", "tag").await),
            _ => None,
        }
    }
}

/// An account name as it goes into `https://{account}.api-us1.com`: one DNS label.
/// The account's API origin: `base_url`, or `https://{account}.api-us1.com`.
fn origin(config: &Value) -> Result<String, Classified> {
    match (config.get("base_url").and_then(Value::as_str), config.get("account").and_then(Value::as_str)) {
        (Some(base), _) => Ok(base.to_owned()),
        // Checked when saved; checked again since it goes into a hostname.
        (None, Some(account)) if valid_account(account) => Ok(format!("https://{account}.api-us1.com")),
        (None, Some(_)) => Err(Classified::permanent("the connection's account is not a valid account name")),
        _ => Err(Classified::permanent("the connection has neither account nor base_url")),
    }
}

/// Lists (`lists`, named `name`) or tags (`tags`, named `tag`), by offset (`meta.total` says how many).
async fn listing(
    ctx: &OptionsContext<'_>,
    exchange: &mut Exchange<'_>,
    set: &'static str,
    label: &'static str,
) -> Result<Vec<Choice>, Classified> {
    let key = ctx.secrets.credential("api_key")?;
    let origin = origin(&ctx.connection.config)?;
    let next = |page: usize, previous: Option<&Value>| {
        let total = previous
            .and_then(|b| b.pointer("/meta/total"))
            .and_then(|t| t.as_u64().or_else(|| t.as_str().and_then(|s| s.parse().ok())))
            .unwrap_or(0);
        if page > 0 && (page as u64) * 100 >= total {
            return Ok(None);
        }
        let mut url = vendor::endpoint_at(&origin, &["api", "3", set])?;
        url.query_pairs_mut().append_pair("limit", "100").append_pair("offset", &(page * 100).to_string());
        Ok(Some(OutboundRequest::empty(Method::GET, url).secret_header(HeaderName::from_static("api-token"), key)?))
    };
    let (list, label) = (format!("/{set}"), format!("/{label}"));
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), |b| vendor::choices_at(b, &list, "/id", &label)).await
}

fn valid_account(account: &str) -> bool {
    (1..=63).contains(&account.len()) && account.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ValidationContext;

    #[test]
    fn the_account_must_be_a_single_hostname_label() {
        let validate = |config: Value| ActiveCampaign.validate_config(&config, &ValidationContext::default());
        for ok in ["acme", "acme-eu-2", "ACME", "a", "9", &"a".repeat(63)] {
            assert_eq!(validate(json!({"account": ok})).unwrap()["account"], ok, "{ok}");
        }
        // A number is taken as text, as for any text setting.
        assert_eq!(validate(json!({"account": 123})).unwrap()["account"], "123");
        for bad in
            ["acme.evil.test", "evil.test/x", "acme:443", "user@acme", "ac me", " acme", "acme_1", "ácme", "a?b", "a#b", &"a".repeat(64)]
        {
            let errors = validate(json!({"account": bad})).unwrap_err();
            assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
            assert_eq!(errors[0].field, "config.account", "{bad}");
            assert!(errors[0].message.contains("letters, digits and hyphens"), "{bad}: {}", errors[0].message);
        }
        // Empty is refused as an empty text setting; neither account nor base_url as before.
        assert_eq!(validate(json!({"account": ""})).unwrap_err()[0].field, "config.account");
        assert_eq!(validate(json!({})).unwrap_err()[0].message, "is required (or give base_url)");
        // With base_url, account is still checked if given.
        assert!(validate(json!({"base_url": "https://acme.api-us1.com"})).is_ok());
        assert_eq!(validate(json!({"base_url": "https://acme.api-us1.com", "account": "a.b"})).unwrap_err()[0].field, "config.account");
    }
}
