//! Salesforce: the event's person is upserted as a Contact (or Lead) by an external-id field
//! (`PATCH /sobjects/{object}/{field}/{value}`, safe to retry), then joined to or removed from
//! a campaign as a `CampaignMember`, or given a field value. The daily API limit answers 403
//! `REQUEST_LIMIT_EXCEEDED`, which is a wait, not a refusal.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::http::ResponseSummary;
use crate::outcome::{classify_http, Classified};
use crate::{vendor, Connector, Delivered, DeliveryContext, Exchange, OutboundRequest};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;

pub struct Salesforce;

/// How long to wait after `REQUEST_LIMIT_EXCEEDED`: the org's daily allocation is a rolling
/// 24-hour count that names no reset time, so check back every few minutes rather than at once.
const DAILY_LIMIT_WAIT: Duration = Duration::from_secs(5 * 60);

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("FirstName", "payload.first_name"), ("LastName", "payload.last_name"), ("Phone", "payload.phone")];

#[async_trait::async_trait]
impl Connector for Salesforce {
    fn catalog(&self) -> CatalogEntry {
        let campaign = || vec![FieldSpec::new("id", "Campaign id", "string", true), vendor::mapping_field()];
        CatalogEntry::new(
            "salesforce",
            "Salesforce",
            "Upserts the event's person as a Contact or Lead and manages campaign membership.",
            "oauth",
        )
        .auth_fields(vec![FieldSpec::new("access_token", "Access token", "secret", true)])
        .config(vec![
            FieldSpec::new("instance_url", "Instance URL", "url", true).describe("Your org's URL, e.g. https://acme.my.salesforce.com"),
            FieldSpec::new("api_version", "API version", "string", false).default(json!("v60.0")),
            FieldSpec::new("object", "Record type", "select", false).options(&["Contact", "Lead"]).default(json!("Contact")),
            FieldSpec::new("external_id_field", "External id field", "string", false)
                .default(json!("Email__c"))
                .describe("A field marked External ID that holds the e-mail address: records are upserted by it"),
            vendor::base_url_field("the instance URL"),
        ])
        .action("add_to_campaign", "Add to campaign", campaign())
        .action("remove_from_campaign", "Remove from campaign", campaign())
        .action(
            "update_property",
            "Update field",
            vec![
                FieldSpec::new("field", "Field", "string", true).describe("The field's API name, e.g. LeadSource"),
                FieldSpec::new("value", "Value", "template", true),
                vendor::mapping_field(),
            ],
        )
        .limits(Some(10), None)
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let token = ctx.secrets.credential("access_token")?;
        let config = &ctx.connection.config;
        let setting = |key: &str, default: &'static str| config.get(key).and_then(Value::as_str).unwrap_or(default).to_owned();
        let origin = config.get("base_url").or_else(|| config.get("instance_url")).and_then(Value::as_str).unwrap_or_default().to_owned();
        let version = setting("api_version", "v60.0");
        let object = setting("object", "Contact");
        let external = setting("external_id_field", "Email__c");
        let url = |segments: &[&str]| {
            let mut all = vec!["services", "data", version.as_str()];
            all.extend_from_slice(segments);
            vendor::endpoint_at(&origin, &all)
        };

        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person).to_owned();
        let mut lookup = url(&["sobjects", &object, &external, &email])?;
        lookup.query_pairs_mut().append_pair("fields", "Id");
        let record_id = if ctx.rule.action == "remove_from_campaign" {
            // Look the record up without creating it: someone Salesforce does not know is in no campaign.
            let found = exchange.send(OutboundRequest::empty(Method::GET, lookup).bearer(token)?).await?;
            if found.status == 404 && !external_field_missing(&found) {
                return Ok(());
            }
            let found = verdict(classify(&found)).map(|_| found)?;
            id_of(&found, "Id")?
        } else {
            let mut fields = vendor::attributes(&person);
            fields.insert("Email".into(), Value::String(email.clone()));
            if object == "Lead" && !fields.contains_key("Company") {
                // Leads need a company; the payload's, else a placeholder Salesforce accepts.
                let company = context.pointer("/payload/company").and_then(Value::as_str).unwrap_or("[not provided]");
                fields.insert("Company".into(), Value::String(company.to_owned()));
            }
            if ctx.rule.action == "update_property" {
                fields.insert(ctx.action_str("field")?.to_owned(), Value::String(vendor::render(ctx, "value", &context).await?));
            }
            let upsert = OutboundRequest::json(Method::PATCH, url(&["sobjects", &object, &external, &email])?, &Value::Object(fields))
                .bearer(token)?;
            let answer = exchange.expect(upsert, classify).await?;
            if ctx.rule.action != "add_to_campaign" {
                return Ok(());
            }
            // 201 (created) names the record; an update may answer 204 without a body, so ask.
            match id_of(&answer, "id") {
                Ok(id) => id,
                Err(_) => id_of(&exchange.expect(OutboundRequest::empty(Method::GET, lookup).bearer(token)?, classify).await?, "Id")?,
            }
        };
        let campaign = ctx.action_str("id")?;
        let member_key = if object == "Lead" { "LeadId" } else { "ContactId" };
        if ctx.rule.action == "add_to_campaign" {
            let create = OutboundRequest::json(
                Method::POST,
                url(&["sobjects", "CampaignMember"])?,
                &json!({"CampaignId": campaign, member_key: record_id}),
            )
            .bearer(token)?;
            let answer = exchange.send(create).await?;
            // Already a member: the rule's aim is met.
            if answer.status == 400 && error_code(&answer).as_deref() == Some("DUPLICATE_VALUE") {
                return Ok(());
            }
            return verdict(classify(&answer));
        }
        let soql = format!(
            "SELECT Id FROM CampaignMember WHERE CampaignId = '{}' AND {member_key} = '{}'",
            soql_escape(campaign),
            soql_escape(&record_id)
        );
        let mut query = url(&["query"])?;
        query.query_pairs_mut().append_pair("q", &soql);
        let found = exchange.expect(OutboundRequest::empty(Method::GET, query).bearer(token)?, classify).await?;
        let body: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
        let Some(member) = body.pointer("/records/0/Id").and_then(Value::as_str) else {
            return Ok(()); // not a member: nothing to remove
        };
        let delete = OutboundRequest::empty(Method::DELETE, url(&["sobjects", "CampaignMember", member])?).bearer(token)?;
        let answer = exchange.send(delete).await?;
        if answer.status == 404 {
            return Ok(());
        }
        verdict(classify(&answer))
    }
}

/// A record id from an answer's `key` (`id` after an upsert, `Id` from a lookup).
fn id_of(r: &ResponseSummary, key: &str) -> Result<String, Classified> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|b| b.get(key).and_then(Value::as_str).map(str::to_owned))
        .ok_or_else(|| Classified::retry(None, "Salesforce returned no record id"))
}

/// A 404 because the connection's external-id field does not exist (a misconfiguration), not
/// because no record has the value.
fn external_field_missing(r: &ResponseSummary) -> bool {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|b| b.pointer("/0/message").and_then(Value::as_str).map(|m| m.starts_with("Provided external ID field does not exist")))
        .unwrap_or(false)
}

fn verdict(c: Classified) -> Delivered {
    if c.outcome == crate::Outcome::Success {
        Ok(())
    } else {
        Err(c)
    }
}

/// Salesforce errors are a JSON array of `{message, errorCode, fields}`.
fn error_code(r: &ResponseSummary) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    body.pointer("/0/errorCode").and_then(Value::as_str).map(str::to_owned)
}

fn classify(r: &ResponseSummary) -> Classified {
    let code = error_code(r);
    if r.status == 403 && code.as_deref() == Some("REQUEST_LIMIT_EXCEEDED") {
        return Classified::rate_limited(Some(DAILY_LIMIT_WAIT), "Salesforce: REQUEST_LIMIT_EXCEEDED (the org's API limit)");
    }
    if r.status == 300 {
        return Classified::permanent("Salesforce: more than one record has this external id");
    }
    let verdict = classify_http(r);
    let message =
        serde_json::from_slice::<Value>(&r.body).ok().and_then(|b| b.pointer("/0/message").and_then(Value::as_str).map(str::to_owned));
    match (code, message) {
        (Some(code), Some(message)) if verdict.outcome != crate::Outcome::Success => verdict.with_detail(&format!("{code}: {message}")),
        _ => verdict,
    }
}

/// Quotes text for a SOQL string literal.
fn soql_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    fn answer(status: u16, body: &str) -> ResponseSummary {
        ResponseSummary { status, headers: Default::default(), body: bytes::Bytes::from(body.to_owned()) }
    }

    #[test]
    fn the_api_limit_is_a_wait_and_other_errors_carry_their_code() {
        let limit = classify(&answer(403, r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#));
        assert_eq!(limit.outcome, Outcome::Retry { after: Some(Duration::from_secs(300)) });
        assert!(limit.rate_limited);
        let denied = classify(&answer(403, r#"[{"message":"no access","errorCode":"INSUFFICIENT_ACCESS"}]"#));
        assert_eq!(denied.outcome, Outcome::Permanent);
        let session = classify(&answer(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#));
        assert_eq!(session.outcome, Outcome::Permanent);
        assert_eq!(session.error.as_deref(), Some("HTTP 401: INVALID_SESSION_ID: Session expired or invalid"));
        assert_eq!(classify(&answer(300, "[]")).outcome, Outcome::Permanent);
        assert_eq!(soql_escape("a'b"), "a\\'b");
    }
}
