//! Slack: `chat.postMessage` with a bot token. Slack reports most errors as HTTP 200 with
//! `{"ok": false, "error": "..."}`, so the answer's body decides the outcome.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::{classify_http, requested_wait, Classified};
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
use serde_json::{json, Value};
use std::time::SystemTime;

pub struct Slack;

const ORIGIN: &str = "https://slack.com";

/// `ok: false` errors that a later attempt can get past; every other one is permanent
/// (`channel_not_found`, `not_in_channel`, `invalid_blocks`, ...); a refused token (`invalid_auth`,
/// `token_expired`, `token_revoked`) is permanent too, unless an OAuth token can be refreshed.
const TRANSIENT: &[&str] = &["internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"];

#[async_trait::async_trait]
impl Connector for Slack {
    fn catalog(&self) -> CatalogEntry {
        CatalogEntry::new("slack", "Slack", "Posts a message to a Slack channel as your Slack app's bot.", "oauth")
            .auth_fields(vec![
                FieldSpec::new("access_token", "Bot token", "secret", true).describe("A bot token (xoxb-...) with chat:write")
            ])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action(
                "send_message",
                "Send message",
                vec![
                    FieldSpec::new("channel", "Channel", "string", true)
                        .describe("A channel id (C0123...) or name the bot is in")
                        .choices("channels"),
                    FieldSpec::new("template", "Message", "template", true)
                        .describe("The message text (mrkdwn), and the notification fallback when blocks are given"),
                    FieldSpec::new("blocks", "Blocks", "template", false)
                        .describe("A template that renders a JSON array of Block Kit blocks"),
                ],
            )
            .duplicates_on_retry(true)
            .limits(Some(4), Some(60))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let context = ctx.template_context()?;
        let text = vendor::render(ctx, "template", &context).await?;
        let mut body = json!({"channel": ctx.action_str("channel")?, "text": text});
        if let Some(blocks) = vendor::render_optional(ctx, "blocks", &context).await? {
            let blocks: Value = serde_json::from_str(&blocks)
                .ok()
                .filter(Value::is_array)
                .ok_or_else(|| Classified::permanent("the blocks template did not render a JSON array"))?;
            body["blocks"] = blocks;
        }
        let url = vendor::endpoint(&ctx.connection.config, ORIGIN, &["api", "chat.postMessage"])?;
        let request = OutboundRequest::json(reqwest::Method::POST, url, &body).bearer(token)?;
        exchange.expect(request, classify).await.map(|_| ())
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        (set == "channels").then_some(())?;
        Some(channels(ctx, exchange).await)
    }
}

/// The channels the bot can see (public and private, not archived), by cursor.
async fn channels(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let token = ctx.secrets.credential("access_token")?;
    let config = &ctx.connection.config;
    let next = |page: usize, previous: Option<&Value>| {
        let cursor = previous.and_then(|b| b.pointer("/response_metadata/next_cursor")).and_then(Value::as_str).unwrap_or_default();
        if page > 0 && cursor.is_empty() {
            return Ok(None);
        }
        let mut url = vendor::endpoint(config, ORIGIN, &["api", "conversations.list"])?;
        url.query_pairs_mut()
            .append_pair("types", "public_channel,private_channel")
            .append_pair("exclude_archived", "true")
            .append_pair("limit", "200");
        if !cursor.is_empty() {
            url.query_pairs_mut().append_pair("cursor", cursor);
        }
        Ok(Some(OutboundRequest::empty(reqwest::Method::GET, url).bearer(token)?))
    };
    let read = |body: &Value| {
        vendor::choices_at(body, "/channels", "/id", "/name")
            .into_iter()
            .map(|c| Choice { label: format!("#{}", c.label), value: c.value })
            .collect()
    };
    vendor::paged(exchange, next, classify, read).await
}

fn classify(r: &ResponseSummary) -> Classified {
    if r.status != 200 {
        return classify_http(r);
    }
    let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    if body.get("ok") == Some(&Value::Bool(true)) {
        return Classified::success();
    }
    let error = body.get("error").and_then(Value::as_str).unwrap_or("an answer without ok: true");
    match error {
        "ratelimited" => Classified::rate_limited(requested_wait(r, SystemTime::now()), "Slack: ratelimited"),
        e if TRANSIENT.contains(&e) => Classified::retry(None, format!("Slack: {e}")),
        e @ ("token_expired" | "invalid_auth" | "token_revoked") => Classified::unauthorized(format!("Slack: {e}")),
        e => Classified::permanent(format!("Slack: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn answer(status: u16, body: &str) -> ResponseSummary {
        ResponseSummary { status, headers: Default::default(), body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn ok_false_is_read_from_the_body() {
        assert_eq!(classify(&answer(200, r#"{"ok":true,"ts":"1.2"}"#)).outcome, Outcome::Success);
        for e in ["invalid_auth", "token_revoked", "channel_not_found", "not_in_channel"] {
            let c = classify(&answer(200, &format!(r#"{{"ok":false,"error":"{e}"}}"#)));
            assert_eq!(c.outcome, Outcome::Permanent, "{e}");
            assert_eq!(c.error.as_deref(), Some(format!("Slack: {e}").as_str()));
        }
        let limited = classify(&answer(200, r#"{"ok":false,"error":"ratelimited"}"#));
        assert!(limited.rate_limited);
        assert!(matches!(classify(&answer(200, r#"{"ok":false,"error":"internal_error"}"#)).outcome, Outcome::Retry { .. }));
        assert!(matches!(classify(&answer(503, "")).outcome, Outcome::Retry { .. }));
    }
}
