//! SendGrid: e-mail through `/v3/mail/send` (a dynamic template or inline HTML), and marketing
//! contacts upserted with `PUT /v3/marketing/contacts`.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::json;

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
                        .describe("A dynamic template id (d-...); it receives the event as dynamic_template_data"),
                    vendor::mapping_field(),
                ],
            )
            .action("add_to_list", "Add contact to list", vec![FieldSpec::new("id", "List id", "string", true), vendor::mapping_field()])
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
}
