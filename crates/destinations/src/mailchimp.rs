//! Mailchimp: audience members are upserted at `PUT /lists/{id}/members/{md5(email)}`, which is
//! safe to retry; removal unsubscribes. Credentials are an API key, which names its data centre
//! after the dash (HTTP Basic), or an OAuth access token (Bearer), whose account's `api_endpoint`
//! the OAuth flow stores as `config.base_url`.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{
    fields, vendor, BuildError, Choice, Connector, Delivered, DeliveryContext, Exchange, FieldError, OpenedSecrets, OptionsContext,
    OutboundRequest, ValidationContext,
};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};
use switchyard_core::model::Connection;

pub struct Mailchimp;

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("FNAME", "payload.first_name"), ("LNAME", "payload.last_name"), ("PHONE", "payload.phone")];
const MESSAGE: &[&str] = &["detail", "title"];

#[async_trait::async_trait]
impl Connector for Mailchimp {
    fn catalog(&self) -> CatalogEntry {
        let list = |extra: bool| {
            let mut f = vec![FieldSpec::new("id", "Audience id", "string", true).choices("audiences")];
            if extra {
                f.push(
                    FieldSpec::new("status_if_new", "Status of new members", "select", false)
                        .options(&["subscribed", "pending", "transactional"])
                        .default(json!("subscribed"))
                        .describe("pending sends Mailchimp's double opt-in e-mail"),
                );
            }
            f.push(vendor::mapping_field());
            f
        };
        CatalogEntry::new("mailchimp", "Mailchimp", "Adds the event's person to a Mailchimp audience, or unsubscribes them.", "api_key")
            .auth_fields(vec![
                FieldSpec::new("api_key", "API key", "secret", false)
                    .describe("An API key; its suffix (-us6) names the data centre. Give this or access_token, not both"),
                FieldSpec::new("access_token", "OAuth access token", "secret", false).describe(
                    "An OAuth access token, sent as a bearer token; config.base_url must then hold the account's api_endpoint. \
                     Give this or api_key, not both",
                ),
            ])
            .config(vec![vendor::base_url_field("https://{dc}.api.mailchimp.com")
                .describe("Replaces the vendor's origin (https://{dc}.api.mailchimp.com); required with an access_token: the account's api_endpoint, e.g. https://us6.api.mailchimp.com")])
            .action("add_to_list", "Add to audience", list(true))
            .action("remove_from_list", "Remove from audience", list(false))
            .limits(Some(10), None)
    }

    /// Exactly one of `api_key` and `access_token`.
    fn validate_credentials(&self, credentials: &Value, ctx: &ValidationContext) -> Result<(), Vec<FieldError>> {
        fields::validate(&self.catalog().auth.fields, credentials, "credentials", ctx)?;
        let given = |key: &str| credentials.get(key).is_some_and(|v| !v.is_null());
        match (given("api_key"), given("access_token")) {
            (true, false) | (false, true) => Ok(()),
            (true, true) => Err(vec![FieldError::new("credentials", "give api_key or access_token, not both")]),
            (false, false) => {
                Err(vec![FieldError::new("credentials", "needs api_key (an API key) or access_token (an OAuth access token)")])
            }
        }
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        let (origin, auth) = origin_and_auth(ctx.connection, ctx.secrets)?;
        let context = ctx.template_context()?;
        let person = vendor::person(ctx, &context, DEFAULT_MAPPING)?;
        let email = vendor::email(&person).to_lowercase();
        let hash = format!("{:x}", Md5::digest(email.as_bytes()));
        let url = vendor::endpoint_at(&origin, &["3.0", "lists", ctx.action_str("id")?, "members", &hash])?;
        if ctx.rule.action == "remove_from_list" {
            let request = auth.apply(OutboundRequest::json(Method::PATCH, url, &json!({"status": "unsubscribed"})))?;
            let answer = exchange.send(request).await?;
            // Someone who was never a member is already where the rule wants them.
            if answer.status == 404 {
                return Ok(());
            }
            return match vendor::classify_with_message(&answer, MESSAGE) {
                c if c.outcome == crate::Outcome::Success => Ok(()),
                c => Err(c),
            };
        }
        let status = ctx.action_config().get("status_if_new").and_then(Value::as_str).unwrap_or("subscribed");
        let body = json!({"email_address": email, "status_if_new": status, "merge_fields": vendor::attributes(&person)});
        let request = auth.apply(OutboundRequest::json(Method::PUT, url, &body))?;
        exchange.expect(request, |r| vendor::classify_with_message(r, MESSAGE)).await.map(|_| ())
    }

    async fn options(&self, set: &str, ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Option<Result<Vec<Choice>, Classified>> {
        (set == "audiences").then_some(())?;
        Some(audiences(ctx, exchange).await)
    }
}

/// Where the account's API is and how to authenticate: an API key names its data centre; an OAuth
/// token comes with the account's `base_url` (the flow stores its api_endpoint).
fn origin_and_auth<'a>(connection: &Connection, secrets: &'a OpenedSecrets) -> Result<(String, Auth<'a>), Classified> {
    let base_url = connection.config.get("base_url").and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Ok(key) = secrets.credential("api_key") {
        let origin = match (base_url, key.rsplit_once('-')) {
            (Some(base), _) => base.to_owned(),
            (None, Some((_, dc))) if !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()) => {
                format!("https://{dc}.api.mailchimp.com")
            }
            _ => return Err(Classified::permanent("the API key names no data centre (it should end in -us6 or similar)")),
        };
        return Ok((origin, Auth::Key(key)));
    }
    let token = secrets
        .credential("access_token")
        .map_err(|_| Classified::permanent("the connection has neither an api_key nor an access_token credential"))?;
    let origin = base_url.ok_or_else(|| {
        Classified::permanent(
            "an OAuth access token needs config.base_url (the account's api_endpoint, e.g. https://us6.api.mailchimp.com)",
        )
    })?;
    Ok((origin.to_owned(), Auth::Token(token)))
}

/// The account's audiences, by offset.
async fn audiences(ctx: &OptionsContext<'_>, exchange: &mut Exchange<'_>) -> Result<Vec<Choice>, Classified> {
    let (origin, auth) = origin_and_auth(ctx.connection, ctx.secrets)?;
    let next = |page: usize, previous: Option<&Value>| {
        let total = previous.and_then(|b| b.get("total_items")).and_then(Value::as_u64).unwrap_or(0);
        if page > 0 && (page as u64) * 100 >= total {
            return Ok(None);
        }
        let mut url = vendor::endpoint_at(&origin, &["3.0", "lists"])?;
        url.query_pairs_mut()
            .append_pair("count", "100")
            .append_pair("offset", &(page * 100).to_string())
            .append_pair("fields", "lists.id,lists.name,total_items");
        Ok(Some(auth.apply(OutboundRequest::empty(Method::GET, url))?))
    };
    vendor::paged(exchange, next, vendor::listing_classifier(MESSAGE), |b| vendor::choices_at(b, "/lists", "/id", "/name")).await
}

/// How requests are authorised: an API key as the Basic password, or an OAuth token.
enum Auth<'a> {
    Key(&'a str),
    Token(&'a str),
}

impl Auth<'_> {
    fn apply(&self, request: OutboundRequest) -> Result<OutboundRequest, BuildError> {
        match self {
            Auth::Key(key) => request.basic("switchyard", key),
            Auth::Token(token) => request.bearer(token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_an_api_key_or_an_access_token_exactly() {
        let validate = |c: Value| Mailchimp.validate_credentials(&c, &ValidationContext::default());
        assert!(validate(json!({"api_key": "0123-us6"})).is_ok());
        assert!(validate(json!({"access_token": "oauth-token"})).is_ok());
        let both = validate(json!({"api_key": "0123-us6", "access_token": "oauth-token"})).unwrap_err();
        assert_eq!((both[0].field.as_str(), both[0].message.as_str()), ("credentials", "give api_key or access_token, not both"));
        for none in [json!({}), Value::Null, json!({"api_key": null})] {
            let e = validate(none).unwrap_err();
            assert_eq!(e[0].field, "credentials");
            assert!(e[0].message.contains("needs api_key") && e[0].message.contains("access_token"), "{}", e[0].message);
        }
        // Field checks still apply: unknown keys, empty values.
        assert_eq!(validate(json!({"api_key": "k-us6", "token": "x"})).unwrap_err()[0].field, "credentials.token");
        assert_eq!(validate(json!({"access_token": ""})).unwrap_err()[0].field, "credentials.access_token");
        let catalog = Mailchimp.catalog();
        assert_eq!(
            catalog.auth.fields.iter().map(|f| (f.key.as_str(), f.required)).collect::<Vec<_>>(),
            [("api_key", false), ("access_token", false)]
        );
    }
}
