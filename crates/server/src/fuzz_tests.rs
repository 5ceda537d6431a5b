//! Fuzzing of ingestion: bodies of `POST /api/v1/events` and `POST /api/v1/events/bulk`, sent
//! through the real router of a real node (its own store, no network), so that everything
//! between the bytes and the store runs: the body limit, `parse_json` into `EventInput`, the bulk
//! split, `prepare`'s checks, and matching against the workspace's rules, whose patterns and
//! conditions come from the corpus (`tests/corpus/patterns`, `tests/corpus/conditions`).
//!
//! First every seed of `tests/corpus/ingest` (raw bodies, invalid UTF-8 and all) goes to both
//! endpoints; then proptest properties: structured events whose every field is valid or not by
//! construction (the answer must say which), bulk bodies of them, and arbitrary and mutated
//! bytes. No request may fail the server (5xx), panic, or take long. Failures proptest finds are
//! kept in `tests/corpus/ingest/regressions.txt` and replayed first.
//!
//! A longer run: `PROPTEST_CASES=20000 cargo test -p switchyard-server --lib fuzz_tests`.

use crate::config::Config;
use crate::Application;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus");
const REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/ingest/regressions.txt");
const ADMIN_KEY: &str = "sk_test_fuzz_admin_key_0123456789abcdef";
/// Safety net against hangs: any one request must be answered well within this.
const LIMIT: Duration = Duration::from_secs(2);
/// The answers ingestion may give (no rate or quota limits are set here).
const ANSWERS: [u16; 6] = [200, 202, 207, 400, 413, 422];

/// `cases` unless `PROPTEST_CASES` asks for another number; failures persist in the corpus.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { cases },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        max_shrink_iters: 1_024,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// The seeds of one corpus target, sorted by name (the regressions file is proptest's, not a seed).
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = format!("{CORPUS}/{target}");
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.file_name().is_some_and(|n| n != "regressions.txt"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("a readable seed")))
        .collect();
    seeds.sort();
    seeds
}

/// A node serving its router in-process, with a workspace whose rules hold the corpus's patterns
/// and conditions.
struct Node {
    runtime: tokio::runtime::Runtime,
    router: Router,
    publishable_key: String,
    rules: usize,
    _app: Application,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
        let dir = tempfile::tempdir().expect("a temp dir");
        let (app, router) = runtime.block_on(async {
            let mut config = Config::new(switchyard_store::testing::database_url(dir.path()).await);
            config.listen = "127.0.0.1:0".parse().unwrap();
            config.admin_key = Some(ADMIN_KEY.into());
            config.master_key = Some(switchyard_core::crypto::MasterKey::generate_base64());
            config.allow_private_destinations = true;
            config.plans.rate_limits = crate::rates::RateLimits { api_key: None, session: None, publishable_key: None, anonymous: None };
            let app = Application::build(config).await.expect("the node builds");
            let router = crate::api::router(app.state.clone(), true, tokio_util::sync::CancellationToken::new());
            (app, router)
        });
        let mut node = Node { runtime, router, publishable_key: String::new(), rules: 0, _app: app, _dir: dir };
        let ws = node.admin(Method::POST, "/api/v1/workspaces", json!({"name": "fuzz"}));
        node.publishable_key = ws["publishable_key"]["key"].as_str().expect("a publishable key").to_owned();
        let ws = ws["id"].as_str().unwrap().to_owned();
        let hook = json!({"type": "webhook", "name": "hook", "config": {"url": "http://127.0.0.1:9/"}});
        let connection = node.admin(Method::POST, &format!("/api/v1/workspaces/{ws}/connections"), hook)["id"].clone();
        // Rules: each pattern of the corpus, and each condition tree of the corpus on every event.
        let patterns = seeds("patterns").into_iter().map(|(_, p)| (Value::from(String::from_utf8_lossy(&p)), Value::Null));
        let conditions =
            seeds("conditions").into_iter().filter_map(|(_, c)| serde_json::from_slice::<Value>(&c).ok()).map(|c| (json!("*"), c));
        for (i, (event, conditions)) in patterns.chain(conditions).enumerate() {
            let rule = json!({"name": format!("r{i}"), "event": event, "connection_id": connection, "conditions": conditions});
            let (status, _) = node.request(Method::POST, &format!("/api/v1/workspaces/{ws}/rules"), Some(ADMIN_KEY), rule.to_string());
            node.rules += usize::from(status == StatusCode::CREATED);
        }
        assert!(node.rules >= 10, "only {} of the corpus's rules were created", node.rules);
        node
    }

    fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.request(method.clone(), path, Some(ADMIN_KEY), body.to_string());
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer
    }

    /// Sends one request; returns its status and its body (as JSON; text when not JSON).
    fn request(&self, method: Method, path: &str, token: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = request.body(body.into()).expect("a request");
        request.extensions_mut().insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 40_000))));
        let start = Instant::now();
        let (status, bytes) = self.runtime.block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
            let status = response.status();
            (status, axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("the answer's body"))
        });
        assert!(start.elapsed() < LIMIT, "answered after {:?}", start.elapsed());
        let answer = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, answer)
    }

    /// Sends a body to ingestion, single or bulk; checks the answer is one ingestion gives, with
    /// the API's error shape when it is an error.
    fn ingest(&self, bulk: bool, body: Vec<u8>) -> (StatusCode, Value) {
        let path = if bulk { "/api/v1/events/bulk" } else { "/api/v1/events" };
        let shown = String::from_utf8_lossy(&body).chars().take(200).collect::<String>();
        let (status, answer) = self.request(Method::POST, path, Some(&self.publishable_key), body);
        assert!(ANSWERS.contains(&status.as_u16()), "{path} {shown:?}: {status} {answer}");
        if status.is_client_error() {
            assert!(answer["error"]["code"].is_string() && answer["error"]["message"].is_string(), "{status} {answer}");
        }
        (status, answer)
    }
}

#[test]
fn ingest_corpus() {
    let node = node();
    let seeds = seeds("ingest");
    assert!(seeds.len() >= 10, "the ingest corpus holds only {} seeds", seeds.len());
    let mut accepted = 0;
    for (name, body) in seeds {
        for bulk in [false, true] {
            let start = Instant::now();
            let (status, _) = node.ingest(bulk, body.clone());
            accepted += usize::from(status.is_success());
            assert!(start.elapsed() < LIMIT, "{name} took {:?}", start.elapsed());
        }
    }
    assert!(accepted >= 3, "only {accepted} seeds were accepted: the corpus lost its valid events");
}

// ---------------------------------------------------------------------------------------------
// Generators

/// Arbitrary JSON of bounded depth.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof!["[a-z0-9 .-]{0,10}", any::<String>()].prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop_oneof!["[a-z]{1,6}", any::<String>()], inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A payload likely to meet the rules' conditions: the fields they look at, with values of
/// every type.
fn arb_payload() -> impl Strategy<Value = Value> {
    let field = prop::sample::select(vec!["severity", "count", "tags", "host", "items", "big", "gone", "a", "k7"]);
    prop_oneof![
        2 => prop::collection::vec((field, prop_oneof![arb_json(), Just(json!("high")), Just(json!(7)), Just(json!(["db", "prod"]))]), 0..6)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        1 => prop::collection::vec((any::<String>(), arb_json()), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ]
}

/// A field of an event: `Some(value)` to send it (`None` leaves it out), and whether it is valid.
type Field = (Option<Value>, bool);

fn arb_event_name() -> impl Strategy<Value = Field> {
    prop_oneof![
        8 => "[A-Za-z0-9_.:-]{1,128}".prop_map(|n| { let ok = !n.starts_with("switchyard."); (Some(json!(n)), ok) }),
        3 => prop::sample::select(vec!["user.created", "alert.triggered", "invoice.paid", "billing.x.paid", "a.b.created"]).prop_map(|n| (Some(json!(n)), true)),
        1 => Just((Some(json!("switchyard.connection.failing")), false)),
        1 => prop_oneof!["", "[a-z]{129,140}", "[a-z]{0,3}[ *é\u{0}/]{1,2}[a-z]{0,3}"].prop_map(|n| (Some(json!(n)), false)),
        1 => prop_oneof![Just(None), arb_json().prop_filter_map("not a string", |v| (!v.is_string()).then_some(Some(v)))].prop_map(|v| (v, false)),
    ]
}

fn arb_payload_field() -> impl Strategy<Value = Field> {
    prop_oneof![
        2 => Just((None, true)),
        1 => Just((Some(Value::Null), true)),
        6 => arb_payload().prop_map(|p| (Some(p), true)),
        1 => arb_json().prop_filter_map("not an object", |v| (!v.is_object() && !v.is_null()).then_some((Some(v), false))),
    ]
}

/// `resource`, `resource_id` and `idempotency_key`: 1 to 256 bytes of text, or absent or null.
fn arb_short_text() -> impl Strategy<Value = Field> {
    prop_oneof![
        3 => Just((None, true)),
        1 => Just((Some(Value::Null), true)),
        4 => prop_oneof![
            "[a-z0-9_-]{1,12}",
            "k[0-3]",
            any::<String>().prop_filter("1 to 256 bytes, no NUL", |s| (1..=256).contains(&s.len()) && !s.contains('\0')),
        ]
        .prop_map(|s| (Some(json!(s)), true)),
        1 => prop_oneof![Just(String::new()), "[a-z]{257,300}", "é{129,140}", "[a-z]{0,3}\u{0}[a-z]{0,3}"].prop_map(|s| (Some(json!(s)), false)),
        1 => arb_json().prop_filter_map("not a string", |v| (!v.is_string() && !v.is_null()).then_some((Some(v), false))),
    ]
}

fn arb_occurred_at() -> impl Strategy<Value = Field> {
    // Years 2 to 9998, so that no offset takes the local time out of RFC 3339's four digits.
    let valid = (-62_104_060_800i64..253_370_764_800, -1_439i32..=1_439).prop_map(|(secs, minutes)| {
        let offset = chrono::FixedOffset::east_opt(minutes * 60).unwrap();
        chrono::DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&offset).to_rfc3339()
    });
    prop_oneof![
        3 => Just((None, true)),
        1 => Just((Some(Value::Null), true)),
        3 => valid.prop_map(|t| (Some(json!(t)), true)),
        1 => prop::sample::select(vec!["", "2026-02-30T00:00:00Z", "2026-01-01", "yesterday", "2026-01-01T25:00:00Z", "+262143-12-31T23:59:59Z"])
            .prop_map(|t| (Some(json!(t)), false)),
        1 => any::<i64>().prop_map(|n| (Some(json!(n)), false)),
    ]
}

/// An event body and whether ingestion must accept it.
fn arb_event() -> impl Strategy<Value = (Value, bool)> {
    let unknown = prop::option::weighted(0.05, (prop_oneof!["x_[a-z]{0,6}", any::<String>().prop_map(|s| format!("{s}?"))], arb_json()));
    (arb_event_name(), arb_payload_field(), arb_short_text(), arb_short_text(), arb_occurred_at(), arb_short_text(), unknown).prop_map(
        |(event, payload, resource, resource_id, occurred_at, key, unknown)| {
            let mut body = Map::new();
            let mut valid = true;
            for (name, (value, ok)) in [
                ("event", event),
                ("payload", payload),
                ("resource", resource),
                ("resource_id", resource_id),
                ("occurred_at", occurred_at),
                ("idempotency_key", key),
            ] {
                valid &= ok;
                if let Some(v) = value {
                    body.insert(name.to_owned(), v);
                }
            }
            if let Some((name, value)) = unknown {
                valid = false;
                body.insert(name, value);
            }
            (Value::Object(body), valid)
        },
    )
}

/// A change to a body's bytes.
#[derive(Debug, Clone)]
enum Mutation {
    Cut(prop::sample::Index),
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, &'static [u8]),
    Nest(prop::sample::Index, usize),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        match self {
            Self::Cut(at) => bytes.truncate(at.index(bytes.len() + 1)),
            Self::Set(at, byte) if !bytes.is_empty() => {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            Self::Set(..) => {}
            Self::Insert(at, inserted) => {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, inserted.iter().copied());
            }
            Self::Nest(at, depth) => {
                let i = at.index(bytes.len() + 1);
                let tail = bytes.split_off(i);
                bytes.extend(std::iter::repeat_n(b'[', *depth));
                bytes.extend(std::iter::repeat_n(b']', *depth));
                bytes.extend(tail);
            }
        }
    }
}

/// Bytes near a valid body: cut, with bytes changed or inserted, or with deep nesting put in.
fn arb_mutated() -> impl Strategy<Value = Vec<u8>> {
    let inserted: Vec<&'static [u8]> = vec![b"[", b"{", b"]", b"}", b"\"", b"\\", b",", b":", b"\\ud800", b"1e400", b"\xff", b"\0"];
    let mutation = prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Cut),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set(at, byte)),
        (any::<prop::sample::Index>(), prop::sample::select(inserted)).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<prop::sample::Index>(), 1usize..3_000).prop_map(|(at, depth)| Mutation::Nest(at, depth)),
    ];
    (arb_event(), prop::collection::vec(mutation, 1..4)).prop_map(|((event, _), mutations)| {
        let mut bytes = serde_json::to_vec(&event).unwrap();
        for m in &mutations {
            m.apply(&mut bytes);
        }
        bytes
    })
}

// ---------------------------------------------------------------------------------------------
// Properties

fn node() -> &'static Node {
    // One node per test binary (cargo test) or per test process (nextest): it is read-mostly,
    // and the properties do not depend on one another's events.
    static NODE: std::sync::OnceLock<Node> = std::sync::OnceLock::new();
    NODE.get_or_init(Node::start)
}

proptest! {
    #![proptest_config(config(192))]

    /// A single event is accepted (202, or 200 for a repeated idempotency key) exactly when each
    /// of its fields is valid; otherwise 400 or 422.
    #[test]
    fn ingest_single_events((event, valid) in arb_event()) {
        let (status, answer) = node().ingest(false, serde_json::to_vec(&event).unwrap());
        if valid {
            prop_assert!(status == StatusCode::ACCEPTED || status == StatusCode::OK, "{event} → {status} {answer}");
            if status == StatusCode::ACCEPTED {
                prop_assert_eq!(&answer["event"], &event["event"]);
            }
        } else {
            prop_assert!(status == StatusCode::BAD_REQUEST || status.as_u16() == 422, "{event} → {status} {answer}");
        }
    }

    /// A bulk body: 202 when every item is valid, 207 otherwise, each result saying which; no
    /// items, or more than the limit, is a 422 for the request.
    #[test]
    fn ingest_bulk_bodies(
        items in prop::collection::vec(prop_oneof![9 => arb_event(), 1 => arb_json().prop_map(|v| (v, false))], 0..6),
        too_many in prop::bool::weighted(0.02),
    ) {
        let items = if too_many { vec![(json!({"event": "a"}), true); 1_001] } else { items };
        let body = Value::Array(items.iter().map(|(item, _)| item.clone()).collect());
        let (status, answer) = node().ingest(true, serde_json::to_vec(&body).unwrap());
        if items.is_empty() || items.len() > 1_000 {
            prop_assert_eq!(status.as_u16(), 422, "{}", answer);
            return Ok(());
        }
        let valid: Vec<bool> = items.iter().map(|(_, ok)| *ok).collect();
        let expected = if valid.iter().all(|ok| *ok) { StatusCode::ACCEPTED } else { StatusCode::MULTI_STATUS };
        prop_assert_eq!(status, expected, "{} → {}", body, answer);
        prop_assert_eq!(answer["accepted"].as_u64(), Some(valid.iter().filter(|ok| **ok).count() as u64), "{}", answer);
        for (i, ok) in valid.iter().enumerate() {
            prop_assert_eq!(answer["results"][i]["error"].is_null(), *ok, "item {}: {} → {}", i, items[i].0, answer["results"][i]);
        }
    }

    /// Bytes near valid bodies, and any bytes at all: an answer, never a failure.
    #[test]
    fn ingest_mutated_bodies(body in arb_mutated(), bulk in any::<bool>()) {
        let body = if bulk { [b"[".as_slice(), &body, b"]"].concat() } else { body };
        node().ingest(bulk, body);
    }

    #[test]
    fn ingest_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512), bulk in any::<bool>()) {
        node().ingest(bulk, body);
    }
}

/// Nesting far past serde_json's recursion limit (128), anywhere in a body: an error or an
/// acceptance, never a stack overflow (this runs on a test thread's 2 MiB stack).
#[test]
fn deep_nesting_is_answered() {
    let node = node();
    for depth in [127, 129, 10_000, 100_000] {
        let (open, close) = ("[".repeat(depth), "]".repeat(depth));
        for body in [
            format!("{open}{close}"),
            format!(r#"{{"event": {open}{close}}}"#),
            format!(r#"{{"event": "a", "nope": {open}{close}}}"#),
            format!(r#"[{{"event": "a"}}, {open}{close}]"#),
        ] {
            for bulk in [false, true] {
                let (status, answer) = node.ingest(bulk, body.clone().into_bytes());
                assert!(status.is_client_error() || bulk, "{depth} deep: {status} {answer}");
            }
        }
    }
}

/// NUL in a text field is refused on every store: PostgreSQL cannot hold it, and one such event
/// failed the group commit of every event ingested beside it, in every workspace (with 503s).
#[test]
fn nul_characters_are_refused() {
    for field in ["resource", "resource_id", "idempotency_key"] {
        let body = json!({"event": "a", field: "x\u{0}y"});
        for bulk in [false, true] {
            let body = if bulk { json!([body.clone()]) } else { body.clone() };
            let (status, answer) = node().ingest(bulk, serde_json::to_vec(&body).unwrap());
            let error = if bulk { &answer["results"][0]["error"] } else { &answer["error"] };
            assert_eq!(error["details"][0]["field"], field, "{status} {answer}");
        }
    }
}

/// The payload is kept as raw JSON (`RawValue`, which skips nesting without a depth limit and
/// does not check numbers or escapes). This fuzzing found that ingestion accepted payloads that
/// `serde_json::Value` cannot read back: rules' conditions then saw a null payload, and template
/// and mapping deliveries failed with "the stored payload is not JSON". Now they are refused.
#[test]
fn unreadable_payloads_are_refused() {
    let node = node();
    for payload in [format!("{}{}", "[".repeat(200), "]".repeat(200)), "1e400".to_owned(), r#""\ud800""#.to_owned()] {
        for bulk in [false, true] {
            let event = format!(r#"{{"event": "a", "payload": {{"x": {payload}}}}}"#);
            let body = if bulk { format!("[{event}]") } else { event };
            let (status, answer) = node.ingest(bulk, body.into_bytes());
            let error = if bulk { &answer["results"][0]["error"] } else { &answer["error"] };
            assert_eq!(error["details"][0]["field"], "payload", "{payload:.20}: {status} {answer}");
        }
    }
    // Readable ones, close to each limit, are accepted.
    for payload in [format!("{}{}", "[".repeat(120), "]".repeat(120)), "1e300".to_owned(), r#""\ud83d\ude00""#.to_owned()] {
        let body = format!(r#"{{"event": "a", "payload": {{"x": {payload}}}}}"#);
        let (status, answer) = node.ingest(false, body.into_bytes());
        assert!(status.is_success(), "{payload:.20}: {status} {answer}");
    }
}
