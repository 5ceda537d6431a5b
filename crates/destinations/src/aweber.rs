//! AWeber: no upsert, so each delivery finds the subscriber first (`ws.op=find`) and then
//! updates their mapped fields (never their status: someone who unsubscribed stays so) or adds
//! them; removal unsubscribes the one found. AWeber answers its rate limit
//! (120 requests a minute per account) with 403 "Rate Limit Error", which is a wait, not a refusal.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::{requested_wait, Classified};
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

pub struct AWeber;

const ORIGIN: &str = "https://api.aweber.com";
const DEFAULT_MAPPING: &[(&str, &str)] = &[("email", "payload.email"), ("name", "payload.name")];
const MESSAGE: &[&str] = &["error.message"];
/// How long AWeber refuses requests after a rate limit error (help.aweber.com, "Does AWeber
/// throttle or rate limit API requests?").
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

#[async_trait::async_trait]
impl Connector for AWeber {
    fn catalog(&self) -> CatalogEntry {
        let list = || vec![FieldSpec::new("id", "List id", "string", true).choices("lists"), vendor::mapping_field()];
        CatalogEntry::new("aweber", "AWeber", "Adds the event's person to an AWeber list, or unsubscribes them.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)])
            .config(vec![FieldSpec::new("account_id", "Account id", "string", true), vendor::base_url_field(ORIGIN)])
            .action("add_to_list", "Add to list", list())
            .action("remove_from_list", "Remove from list", list())
            .duplicates_on_retry(true)
            // 120 requests a minute at the vendor, and a delivery sends 2 (find, then write): 60 a minute.
            .limits(Some(4), Some(60))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let config = &ctx.connection.config;
        let account = config.get("account_id").and_then(Value::as_str).unwrap_or_default();
        let list = ctx.action_str("id")?;
        let subscribers = |extra: &[&str]| {
            let mut all = vec!["1.0", "accounts", account, "lists", list, "subscribers"];
            all.extend_from_slice(extra);
            vendor::endpoint(config, ORIGIN, &all)
        };
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person).to_owned();

        let mut find = subscribers(&[])?;
        find.query_pairs_mut().append_pair("ws.op", "find").append_pair("email", &email);
        let found = exchange.expect(OutboundRequest::empty(Method::GET, find).bearer(token)?, classify).await?;
        let body: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
        let existing = body.pointer("/entries/0/id").map(|id| id.as_str().map(str::to_owned).unwrap_or_else(|| id.to_string()));

        let mut fields = vendor::attributes(&person);
        let update = match (ctx.rule.action.as_str(), existing) {
            ("remove_from_list", None) => return Ok(()), // not on the list
            ("remove_from_list", Some(id)) => (Method::PATCH, subscribers(&[&id])?, json!({"status": "unsubscribed"})),
            // Only the mapped fields: setting the status would re-subscribe someone who opted out.
            (_, Some(_)) if fields.is_empty() => return Ok(()), // nothing to update
            (_, Some(id)) => (Method::PATCH, subscribers(&[&id])?, Value::Object(fields)),
            (_, None) => {
                fields.insert("email".into(), json!(email));
                (Method::POST, subscribers(&[])?, Value::Object(fields))
            }
        };
        let request = OutboundRequest::json(update.0, update.1, &update.2).bearer(token)?;
        exchange.expect(request, classify).await.map(|_| ())
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        (set == "lists").then_some(())?;
        Some(lists(ctx, exchange).await)
    }
}

/// The account's lists, by offset (`total_size` says how many).
async fn lists(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let token = ctx.secrets.credential("access_token")?;
    let config = &ctx.connection.config;
    let account = config.get("account_id").and_then(Value::as_str).unwrap_or_default();
    let next = |page: usize, previous: Option<&Value>| {
        let total = previous.and_then(|b| b.get("total_size")).and_then(Value::as_u64).unwrap_or(0);
        if page > 0 && (page as u64) * 100 >= total {
            return Ok(None);
        }
        let mut url = vendor::endpoint(config, ORIGIN, &["1.0", "accounts", account, "lists"])?;
        url.query_pairs_mut().append_pair("ws.start", &(page * 100).to_string()).append_pair("ws.size", "100");
        Ok(Some(OutboundRequest::empty(Method::GET, url).bearer(token)?))
    };
    vendor::paged(exchange, next, classify, |b| vendor::choices_at(b, "/entries", "/id", "/name")).await
}

/// HTTP semantics with AWeber's message, except its rate limit: 403 with the message "Rate Limit
/// Error" (other 403s are refusals), after which requests fail for 60 seconds.
fn classify(r: &ResponseSummary) -> Classified {
    let message = vendor::error_message(r, MESSAGE);
    if r.status == 403 && message.as_deref().is_some_and(|m| m.to_ascii_lowercase().contains("rate limit")) {
        let wait = requested_wait(r, SystemTime::now()).unwrap_or(RATE_LIMIT_WAIT);
        return Classified::rate_limited(Some(wait), "HTTP 403").with_detail(message.as_deref().unwrap_or_default());
    }
    vendor::classify_with_message(r, MESSAGE)
}
