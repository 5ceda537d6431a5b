//! Discord: an embed posted through a channel webhook. The webhook URL carries its token, so it
//! is kept with the encrypted credentials even when given in `config`.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use serde_json::{json, Value};

pub struct Discord;

const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;

#[async_trait::async_trait]
impl Connector for Discord {
    fn catalog(&self) -> CatalogEntry {
        // The webhook URL carries its token: a required secret, like an API key.
        CatalogEntry::new("discord", "Discord", "Posts an embed to a Discord channel through its webhook.", "api_key")
            .auth_fields(vec![FieldSpec::new("webhook_url", "Webhook URL", "url", true)
                .describe("https://discord.com/api/webhooks/{id}/{token}; accepted in config too, and stored encrypted either way")])
            .config(vec![vendor::base_url_field("https://discord.com")])
            .action(
                "send_message",
                "Send message",
                vec![
                    FieldSpec::new("title", "Title", "template", true),
                    FieldSpec::new("template", "Body", "template", true).describe("The embed's description (Discord markdown)"),
                    FieldSpec::new("color", "Colour", "integer", false).describe("The embed's colour as an integer, e.g. 15158332 for red"),
                ],
            )
            .duplicates_on_retry(true)
            .limits(Some(1), Some(30))
    }

    fn secret_config_keys(&self) -> &'static [&'static str] {
        &["webhook_url"]
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let hook = ctx.secrets.credential("webhook_url")?;
        let mut url = url::Url::parse(hook).map_err(|_| Classified::permanent("the webhook URL is invalid"))?;
        if let Some(base) = ctx.connection.config.get("base_url").and_then(Value::as_str) {
            let mut at = vendor::endpoint_at(base, &[])?;
            at.set_path(url.path());
            url = at;
        }
        url.query_pairs_mut().append_pair("wait", "true");
        let context = ctx.template_context()?;
        let title = truncate(vendor::render(ctx, "title", &context).await?, TITLE_MAX);
        let description = truncate(vendor::render(ctx, "template", &context).await?, DESCRIPTION_MAX);
        let mut embed = json!({"title": title, "description": description});
        if let Some(color) = ctx.action_config().get("color").and_then(Value::as_u64) {
            embed["color"] = json!(color);
        }
        // Mentions in rendered text never ping anyone.
        let body = json!({"embeds": [embed], "allowed_mentions": {"parse": []}});
        let request = OutboundRequest::json(reqwest::Method::POST, url, &body);
        exchange.expect(request, |r| vendor::classify_with_message(r, &["message"])).await.map(|_| ())
    }
}

/// Cuts text to Discord's limit in characters, marking the cut.
fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_text_is_cut_to_the_limit() {
        let t = super::truncate("é".repeat(300), 256);
        assert_eq!(t.chars().count(), 256);
        assert!(t.ends_with('…'));
        assert_eq!(super::truncate("short".into(), 256), "short");
    }
}
