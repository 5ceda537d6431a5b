//! HubSpot: contacts are upserted by e-mail (batch upsert, safe to retry), then added to a list
//! by record id, or given a property value. Removal from a list only looks the contact up (batch
//! read by e-mail): it never creates one.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::Classified;
use crate::{vendor, Choice, Connector, Delivered, DeliveryContext, Exchange, OptionsContext, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};

pub struct HubSpot;

const ORIGIN: &str = "https://api.hubapi.com";
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("firstname", "payload.first_name"), ("lastname", "payload.last_name"), ("phone", "payload.phone")];
const MESSAGE: &[&str] = &["message"];

#[async_trait::async_trait]
impl Connector for HubSpot {
    fn catalog(&self) -> CatalogEntry {
        let list = || vec![FieldSpec::new("id", "List id", "string", true).choices("lists"), vendor::mapping_field()];
        CatalogEntry::new("hubspot", "HubSpot", "Creates or updates the event's contact in HubSpot, and manages list membership.", "oauth")
            .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true).describe(
                "A private app token (pat-...) or an OAuth access token with crm.objects.contacts.read, crm.objects.contacts.write, \
                 crm.lists.read and crm.lists.write",
            )])
            .config(vec![vendor::base_url_field(ORIGIN)])
            .action("add_to_list", "Add to list", list())
            .action("remove_from_list", "Remove from list", list())
            .action(
                "update_property",
                "Update property",
                vec![
                    FieldSpec::new("id", "Property", "string", true)
                        .describe("The property's internal name, e.g. lifecyclestage")
                        .choices("properties"),
                    FieldSpec::new("value", "Value", "template", true),
                    vendor::mapping_field(),
                ],
            )
            .limits(Some(10), Some(600))
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let config = &ctx.connection.config;
        let contacts = |last: &str| vendor::endpoint(config, ORIGIN, &["crm", "v3", "objects", "contacts", "batch", last]);
        let (id, change) = if ctx.rule.action == "remove_from_list" {
            // Look the contact up without creating it: someone HubSpot does not know is in no list.
            let read = OutboundRequest::json(
                Method::POST,
                contacts("read")?,
                &json!({"idProperty": "email", "inputs": [{"id": vendor::email(&person)}]}),
            )
            .bearer(token)?;
            let answer = exchange.send(read).await?;
            if is_not_found(&answer) {
                return Ok(());
            }
            let verdict = vendor::classify_with_message(&answer, MESSAGE);
            if verdict.outcome != crate::Outcome::Success {
                return Err(verdict);
            }
            match record_id(&answer) {
                Some(id) => (id, "remove"),
                None => return Ok(()), // no such contact
            }
        } else {
            let mut properties = vendor::attributes(&person);
            if ctx.rule.action == "update_property" {
                properties.insert(ctx.action_str("id")?.to_owned(), Value::String(vendor::render(ctx, "value", &context).await?));
            }
            let upsert = OutboundRequest::json(
                Method::POST,
                contacts("upsert")?,
                &json!({"inputs": [{"id": vendor::email(&person), "idProperty": "email", "properties": properties}]}),
            )
            .bearer(token)?;
            let answer = exchange.expect(upsert, |r| vendor::classify_with_message(r, MESSAGE)).await?;
            let Some(id) = record_id(&answer) else {
                return Err(Classified::retry(None, "HubSpot's upsert answer had no record id"));
            };
            match ctx.rule.action.as_str() {
                "add_to_list" => (id, "add"),
                _ => return Ok(()),
            }
        };
        let membership = OutboundRequest::json(
            Method::PUT,
            vendor::endpoint(config, ORIGIN, &["crm", "v3", "lists", ctx.action_str("id")?, "memberships", change])?,
            &json!([id]),
        )
        .bearer(token)?;
        exchange.expect(membership, |r| vendor::classify_with_message(r, MESSAGE)).await.map(|_| ())
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        match set {
            "lists" => Some(lists(ctx, exchange).await),
            "properties" => Some(properties(ctx, exchange).await),
            _ => None,
        }
    }
}

/// The contact lists, by offset (`POST /crm/v3/lists/search` with an empty query).
async fn lists(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let token = ctx.secrets.credential("access_token")?;
    let config = &ctx.connection.config;
    let next = |page: usize, previous: Option<&Value>| {
        if page > 0 && previous.and_then(|b| b.get("hasMore")).and_then(Value::as_bool) != Some(true) {
            return Ok(None);
        }
        let offset = previous.and_then(|b| b.get("offset")).cloned().unwrap_or(json!(0));
        let body = json!({"query": "", "count": 100, "offset": offset, "objectTypeId": "0-1"});
        Ok(Some(
            OutboundRequest::json(Method::POST, vendor::endpoint(config, ORIGIN, &["crm", "v3", "lists", "search"])?, &body)
                .bearer(token)?,
        ))
    };
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), |b| vendor::choices_at(b, "/lists", "/listId", "/name")).await
}

/// The contact properties (one answer holds them all); read-only ones are left out.
async fn properties(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let token = ctx.secrets.credential("access_token")?;
    let config = &ctx.connection.config;
    let next = |page: usize, _: Option<&Value>| {
        if page > 0 {
            return Ok(None);
        }
        let url = vendor::endpoint(config, ORIGIN, &["crm", "v3", "properties", "contacts"])?;
        Ok(Some(OutboundRequest::empty(Method::GET, url).bearer(token)?))
    };
    let read = |body: &Value| {
        let writable: Vec<Value> = body
            .get("results")
            .and_then(Value::as_array)
            .map(|all| {
                all.iter()
                    .filter(|p| p.pointer("/modificationMetadata/readOnlyValue").and_then(Value::as_bool) != Some(true))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        vendor::choices_at(&Value::Array(writable), "", "/name", "/label")
    };
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), read).await
}

/// The first record's id in a batch answer (`results[0].id`).
fn record_id(r: &ResponseSummary) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    body.pointer("/results/0/id").and_then(Value::as_str).map(str::to_owned)
}

/// A batch read that found nobody: HubSpot answers 207 with the miss among `errors` (a 2xx without
/// results), or 404 with the category `OBJECT_NOT_FOUND`.
fn is_not_found(r: &ResponseSummary) -> bool {
    match r.status {
        200..=299 => record_id(r).is_none(),
        404 => serde_json::from_slice::<Value>(&r.body)
            .ok()
            .is_some_and(|b| b.get("category").and_then(Value::as_str) == Some("OBJECT_NOT_FOUND")),
        _ => false,
    }
}
