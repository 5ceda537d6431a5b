//! Zoom: registers the event's person for a meeting or a webinar.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Zoom;

const ORIGIN: &str = "https://api.zoom.us";
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("first_name", "payload.first_name"), ("last_name", "payload.last_name")];

#[async_trait::async_trait]
impl Connector for Zoom {
    fn catalog(&self) -> CatalogEntry {
        CatalogEntry::new("zoom", "Zoom", "Registers the event's person for a Zoom meeting or webinar.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action(
                "add_meeting_registrant",
                "Register for meeting",
                vec![FieldSpec::new("id", "Meeting id", "string", true), vendor::mapping_field()],
            )
            .action(
                "add_webinar_registrant",
                "Register for webinar",
                vec![FieldSpec::new("id", "Webinar id", "string", true), vendor::mapping_field()],
            )
            .duplicates_on_retry(true)
            .limits(Some(4), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let mut body = vendor::attributes(&person);
        body.insert("email".into(), json!(vendor::email(&person)));
        // Zoom requires a first name.
        if !body.contains_key("first_name") {
            let local = vendor::email(&person).split('@').next().unwrap_or_default().to_owned();
            body.insert("first_name".into(), json!(local));
        }
        let kind = if ctx.rule.action == "add_webinar_registrant" { "webinars" } else { "meetings" };
        let url = vendor::endpoint(&ctx.connection.config, ORIGIN, &["v2", kind, ctx.action_str("id")?, "registrants"])?;
        let request = OutboundRequest::json(Method::POST, url, &Value::Object(body)).bearer(token)?;
        exchange.expect(request, |r| vendor::classify_with_message(r, &["message"])).await.map(|_| ())
    }
}
