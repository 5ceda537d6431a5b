//! Contract tests for the e-mail and marketing destinations: Mailchimp, SendGrid, Resend,
//! Customer.io, MailerLite and AWeber. Each runs the connector against a loopback stub that
//! answers as the vendor documents (/work/shared/reference/destinations.md), and checks every
//! request sent (method, path and query, auth, body) and how each answer was judged.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use support::*;

/// The Basic authorization header for `user:password`.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The user and password of a Basic authorization header.
fn basic_parts(header: Option<&str>) -> (String, String) {
    let encoded = header.and_then(|h| h.strip_prefix("Basic ")).unwrap_or_else(|| panic!("not a Basic authorization: {header:?}"));
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap();
    let (user, password) = decoded.split_once(':').expect("user:password");
    (user.to_owned(), password.to_owned())
}

/// The recorded error of a failed verdict.
fn error_of(verdict: &switchyard_destinations::Delivered) -> String {
    verdict.as_ref().expect_err("expected a failure").error.clone().unwrap_or_default()
}

/// The requested wait of a retry verdict, if any.
fn wait_of(verdict: &switchyard_destinations::Delivered) -> Option<std::time::Duration> {
    match verdict.as_ref().expect_err("expected a failure").outcome {
        switchyard_destinations::Outcome::Retry { after } => after,
        other => panic!("expected a retry, got {other:?}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------------
// Mailchimp
// ---------------------------------------------------------------------------------------------

const MAILCHIMP_KEY: &str = "0123456789abcdef0123456789abcdef-us6";
const MAILCHIMP_LIST: &str = "a1b2c3d4e5";
/// md5("ada@example.com"): the member's subscriber hash.
const ADA_HASH: &str = "3e3417d7ef77d5932a6734b916515ed5";

fn mailchimp(stub: &Stub, action: &'static str, action_config: Value) -> Call<'static> {
    Call {
        kind: "mailchimp",
        config: json!({"base_url": stub.base}),
        credentials: json!({"api_key": MAILCHIMP_KEY}),
        action,
        action_config,
        payload: person(),
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    reply(
        status,
        &json!({"type": "https://mailchimp.com/developer/marketing/docs/errors/", "title": title, "status": status, "detail": detail,
                "instance": "995c5cb0-3280-4a6e-808b-3b096d0bb219"})
        .to_string(),
    )
    .header("content-type", "application/problem+json")
}

#[tokio::test]
async fn mailchimp_add_to_list_upserts_the_member_at_the_md5_of_the_lowercased_email() {
    let stub = Stub::start().await;
    stub.script([reply(200, &format!(r#"{{"id":"{ADA_HASH}","email_address":"ada@example.com","status":"subscribed"}}"#))]);
    let mut call = mailchimp(&stub, "add_to_list", json!({"id": MAILCHIMP_LIST}));
    call.payload["email"] = json!(" Ada@Example.COM ");
    let (verdict, steps) = deliver(call).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), format!("PUT /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
    // HTTP Basic `anystring:<key>`: any user name, the key as the password.
    let (user, password) = basic_parts(r.header("authorization"));
    assert!(!user.is_empty());
    assert_eq!(password, MAILCHIMP_KEY);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"email_address": "ada@example.com", "status_if_new": "subscribed",
               "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace", "PHONE": "+44 20 7946 0000"}})
    );
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].status, Some(200));
    assert_redacted(&steps, &[MAILCHIMP_KEY, &basic(&user, MAILCHIMP_KEY)["Basic ".len()..]]);
    assert!(steps[0].request.contains("authorization: [redacted]"), "{}", steps[0].request);

    // status_if_new is the rule's choice (pending sends the double opt-in e-mail).
    let (verdict, _) = deliver(mailchimp(&stub, "add_to_list", json!({"id": MAILCHIMP_LIST, "status_if_new": "pending"}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].json()["status_if_new"], "pending");
    assert_eq!(seen[0].line(), format!("PUT /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
}

#[tokio::test]
async fn mailchimp_remove_from_list_unsubscribes_and_a_missing_member_is_already_removed() {
    let stub = Stub::start().await;
    stub.script([reply(200, &format!(r#"{{"id":"{ADA_HASH}","email_address":"ada@example.com","status":"unsubscribed"}}"#))]);
    let (verdict, steps) = deliver(mailchimp(&stub, "remove_from_list", json!({"id": MAILCHIMP_LIST}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), format!("PATCH /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
    assert_eq!(basic_parts(seen[0].header("authorization")).1, MAILCHIMP_KEY);
    assert_eq!(seen[0].json(), json!({"status": "unsubscribed"}));
    assert_redacted(&steps, &[MAILCHIMP_KEY]);

    // Never a member: already where the rule wants them.
    stub.script([problem(404, "Resource Not Found", "The requested resource could not be found.")]);
    deliver(mailchimp(&stub, "remove_from_list", json!({"id": MAILCHIMP_LIST}))).await.0.unwrap();
    assert_eq!(stub.seen().len(), 1);

    // Other refusals still fail, with Mailchimp's detail.
    stub.script([problem(401, "API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter.")]);
    let (verdict, _) = deliver(mailchimp(&stub, "remove_from_list", json!({"id": MAILCHIMP_LIST}))).await;
    assert_permanent(&verdict, "attempted to access the wrong datacenter");
    stub.script([reply(503, "")]);
    assert_retry(&deliver(mailchimp(&stub, "remove_from_list", json!({"id": MAILCHIMP_LIST}))).await.0, None, false);
}

#[tokio::test]
async fn mailchimp_problem_json_errors_are_permanent_and_429_is_a_rate_limit() {
    let stub = Stub::start().await;
    let add = || mailchimp(&stub, "add_to_list", json!({"id": MAILCHIMP_LIST}));
    stub.script([problem(400, "Invalid Resource", "ada@example.com looks fake or invalid, please enter a real email address.")]);
    assert_permanent(&deliver(add()).await.0, "looks fake or invalid, please enter a real email address");
    stub.script([problem(400, "Member In Compliance State", "ada@example.com is in a compliance state due to unsubscribe.")]);
    assert_permanent(&deliver(add()).await.0, "is in a compliance state");
    stub.script([problem(404, "Resource Not Found", "The requested resource could not be found.")]);
    assert_permanent(&deliver(add()).await.0, "could not be found");
    // Only the title: it is the message then.
    stub.script([reply(403, r#"{"title":"Forbidden","status":403}"#).header("content-type", "application/problem+json")]);
    assert_permanent(&deliver(add()).await.0, "Forbidden");

    stub.script([problem(429, "Too Many Requests", "You have exceeded the limit of 10 simultaneous connections.")]);
    let (verdict, _) = deliver(add()).await;
    assert_retry(&verdict, None, true);
    assert!(error_of(&verdict).contains("10 simultaneous connections"), "{}", error_of(&verdict));
    stub.script([problem(500, "Internal Server Error", "An unexpected internal error has occurred.")]);
    assert_retry(&deliver(add()).await.0, None, false);
    stub.script([reply(502, "<html>Bad Gateway</html>").header("content-type", "text/html")]);
    assert_retry(&deliver(add()).await.0, None, false);
    assert_eq!(stub.seen().len(), 7);
}

#[tokio::test]
async fn mailchimp_derives_the_data_centre_from_the_key_and_a_key_without_one_fails_without_sending() {
    // Without a base_url the origin is https://{dc}.api.mailchimp.com, dc being the key's suffix;
    // a key that names none cannot be sent anywhere.
    for key in ["0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdef-", "0123456789abcdef-us6/evil"] {
        for action in ["add_to_list", "remove_from_list"] {
            let (verdict, steps) = deliver(Call {
                kind: "mailchimp",
                config: json!({}),
                credentials: json!({"api_key": key}),
                action,
                action_config: json!({"id": MAILCHIMP_LIST}),
                payload: person(),
            })
            .await;
            assert_permanent(&verdict, "data centre");
            assert!(steps.is_empty(), "{key}: nothing may be sent: {steps:?}");
        }
    }
}

const MAILCHIMP_OAUTH_TOKEN: &str = "5f2b9c1a0d3e4f5a6b7c8d9e0f1a2b3c";

#[tokio::test]
async fn mailchimp_an_oauth_access_token_is_a_bearer_token_at_the_base_url() {
    let stub = Stub::start().await;
    // The OAuth flow stores the account's api_endpoint as base_url.
    let oauth = |action: &'static str, action_config: Value| Call {
        kind: "mailchimp",
        config: json!({"base_url": stub.base}),
        credentials: json!({"access_token": MAILCHIMP_OAUTH_TOKEN}),
        action,
        action_config,
        payload: person(),
    };
    stub.script([reply(200, &format!(r#"{{"id":"{ADA_HASH}","email_address":"ada@example.com","status":"subscribed"}}"#))]);
    let (verdict, steps) = deliver(oauth("add_to_list", json!({"id": MAILCHIMP_LIST}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), format!("PUT /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {MAILCHIMP_OAUTH_TOKEN}").as_str()));
    assert_eq!(
        seen[0].json(),
        json!({"email_address": "ada@example.com", "status_if_new": "subscribed",
               "merge_fields": {"FNAME": "Ada", "LNAME": "Lovelace", "PHONE": "+44 20 7946 0000"}})
    );
    assert_redacted(&steps, &[MAILCHIMP_OAUTH_TOKEN]);
    assert!(steps[0].request.contains("authorization: [redacted]"), "{}", steps[0].request);

    stub.script([problem(404, "Resource Not Found", "The requested resource could not be found.")]);
    deliver(oauth("remove_from_list", json!({"id": MAILCHIMP_LIST}))).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), format!("PATCH /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {MAILCHIMP_OAUTH_TOKEN}").as_str()));
    assert_eq!(seen[0].json(), json!({"status": "unsubscribed"}));

    // An OAuth token names no data centre: without base_url nothing can be sent.
    for action in ["add_to_list", "remove_from_list"] {
        let mut call = oauth(action, json!({"id": MAILCHIMP_LIST}));
        call.config = json!({});
        let (verdict, steps) = deliver(call).await;
        assert_permanent(&verdict, "an OAuth access token needs config.base_url");
        assert!(steps.is_empty());
    }
    assert!(stub.seen().is_empty());
}

#[tokio::test]
async fn mailchimp_credentials_are_either_an_api_key_or_an_access_token() {
    let registry = switchyard_destinations::Registry::default();
    let mailchimp = registry.get("mailchimp").unwrap();
    let ctx = switchyard_destinations::ValidationContext::default();
    assert!(mailchimp.validate_credentials(&json!({"api_key": MAILCHIMP_KEY}), &ctx).is_ok());
    assert!(mailchimp.validate_credentials(&json!({"access_token": MAILCHIMP_OAUTH_TOKEN}), &ctx).is_ok());
    for bad in [json!({}), json!({"api_key": MAILCHIMP_KEY, "access_token": MAILCHIMP_OAUTH_TOKEN})] {
        let errors = mailchimp.validate_credentials(&bad, &ctx).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "credentials", "{bad}");
    }
    let auth = &mailchimp.catalog().auth;
    assert_eq!(auth.kind, "api_key");
    assert!(auth.fields.iter().all(|f| !f.required && f.kind == "secret"));
}

#[tokio::test]
async fn mailchimp_custom_mapping_with_transforms_becomes_the_member_and_its_merge_fields() {
    let stub = Stub::start().await;
    let mapping = json!({"schema_version": 1, "fields": [
        {"dest": "email", "source": {"type": "path", "value": "payload.user.email"}, "transforms": ["trim", "lower"]},
        {"dest": "FNAME", "source": {"type": "path", "value": "payload.user.name"}, "transforms": [{"type": "substring", "start": 0, "length": 5}, "upper"]},
        {"dest": "PLAN", "source": {"type": "path", "value": "payload.plan"}, "transforms": [{"type": "default", "value": "free"}]},
        {"dest": "SIGNUP", "source": {"type": "path", "value": "occurred_at"}, "transforms": [{"type": "to_date", "timezone": "Asia/Tokyo"}]},
        {"dest": "SOURCE", "source": {"type": "literal", "value": "switchyard"}},
        {"dest": "AGE", "source": {"type": "path", "value": "payload.user.age"}, "transforms": ["to_number"]},
        {"dest": "NICK", "source": {"type": "path", "value": "payload.user.nickname"}}
    ]});
    let mut call = mailchimp(&stub, "add_to_list", json!({"id": MAILCHIMP_LIST, "mapping": mapping}));
    call.payload = json!({"user": {"email": "  Grace.Hopper@Example.ORG ", "name": "Grace Hopper", "age": "85"}});
    let (verdict, _) = deliver(call).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    // md5("grace.hopper@example.org")
    assert_eq!(seen[0].line(), format!("PUT /3.0/lists/{MAILCHIMP_LIST}/members/4eba6c9bf588a0062cf797d700963abf"));
    // The rule's mapping replaces the default one: no LNAME/PHONE, nothing for a missing path.
    assert_eq!(
        seen[0].json(),
        json!({"email_address": "grace.hopper@example.org", "status_if_new": "subscribed",
               "merge_fields": {"FNAME": "GRACE", "PLAN": "free", "SIGNUP": "2026-11-24", "SOURCE": "switchyard", "AGE": 85}})
    );

    // A mapping that keeps the e-mail's case: the subscriber hash is still of the lower-cased address.
    let mut call = mailchimp(
        &stub,
        "remove_from_list",
        json!({"id": MAILCHIMP_LIST, "mapping": {"schema_version": 1, "fields": [
            {"dest": "email", "source": {"type": "path", "value": "payload.email"}, "transforms": ["trim"]}]}}),
    );
    call.payload["email"] = json!(" Ada@Example.COM ");
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), format!("PATCH /3.0/lists/{MAILCHIMP_LIST}/members/{ADA_HASH}"));
    assert_eq!(seen[0].json(), json!({"status": "unsubscribed"}));

    // A transform that fails (on_error defaults to fail_action) fails the delivery, unsent.
    let mut call = mailchimp(&stub, "add_to_list", json!({"id": MAILCHIMP_LIST, "mapping": mapping}));
    call.payload = json!({"user": {"email": "grace@example.org", "name": "Grace", "age": "eighty-five"}});
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "AGE");
    assert_permanent(&verdict, "not a number");
    assert!(steps.is_empty());
    // A mapped email that is not an address.
    let mut call = mailchimp(
        &stub,
        "remove_from_list",
        json!({"id": MAILCHIMP_LIST, "mapping": {"schema_version": 1, "fields": [{"dest": "email", "source": {"type": "path", "value": "payload.name"}}]}}),
    );
    call.payload = person();
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "not an e-mail address");
    assert!(steps.is_empty());
    assert!(stub.seen().is_empty());
}

// ---------------------------------------------------------------------------------------------
// SendGrid
// ---------------------------------------------------------------------------------------------

const SENDGRID_KEY: &str = "SG.contract0123456789.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SENDGRID_TEMPLATE: &str = "d-0123456789abcdef0123456789abcdef";
const SENDGRID_LIST: &str = "ca7a3796-e8a8-4029-9ccb-df8937940562";

fn sendgrid(stub: &Stub, action: &'static str, action_config: Value) -> Call<'static> {
    Call {
        kind: "sendgrid",
        config: json!({"base_url": stub.base}),
        credentials: json!({"api_key": SENDGRID_KEY}),
        action,
        action_config,
        payload: person(),
    }
}

fn sendgrid_mail_sent() -> Reply {
    reply(202, "").header("x-message-id", "W86EgYT6SQKk0lRflfLRsA")
}

#[tokio::test]
async fn sendgrid_send_email_renders_the_subject_and_html_templates() {
    let stub = Stub::start().await;
    stub.script([sendgrid_mail_sent()]);
    let (verdict, steps) = deliver(sendgrid(
        &stub,
        "send_email",
        json!({"from": "hello@acme.test", "subject": "Welcome, {{ payload.first_name }}!",
               "template": "<p>Hi {{ payload.name }}, you are on {{ payload.plan | upper }} since {{ occurred_at | date('%d %b %Y') }}.</p>"}),
    ))
    .await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "POST /v3/mail/send");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SENDGRID_KEY}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"personalizations": [{"to": [{"email": "ada@example.com"}]}],
               "from": {"email": "hello@acme.test"},
               "custom_args": {"switchyard_delivery_id": DELIVERY_ID},
               "subject": "Welcome, Ada!",
               "content": [{"type": "text/html", "value": "<p>Hi Ada Lovelace, you are on PRO since 23 Nov 2026.</p>"}]})
    );
    assert_redacted(&steps, &[SENDGRID_KEY]);
    assert!(steps[0].request.contains("authorization: [redacted]"), "{}", steps[0].request);

    // A template that fails to render sends nothing.
    let (verdict, steps) =
        deliver(sendgrid(&stub, "send_email", json!({"from": "hello@acme.test", "subject": "{{ payload.name | date }}", "template": "x"})))
            .await;
    assert_permanent(&verdict, "subject template failed");
    assert!(steps.is_empty());
    assert!(stub.seen().is_empty());
}

#[tokio::test]
async fn sendgrid_send_email_escapes_payload_values_in_the_html_body_but_not_in_the_subject() {
    let stub = Stub::start().await;
    stub.script([sendgrid_mail_sent()]);
    let mut call = sendgrid(
        &stub,
        "send_email",
        json!({"from": "hello@acme.test", "subject": "Hi {{ payload.name }}",
               "template": "<p>Hi {{ payload.name }}{{ payload.nickname }}</p>{{ payload.signature | safe }}<p>{{ payload.note | escape }}</p>"}),
    );
    call.payload = json!({"email": "ada@example.com", "name": "<script>alert('x')</script> & Co", "nickname": null,
                          "signature": "<hr><i>Acme</i>", "note": "a<b"});
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let body = seen[0].json();
    // The subject is plain text: as given.
    assert_eq!(body["subject"], "Hi <script>alert('x')</script> & Co");
    // The HTML body escapes what it prints; `safe` opts out, `escape` is not doubled, null prints nothing.
    assert_eq!(
        body["content"],
        json!([{"type": "text/html",
                "value": "<p>Hi &lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2f;script&gt; &amp; Co</p><hr><i>Acme</i><p>a&lt;b</p>"}])
    );
}

#[tokio::test]
async fn sendgrid_send_email_template_sends_the_template_id_and_the_event_as_dynamic_template_data() {
    let stub = Stub::start().await;
    stub.script([sendgrid_mail_sent()]);
    let (verdict, steps) =
        deliver(sendgrid(&stub, "send_email_template", json!({"from": "hello@acme.test", "id": SENDGRID_TEMPLATE}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "POST /v3/mail/send");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SENDGRID_KEY}").as_str()));
    let body = r.json();
    assert_eq!(body["template_id"], SENDGRID_TEMPLATE);
    assert_eq!(body["from"], json!({"email": "hello@acme.test"}));
    assert_eq!(body["custom_args"], json!({"switchyard_delivery_id": DELIVERY_ID}));
    let personalization = &body["personalizations"][0];
    assert_eq!(body["personalizations"].as_array().unwrap().len(), 1);
    assert_eq!(personalization["to"], json!([{"email": "ada@example.com"}]));
    let data = &personalization["dynamic_template_data"];
    assert_eq!(data["event"], EVENT_NAME);
    assert_eq!(data["payload"], person());
    assert_eq!(data["occurred_at"], "2026-11-23T17:00:00.000Z");
    // A dynamic template carries its own subject and content.
    assert!(body.get("subject").is_none() && body.get("content").is_none(), "{body}");
    assert_redacted(&steps, &[SENDGRID_KEY]);
}

#[tokio::test]
async fn sendgrid_add_to_list_upserts_the_contact_and_gets_a_job_id() {
    let stub = Stub::start().await;
    stub.script([reply(202, r#"{"job_id":"2387e363-4104-4225-8960-4a5758492351"}"#)]);
    let (verdict, steps) = deliver(sendgrid(&stub, "add_to_list", json!({"id": SENDGRID_LIST}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "PUT /v3/marketing/contacts");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SENDGRID_KEY}").as_str()));
    assert_eq!(
        r.json(),
        json!({"list_ids": [SENDGRID_LIST],
               "contacts": [{"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone_number": "+44 20 7946 0000"}]})
    );
    assert_redacted(&steps, &[SENDGRID_KEY]);
}

#[tokio::test]
async fn sendgrid_custom_mapping_with_transforms_shapes_the_contact_and_the_recipient() {
    let stub = Stub::start().await;
    let mapping = json!({"schema_version": 1, "fields": [
        {"dest": "email", "source": {"type": "path", "value": "payload.contact.email"}, "transforms": ["trim", "lower"]},
        {"dest": "first_name", "source": {"type": "path", "value": "payload.contact.given"}, "transforms": ["trim"]},
        {"dest": "last_name", "source": {"type": "path", "value": "payload.contact.family"}, "transforms": ["upper"]},
        {"dest": "city", "source": {"type": "path", "value": "payload.contact.city"}, "transforms": [{"type": "default", "value": "Unknown"}]},
        {"dest": "postal_code", "source": {"type": "path", "value": "payload.contact.zip"}, "transforms": ["to_string"]},
        {"dest": "country", "source": {"type": "path", "value": "payload.contact.country"}, "transforms": [{"type": "substring", "start": 0, "length": 2}, "upper"], "on_error": "skip_field"}
    ]});
    let contact =
        json!({"contact": {"email": "  ADA@Example.com", "given": " Ada ", "family": "Lovelace", "zip": 12345, "country": "gbr"}});
    let mut call = sendgrid(&stub, "add_to_list", json!({"id": SENDGRID_LIST, "mapping": mapping}));
    call.payload = contact.clone();
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "PUT /v3/marketing/contacts");
    assert_eq!(
        seen[0].json(),
        json!({"list_ids": [SENDGRID_LIST],
               "contacts": [{"email": "ada@example.com", "first_name": "Ada", "last_name": "LOVELACE", "city": "Unknown",
                             "postal_code": "12345", "country": "GB"}]})
    );

    // The mapping also names the recipient of an e-mail.
    stub.script([sendgrid_mail_sent()]);
    let mut call =
        sendgrid(&stub, "send_email", json!({"from": "hello@acme.test", "subject": "Hi", "template": "<p>Hi</p>", "mapping": mapping}));
    call.payload = contact;
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "POST /v3/mail/send");
    assert_eq!(seen[0].json()["personalizations"], json!([{"to": [{"email": "ada@example.com"}]}]));

    // A skip_field transform that fails drops the field; the delivery goes on.
    let mut call = sendgrid(&stub, "add_to_list", json!({"id": SENDGRID_LIST, "mapping": mapping}));
    call.payload = json!({"contact": {"email": "ada@example.com", "given": "Ada", "country": ["not", "text"]}});
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].json()["contacts"], json!([{"email": "ada@example.com", "first_name": "Ada", "city": "Unknown"}]));
}

#[tokio::test]
async fn sendgrid_errors_are_permanent_with_the_message_and_429_waits_for_the_reset_epoch() {
    let stub = Stub::start().await;
    let mail = || sendgrid(&stub, "send_email_template", json!({"from": "hello@acme.test", "id": SENDGRID_TEMPLATE}));
    stub.script([reply(
        400,
        r#"{"errors":[{"message":"The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.","field":"from","help":"https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"}]}"#,
    )]);
    assert_permanent(&deliver(mail()).await.0, "does not match a verified Sender Identity");
    stub.script([reply(
        401,
        r#"{"errors":[{"field":null,"message":"The provided authorization grant is invalid, expired, or revoked"}]}"#,
    )]);
    assert_permanent(&deliver(mail()).await.0, "authorization grant is invalid");
    stub.script([reply(400, r#"{"errors":[{"field":"list_ids[0]","message":"list_id must be a valid UUID","help":null}]}"#)]);
    assert_permanent(&deliver(sendgrid(&stub, "add_to_list", json!({"id": "not-a-uuid"}))).await.0, "list_id must be a valid UUID");

    // 429: X-RateLimit-Reset is the epoch second the window resets; the wait is counted from now.
    let reset = now_secs() + 42;
    stub.script([reply(429, r#"{"errors":[{"field":null,"message":"too many requests"}]}"#)
        .header("x-ratelimit-limit", "600")
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &reset.to_string())]);
    let (verdict, _) = deliver(mail()).await;
    assert_retry(&verdict, Some(42.0), true);
    assert!(error_of(&verdict).contains("too many requests"), "{}", error_of(&verdict));
    stub.script([reply(429, r#"{"errors":[{"field":null,"message":"too many requests"}]}"#)
        .header("x-ratelimit-reset", &(now_secs() + 7).to_string())]);
    assert_retry(&deliver(sendgrid(&stub, "add_to_list", json!({"id": SENDGRID_LIST}))).await.0, Some(7.0), true);

    stub.script([reply(500, r#"{"errors":[{"field":null,"message":"internal error"}]}"#)]);
    assert_retry(&deliver(mail()).await.0, None, false);
    stub.script([reply(503, "")]);
    assert_retry(&deliver(sendgrid(&stub, "add_to_list", json!({"id": SENDGRID_LIST}))).await.0, None, false);
    assert_eq!(stub.seen().len(), 7);
}

// ---------------------------------------------------------------------------------------------
// Resend
// ---------------------------------------------------------------------------------------------

const RESEND_KEY: &str = "re_Contract_0123456789abcdefghijkl";
const RESEND_SEGMENT: &str = "78261eea-8f8b-4381-83c6-79fa7120f1cf";

fn resend(stub: &Stub, action: &'static str, action_config: Value) -> Call<'static> {
    Call {
        kind: "resend",
        config: json!({"base_url": stub.base}),
        credentials: json!({"api_key": RESEND_KEY}),
        action,
        action_config,
        payload: person(),
    }
}

fn resend_error(status: u16, name: &str, message: &str) -> Reply {
    reply(status, &json!({"statusCode": status, "message": message, "name": name}).to_string())
}

#[tokio::test]
async fn resend_send_email_template_sends_once_per_delivery_with_the_idempotency_key() {
    let stub = Stub::start().await;
    stub.script([reply(200, r#"{"id":"49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"}"#)]);
    let (verdict, steps) = deliver(resend(
        &stub,
        "send_email_template",
        json!({"id": "welcome-email", "from": "Acme <hi@acme.test>", "subject": "Welcome {{ payload.first_name }} ({{ payload.plan }})"}),
    ))
    .await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "POST /emails");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {RESEND_KEY}").as_str()));
    assert_eq!(r.header("idempotency-key"), Some(DELIVERY_ID));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"from": "Acme <hi@acme.test>", "to": ["ada@example.com"], "subject": "Welcome Ada (pro)",
               "template": {"id": "welcome-email", "variables": person()}})
    );
    assert_redacted(&steps, &[RESEND_KEY]);

    // Without a subject the template's own is used: none is sent. The key is the same on a retry.
    stub.script([resend_error(500, "internal_server_error", "An unexpected error occurred."), reply(200, r#"{"id":"x"}"#)]);
    let call = || resend(&stub, "send_email_template", json!({"id": "welcome-email", "from": "hi@acme.test"}));
    assert_retry(&deliver(call()).await.0, None, false);
    deliver(call()).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    for r in &seen {
        assert_eq!(r.header("idempotency-key"), Some(DELIVERY_ID));
        assert_eq!(
            r.json(),
            json!({"from": "hi@acme.test", "to": ["ada@example.com"], "template": {"id": "welcome-email", "variables": person()}})
        );
    }
}

#[tokio::test]
async fn resend_add_to_segment_creates_the_contact_then_adds_it_to_the_segment() {
    let stub = Stub::start().await;
    stub.script([
        reply(201, r#"{"object":"contact","id":"479e3145-dd38-476b-932c-529ceb705947"}"#),
        reply(200, &format!(r#"{{"id":"{RESEND_SEGMENT}"}}"#)),
    ]);
    let (verdict, steps) = deliver(resend(&stub, "add_to_segment", json!({"id": RESEND_SEGMENT}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), "POST /contacts");
    assert_eq!(seen[0].json(), json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace"}));
    assert_eq!(seen[1].line(), format!("POST /contacts/ada@example.com/segments/{RESEND_SEGMENT}"));
    assert!(seen[1].body.is_empty());
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {RESEND_KEY}").as_str()));
    }
    assert_eq!(steps.len(), 2);
    assert_redacted(&steps, &[RESEND_KEY]);

    // A contact that exists already is fine, however Resend says so.
    for exists in [
        resend_error(409, "conflict", "Contact already exists."),
        resend_error(422, "validation_error", "A contact with this email already exists."),
    ] {
        stub.script([exists, reply(200, &format!(r#"{{"id":"{RESEND_SEGMENT}"}}"#))]);
        deliver(resend(&stub, "add_to_segment", json!({"id": RESEND_SEGMENT}))).await.0.unwrap();
        let seen = stub.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].line(), format!("POST /contacts/ada@example.com/segments/{RESEND_SEGMENT}"));
    }

    // Any other refusal of the contact stops before the segment.
    stub.script([resend_error(
        422,
        "validation_error",
        "Invalid `email` field. The email address needs to follow the `email@example.com` format.",
    )]);
    let (verdict, _) = deliver(resend(&stub, "add_to_segment", json!({"id": RESEND_SEGMENT}))).await;
    assert_permanent(&verdict, "Invalid `email` field");
    assert_eq!(stub.seen().len(), 1);
    // And an unknown segment fails with Resend's message.
    stub.script([reply(201, r#"{"object":"contact","id":"c1"}"#), resend_error(404, "not_found", "Segment not found")]);
    let (verdict, _) = deliver(resend(&stub, "add_to_segment", json!({"id": RESEND_SEGMENT}))).await;
    assert_permanent(&verdict, "Segment not found");
    assert_eq!(stub.seen().len(), 2);
    // A rate limit on the second request.
    stub.script([
        reply(201, r#"{"object":"contact","id":"c1"}"#),
        resend_error(429, "rate_limit_exceeded", "Too many requests. You can only make 2 requests per second.").header("retry-after", "2"),
    ]);
    assert_retry(&deliver(resend(&stub, "add_to_segment", json!({"id": RESEND_SEGMENT}))).await.0, Some(2.0), true);
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn resend_remove_from_segment_deletes_the_membership_and_404_is_success() {
    let stub = Stub::start().await;
    stub.script([reply(200, &format!(r#"{{"id":"{RESEND_SEGMENT}","deleted":true}}"#))]);
    let (verdict, steps) = deliver(resend(&stub, "remove_from_segment", json!({"id": RESEND_SEGMENT}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), format!("DELETE /contacts/ada@example.com/segments/{RESEND_SEGMENT}"));
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {RESEND_KEY}").as_str()));
    assert!(seen[0].body.is_empty());
    assert_redacted(&steps, &[RESEND_KEY]);

    stub.script([resend_error(404, "not_found", "Contact not found")]);
    deliver(resend(&stub, "remove_from_segment", json!({"id": RESEND_SEGMENT}))).await.0.unwrap();
    stub.script([resend_error(403, "invalid_api_key", "API key is invalid")]);
    assert_permanent(&deliver(resend(&stub, "remove_from_segment", json!({"id": RESEND_SEGMENT}))).await.0, "API key is invalid");
    stub.script([resend_error(429, "rate_limit_exceeded", "Too many requests.").header("retry-after", "5")]);
    assert_retry(&deliver(resend(&stub, "remove_from_segment", json!({"id": RESEND_SEGMENT}))).await.0, Some(5.0), true);
    stub.script([reply(502, "")]);
    assert_retry(&deliver(resend(&stub, "remove_from_segment", json!({"id": RESEND_SEGMENT}))).await.0, None, false);
    assert_eq!(stub.seen().len(), 4);
}

#[tokio::test]
async fn resend_validation_errors_are_permanent_and_rate_limits_wait_for_retry_after() {
    let stub = Stub::start().await;
    let send = || resend(&stub, "send_email_template", json!({"id": "welcome-email", "from": "hi@acme.test"}));
    stub.script([resend_error(422, "validation_error", "The `template.id` field must reference a published template.")]);
    let (verdict, _) = deliver(send()).await;
    assert_permanent(&verdict, "must reference a published template");
    stub.script([resend_error(
        429,
        "rate_limit_exceeded",
        "Too many requests. You can only make 2 requests per second. See rate limit response headers for more information.",
    )
    .header("retry-after", "1")
    .header("ratelimit-limit", "2")
    .header("ratelimit-remaining", "0")]);
    let (verdict, _) = deliver(send()).await;
    assert_retry(&verdict, Some(1.0), true);
    assert!(error_of(&verdict).contains("only make 2 requests per second"), "{}", error_of(&verdict));
    stub.script([resend_error(429, "rate_limit_exceeded", "Too many requests.").header("retry-after", "30")]);
    assert_retry(&deliver(send()).await.0, Some(30.0), true);
    stub.script([resend_error(500, "internal_server_error", "An unexpected error occurred.")]);
    assert_retry(&deliver(send()).await.0, None, false);
    assert_eq!(stub.seen().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Customer.io
// ---------------------------------------------------------------------------------------------

const CIO_SITE: &str = "cio-site-0a1b2c3d4e";
const CIO_KEY: &str = "cio-track-key-9f8e7d6c5b4a3210";
/// The delivery id without its `dlv_` prefix: the ULID Customer.io de-duplicates events on.
const CIO_EVENT_ID: &str = "01JDCONTRACT0000000000000";
/// 2026-11-23T17:00:00Z, the event's occurred_at, in seconds.
const OCCURRED_SECS: i64 = 1_795_453_200;

fn customerio(stub: &Stub, action_config: Value) -> Call<'static> {
    Call {
        kind: "customerio",
        config: json!({"base_url": stub.base}),
        credentials: json!({"site_id": CIO_SITE, "api_key": CIO_KEY}),
        action: "track_event",
        action_config,
        payload: person(),
    }
}

#[tokio::test]
async fn customerio_identifies_the_person_then_tracks_the_event_with_a_deduplicating_id() {
    let stub = Stub::start().await;
    stub.script([reply(200, "{}"), reply(200, "{}")]);
    let (verdict, steps) = deliver(customerio(&stub, json!({}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    let auth = basic(CIO_SITE, CIO_KEY);
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/ada@example.com");
    assert_eq!(seen[0].header("authorization"), Some(auth.as_str()));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    // Attributes are top-level.
    assert_eq!(
        seen[0].json(),
        json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000"})
    );
    assert_eq!(seen[1].line(), "POST /api/v1/customers/ada@example.com/events");
    assert_eq!(seen[1].header("authorization"), Some(auth.as_str()));
    assert_eq!(seen[1].json(), json!({"name": EVENT_NAME, "data": person(), "timestamp": OCCURRED_SECS, "id": CIO_EVENT_ID}));
    assert_eq!(CIO_EVENT_ID, DELIVERY_ID.strip_prefix("dlv_").unwrap());
    assert_eq!(steps.len(), 2);
    assert_redacted(&steps, &[CIO_SITE, CIO_KEY, &auth["Basic ".len()..]]);

    // A templated event name.
    deliver(customerio(&stub, json!({"name": "{{ event }} on {{ payload.plan | upper }}"}))).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[1].json()["name"], "user.created on PRO");
}

#[tokio::test]
async fn customerio_can_identify_people_by_their_id() {
    let stub = Stub::start().await;
    deliver(customerio(&stub, json!({"identifier": "id"}))).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/u_42");
    // The id names the person; it is not an attribute. The e-mail is.
    assert_eq!(
        seen[0].json(),
        json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000"})
    );
    assert_eq!(seen[1].line(), "POST /api/v1/customers/u_42/events");
    assert_eq!(seen[1].json()["id"], CIO_EVENT_ID);

    // Numeric ids, and a mapped id.
    let mut call = customerio(&stub, json!({"identifier": "id"}));
    call.payload["id"] = json!(4242);
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/4242");
    assert_eq!(seen[1].line(), "POST /api/v1/customers/4242/events");
    let mapping = json!({"schema_version": 1, "fields": [
        {"dest": "email", "source": {"type": "path", "value": "payload.email"}},
        {"dest": "id", "source": {"type": "path", "value": "payload.account.user_id"}, "transforms": ["to_string"]},
        {"dest": "plan", "source": {"type": "path", "value": "payload.plan"}, "transforms": ["upper"]}
    ]});
    let mut call = customerio(&stub, json!({"identifier": "id", "mapping": mapping}));
    call.payload["account"] = json!({"user_id": 7});
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/7");
    assert_eq!(seen[0].json(), json!({"email": "ada@example.com", "plan": "PRO"}));

    // No id to identify by: permanent, nothing sent.
    let mut call = customerio(&stub, json!({"identifier": "id"}));
    call.payload.as_object_mut().unwrap().remove("id");
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "no id");
    assert!(steps.is_empty());
    assert!(stub.seen().is_empty());
}

#[tokio::test]
async fn customerio_identified_by_id_needs_no_email() {
    let stub = Stub::start().await;
    let mut call = customerio(&stub, json!({"identifier": "id"}));
    call.payload.as_object_mut().unwrap().remove("email");
    let (verdict, steps) = deliver(call).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/u_42");
    assert_eq!(seen[0].header("authorization"), Some(basic(CIO_SITE, CIO_KEY).as_str()));
    // No e-mail attribute at all, rather than an empty one.
    assert_eq!(seen[0].json(), json!({"first_name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000"}));
    assert_eq!(seen[1].line(), "POST /api/v1/customers/u_42/events");
    let mut data = person();
    data.as_object_mut().unwrap().remove("email");
    assert_eq!(seen[1].json(), json!({"name": EVENT_NAME, "data": data, "timestamp": OCCURRED_SECS, "id": CIO_EVENT_ID}));
    assert_eq!(steps.len(), 2);

    // A mapping that gives only the id: an empty identify, then the event.
    let mut call = customerio(
        &stub,
        json!({"identifier": "id", "mapping": {"schema_version": 1, "fields": [
            {"dest": "id", "source": {"type": "path", "value": "payload.id"}}]}}),
    );
    call.payload = json!({"id": "u_7"});
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/u_7");
    assert_eq!(seen[0].json(), json!({}));
    assert_eq!(seen[1].line(), "POST /api/v1/customers/u_7/events");

    // An e-mail that is given must still be an address; and identified by e-mail, one is still required.
    let mut call = customerio(&stub, json!({"identifier": "id"}));
    call.payload["email"] = json!("ada at example.com");
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "is not an e-mail address");
    assert!(steps.is_empty());
    let mut call = customerio(&stub, json!({"identifier": "email"}));
    call.payload.as_object_mut().unwrap().remove("email");
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "no e-mail address");
    assert!(steps.is_empty());
    // Neither id nor e-mail: the id is what is missing.
    let mut call = customerio(&stub, json!({"identifier": "id"}));
    call.payload = json!({"first_name": "Ada"});
    let (verdict, steps) = deliver(call).await;
    assert_permanent(&verdict, "no id to identify the person by");
    assert!(steps.is_empty());
    assert!(stub.seen().is_empty());
}

#[tokio::test]
async fn customerio_region_eu_with_a_base_url_still_goes_to_the_base_url() {
    // Without a base_url, region eu means https://track-eu.customer.io; that choice is not tested
    // here because it cannot be observed without a network call. The override wins over the region.
    let stub = Stub::start().await;
    let mut call = customerio(&stub, json!({}));
    call.config = json!({"base_url": stub.base, "region": "eu"});
    deliver(call).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), "PUT /api/v1/customers/ada@example.com");
    assert_eq!(seen[1].line(), "POST /api/v1/customers/ada@example.com/events");
}

#[tokio::test]
async fn customerio_a_failed_identify_stops_before_the_event_and_429_is_a_rate_limit() {
    let stub = Stub::start().await;
    stub.script([reply(401, r#"{"meta":{"error":"Unauthorized request"}}"#)]);
    let (verdict, steps) = deliver(customerio(&stub, json!({}))).await;
    assert_permanent(&verdict, "Unauthorized request");
    assert_eq!(steps.len(), 1);
    assert_eq!(stub.seen().len(), 1);
    stub.script([reply(400, r#"{"meta":{"errors":["attribute names must be less than 150 bytes"]}}"#)]);
    assert_permanent(&deliver(customerio(&stub, json!({}))).await.0, "must be less than 150 bytes");
    assert_eq!(stub.seen().len(), 1);

    // Rate limited on the identify, then on the event.
    stub.script([reply(429, "").header("retry-after", "4")]);
    assert_retry(&deliver(customerio(&stub, json!({}))).await.0, Some(4.0), true);
    assert_eq!(stub.seen().len(), 1);
    stub.script([reply(200, "{}"), reply(429, r#"{"meta":{"error":"rate limit exceeded"}}"#)]);
    let (verdict, steps) = deliver(customerio(&stub, json!({}))).await;
    assert_retry(&verdict, None, true);
    assert_eq!(wait_of(&verdict), None);
    assert!(error_of(&verdict).contains("rate limit exceeded"), "{}", error_of(&verdict));
    assert_eq!(steps.iter().map(|s| s.status).collect::<Vec<_>>(), [Some(200), Some(429)]);
    assert_eq!(stub.seen().len(), 2);
    // 5xx on either step retries.
    stub.script([reply(200, "{}"), reply(503, "")]);
    assert_retry(&deliver(customerio(&stub, json!({}))).await.0, None, false);
    stub.script([reply(500, "")]);
    assert_retry(&deliver(customerio(&stub, json!({}))).await.0, None, false);
    assert_eq!(stub.seen().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// MailerLite
// ---------------------------------------------------------------------------------------------

const MAILERLITE_KEY: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.mailerlite-contract-token";
const MAILERLITE_GROUP: &str = "112233445566778899";
const MAILERLITE_SUBSCRIBER: &str = "31897397363737859";

fn mailerlite(stub: &Stub, action: &'static str) -> Call<'static> {
    Call {
        kind: "mailerlite",
        config: json!({"base_url": stub.base}),
        credentials: json!({"api_key": MAILERLITE_KEY}),
        action,
        action_config: json!({"id": MAILERLITE_GROUP}),
        payload: person(),
    }
}

fn mailerlite_subscriber(status: u16) -> Reply {
    reply(
        status,
        &json!({"data": {"id": MAILERLITE_SUBSCRIBER, "email": "ada@example.com", "status": "active", "source": "api",
                         "fields": {"name": "Ada", "last_name": "Lovelace"}, "groups": []}})
        .to_string(),
    )
}

#[tokio::test]
async fn mailerlite_add_to_group_upserts_the_subscriber_into_the_group() {
    let stub = Stub::start().await;
    stub.script([mailerlite_subscriber(201)]);
    let (verdict, steps) = deliver(mailerlite(&stub, "add_to_group")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "POST /api/subscribers");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {MAILERLITE_KEY}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"email": "ada@example.com", "fields": {"name": "Ada", "last_name": "Lovelace", "phone": "+44 20 7946 0000"},
               "groups": [MAILERLITE_GROUP]})
    );
    assert_redacted(&steps, &[MAILERLITE_KEY]);
    // An existing subscriber answers 200: the same.
    stub.script([mailerlite_subscriber(200)]);
    deliver(mailerlite(&stub, "add_to_group")).await.0.unwrap();
    assert_eq!(stub.seen().len(), 1);
}

#[tokio::test]
async fn mailerlite_remove_from_group_looks_the_subscriber_up_then_leaves_the_group() {
    let stub = Stub::start().await;
    stub.script([mailerlite_subscriber(200), reply(204, "")]);
    let (verdict, steps) = deliver(mailerlite(&stub, "remove_from_group")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    // A look-up, not an upsert: nothing is created or written.
    assert_eq!(seen[0].line(), "GET /api/subscribers/ada@example.com");
    assert!(seen[0].body.is_empty());
    assert_eq!(seen[1].line(), format!("DELETE /api/subscribers/{MAILERLITE_SUBSCRIBER}/groups/{MAILERLITE_GROUP}"));
    assert!(seen[1].body.is_empty());
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {MAILERLITE_KEY}").as_str()));
    }
    assert_redacted(&steps, &[MAILERLITE_KEY]);

    // Not in the group: already removed.
    stub.script([mailerlite_subscriber(200), reply(404, r#"{"message":"Resource not found."}"#)]);
    deliver(mailerlite(&stub, "remove_from_group")).await.0.unwrap();
    assert_eq!(stub.seen().len(), 2);
    // Other answers to the DELETE count.
    stub.script([mailerlite_subscriber(200), reply(429, r#"{"message":"Too Many Attempts."}"#).header("retry-after", "12")]);
    assert_retry(&deliver(mailerlite(&stub, "remove_from_group")).await.0, Some(12.0), true);
    stub.script([mailerlite_subscriber(200), reply(500, r#"{"message":"Server Error"}"#)]);
    assert_retry(&deliver(mailerlite(&stub, "remove_from_group")).await.0, None, false);
    stub.script([mailerlite_subscriber(200), reply(403, r#"{"message":"This action is unauthorized."}"#)]);
    assert_permanent(&deliver(mailerlite(&stub, "remove_from_group")).await.0, "This action is unauthorized.");
    assert_eq!(stub.seen().len(), 6);
}

#[tokio::test]
async fn mailerlite_remove_from_group_of_an_unknown_person_succeeds_and_sends_nothing_else() {
    let stub = Stub::start().await;
    stub.script([reply(404, r#"{"message":"Resource not found."}"#)]);
    let (verdict, steps) = deliver(mailerlite(&stub, "remove_from_group")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "nothing follows a look-up that found nobody");
    assert_eq!(seen[0].line(), "GET /api/subscribers/ada@example.com");
    assert_eq!(steps.len(), 1);

    // A failed look-up stops before the DELETE.
    stub.script([reply(401, r#"{"message":"Unauthenticated."}"#)]);
    assert_permanent(&deliver(mailerlite(&stub, "remove_from_group")).await.0, "Unauthenticated.");
    stub.script([reply(429, r#"{"message":"Too Many Attempts."}"#).header("retry-after", "30")]);
    assert_retry(&deliver(mailerlite(&stub, "remove_from_group")).await.0, Some(30.0), true);
    // A found subscriber without an id: try again later.
    stub.script([reply(200, r#"{"data":{"email":"ada@example.com"}}"#)]);
    assert_retry(&deliver(mailerlite(&stub, "remove_from_group")).await.0, None, false);
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|r| r.line() == "GET /api/subscribers/ada@example.com"));
}

#[tokio::test]
async fn mailerlite_422_is_permanent_with_the_message_and_429_waits_for_retry_after() {
    let stub = Stub::start().await;
    stub.script([reply(
        422,
        r#"{"message":"The email must be a valid email address.","errors":{"email":["The email must be a valid email address."]}}"#,
    )]);
    assert_permanent(&deliver(mailerlite(&stub, "add_to_group")).await.0, "The email must be a valid email address.");
    stub.script([reply(
        422,
        r#"{"message":"The selected groups.0 is invalid.","errors":{"groups.0":["The selected groups.0 is invalid."]}}"#,
    )]);
    assert_permanent(&deliver(mailerlite(&stub, "add_to_group")).await.0, "The selected groups.0 is invalid.");
    stub.script([reply(429, r#"{"message":"Too Many Attempts."}"#).header("retry-after", "60").header("x-ratelimit-remaining", "0")]);
    let (verdict, _) = deliver(mailerlite(&stub, "add_to_group")).await;
    assert_retry(&verdict, Some(60.0), true);
    assert!(error_of(&verdict).contains("Too Many Attempts."), "{}", error_of(&verdict));
    stub.script([reply(502, "")]);
    assert_retry(&deliver(mailerlite(&stub, "add_to_group")).await.0, None, false);
    assert_eq!(stub.seen().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// AWeber
// ---------------------------------------------------------------------------------------------

const AWEBER_TOKEN: &str = "AzT6oQsBxXpcgkFQ9QhwmMnFjDcMVmxB";
const AWEBER_ACCOUNT: &str = "1234567";
const AWEBER_LIST: &str = "6789012";
const AWEBER_SUBSCRIBERS: &str = "/1.0/accounts/1234567/lists/6789012/subscribers";
const AWEBER_FIND: &str = "/1.0/accounts/1234567/lists/6789012/subscribers?ws.op=find&email=ada%40example.com";

fn aweber(stub: &Stub, action: &'static str) -> Call<'static> {
    Call {
        kind: "aweber",
        config: json!({"base_url": stub.base, "account_id": AWEBER_ACCOUNT}),
        credentials: json!({"access_token": AWEBER_TOKEN}),
        action,
        action_config: json!({"id": AWEBER_LIST}),
        payload: person(),
    }
}

fn aweber_found(entries: Value) -> Reply {
    let total = entries.as_array().map(Vec::len).unwrap_or_default();
    reply(
        200,
        &json!({"entries": entries, "start": 0, "total_size": total,
                "resource_type_link": "https://api.aweber.com/1.0/#subscriber-page-resource"})
        .to_string(),
    )
}

fn aweber_subscriber(status: &str) -> Value {
    json!({"id": 987654321, "email": "ada@example.com", "name": "Ada Lovelace", "status": status,
           "self_link": "https://api.aweber.com/1.0/accounts/1234567/lists/6789012/subscribers/987654321"})
}

fn aweber_error(status: u16, kind: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"error": {"status": status, "type": kind, "message": message,
                          "documentation_url": "https://api.aweber.com/#tag/Troubleshooting"}})
        .to_string(),
    )
}

#[tokio::test]
async fn aweber_add_to_list_finds_first_then_adds_a_new_subscriber() {
    let stub = Stub::start().await;
    stub.script([
        aweber_found(json!([])),
        reply(201, "").header("location", "https://api.aweber.com/1.0/accounts/1234567/lists/6789012/subscribers/987654321"),
    ]);
    let (verdict, steps) = deliver(aweber(&stub, "add_to_list")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), format!("GET {AWEBER_FIND}"));
    assert!(seen[0].body.is_empty());
    assert_eq!(seen[1].line(), format!("POST {AWEBER_SUBSCRIBERS}"));
    assert_eq!(seen[1].header("content-type"), Some("application/json"));
    assert_eq!(seen[1].json(), json!({"email": "ada@example.com", "name": "Ada Lovelace"}));
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {AWEBER_TOKEN}").as_str()));
    }
    assert_eq!(steps.iter().map(|s| s.status).collect::<Vec<_>>(), [Some(200), Some(201)]);
    assert_redacted(&steps, &[AWEBER_TOKEN]);
}

#[tokio::test]
async fn aweber_add_to_list_updates_only_the_mapped_fields_of_an_existing_subscriber() {
    let stub = Stub::start().await;
    // PATCH answers 209 Content Returned. The subscriber had unsubscribed, and stays so.
    stub.script([aweber_found(json!([aweber_subscriber("unsubscribed")])), reply(209, &aweber_subscriber("unsubscribed").to_string())]);
    let (verdict, steps) = deliver(aweber(&stub, "add_to_list")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), format!("GET {AWEBER_FIND}"));
    assert_eq!(seen[1].line(), format!("PATCH {AWEBER_SUBSCRIBERS}/987654321"));
    assert_eq!(seen[1].header("authorization"), Some(format!("Bearer {AWEBER_TOKEN}").as_str()));
    // No status: sending "subscribed" would re-subscribe someone who opted out.
    assert_eq!(seen[1].json(), json!({"name": "Ada Lovelace"}));
    assert_redacted(&steps, &[AWEBER_TOKEN]);

    // A mapping with nothing but the e-mail leaves nothing to update: the find is all.
    stub.script([aweber_found(json!([aweber_subscriber("unsubscribed")]))]);
    let mut call = aweber(&stub, "add_to_list");
    call.action_config["mapping"] =
        json!({"schema_version": 1, "fields": [{"dest": "email", "source": {"type": "path", "value": "payload.email"}}]});
    let (verdict, steps) = deliver(call).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.iter().map(Seen::line).collect::<Vec<_>>(), [format!("GET {AWEBER_FIND}")]);
    assert_eq!(steps.len(), 1);
}

#[tokio::test]
async fn aweber_remove_from_list_unsubscribes_the_one_found_and_sends_nothing_more_when_none_is() {
    let stub = Stub::start().await;
    stub.script([aweber_found(json!([aweber_subscriber("subscribed")])), reply(209, &aweber_subscriber("unsubscribed").to_string())]);
    let (verdict, steps) = deliver(aweber(&stub, "remove_from_list")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].line(), format!("GET {AWEBER_FIND}"));
    assert_eq!(seen[1].line(), format!("PATCH {AWEBER_SUBSCRIBERS}/987654321"));
    assert_eq!(seen[1].json(), json!({"status": "unsubscribed"}));
    for r in &seen {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {AWEBER_TOKEN}").as_str()));
    }
    assert_redacted(&steps, &[AWEBER_TOKEN]);

    // Not on the list: nothing to do, nothing else sent.
    stub.script([aweber_found(json!([]))]);
    let (verdict, steps) = deliver(aweber(&stub, "remove_from_list")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), format!("GET {AWEBER_FIND}"));
    assert_eq!(steps.len(), 1);
}

#[tokio::test]
async fn aweber_errors_carry_the_message_and_its_403_rate_limit_is_a_wait() {
    let stub = Stub::start().await;
    // A refused find stops the attempt.
    stub.script([aweber_error(401, "UnauthorizedError", "Invalid token.")]);
    let (verdict, steps) = deliver(aweber(&stub, "add_to_list")).await;
    assert_permanent(&verdict, "Invalid token.");
    assert_eq!(steps.len(), 1);
    assert_eq!(stub.seen().len(), 1);
    stub.script([aweber_error(404, "NotFoundError", "Object Not Found")]);
    assert_permanent(&deliver(aweber(&stub, "remove_from_list")).await.0, "Object Not Found");
    assert_eq!(stub.seen().len(), 1);
    // A refused add.
    stub.script([aweber_found(json!([])), aweber_error(400, "WebServiceError", "email: Invalid email address.")]);
    assert_permanent(&deliver(aweber(&stub, "add_to_list")).await.0, "email: Invalid email address.");
    assert_eq!(stub.seen().len(), 2);
    stub.script([
        aweber_found(json!([aweber_subscriber("subscribed")])),
        aweber_error(403, "ForbiddenError", "Method requires access to Subscriber information."),
    ]);
    assert_permanent(&deliver(aweber(&stub, "remove_from_list")).await.0, "Method requires access to Subscriber information.");
    assert_eq!(stub.seen().len(), 2);

    // AWeber's rate limit is 403 "Rate Limit Error"; requests fail for 60 seconds after it.
    stub.script([aweber_error(403, "ForbiddenError", "Rate Limit Error")]);
    let (verdict, _) = deliver(aweber(&stub, "add_to_list")).await;
    assert_retry(&verdict, Some(60.0), true);
    assert!(error_of(&verdict).contains("Rate Limit Error"), "{}", error_of(&verdict));
    stub.script([aweber_found(json!([])), aweber_error(403, "ForbiddenError", "Rate Limit Error")]);
    assert_retry(&deliver(aweber(&stub, "add_to_list")).await.0, Some(60.0), true);
    assert_eq!(stub.seen().len(), 3);
    // 5xx retries, on the find or the change.
    stub.script([reply(503, "")]);
    assert_retry(&deliver(aweber(&stub, "remove_from_list")).await.0, None, false);
    stub.script([aweber_found(json!([aweber_subscriber("subscribed")])), aweber_error(500, "InternalServerError", "Internal error")]);
    assert_retry(&deliver(aweber(&stub, "add_to_list")).await.0, None, false);
    assert_eq!(stub.seen().len(), 3);
}

// ---------------------------------------------------------------------------------------------
// All six
// ---------------------------------------------------------------------------------------------

/// Every action of every connector here, with settings that would otherwise be sent.
fn every_action(stub: &Stub) -> Vec<Call<'static>> {
    vec![
        mailchimp(stub, "add_to_list", json!({"id": MAILCHIMP_LIST})),
        mailchimp(stub, "remove_from_list", json!({"id": MAILCHIMP_LIST})),
        sendgrid(stub, "send_email", json!({"from": "hello@acme.test", "subject": "Hi", "template": "<p>Hi</p>"})),
        sendgrid(stub, "send_email_template", json!({"from": "hello@acme.test", "id": SENDGRID_TEMPLATE})),
        sendgrid(stub, "add_to_list", json!({"id": SENDGRID_LIST})),
        resend(stub, "send_email_template", json!({"id": "welcome-email", "from": "hi@acme.test"})),
        resend(stub, "add_to_segment", json!({"id": RESEND_SEGMENT})),
        resend(stub, "remove_from_segment", json!({"id": RESEND_SEGMENT})),
        customerio(stub, json!({})),
        customerio(stub, json!({"identifier": "id"})),
        mailerlite(stub, "add_to_group"),
        mailerlite(stub, "remove_from_group"),
        aweber(stub, "add_to_list"),
        aweber(stub, "remove_from_list"),
    ]
}

#[tokio::test]
async fn every_action_without_an_email_fails_permanently_and_sends_nothing() {
    let stub = Stub::start().await;
    // The calls are valid: with a person they are sent.
    for call in every_action(&stub) {
        let (kind, action) = (call.kind, call.action);
        stub.script([reply(200, &json!({"data": {"id": "1"}}).to_string())]);
        deliver(call).await.0.unwrap_or_else(|e| panic!("{kind} {action}: {e:?}"));
    }
    assert!(stub.seen().len() >= 14);

    for (payload, expected) in [
        (json!({"first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace", "id": "u_42"}), "no e-mail address"),
        (json!({"email": "", "name": "Ada Lovelace", "id": "u_42"}), "not an e-mail address"),
        (json!({"email": "ada at example.com", "name": "Ada Lovelace", "id": "u_42"}), "not an e-mail address"),
        (json!({"email": 42, "name": "Ada Lovelace", "id": "u_42"}), "not an e-mail address"),
    ] {
        for mut call in every_action(&stub) {
            let (kind, action) = (call.kind, call.action);
            // Customer.io identified by id needs no e-mail address (see
            // customerio_identified_by_id_needs_no_email); one that is given must still be valid.
            if expected == "no e-mail address" && kind == "customerio" && call.action_config["identifier"] == "id" {
                continue;
            }
            call.payload = payload.clone();
            let (verdict, steps) = deliver(call).await;
            let c = verdict.as_ref().expect_err("expected a failure");
            assert_eq!(c.outcome, switchyard_destinations::Outcome::Permanent, "{kind} {action}: {:?}", c.error);
            assert!(error_of(&verdict).contains(expected), "{kind} {action} ({payload}): {}", error_of(&verdict));
            assert!(steps.is_empty(), "{kind} {action} sent {steps:?}");
        }
    }
    assert!(stub.seen().is_empty(), "nothing reaches the vendor");
}
