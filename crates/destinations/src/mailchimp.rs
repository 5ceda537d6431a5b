//! Mailchimp: audience members are upserted at `PUT /lists/{id}/members/{md5(email)}`, which is
//! safe to retry; removal unsubscribes. Credentials are an API key, which names its data centre
//! after the dash (HTTP Basic), or an OAuth access token (Bearer), whose account's `api_endpoint`
//! the OAuth flow stores as `config.base_url`.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::outcome::Classified;
use crate::{fields, vendor, BuildError, Connector, Delivered, DeliveryContext, Exchange, FieldError, OutboundRequest, ValidationContext};
use md5::{Digest, Md5};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Mailchimp;

const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("FNAME", "payload.first_name"), ("LNAME", "payload.last_name"), ("PHONE", "payload.phone")];
const MESSAGE: &[&str] = &["detail", "title"];

#[async_trait::async_trait]
impl Connector for Mailchimp {
    fn catalog(&self) -> CatalogEntry {
        let list = |extra: bool| {
            let mut f = vec![FieldSpec::new("id", "Audience id", "string", true)];
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
        let base_url = ctx.connection.config.get("base_url").and_then(Value::as_str).filter(|s| !s.is_empty());
        let (origin, auth) = match ctx.secrets.credential("api_key") {
            Ok(key) => {
                let origin = match base_url {
                    Some(base) => base.to_owned(),
                    None => match key.rsplit_once('-') {
                        Some((_, dc)) if !dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()) => {
                            format!("https://{dc}.api.mailchimp.com")
                        }
                        _ => return Err(Classified::permanent("the API key names no data centre (it should end in -us6 or similar)")),
                    },
                };
                (origin, Auth::Key(key))
            }
            Err(_) => {
                let token = ctx
                    .secrets
                    .credential("access_token")
                    .map_err(|_| Classified::permanent("the connection has neither an api_key nor an access_token credential"))?;
                // An OAuth token names no data centre: the flow stores the account's api_endpoint.
                let origin = base_url.ok_or_else(|| {
                    Classified::permanent(
                        "an OAuth access token needs config.base_url (the account's api_endpoint, e.g. https://us6.api.mailchimp.com)",
                    )
                })?;
                (origin.to_owned(), Auth::Token(token))
            }
        };
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
