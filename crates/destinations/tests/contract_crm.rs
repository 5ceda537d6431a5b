//! Contract tests for the CRM destinations: HubSpot, Salesforce, Intercom, ActiveCampaign and
//! Zoom. Each runs the connector against a loopback stub that answers as the vendor documents
//! (see /work/shared/reference/destinations.md), and checks every request of the conversation
//! (method, path and query, auth, JSON body) and how each answer was judged.

mod support;

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use support::*;

/// The request bodies the default mappings produce from [`person`].
const EMAIL: &str = "ada@example.com";
const PHONE: &str = "+44 20 7946 0000";

fn epoch_in(secs: u64) -> String {
    (SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + secs).to_string()
}

/// Every recorded step hides the credential and shows the auth header as redacted.
fn assert_steps_redacted(steps: &[switchyard_destinations::exchange::Step], secret: &str, header: &str) {
    assert!(!steps.is_empty());
    assert_redacted(steps, &[secret]);
    for s in steps {
        assert!(s.request.contains(&format!("{header}: [redacted]")), "{}", s.request);
    }
}

// ---------------------------------------------------------------------------------------------
// HubSpot

const HUBSPOT_TOKEN: &str = "pat-na1-0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9";

fn hubspot(stub: &Stub, action: &'static str, action_config: Value) -> Call<'static> {
    Call {
        kind: "hubspot",
        config: json!({"base_url": stub.base}),
        credentials: json!({"access_token": HUBSPOT_TOKEN}),
        action,
        action_config,
        payload: person(),
    }
}

/// HubSpot's batch upsert answer for one contact.
fn hubspot_upserted(id: &str) -> Reply {
    reply(
        200,
        &format!(
            r#"{{"status":"COMPLETE","results":[{{"id":"{id}","properties":{{"email":"{EMAIL}","hs_object_id":"{id}"}},
               "createdAt":"2026-11-23T17:00:00.000Z","updatedAt":"2026-11-23T17:00:00.000Z","archived":false,"new":true}}],
               "startedAt":"2026-11-23T17:00:00.100Z","completedAt":"2026-11-23T17:00:00.200Z"}}"#
        ),
    )
}

fn hubspot_rate_limited() -> Reply {
    reply(
        429,
        r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT",
            "correlationId":"c8a1f2d0-8b7e-4d0c-9a55-2f1e0b6c7d8e","policyName":"TEN_SECONDLY_ROLLING"}"#,
    )
    .header("X-HubSpot-RateLimit-Max", "100")
    .header("X-HubSpot-RateLimit-Remaining", "0")
    .header("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
}

fn assert_hubspot_upsert(r: &Seen, properties: Value) {
    assert_eq!(r.line(), "POST /crm/v3/objects/contacts/batch/upsert");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {HUBSPOT_TOKEN}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"inputs": [{"id": EMAIL, "idProperty": "email", "properties": properties}]}));
}

#[tokio::test]
async fn hubspot_add_to_list_upserts_by_email_then_adds_the_record_id() {
    let stub = Stub::start().await;
    stub.script([hubspot_upserted("512"), reply(200, r#"{"recordIdsMissing":[],"recordIdsRemoved":[],"recordsIdsAdded":["512"]}"#)]);
    // List ids are numbers at HubSpot: the rule may give one as a number.
    let (verdict, steps) = deliver(hubspot(&stub, "add_to_list", json!({"id": 1234}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_hubspot_upsert(&seen[0], json!({"firstname": "Ada", "lastname": "Lovelace", "phone": PHONE}));
    let r = &seen[1];
    assert_eq!(r.line(), "PUT /crm/v3/lists/1234/memberships/add");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {HUBSPOT_TOKEN}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!(["512"]));
    assert_eq!(steps.iter().map(|s| s.status).collect::<Vec<_>>(), [Some(200), Some(200)]);
    assert_steps_redacted(&steps, HUBSPOT_TOKEN, "authorization");
}

/// HubSpot's batch read answer for one contact found by e-mail.
fn hubspot_read(id: &str) -> Reply {
    reply(
        200,
        &format!(
            r#"{{"status":"COMPLETE","results":[{{"id":"{id}","properties":{{"email":"{EMAIL}","hs_object_id":"{id}"}},
               "createdAt":"2026-01-02T10:00:00.000Z","updatedAt":"2026-11-23T17:00:00.000Z","archived":false}}],
               "startedAt":"2026-11-23T17:00:00.100Z","completedAt":"2026-11-23T17:00:00.200Z"}}"#
        ),
    )
}

/// HubSpot's batch read answer when no contact has the address: 207, the miss among `errors`.
fn hubspot_read_missing() -> Reply {
    reply(
        207,
        &format!(
            r#"{{"status":"COMPLETE","results":[],"numErrors":1,"errors":[{{"status":"error","category":"OBJECT_NOT_FOUND",
               "message":"Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
               "context":{{"ids":["{EMAIL}"]}}}}],"startedAt":"2026-11-23T17:00:00.100Z","completedAt":"2026-11-23T17:00:00.200Z"}}"#
        ),
    )
}

fn assert_hubspot_read(r: &Seen) {
    assert_eq!(r.line(), "POST /crm/v3/objects/contacts/batch/read");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {HUBSPOT_TOKEN}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"idProperty": "email", "inputs": [{"id": EMAIL}]}));
}

#[tokio::test]
async fn hubspot_remove_from_list_reads_the_contact_by_email_then_removes_the_record_id() {
    let stub = Stub::start().await;
    stub.script([hubspot_read("901"), reply(200, r#"{"recordIdsMissing":[],"recordIdsRemoved":["901"],"recordsIdsAdded":[]}"#)]);
    let (verdict, steps) = deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    // A read, not an upsert: nothing is created or written.
    assert_hubspot_read(&seen[0]);
    assert_eq!(seen[1].line(), "PUT /crm/v3/lists/77/memberships/remove");
    assert_eq!(seen[1].header("authorization"), Some(format!("Bearer {HUBSPOT_TOKEN}").as_str()));
    assert_eq!(seen[1].json(), json!(["901"]));
    assert_steps_redacted(&steps, HUBSPOT_TOKEN, "authorization");
}

#[tokio::test]
async fn hubspot_remove_from_list_of_an_unknown_contact_succeeds_and_sends_nothing_else() {
    let stub = Stub::start().await;
    // 207 with the miss among errors, a 2xx without results, and a 404 OBJECT_NOT_FOUND all mean "no such contact".
    for missing in [
        hubspot_read_missing(),
        reply(200, r#"{"status":"COMPLETE","results":[]}"#),
        reply(404, r#"{"status":"error","message":"Object not found.","correlationId":"9d0e","category":"OBJECT_NOT_FOUND"}"#),
    ] {
        stub.script([missing]);
        let (verdict, steps) = deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await;
        verdict.unwrap();
        let seen = stub.seen();
        assert_eq!(seen.len(), 1, "nothing follows a read that found nobody");
        assert_hubspot_read(&seen[0]);
        assert_eq!(steps.len(), 1);
    }

    // Other answers to the read are judged like any answer, and stop the attempt.
    stub.script([reply(
        401,
        r#"{"status":"error","message":"Authentication credentials not found.","category":"INVALID_AUTHENTICATION"}"#,
    )]);
    assert_permanent(&deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await.0, "Authentication credentials not found.");
    stub.script([reply(404, r#"{"status":"error","message":"Unknown path"}"#)]);
    assert_permanent(&deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await.0, "Unknown path");
    stub.script([hubspot_rate_limited()]);
    assert_retry(&deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await.0, Some(10.0), true);
    stub.script([reply(502, "")]);
    assert_retry(&deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await.0, None, false);
    assert_eq!(stub.seen().len(), 4);
    // And the removal itself.
    stub.script([
        hubspot_read("901"),
        reply(404, r#"{"status":"error","message":"List does not exist with ID 77.","category":"OBJECT_NOT_FOUND"}"#),
    ]);
    assert_permanent(&deliver(hubspot(&stub, "remove_from_list", json!({"id": "77"}))).await.0, "List does not exist with ID 77.");
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn hubspot_update_property_sets_the_rendered_value_in_the_upsert_alone() {
    let stub = Stub::start().await;
    stub.script([hubspot_upserted("512")]);
    let (verdict, steps) =
        deliver(hubspot(&stub, "update_property", json!({"id": "plan_tier", "value": "{{ payload.plan | upper }} via {{ event }}"}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "update_property touches no list");
    assert_hubspot_upsert(
        &seen[0],
        json!({"firstname": "Ada", "lastname": "Lovelace", "phone": PHONE, "plan_tier": "PRO via user.created"}),
    );
    assert_steps_redacted(&steps, HUBSPOT_TOKEN, "authorization");
}

#[tokio::test]
async fn hubspot_a_custom_mapping_replaces_the_default_properties() {
    let stub = Stub::start().await;
    stub.script([hubspot_upserted("512"), reply(200, "{}")]);
    let mapping = json!({"schema_version": 1, "fields": [
        {"dest": "email", "source": {"type": "path", "value": "payload.contact.email"}, "transforms": ["trim", "lower"]},
        {"dest": "firstname", "source": {"type": "path", "value": "payload.contact.given"}},
        {"dest": "jobtitle", "source": {"type": "path", "value": "payload.contact.title"}, "transforms": ["upper"]},
        {"dest": "numemployees", "source": {"type": "path", "value": "payload.company.size"}, "transforms": ["to_string"]},
        {"dest": "hs_lead_status", "source": {"type": "literal", "value": "NEW"}},
        {"dest": "lastname", "source": {"type": "path", "value": "payload.contact.family"}}
    ]});
    let mut call = hubspot(&stub, "add_to_list", json!({"id": "1234", "mapping": mapping}));
    call.payload = json!({"contact": {"email": "  Ada@Example.COM ", "given": "Ada", "title": "Analyst"}, "company": {"size": 42},
                          "email": "other@example.com", "phone": "+1 555 0100"});
    let (verdict, _) = deliver(call).await;
    verdict.unwrap();
    let seen = stub.seen();
    // Only mapped fields: no phone from the payload, and the missing last name is left out.
    assert_hubspot_upsert(&seen[0], json!({"firstname": "Ada", "jobtitle": "ANALYST", "numemployees": "42", "hs_lead_status": "NEW"}));
    assert_eq!(seen[1].line(), "PUT /crm/v3/lists/1234/memberships/add");
}

#[tokio::test]
async fn hubspot_errors_are_permanent_with_the_message_and_limits_wait_for_the_window() {
    let stub = Stub::start().await;
    let add = || json!({"id": "1234"});

    stub.script([reply(
        400,
        r#"{"status":"error","message":"Property values were not valid: Property \"plan_tier\" does not exist",
            "correlationId":"aeb5f871-7f07-4993-9211-075dc63e7cbf","category":"VALIDATION_ERROR"}"#,
    )]);
    assert_permanent(&deliver(hubspot(&stub, "add_to_list", add())).await.0, "Property values were not valid");
    assert_eq!(stub.seen().len(), 1, "no list change after a failed upsert");

    stub.script([reply(
        401,
        r#"{"status":"error","message":"Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            "correlationId":"3f1c8a52-0d6e-4b1f-a0c4-7e2d9b8a6c51","category":"INVALID_AUTHENTICATION"}"#,
    )]);
    assert_permanent(&deliver(hubspot(&stub, "add_to_list", add())).await.0, "Authentication credentials not found");
    assert_eq!(stub.seen().len(), 1);

    stub.script([
        hubspot_upserted("512"),
        reply(
            404,
            r#"{"status":"error","message":"List does not exist with ID 1234.","correlationId":"9d0e","category":"OBJECT_NOT_FOUND"}"#,
        ),
    ]);
    assert_permanent(&deliver(hubspot(&stub, "add_to_list", add())).await.0, "List does not exist with ID 1234.");
    assert_eq!(stub.seen().len(), 2);

    // 429: the window's length once nothing remains in it, at either step.
    stub.script([hubspot_rate_limited()]);
    assert_retry(&deliver(hubspot(&stub, "add_to_list", add())).await.0, Some(10.0), true);
    assert_eq!(stub.seen().len(), 1);
    stub.script([hubspot_read("512"), hubspot_rate_limited()]);
    assert_retry(&deliver(hubspot(&stub, "remove_from_list", add())).await.0, Some(10.0), true);
    assert_eq!(stub.seen().len(), 2);

    stub.script([reply(502, "")]);
    assert_retry(&deliver(hubspot(&stub, "update_property", json!({"id": "p", "value": "v"}))).await.0, None, false);
    stub.script([hubspot_upserted("512"), reply(503, r#"{"status":"error","message":"Service unavailable"}"#)]);
    assert_retry(&deliver(hubspot(&stub, "add_to_list", add())).await.0, None, false);
    // A 2xx upsert that names no record cannot be joined to a list: try again later.
    stub.script([reply(200, r#"{"status":"COMPLETE","results":[]}"#)]);
    assert_retry(&deliver(hubspot(&stub, "add_to_list", add())).await.0, None, false);
    assert_eq!(stub.seen().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Salesforce

const SALESFORCE_TOKEN: &str = "00D5g000004XyZq!AQ4AQFakeSessionToken.qWeRtY123";
const CONTACT_ID: &str = "0035g00000XyZAbAAN";
const CAMPAIGN_ID: &str = "7015g000000AbCdAAK";
const MEMBER_ID: &str = "00v5g00000AbCdEAAV";

fn salesforce(stub: &Stub, action: &'static str, action_config: Value) -> Call<'static> {
    Call {
        kind: "salesforce",
        config: json!({"instance_url": stub.base}),
        credentials: json!({"access_token": SALESFORCE_TOKEN}),
        action,
        action_config,
        payload: person(),
    }
}

fn sf_created(id: &str) -> Reply {
    reply(201, &format!(r#"{{"id":"{id}","success":true,"errors":[],"created":true}}"#))
}

fn sf_error(status: u16, code: &str, message: &str) -> Reply {
    reply(status, &json!([{"message": message, "errorCode": code, "fields": []}]).to_string())
}

fn sf_default_fields() -> Value {
    json!({"Email": EMAIL, "FirstName": "Ada", "LastName": "Lovelace", "Phone": PHONE})
}

fn assert_sf_auth(r: &Seen) {
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SALESFORCE_TOKEN}").as_str()), "{}", r.line());
}

fn assert_sf_upsert(r: &Seen, path: &str, fields: Value) {
    assert_eq!(r.line(), format!("PATCH {path}"));
    assert_sf_auth(r);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), fields);
}

/// The SOQL of a `GET /query?q=` request.
fn soql(r: &Seen) -> String {
    let (path, query) = r.uri.split_once('?').expect("a query string");
    assert_eq!(path, "/services/data/v60.0/query");
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].0, "q");
    pairs[0].1.clone()
}

const SF_UPSERT: &str = "/services/data/v60.0/sobjects/Contact/Email__c/ada@example.com";

#[tokio::test]
async fn salesforce_add_to_campaign_upserts_by_external_id_then_creates_the_member() {
    let stub = Stub::start().await;
    stub.script([sf_created(CONTACT_ID), sf_created(MEMBER_ID)]);
    let (verdict, steps) = deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2, "a 201 names the record: no lookup");
    assert_sf_upsert(&seen[0], SF_UPSERT, sf_default_fields());
    assert_eq!(seen[1].line(), "POST /services/data/v60.0/sobjects/CampaignMember");
    assert_sf_auth(&seen[1]);
    assert_eq!(seen[1].json(), json!({"CampaignId": CAMPAIGN_ID, "ContactId": CONTACT_ID}));
    assert_steps_redacted(&steps, SALESFORCE_TOKEN, "authorization");
}

#[tokio::test]
async fn salesforce_an_update_without_an_id_is_looked_up_before_joining_the_campaign() {
    let stub = Stub::start().await;
    // Older API versions answer an update with 204 and no body: the record is fetched by its external id.
    stub.script([
        reply(204, ""),
        reply(
            200,
            &format!(
                r#"{{"attributes":{{"type":"Contact","url":"/services/data/v60.0/sobjects/Contact/{CONTACT_ID}"}},"Id":"{CONTACT_ID}"}}"#
            ),
        ),
        sf_created(MEMBER_ID),
    ]);
    let (verdict, steps) = deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert_sf_upsert(&seen[0], SF_UPSERT, sf_default_fields());
    assert_eq!(seen[1].line(), format!("GET {SF_UPSERT}?fields=Id"));
    assert_sf_auth(&seen[1]);
    assert!(seen[1].body.is_empty());
    assert_eq!(seen[2].line(), "POST /services/data/v60.0/sobjects/CampaignMember");
    assert_eq!(seen[2].json(), json!({"CampaignId": CAMPAIGN_ID, "ContactId": CONTACT_ID}));
    assert_steps_redacted(&steps, SALESFORCE_TOKEN, "authorization");

    // Newer versions answer 200 with the id and created:false: no lookup.
    stub.script([reply(200, &format!(r#"{{"id":"{CONTACT_ID}","success":true,"errors":[],"created":false}}"#)), sf_created(MEMBER_ID)]);
    deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        [format!("PATCH {SF_UPSERT}"), "POST /services/data/v60.0/sobjects/CampaignMember".to_owned()]
    );
    assert_eq!(seen[1].json()["ContactId"], CONTACT_ID);

    // A lookup that names no record leaves nothing to join: try again later.
    stub.script([reply(204, ""), reply(200, r#"{"attributes":{"type":"Contact"}}"#)]);
    assert_retry(&deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0, None, false);
    assert_eq!(stub.seen().len(), 2);
    // A failed lookup is judged like any answer.
    stub.script([reply(204, ""), sf_error(404, "NOT_FOUND", "The requested resource does not exist")]);
    assert_permanent(
        &deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0,
        "The requested resource does not exist",
    );
}

#[tokio::test]
async fn salesforce_an_existing_campaign_member_is_success_and_other_member_errors_are_not() {
    let stub = Stub::start().await;
    stub.script([sf_created(CONTACT_ID), sf_error(400, "DUPLICATE_VALUE", "Already a campaign member.")]);
    deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0.unwrap();
    assert_eq!(stub.seen().len(), 2);

    stub.script([sf_created(CONTACT_ID), sf_error(400, "MALFORMED_ID", "Campaign ID: id value of incorrect type: 701bad")]);
    let (verdict, _) = deliver(salesforce(&stub, "add_to_campaign", json!({"id": "701bad"}))).await;
    assert_permanent(&verdict, "MALFORMED_ID: Campaign ID: id value of incorrect type: 701bad");
    assert_eq!(stub.seen()[1].json(), json!({"CampaignId": "701bad", "ContactId": CONTACT_ID}));

    stub.script([sf_created(CONTACT_ID), sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]);
    assert_retry(&deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0, Some(300.0), true);
    stub.script([sf_created(CONTACT_ID), reply(503, "")]);
    assert_retry(&deliver(salesforce(&stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}))).await.0, None, false);
}

/// A record found by its external id (`GET /sobjects/{object}/{field}/{value}?fields=Id`).
fn sf_record(id: &str) -> Reply {
    reply(200, &format!(r#"{{"attributes":{{"type":"Contact","url":"/services/data/v60.0/sobjects/Contact/{id}"}},"Id":"{id}"}}"#))
}

fn assert_sf_lookup(r: &Seen) {
    assert_eq!(r.line(), format!("GET {SF_UPSERT}?fields=Id"));
    assert_sf_auth(r);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn salesforce_remove_from_campaign_looks_the_record_up_finds_the_member_by_soql_then_deletes_it() {
    let stub = Stub::start().await;
    stub.script([
        sf_record(CONTACT_ID),
        reply(
            200,
            &format!(
                r#"{{"totalSize":1,"done":true,"records":[{{"attributes":{{"type":"CampaignMember",
                   "url":"/services/data/v60.0/sobjects/CampaignMember/{MEMBER_ID}"}},"Id":"{MEMBER_ID}"}}]}}"#
            ),
        ),
        reply(204, ""),
    ]);
    let (verdict, steps) = deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    // A lookup, not an upsert: nothing is created or written.
    assert_sf_lookup(&seen[0]);
    assert_eq!(seen[1].method, "GET");
    let q = format!("SELECT+Id+FROM+CampaignMember+WHERE+CampaignId+%3D+%27{CAMPAIGN_ID}%27+AND+ContactId+%3D+%27{CONTACT_ID}%27");
    assert_eq!(seen[1].uri, format!("/services/data/v60.0/query?q={q}"));
    assert_eq!(soql(&seen[1]), format!("SELECT Id FROM CampaignMember WHERE CampaignId = '{CAMPAIGN_ID}' AND ContactId = '{CONTACT_ID}'"));
    assert_sf_auth(&seen[1]);
    assert_eq!(seen[2].line(), format!("DELETE /services/data/v60.0/sobjects/CampaignMember/{MEMBER_ID}"));
    assert_sf_auth(&seen[2]);
    assert!(seen[2].body.is_empty());
    assert_steps_redacted(&steps, SALESFORCE_TOKEN, "authorization");
}

#[tokio::test]
async fn salesforce_remove_from_campaign_of_an_unknown_person_succeeds_and_sends_nothing_else() {
    let stub = Stub::start().await;
    stub.script([sf_error(404, "NOT_FOUND", "The requested resource does not exist")]);
    let (verdict, steps) = deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "nothing follows a lookup that found nobody");
    assert_sf_lookup(&seen[0]);
    assert_eq!(steps.len(), 1);

    // A 404 because the external-id field does not exist is a misconfiguration, not an absence.
    stub.script([sf_error(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: Email__c")]);
    assert_permanent(
        &deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0,
        "Provided external ID field does not exist",
    );
    // Other answers to the lookup are judged like any answer and stop the attempt.
    stub.script([sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]);
    assert_retry(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, Some(300.0), true);
    stub.script([reply(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#)]);
    assert_permanent(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, "INVALID_SESSION_ID");
    stub.script([reply(
        300,
        r#"["/services/data/v60.0/sobjects/Contact/0035g00000AAAAAAAA","/services/data/v60.0/sobjects/Contact/0035g00000BBBBBBBB"]"#,
    )]);
    assert_permanent(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, "more than one record");
    stub.script([reply(503, "")]);
    assert_retry(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, None, false);
    // A found record without its Id: try again later.
    stub.script([reply(200, r#"{"attributes":{"type":"Contact"}}"#)]);
    assert_retry(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, None, false);
    let seen = stub.seen();
    assert_eq!(seen.len(), 6);
    assert!(seen.iter().all(|r| r.method == "GET"), "{:?}", seen.iter().map(Seen::line).collect::<Vec<_>>());
}

#[tokio::test]
async fn salesforce_removing_a_non_member_is_success_and_campaign_ids_are_quoted() {
    let stub = Stub::start().await;
    let none = || reply(200, r#"{"totalSize":0,"done":true,"records":[]}"#);
    stub.script([sf_record(CONTACT_ID), none()]);
    deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0.unwrap();
    assert_eq!(stub.seen().len(), 2, "nothing to delete");

    // Deleted in between: the aim is met.
    stub.script([
        sf_record(CONTACT_ID),
        reply(200, &format!(r#"{{"totalSize":1,"done":true,"records":[{{"Id":"{MEMBER_ID}"}}]}}"#)),
        sf_error(404, "ENTITY_IS_DELETED", "entity is deleted"),
    ]);
    deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0.unwrap();
    assert_eq!(stub.seen().len(), 3);

    // A campaign id cannot break out of its SOQL string literal.
    stub.script([sf_record(CONTACT_ID), none()]);
    deliver(salesforce(&stub, "remove_from_campaign", json!({"id": "x' OR Name != '"}))).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(
        soql(&seen[1]),
        format!(r"SELECT Id FROM CampaignMember WHERE CampaignId = 'x\' OR Name != \'' AND ContactId = '{CONTACT_ID}'")
    );

    // Failures of the query and the delete are judged like any answer.
    stub.script([sf_record(CONTACT_ID), sf_error(400, "MALFORMED_QUERY", "unexpected token: OR")]);
    assert_permanent(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, "unexpected token: OR");
    stub.script([
        sf_record(CONTACT_ID),
        reply(200, &format!(r#"{{"totalSize":1,"done":true,"records":[{{"Id":"{MEMBER_ID}"}}]}}"#)),
        reply(500, ""),
    ]);
    assert_retry(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, None, false);
    stub.script([sf_record(CONTACT_ID), sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]);
    assert_retry(&deliver(salesforce(&stub, "remove_from_campaign", json!({"id": CAMPAIGN_ID}))).await.0, Some(300.0), true);
}

#[tokio::test]
async fn salesforce_update_property_sets_the_field_in_the_upsert_alone() {
    let stub = Stub::start().await;
    stub.script([sf_created(CONTACT_ID)]);
    let (verdict, steps) =
        deliver(salesforce(&stub, "update_property", json!({"field": "LeadSource", "value": "Switchyard ({{ payload.plan }})"}))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "update_property touches no campaign");
    let mut fields = sf_default_fields();
    fields["LeadSource"] = json!("Switchyard (pro)");
    assert_sf_upsert(&seen[0], SF_UPSERT, fields);
    assert_steps_redacted(&steps, SALESFORCE_TOKEN, "authorization");
}

#[tokio::test]
async fn salesforce_a_custom_mapping_and_lead_settings_shape_the_upsert_and_the_member() {
    let stub = Stub::start().await;
    let config = json!({"instance_url": stub.base, "api_version": "v59.0", "object": "Lead", "external_id_field": "Signup_Email__c"});
    let mapping = json!({"schema_version": 1, "fields": [
        {"dest": "email", "source": {"type": "path", "value": "payload.email"}, "transforms": ["trim", "lower"]},
        {"dest": "LastName", "source": {"type": "path", "value": "payload.last_name"}, "transforms": ["upper"]},
        {"dest": "Company", "source": {"type": "path", "value": "payload.org.name"}},
        {"dest": "LeadSource", "source": {"type": "literal", "value": "Switchyard"}},
        {"dest": "Title", "source": {"type": "path", "value": "payload.title"}}
    ]});
    stub.script([sf_created("00Q5g00000LeAdAAA"), sf_created(MEMBER_ID)]);
    let (verdict, steps) = deliver(Call {
        kind: "salesforce",
        config: config.clone(),
        credentials: json!({"access_token": SALESFORCE_TOKEN}),
        action: "add_to_campaign",
        action_config: json!({"id": CAMPAIGN_ID, "mapping": mapping}),
        payload: json!({"email": " Ada@Example.COM", "last_name": "Lovelace", "first_name": "Ada",
                        "org": {"name": "Analytical Engines Ltd"}}),
    })
    .await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_sf_upsert(
        &seen[0],
        "/services/data/v59.0/sobjects/Lead/Signup_Email__c/ada@example.com",
        json!({"Email": EMAIL, "LastName": "LOVELACE", "Company": "Analytical Engines Ltd", "LeadSource": "Switchyard"}),
    );
    assert_eq!(seen[1].line(), "POST /services/data/v59.0/sobjects/CampaignMember");
    assert_eq!(seen[1].json(), json!({"CampaignId": CAMPAIGN_ID, "LeadId": "00Q5g00000LeAdAAA"}));
    assert_steps_redacted(&steps, SALESFORCE_TOKEN, "authorization");

    // A Lead needs a company: without one mapped, the payload's or a placeholder.
    stub.script([sf_created("00Q5g00000LeAdAAA")]);
    let (verdict, _) = deliver(Call {
        kind: "salesforce",
        config,
        credentials: json!({"access_token": SALESFORCE_TOKEN}),
        action: "update_property",
        action_config: json!({"field": "Rating", "value": "Hot"}),
        payload: person(),
    })
    .await;
    verdict.unwrap();
    let seen = stub.seen();
    let mut fields = sf_default_fields();
    fields["Company"] = json!("[not provided]");
    fields["Rating"] = json!("Hot");
    assert_sf_upsert(&seen[0], "/services/data/v59.0/sobjects/Lead/Signup_Email__c/ada@example.com", fields);
}

#[tokio::test]
async fn salesforce_the_api_limit_is_a_wait_and_other_errors_are_permanent_with_their_message() {
    let stub = Stub::start().await;
    let call = |stub: &Stub| salesforce(stub, "add_to_campaign", json!({"id": CAMPAIGN_ID}));

    // The org's daily limit answers 403, which is a rate limit, not a refusal: check back in 5 minutes.
    stub.script([sf_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")]);
    let (verdict, _) = deliver(call(&stub)).await;
    assert_retry(&verdict, Some(300.0), true);
    assert!(verdict.unwrap_err().error.unwrap().contains("REQUEST_LIMIT_EXCEEDED"));
    assert_eq!(stub.seen().len(), 1);
    // Another 403 is a refusal.
    stub.script([sf_error(403, "INSUFFICIENT_ACCESS", "insufficient access rights on object id")]);
    assert_permanent(&deliver(call(&stub)).await.0, "INSUFFICIENT_ACCESS: insufficient access rights on object id");
    // An expired session is permanent for now (no token refresh yet).
    stub.script([reply(401, r#"[{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}]"#)]);
    assert_permanent(&deliver(call(&stub)).await.0, "INVALID_SESSION_ID: Session expired or invalid");
    stub.script([sf_error(400, "INVALID_EMAIL_ADDRESS", "Email: invalid email address: ada@example")]);
    assert_permanent(&deliver(call(&stub)).await.0, "Email: invalid email address");
    stub.script([sf_error(404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: Email__c")]);
    assert_permanent(&deliver(call(&stub)).await.0, "Provided external ID field does not exist");
    stub.script([reply(
        300,
        r#"["/services/data/v60.0/sobjects/Contact/0035g00000AAAAAAAA","/services/data/v60.0/sobjects/Contact/0035g00000BBBBBBBB"]"#,
    )]);
    assert_permanent(&deliver(call(&stub)).await.0, "more than one record");
    assert_eq!(stub.seen().len(), 5, "nothing follows a failed upsert");

    stub.script([sf_error(503, "SERVER_UNAVAILABLE", "Server unavailable")]);
    assert_retry(&deliver(call(&stub)).await.0, None, false);
    stub.script([reply(500, "")]);
    assert_retry(&deliver(salesforce(&stub, "update_property", json!({"field": "LeadSource", "value": "x"}))).await.0, None, false);
}

// ---------------------------------------------------------------------------------------------
// Intercom

const INTERCOM_TOKEN: &str = "dG9rOjAxMjM0NTY3XzE4OWFfNDZjYl85MmE1X2RlYWRiZWVmOjE6MA==";
const INTERCOM_CONTACT: &str = "6657adc96abd0167d9419d1a";

fn intercom(stub: &Stub, action: &'static str, tag: &str) -> Call<'static> {
    Call {
        kind: "intercom",
        config: json!({"base_url": stub.base}),
        credentials: json!({"access_token": INTERCOM_TOKEN}),
        action,
        action_config: json!({"id": tag}),
        payload: person(),
    }
}

fn intercom_contact() -> Reply {
    reply(
        200,
        &format!(
            r#"{{"type":"contact","id":"{INTERCOM_CONTACT}","workspace_id":"ecahpwf5","external_id":null,"role":"user",
               "email":"{EMAIL}","phone":"{PHONE}","name":"Ada Lovelace","created_at":1795453200,"updated_at":1795453200}}"#
        ),
    )
}

fn intercom_conflict() -> Reply {
    reply(
        409,
        &format!(
            r#"{{"type":"error.list","request_id":"000s3ikb1hl0cm8lr5g0","errors":[{{"code":"conflict",
               "message":"A contact matching those details already exists with id={INTERCOM_CONTACT}"}}]}}"#
        ),
    )
}

fn intercom_error(status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        &json!({"type": "error.list", "request_id": "000ru1d8e2ljqdtv1de0", "errors": [{"code": code, "message": message}]}).to_string(),
    )
}

fn intercom_tag() -> Reply {
    reply(200, r#"{"type":"tag","id":"81","name":"Newsletter"}"#)
}

fn assert_intercom_headers(r: &Seen) {
    assert_eq!(r.header("authorization"), Some(format!("Bearer {INTERCOM_TOKEN}").as_str()), "{}", r.line());
    assert_eq!(r.header("intercom-version"), Some("2.11"), "{}", r.line());
}

fn assert_intercom_create(r: &Seen) {
    assert_eq!(r.line(), "POST /contacts");
    assert_intercom_headers(r);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"role": "user", "email": EMAIL, "name": "Ada Lovelace", "phone": PHONE}));
}

#[tokio::test]
async fn intercom_add_tag_creates_the_contact_then_tags_it() {
    let stub = Stub::start().await;
    stub.script([intercom_contact(), intercom_tag()]);
    let (verdict, steps) = deliver(intercom(&stub, "add_tag", "81")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_intercom_create(&seen[0]);
    assert_eq!(seen[1].line(), format!("POST /contacts/{INTERCOM_CONTACT}/tags"));
    assert_intercom_headers(&seen[1]);
    assert_eq!(seen[1].json(), json!({"id": "81"}));
    assert_steps_redacted(&steps, INTERCOM_TOKEN, "authorization");
}

#[tokio::test]
async fn intercom_an_existing_contact_is_updated_under_the_id_the_409_names() {
    let stub = Stub::start().await;
    stub.script([intercom_conflict(), intercom_contact(), intercom_tag()]);
    let (verdict, steps) = deliver(intercom(&stub, "add_tag", "81")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert_intercom_create(&seen[0]);
    assert_eq!(seen[1].line(), format!("PUT /contacts/{INTERCOM_CONTACT}"));
    assert_intercom_headers(&seen[1]);
    // The role is only set at creation.
    assert_eq!(seen[1].json(), json!({"email": EMAIL, "name": "Ada Lovelace", "phone": PHONE}));
    assert_eq!(seen[2].line(), format!("POST /contacts/{INTERCOM_CONTACT}/tags"));
    assert_eq!(seen[2].json(), json!({"id": "81"}));
    assert_eq!(steps.iter().map(|s| s.status).collect::<Vec<_>>(), [Some(409), Some(200), Some(200)]);
    assert_steps_redacted(&steps, INTERCOM_TOKEN, "authorization");

    // A failed update stops there.
    stub.script([intercom_conflict(), intercom_error(400, "parameter_invalid", "Phone number is invalid")]);
    assert_permanent(&deliver(intercom(&stub, "add_tag", "81")).await.0, "Phone number is invalid");
    assert_eq!(stub.seen().len(), 2);
    // A conflict that names no contact cannot be resolved, now or later: permanent, with Intercom's message.
    stub.script([intercom_error(409, "conflict", "A contact matching those details already exists")]);
    assert_permanent(
        &deliver(intercom(&stub, "add_tag", "81")).await.0,
        "Intercom reported a conflict without the contact's id: A contact matching those details already exists",
    );
    assert_eq!(stub.seen().len(), 1);
}

/// Intercom's answer to `POST /contacts/search`: the contacts found (none, or the one with the address).
fn intercom_found(found: bool) -> Reply {
    let data = if found {
        format!(
            r#"[{{"type":"contact","id":"{INTERCOM_CONTACT}","workspace_id":"ecahpwf5","role":"user","email":"{EMAIL}",
                 "name":"Ada Lovelace","created_at":1767000000,"updated_at":1795453200}}]"#
        )
    } else {
        "[]".to_owned()
    };
    let total = usize::from(found);
    reply(
        200,
        &format!(
            r#"{{"type":"list","data":{data},"total_count":{total},
               "pages":{{"type":"pages","page":1,"per_page":50,"total_pages":{total}}}}}"#
        ),
    )
}

fn assert_intercom_search(r: &Seen) {
    assert_eq!(r.line(), "POST /contacts/search");
    assert_intercom_headers(r);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"query": {"field": "email", "operator": "=", "value": EMAIL}}));
}

#[tokio::test]
async fn intercom_remove_tag_searches_for_the_contact_then_deletes_the_tag() {
    let stub = Stub::start().await;
    stub.script([intercom_found(true), intercom_tag()]);
    let (verdict, steps) = deliver(intercom(&stub, "remove_tag", "81")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    // A search, not a create: nothing is created or written.
    assert_intercom_search(&seen[0]);
    assert_eq!(seen[1].line(), format!("DELETE /contacts/{INTERCOM_CONTACT}/tags/81"));
    assert_intercom_headers(&seen[1]);
    assert!(seen[1].body.is_empty());
    assert_steps_redacted(&steps, INTERCOM_TOKEN, "authorization");

    // The tag was not on the contact: success.
    stub.script([intercom_found(true), intercom_error(404, "not_found", "Resource Not Found")]);
    deliver(intercom(&stub, "remove_tag", "81")).await.0.unwrap();
    let seen = stub.seen();
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        ["POST /contacts/search".to_owned(), format!("DELETE /contacts/{INTERCOM_CONTACT}/tags/81")]
    );

    stub.script([intercom_found(true), intercom_error(401, "unauthorized", "Access Token Invalid")]);
    assert_permanent(&deliver(intercom(&stub, "remove_tag", "81")).await.0, "Access Token Invalid");
}

#[tokio::test]
async fn intercom_remove_tag_of_an_unknown_person_succeeds_and_sends_nothing_else() {
    let stub = Stub::start().await;
    stub.script([intercom_found(false)]);
    let (verdict, steps) = deliver(intercom(&stub, "remove_tag", "81")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1, "nothing follows a search that found nobody");
    assert_intercom_search(&seen[0]);
    assert_eq!(steps.len(), 1);

    // A refused search stops the attempt.
    stub.script([intercom_error(401, "unauthorized", "Access Token Invalid")]);
    assert_permanent(&deliver(intercom(&stub, "remove_tag", "81")).await.0, "Access Token Invalid");
    stub.script([intercom_error(500, "server_error", "Server Error")]);
    assert_retry(&deliver(intercom(&stub, "remove_tag", "81")).await.0, None, false);
    assert_eq!(stub.seen().len(), 2);
}

#[tokio::test]
async fn intercom_errors_carry_the_message_and_limits_wait_until_the_reset_epoch() {
    let stub = Stub::start().await;
    stub.script([intercom_error(401, "unauthorized", "Access Token Invalid")]);
    assert_permanent(&deliver(intercom(&stub, "add_tag", "81")).await.0, "Access Token Invalid");
    assert_eq!(stub.seen().len(), 1, "nothing is tagged after a failed create");

    stub.script([intercom_contact(), intercom_error(404, "not_found", "Tag not found")]);
    assert_permanent(&deliver(intercom(&stub, "add_tag", "999")).await.0, "Tag not found");

    let limited = || {
        intercom_error(429, "rate_limit_exceeded", "Exceeded rate limit of 10000 in 1_minute")
            .header("X-RateLimit-Limit", "10000")
            .header("X-RateLimit-Remaining", "0")
            .header("X-RateLimit-Reset", &epoch_in(30))
    };
    stub.script([limited()]);
    assert_retry(&deliver(intercom(&stub, "add_tag", "81")).await.0, Some(30.0), true);
    stub.script([intercom_conflict(), limited()]);
    assert_retry(&deliver(intercom(&stub, "add_tag", "81")).await.0, Some(30.0), true);
    stub.script([intercom_found(true), limited()]);
    assert_retry(&deliver(intercom(&stub, "remove_tag", "81")).await.0, Some(30.0), true);
    stub.script([limited()]);
    assert_retry(&deliver(intercom(&stub, "remove_tag", "81")).await.0, Some(30.0), true);

    stub.script([intercom_error(500, "server_error", "Server Error")]);
    assert_retry(&deliver(intercom(&stub, "add_tag", "81")).await.0, None, false);
    stub.script([intercom_found(true), reply(502, "")]);
    assert_retry(&deliver(intercom(&stub, "remove_tag", "81")).await.0, None, false);
}

// ---------------------------------------------------------------------------------------------
// ActiveCampaign

const AC_KEY: &str = "4f2a9c0e7b1d3a5f6e8c9b0a1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4";

fn activecampaign(stub: &Stub, action: &'static str, id: &str) -> Call<'static> {
    Call {
        kind: "activecampaign",
        config: json!({"base_url": stub.base}),
        credentials: json!({"api_key": AC_KEY}),
        action,
        action_config: json!({"id": id}),
        payload: person(),
    }
}

fn ac_synced(id: Value) -> Reply {
    reply(
        201,
        &json!({"fieldValues": [], "contact": {"email": EMAIL, "cdate": "2026-11-23T11:00:00-06:00", "udate": "2026-11-23T11:00:00-06:00",
                "orgid": "", "links": [], "id": id, "organization": ""}})
        .to_string(),
    )
}

fn ac_contact_tags() -> Reply {
    reply(
        200,
        r#"{"contactTags":[
             {"contact":"113","tag":"3","cdate":"2026-01-02T10:00:00-06:00",
              "links":{"tag":"https://x.api-us1.com/api/3/contactTags/54/tag"},"id":"54"},
             {"contact":"113","tag":"20","cdate":"2026-03-04T10:00:00-06:00",
              "links":{"tag":"https://x.api-us1.com/api/3/contactTags/55/tag"},"id":"55"}]}"#,
    )
}

fn assert_ac_sync(r: &Seen) {
    assert_eq!(r.line(), "POST /api/3/contact/sync");
    assert_eq!(r.header("api-token"), Some(AC_KEY));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"contact": {"email": EMAIL, "firstName": "Ada", "lastName": "Lovelace", "phone": PHONE}}));
}

/// ActiveCampaign's answer to `GET /api/3/contacts?email=`: the contacts with the address.
fn ac_found(id: Option<Value>) -> Reply {
    let contacts = match id {
        Some(id) => json!([{"cdate": "2026-01-02T10:00:00-06:00", "email": EMAIL, "phone": PHONE, "firstName": "Ada",
                            "lastName": "Lovelace", "orgid": "0", "id": id, "links": {}}]),
        None => json!([]),
    };
    let total = contacts.as_array().unwrap().len().to_string();
    reply(200, &json!({"scoreValues": [], "contacts": contacts, "meta": {"total": total, "page_input": {"email": EMAIL}}}).to_string())
}

const AC_FIND: &str = "GET /api/3/contacts?email=ada%40example.com";

fn assert_ac_find(r: &Seen) {
    assert_eq!(r.line(), AC_FIND);
    assert_eq!(r.header("api-token"), Some(AC_KEY));
    assert_eq!(r.header("authorization"), None);
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn activecampaign_add_to_list_syncs_the_contact_then_subscribes_it() {
    let stub = Stub::start().await;
    stub.script([ac_synced(json!("113")), reply(201, r#"{"contactList":{"contact":"113","list":"7","status":1,"id":"411"}}"#)]);
    let (verdict, steps) = deliver(activecampaign(&stub, "add_to_list", "7")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_ac_sync(&seen[0]);
    assert_eq!(seen[1].line(), "POST /api/3/contactLists");
    assert_eq!(seen[1].header("api-token"), Some(AC_KEY));
    assert_eq!(seen[1].json(), json!({"contactList": {"list": "7", "contact": "113", "status": 1}}));
    assert_steps_redacted(&steps, AC_KEY, "api-token");
}

#[tokio::test]
async fn activecampaign_remove_from_list_looks_the_contact_up_then_unsubscribes_it() {
    let stub = Stub::start().await;
    // The contact id may come back as a number: it is sent as text all the same.
    stub.script([ac_found(Some(json!(113))), reply(201, r#"{"contactList":{"contact":"113","list":"7","status":2,"id":"411"}}"#)]);
    let (verdict, steps) = deliver(activecampaign(&stub, "remove_from_list", "7")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    // A look-up, not a sync: nothing is created or written.
    assert_ac_find(&seen[0]);
    assert_eq!(seen[1].line(), "POST /api/3/contactLists");
    assert_eq!(seen[1].header("api-token"), Some(AC_KEY));
    assert_eq!(seen[1].json(), json!({"contactList": {"list": "7", "contact": "113", "status": 2}}));
    assert_steps_redacted(&steps, AC_KEY, "api-token");
}

#[tokio::test]
async fn activecampaign_removals_of_an_unknown_person_succeed_and_send_nothing_else() {
    let stub = Stub::start().await;
    for action in ["remove_from_list", "remove_tag"] {
        stub.script([ac_found(None)]);
        let (verdict, steps) = deliver(activecampaign(&stub, action, "7")).await;
        verdict.unwrap();
        let seen = stub.seen();
        assert_eq!(seen.len(), 1, "{action}: nothing follows a look-up that found nobody");
        assert_ac_find(&seen[0]);
        assert_eq!(steps.len(), 1);
        // An answer without contacts at all is the same.
        stub.script([reply(200, r#"{"meta":{"total":"0"}}"#)]);
        deliver(activecampaign(&stub, action, "7")).await.0.unwrap();
        assert_eq!(stub.seen().len(), 1);
        // A refused look-up stops the attempt.
        stub.script([reply(403, r#"{"message":"You do not have permission to access this resource"}"#)]);
        assert_permanent(&deliver(activecampaign(&stub, action, "7")).await.0, "You do not have permission");
        assert_eq!(stub.seen().len(), 1);
    }
}

#[tokio::test]
async fn activecampaign_add_tag_links_the_tag_to_the_synced_contact() {
    let stub = Stub::start().await;
    // The contact id may come back as a number: it is sent as text all the same.
    stub.script([
        ac_synced(json!(113)),
        reply(201, r#"{"contactTag":{"cdate":"2026-11-23T11:00:00-06:00","contact":"113","id":"55","tag":"20"}}"#),
    ]);
    let (verdict, steps) = deliver(activecampaign(&stub, "add_tag", "20")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 2);
    assert_ac_sync(&seen[0]);
    assert_eq!(seen[1].line(), "POST /api/3/contactTags");
    assert_eq!(seen[1].header("api-token"), Some(AC_KEY));
    assert_eq!(seen[1].json(), json!({"contactTag": {"contact": "113", "tag": "20"}}));
    assert_steps_redacted(&steps, AC_KEY, "api-token");
}

#[tokio::test]
async fn activecampaign_remove_tag_looks_the_contact_up_finds_the_link_then_deletes_it() {
    let stub = Stub::start().await;
    stub.script([ac_found(Some(json!("113"))), ac_contact_tags(), reply(200, "{}")]);
    let (verdict, steps) = deliver(activecampaign(&stub, "remove_tag", "20")).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 3);
    assert_ac_find(&seen[0]);
    assert_eq!(seen[1].line(), "GET /api/3/contacts/113/contactTags");
    assert_eq!(seen[1].header("api-token"), Some(AC_KEY));
    // The link of tag 20 (id 55), not the other tag's.
    assert_eq!(seen[2].line(), "DELETE /api/3/contactTags/55");
    assert_eq!(seen[2].header("api-token"), Some(AC_KEY));
    assert!(seen[2].body.is_empty());
    assert_steps_redacted(&steps, AC_KEY, "api-token");

    // Not tagged: nothing to delete.
    stub.script([ac_found(Some(json!("113"))), ac_contact_tags()]);
    deliver(activecampaign(&stub, "remove_tag", "21")).await.0.unwrap();
    assert_eq!(stub.seen().len(), 2);
    stub.script([ac_found(Some(json!("113"))), reply(200, r#"{"contactTags":[]}"#)]);
    deliver(activecampaign(&stub, "remove_tag", "20")).await.0.unwrap();
    assert_eq!(stub.seen().len(), 2);
    // Already gone: the aim is met.
    stub.script([
        ac_found(Some(json!("113"))),
        ac_contact_tags(),
        reply(404, r#"{"message":"No Result found for ContactTag with id 55"}"#),
    ]);
    deliver(activecampaign(&stub, "remove_tag", "20")).await.0.unwrap();
    assert_eq!(stub.seen().len(), 3);
}

#[tokio::test]
async fn activecampaign_errors_carry_the_title_and_limits_retry() {
    let stub = Stub::start().await;
    stub.script([reply(
        422,
        r#"{"errors":[{"title":"Contact Email Address is not valid.","detail":"","code":"email_invalid",
            "error":"must_be_valid_email_address","source":{"pointer":"/data/attributes/email"}}]}"#,
    )]);
    assert_permanent(&deliver(activecampaign(&stub, "add_to_list", "7")).await.0, "Contact Email Address is not valid.");
    assert_eq!(stub.seen().len(), 1, "nothing follows a failed sync");

    stub.script([ac_synced(json!("113")), reply(404, r#"{"message":"No Result found for List with id 999"}"#)]);
    assert_permanent(&deliver(activecampaign(&stub, "add_to_list", "999")).await.0, "No Result found for List with id 999");
    stub.script([
        ac_synced(json!("113")),
        reply(
            422,
            r#"{"errors":[{"title":"The related tag does not exist.","detail":"","code":"related_missing",
                "source":{"pointer":"/data/attributes/tag"}}]}"#,
        ),
    ]);
    assert_permanent(&deliver(activecampaign(&stub, "add_tag", "999")).await.0, "The related tag does not exist.");
    stub.script([
        ac_found(Some(json!("113"))),
        ac_contact_tags(),
        reply(403, r#"{"message":"You do not have permission to access this resource"}"#),
    ]);
    assert_permanent(&deliver(activecampaign(&stub, "remove_tag", "20")).await.0, "You do not have permission");

    stub.script([reply(429, r#"{"message":"Too Many Requests"}"#)]);
    assert_retry(&deliver(activecampaign(&stub, "add_tag", "20")).await.0, None, true);
    stub.script([ac_found(Some(json!("113"))), reply(429, "").header("Retry-After", "2")]);
    assert_retry(&deliver(activecampaign(&stub, "remove_from_list", "7")).await.0, Some(2.0), true);
    stub.script([ac_found(Some(json!("113"))), reply(500, "")]);
    assert_retry(&deliver(activecampaign(&stub, "remove_tag", "20")).await.0, None, false);
    stub.script([reply(503, "")]);
    assert_retry(&deliver(activecampaign(&stub, "add_to_list", "7")).await.0, None, false);
    // A sync answer without a contact id: nothing to subscribe yet.
    stub.script([reply(200, r#"{"fieldValues":[]}"#)]);
    assert_retry(&deliver(activecampaign(&stub, "add_to_list", "7")).await.0, None, false);
    assert_eq!(stub.seen().len(), 14);
}

// ---------------------------------------------------------------------------------------------
// Zoom

const ZOOM_TOKEN: &str = "eyJzdiI6IjAwMDAwMSIsImFsZyI6IkhTNTEyIn0.eyJhdWQiOiJodHRwczovL29hdXRoLnpvb20udXMifQ.c2lnbmF0dXJl";

fn zoom(stub: &Stub, action: &'static str, id: Value) -> Call<'static> {
    Call {
        kind: "zoom",
        config: json!({"base_url": stub.base}),
        credentials: json!({"access_token": ZOOM_TOKEN}),
        action,
        action_config: json!({"id": id}),
        payload: person(),
    }
}

fn zoom_registered(id: u64) -> Reply {
    reply(
        201,
        &format!(
            r#"{{"id":{id},"join_url":"https://example.zoom.us/w/{id}?tk=abc","registrant_id":"9tboDiHUQAeOnbmudzWa5g",
               "start_time":"2026-11-30T17:00:00Z","topic":"Engines","occurrences":[]}}"#
        ),
    )
}

#[tokio::test]
async fn zoom_add_meeting_registrant_posts_the_person() {
    let stub = Stub::start().await;
    stub.script([zoom_registered(85746065)]);
    // Meeting ids are numbers.
    let (verdict, steps) = deliver(zoom(&stub, "add_meeting_registrant", json!(85746065))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].line(), "POST /v2/meetings/85746065/registrants");
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {ZOOM_TOKEN}").as_str()));
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].json(), json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace"}));
    assert_steps_redacted(&steps, ZOOM_TOKEN, "authorization");
}

#[tokio::test]
async fn zoom_add_webinar_registrant_posts_the_person_with_a_first_name_always() {
    let stub = Stub::start().await;
    stub.script([zoom_registered(81234567890)]);
    let (verdict, steps) = deliver(zoom(&stub, "add_webinar_registrant", json!("81234567890"))).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), "POST /v2/webinars/81234567890/registrants");
    assert_eq!(seen[0].header("authorization"), Some(format!("Bearer {ZOOM_TOKEN}").as_str()));
    assert_eq!(seen[0].json(), json!({"email": EMAIL, "first_name": "Ada", "last_name": "Lovelace"}));
    assert_steps_redacted(&steps, ZOOM_TOKEN, "authorization");

    // Zoom requires a first name: without one, the e-mail's local part.
    stub.script([zoom_registered(81234567890)]);
    let mut call = zoom(&stub, "add_webinar_registrant", json!("81234567890"));
    call.payload = json!({"email": "grace.hopper@example.com"});
    deliver(call).await.0.unwrap();
    assert_eq!(stub.seen()[0].json(), json!({"email": "grace.hopper@example.com", "first_name": "grace.hopper"}));
}

#[tokio::test]
async fn zoom_errors_carry_the_message_and_limits_retry() {
    let stub = Stub::start().await;
    stub.script([reply(404, r#"{"code":3001,"message":"Meeting does not exist: 85746065."}"#)]);
    assert_permanent(&deliver(zoom(&stub, "add_meeting_registrant", json!(85746065))).await.0, "Meeting does not exist: 85746065.");
    stub.script([reply(400, r#"{"code":300,"message":"Validation Failed.","errors":[{"field":"email","message":"Invalid field."}]}"#)]);
    assert_permanent(&deliver(zoom(&stub, "add_webinar_registrant", json!(812))).await.0, "Validation Failed.");
    stub.script([reply(401, r#"{"code":124,"message":"Invalid access token."}"#)]);
    assert_permanent(&deliver(zoom(&stub, "add_meeting_registrant", json!(85746065))).await.0, "Invalid access token.");
    stub.script([reply(
        429,
        r#"{"code":429,"message":"You have reached the maximum per-second rate limit for this API. Try again later."}"#,
    )
    .header("X-RateLimit-Category", "Light")
    .header("X-RateLimit-Type", "QPS")]);
    assert_retry(&deliver(zoom(&stub, "add_webinar_registrant", json!(812))).await.0, None, true);
    stub.script([reply(500, r#"{"code":500,"message":"Internal Error"}"#)]);
    assert_retry(&deliver(zoom(&stub, "add_meeting_registrant", json!(85746065))).await.0, None, false);
    assert_eq!(stub.seen().len(), 5);
}

// ---------------------------------------------------------------------------------------------
// Every connector

/// One call per action of every CRM connector, with the given payload and mapping.
fn every_action(stub: &Stub, payload: Value, mapping: Option<Value>) -> Vec<Call<'static>> {
    let base = json!({"base_url": stub.base});
    let token = |t: &str| json!({"access_token": t});
    let cases: Vec<(&'static str, Value, Value, &'static str, Value)> = vec![
        ("hubspot", base.clone(), token(HUBSPOT_TOKEN), "add_to_list", json!({"id": "1"})),
        ("hubspot", base.clone(), token(HUBSPOT_TOKEN), "remove_from_list", json!({"id": "1"})),
        ("hubspot", base.clone(), token(HUBSPOT_TOKEN), "update_property", json!({"id": "p", "value": "v"})),
        ("salesforce", json!({"instance_url": stub.base}), token(SALESFORCE_TOKEN), "add_to_campaign", json!({"id": CAMPAIGN_ID})),
        ("salesforce", json!({"instance_url": stub.base}), token(SALESFORCE_TOKEN), "remove_from_campaign", json!({"id": CAMPAIGN_ID})),
        ("salesforce", json!({"instance_url": stub.base}), token(SALESFORCE_TOKEN), "update_property", json!({"field": "F", "value": "v"})),
        ("intercom", base.clone(), token(INTERCOM_TOKEN), "add_tag", json!({"id": "81"})),
        ("intercom", base.clone(), token(INTERCOM_TOKEN), "remove_tag", json!({"id": "81"})),
        ("activecampaign", base.clone(), json!({"api_key": AC_KEY}), "add_to_list", json!({"id": "7"})),
        ("activecampaign", base.clone(), json!({"api_key": AC_KEY}), "remove_from_list", json!({"id": "7"})),
        ("activecampaign", base.clone(), json!({"api_key": AC_KEY}), "add_tag", json!({"id": "20"})),
        ("activecampaign", base.clone(), json!({"api_key": AC_KEY}), "remove_tag", json!({"id": "20"})),
        ("zoom", base.clone(), token(ZOOM_TOKEN), "add_meeting_registrant", json!({"id": "1"})),
        ("zoom", base, token(ZOOM_TOKEN), "add_webinar_registrant", json!({"id": "1"})),
    ];
    cases
        .into_iter()
        .map(|(kind, config, credentials, action, mut action_config)| {
            if let Some(m) = &mapping {
                action_config["mapping"] = m.clone();
            }
            Call { kind, config, credentials, action, action_config, payload: payload.clone() }
        })
        .collect()
}

#[tokio::test]
async fn every_action_fails_permanently_without_an_email_and_sends_nothing() {
    let stub = Stub::start().await;
    let calls = every_action(&stub, json!({"first_name": "Ada", "last_name": "Lovelace", "name": "Ada Lovelace", "id": "u_42"}), None);
    assert_eq!(calls.len(), 14);
    for call in calls {
        let (kind, action) = (call.kind, call.action);
        let (verdict, steps) = deliver(call).await;
        assert_permanent(&verdict, "no e-mail address");
        assert!(steps.is_empty(), "{kind} {action} sent a request");
    }
    // A mapping whose email is not an address is refused the same way.
    let mapping = json!({"schema_version": 1, "fields": [{"dest": "email", "source": {"type": "path", "value": "payload.name"}}]});
    for call in every_action(&stub, person(), Some(mapping)) {
        let (kind, action) = (call.kind, call.action);
        let (verdict, steps) = deliver(call).await;
        assert_permanent(&verdict, "is not an e-mail address");
        assert!(steps.is_empty(), "{kind} {action} sent a request");
    }
    assert!(stub.seen().is_empty());
}
