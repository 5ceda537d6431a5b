//! SendGrid: e-mail through `/v3/mail/send` (a dynamic template or inline HTML), and marketing
//! contacts upserted with `PUT /v3/marketing/contacts`.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct SendGrid;

const ORIGIN: &str = "https://api.sendgrid.com";
const DEFAULT_MAPPING: &[(&str, &str)] = &[
    ("email", "payload.email"),
    ("first_name", "payload.first_name"),
    ("last_name", "payload.last_name"),
    ("phone_number", "payload.phone"),
];
const MESSAGE: &[&str] = &["errors.0.message"];

#[async_trait::async_trait]
impl Connector for SendGrid {
    fn catalog(&self) -> CatalogEntry {
        let from = || FieldSpec::new("from", "From", "string", true).describe("A verified sender address");
        CatalogEntry::new("sendgrid", "SendGrid", "Sends e-mail through SendGrid and keeps marketing contacts in lists.", "api_key")
            .auth_fields(vec![
                FieldSpec::new("api_key", "API key", "secret", true).describe("An API key (SG....) with Mail Send and Marketing access")
            ])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action(
                "send_email",
                "Send e-mail",
                vec![
                    from(),
                    FieldSpec::new("subject", "Subject", "template", true),
                    FieldSpec::new("template", "HTML body", "template", true).html(),
                    vendor::mapping_field(),
                ],
            )
            .action(
                "send_email_template",
                "Send dynamic template",
                vec![
                    from(),
                    FieldSpec::new("id", "Template id", "string", true)
                        .choices("templates")
                        .describe("A dynamic template id (d-...); it receives the event as dynamic_template_data"),
                    vendor::mapping_field(),
                ],
            )
            .action(
                "add_to_list",
                "Add contact to list",
                vec![FieldSpec::new("id", "List id", "string", true).choices("lists"), vendor::mapping_field()],
            )
            .duplicates_on_retry(true)
            .limits(Some(10), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let key = ctx.secrets.credential("api_key")?;
        let config = &ctx.connection.config;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person);
        let request = match ctx.rule.action.as_str() {
            "add_to_list" => {
                let mut contact = vendor::attributes(&person);
                contact.insert("email".into(), json!(email));
                let body = json!({"list_ids": [ctx.action_str("id")?], "contacts": [contact]});
                OutboundRequest::json(Method::PUT, vendor::endpoint(config, ORIGIN, &["v3", "marketing", "contacts"])?, &body)
            }
            action => {
                let mut body = json!({
                    "personalizations": [{"to": [{"email": email}]}],
                    "from": {"email": ctx.action_str("from")?},
                    // The delivery id comes back in SendGrid's event webhook, tying it to history.
                    "custom_args": {"switchyard_delivery_id": ctx.delivery_id},
                });
                if action == "send_email_template" {
                    body["template_id"] = json!(ctx.action_str("id")?);
                    body["personalizations"][0]["dynamic_template_data"] = context.clone();
                } else {
                    body["subject"] = json!(vendor::render(ctx, "subject", &context).await?);
                    // The body is HTML: values the template prints are escaped.
                    body["content"] = json!([{"type": "text/html", "value": vendor::render_html(ctx, "template", &context).await?}]);
                }
                OutboundRequest::json(Method::POST, vendor::endpoint(config, ORIGIN, &["v3", "mail", "send"])?, &body)
            }
        };
        exchange.expect(request.bearer(key)?, |r| vendor::classify_with_message(r, MESSAGE)).await.map(|_| ())
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        match set {
            "lists" => Some(listing(ctx, exchange, &["v3", "marketing", "lists"], &[]).await),
            "templates" => Some(listing(ctx, exchange, &["v3", "templates"], &[("generations", "dynamic")]).await),
            _ => None,
        }
    }
}

/// A paged listing (`result`, with `_metadata.next` naming the next page's `page_token`).
async fn listing(
    ctx: &OptionsContext<'_>,
    exchange: &mut Exchange<'_>,
    path: &[&str],
    query: &[(&str, &str)],
) -> Result<Vec<Choice>, Classified> {
    let key = ctx.secrets.credential("api_key")?;
    let config = &ctx.connection.config;
    let next = |page: usize, previous: Option<&Value>| {
        let token = previous
            .and_then(|b| b.pointer("/_metadata/next"))
            .and_then(Value::as_str)
            .and_then(|next| url::Url::parse(next).ok())
            .and_then(|u| u.query_pairs().find(|(k, _)| k == "page_token").map(|(_, v)| v.into_owned()));
        if page > 0 && token.is_none() {
            return Ok(None);
        }
        let mut url = vendor::endpoint(config, ORIGIN, path)?;
        url.query_pairs_mut().extend_pairs(query).append_pair("page_size", "100");
        if let Some(token) = &token {
            url.query_pairs_mut().append_pair("page_token", token);
        }
        Ok(Some(OutboundRequest::empty(Method::GET, url).bearer(key)?))
    };
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), |b| vendor::choices_at(b, "/result", "/id", "/name")).await
}
