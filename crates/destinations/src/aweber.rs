//! AWeber: no upsert, so each delivery finds the subscriber first (`ws.op=find`) and then
//! updates them or adds them; removal unsubscribes the one found.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct AWeber;

const ORIGIN: &str = "https://api.aweber.com";
const DEFAULT_MAPPING: &[(&str, &str)] = &[("email", "payload.email"), ("name", "payload.name")];
const MESSAGE: &[&str] = &["error.message"];

#[async_trait::async_trait]
impl Connector for AWeber {
    fn catalog(&self) -> CatalogEntry {
        let list = || vec![FieldSpec::new("id", "List id", "string", true), vendor::mapping_field()];
        CatalogEntry::new("aweber", "AWeber", "Adds the event's person to an AWeber list, or unsubscribes them.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)])
            .config(vec![FieldSpec::new("account_id", "Account id", "string", true), vendor::base_url_field(ORIGIN)])
            .action("add_to_list", "Add to list", list())
            .action("remove_from_list", "Remove from list", list())
            .duplicates_on_retry(true)
            .limits(Some(4), Some(120))
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
        let classify = |r: &ResponseSummary| vendor::classify_with_message(r, MESSAGE);
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
            (_, Some(id)) => {
                fields.insert("status".into(), json!("subscribed"));
                (Method::PATCH, subscribers(&[&id])?, Value::Object(fields))
            }
            (_, None) => {
                fields.insert("email".into(), json!(email));
                (Method::POST, subscribers(&[])?, Value::Object(fields))
            }
        };
        let request = OutboundRequest::json(update.0, update.1, &update.2).bearer(token)?;
        exchange.expect(request, classify).await.map(|_| ())
    }
}
