//! Zoom: registers the event's person for a meeting or a webinar. Credentials are an access token,
//! or a Server-to-Server OAuth app's `account_id`, `client_id` and `client_secret`, with which the
//! server obtains the access token (and puts it in `access_token`) before each delivery needs it.

use crate::catalog::{CatalogEntry, FieldSpec};
use crate::{fields, vendor, Connector, Delivered, DeliveryContext, Exchange, FieldError, OutboundRequest, ValidationContext};
use reqwest::Method;
use serde_json::{json, Value};

pub struct Zoom;

const ORIGIN: &str = "https://api.zoom.us";
/// The Server-to-Server OAuth app's credentials: all three, or none.
const APP_CREDENTIALS: [&str; 3] = ["account_id", "client_id", "client_secret"];
const DEFAULT_MAPPING: &[(&str, &str)] =
    &[("email", "payload.email"), ("first_name", "payload.first_name"), ("last_name", "payload.last_name")];

#[async_trait::async_trait]
impl Connector for Zoom {
    fn catalog(&self) -> CatalogEntry {
        CatalogEntry::new("zoom", "Zoom", "Registers the event's person for a Zoom meeting or webinar.", "oauth")
            .auth_fields(vec![
                FieldSpec::new("access_token", "Access token", "secret", false)
                    .describe("A Zoom access token; or give account_id, client_id and client_secret instead"),
                FieldSpec::new("account_id", "Account id", "secret", false).describe(
                    "Of a Server-to-Server OAuth app, with client_id and client_secret: Switchyard obtains and renews the access token",
                ),
                FieldSpec::new("client_id", "Client id", "secret", false)
                    .describe("Of the Server-to-Server OAuth app (with account_id and client_secret)"),
                FieldSpec::new("client_secret", "Client secret", "secret", false)
                    .describe("Of the Server-to-Server OAuth app (with account_id and client_id)"),
            ])
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

    /// An access token, or all three app credentials (an access token obtained with them may sit
    /// alongside).
    fn validate_credentials(&self, credentials: &Value, ctx: &ValidationContext) -> Result<(), Vec<FieldError>> {
        fields::validate(&self.catalog().auth.fields, credentials, "credentials", ctx)?;
        let given = |key: &str| credentials.get(key).is_some_and(|v| !v.is_null());
        let missing: Vec<&str> = APP_CREDENTIALS.iter().copied().filter(|k| !given(k)).collect();
        match missing.len() {
            0 => Ok(()),
            3 if given("access_token") => Ok(()),
            3 => Err(vec![FieldError::new(
                "credentials",
                "needs access_token, or a Server-to-Server OAuth app's account_id, client_id and client_secret",
            )]),
            _ => Err(missing
                .iter()
                .map(|k| FieldError::new(format!("credentials.{k}"), "is required with the other Server-to-Server OAuth app credentials"))
                .collect()),
        }
    }

    async fn deliver(&self, ctx: &DeliveryContext<'_>, exchange: &mut Exchange<'_>) -> Delivered {
        // With app credentials the server puts the access token it obtained here before delivering.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_an_access_token_or_all_three_app_credentials() {
        let validate = |c: Value| Zoom.validate_credentials(&c, &ValidationContext::default());
        let app = json!({"account_id": "acc_1", "client_id": "cid_1", "client_secret": "secret_1"});
        assert!(validate(json!({"access_token": "eyJ.token"})).is_ok());
        assert!(validate(app.clone()).is_ok());
        // The token the server obtained with the app credentials may sit alongside them.
        let mut with_token = app.clone();
        with_token["access_token"] = json!("eyJ.token");
        assert!(validate(with_token).is_ok());

        // Neither form.
        for none in [json!({}), Value::Null] {
            let e = validate(none).unwrap_err();
            assert_eq!(e.len(), 1);
            assert_eq!(e[0].field, "credentials");
            assert!(e[0].message.contains("access_token") && e[0].message.contains("client_secret"), "{}", e[0].message);
        }
        // Part of the app credentials, with or without a token: each missing one is named.
        let e = validate(json!({"account_id": "acc_1", "client_id": "cid_1"})).unwrap_err();
        assert_eq!(e.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["credentials.client_secret"]);
        let e = validate(json!({"access_token": "eyJ.token", "client_secret": "secret_1"})).unwrap_err();
        assert_eq!(e.iter().map(|f| f.field.as_str()).collect::<Vec<_>>(), ["credentials.account_id", "credentials.client_id"]);
        // Field checks still apply.
        assert_eq!(validate(json!({"access_token": "t", "refresh": "x"})).unwrap_err()[0].field, "credentials.refresh");
        assert_eq!(validate(json!({"access_token": ""})).unwrap_err()[0].field, "credentials.access_token");

        let catalog = Zoom.catalog();
        assert_eq!(catalog.auth.kind, "oauth");
        let fields: Vec<_> = catalog.auth.fields.iter().map(|f| (f.key.as_str(), f.required, f.description.is_some())).collect();
        assert_eq!(
            fields,
            [("access_token", false, true), ("account_id", false, true), ("client_id", false, true), ("client_secret", false, true)]
        );
    }
}
