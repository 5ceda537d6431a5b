//! Contract tests for the chat destinations: Slack and Discord. Each runs the connector against
//! a loopback stub that answers as the vendor documents, and checks what was sent and how each
//! answer was judged.

mod support;

use serde_json::json;
use support::*;

const SLACK_TOKEN: &str = "xoxb-1111-2222-secretvalue";

fn slack(stub: &Stub, action_config: serde_json::Value) -> Call<'static> {
    Call {
        kind: "slack",
        config: json!({"base_url": stub.base}),
        credentials: json!({"access_token": SLACK_TOKEN}),
        action: "send_message",
        action_config,
        payload: person(),
    }
}

#[tokio::test]
async fn slack_posts_the_rendered_message_with_the_bot_token() {
    let stub = Stub::start().await;
    stub.script([reply(200, r#"{"ok":true,"channel":"C123","ts":"1503435956.000247","message":{"text":"hi"}}"#)]);
    let (verdict, steps) = deliver(slack(
        &stub,
        json!({"channel": "C123", "template": "New {{ event }}: *{{ payload.name }}* ({{ payload.plan | upper }})",
               "blocks": "[{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":{{ payload.email | json }}}}]"}),
    ))
    .await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.line(), "POST /api/chat.postMessage");
    assert_eq!(r.header("authorization"), Some(format!("Bearer {SLACK_TOKEN}").as_str()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"channel": "C123", "text": "New user.created: *Ada Lovelace* (PRO)",
               "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ada@example.com"}}]})
    );
    assert_redacted(&steps, &[SLACK_TOKEN]);
    assert!(steps[0].request.contains("authorization: [redacted]"), "{}", steps[0].request);
}

#[tokio::test]
async fn slack_reads_ok_false_at_http_200() {
    let stub = Stub::start().await;
    let config = json!({"channel": "C123", "template": "hi"});
    for (error, permanent) in
        [("channel_not_found", true), ("not_in_channel", true), ("invalid_auth", true), ("token_revoked", true), ("internal_error", false)]
    {
        stub.script([reply(200, &format!(r#"{{"ok":false,"error":"{error}"}}"#))]);
        let (verdict, _) = deliver(slack(&stub, config.clone())).await;
        if permanent {
            assert_permanent(&verdict, error);
        } else {
            assert_retry(&verdict, None, false);
        }
    }
    // Rate limits: ok:false "ratelimited", and HTTP 429 with Retry-After seconds.
    stub.script([reply(200, r#"{"ok":false,"error":"ratelimited"}"#).header("retry-after", "30")]);
    assert_retry(&deliver(slack(&stub, config.clone())).await.0, Some(30.0), true);
    stub.script([reply(429, r#"{"ok":false,"error":"ratelimited"}"#).header("retry-after", "3")]);
    assert_retry(&deliver(slack(&stub, config.clone())).await.0, Some(3.0), true);
    stub.script([reply(503, "")]);
    assert_retry(&deliver(slack(&stub, config)).await.0, None, false);
}

#[tokio::test]
async fn slack_template_errors_fail_the_delivery_with_the_template_message() {
    let stub = Stub::start().await;
    let (verdict, steps) = deliver(slack(&stub, json!({"channel": "C1", "template": "{{ payload.name | date }}"}))).await;
    assert_permanent(&verdict, "template failed");
    assert!(steps.is_empty(), "nothing is sent when the message cannot be rendered");
    let (verdict, _) = deliver(slack(&stub, json!({"channel": "C1", "template": "x", "blocks": "not json"}))).await;
    assert_permanent(&verdict, "JSON array");
    assert!(stub.seen().is_empty());
}

const DISCORD_TOKEN: &str = "dQw4w9WgXcQ-webhook-token";

fn discord(stub: &Stub) -> Call<'static> {
    Call {
        kind: "discord",
        config: json!({"webhook_url": format!("https://discord.com/api/webhooks/1234567890/{DISCORD_TOKEN}"), "base_url": stub.base}),
        credentials: json!({}),
        action: "send_message",
        action_config: json!({"title": "{{ event }}", "template": "**{{ payload.name }}** joined @everyone", "color": 5763719}),
        payload: person(),
    }
}

#[tokio::test]
async fn discord_posts_an_embed_that_pings_nobody() {
    let stub = Stub::start().await;
    stub.script([reply(200, r#"{"id":"1","type":0,"content":"","channel_id":"2"}"#)]);
    let (verdict, steps) = deliver(discord(&stub)).await;
    verdict.unwrap();
    let seen = stub.seen();
    assert_eq!(seen[0].line(), format!("POST /api/webhooks/1234567890/{DISCORD_TOKEN}?wait=true"));
    assert_eq!(seen[0].header("authorization"), None);
    assert_eq!(
        seen[0].json(),
        json!({"embeds": [{"title": "user.created", "description": "**Ada Lovelace** joined @everyone", "color": 5763719}],
               "allowed_mentions": {"parse": []}})
    );
    // The webhook token is part of the URL: it must not be recorded.
    assert_redacted(&steps, &[DISCORD_TOKEN]);
}

#[tokio::test]
async fn discord_rate_limits_use_the_float_retry_after_and_a_gone_webhook_is_permanent() {
    let stub = Stub::start().await;
    stub.script([reply(429, r#"{"message":"You are being rate limited.","retry_after":64.57,"global":false}"#)]);
    assert_retry(&deliver(discord(&stub)).await.0, Some(64.57), true);
    stub.script([reply(404, r#"{"message":"Unknown Webhook","code":10015}"#)]);
    assert_permanent(&deliver(discord(&stub)).await.0, "Unknown Webhook");
    stub.script([reply(400, r#"{"message":"Invalid Form Body","code":50035}"#)]);
    assert_permanent(&deliver(discord(&stub)).await.0, "Invalid Form Body");
}
