//! Fuzzing of what tenants write for rules: condition trees (`Condition::parse` / `matches`) and
//! event patterns (`validate_event_name`, `EventPattern::parse` / `matches`).
//!
//! Each target first runs every seed of its corpus (`tests/corpus/conditions`, `tests/corpus/patterns`
//! at the repository's root), then proptest properties over generated inputs: structured ones built
//! from the real syntax (operators, paths, groups; segments and `*`), and arbitrary JSON and
//! strings. Nothing may panic or run long, and what is accepted must behave as documented.
//! Failures proptest finds are kept in `tests/corpus/<target>/regressions.txt` and replayed first.
//!
//! A longer run: `PROPTEST_CASES=20000 cargo test -p switchyard-core --test fuzz`.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};
use switchyard_core::conditions::Condition;
use switchyard_core::events::{validate_event_name, EventPattern, MAX_EVENT_NAME_LEN};

/// Safety net against hangs: any one input must be done well within this (a debug build).
const LIMIT: Duration = Duration::from_secs(2);
/// `conditions.rs`'s limits on a tree: its nodes, and how deep groups nest below the root.
const MAX_NODES: usize = 256;
const MAX_DEPTH: usize = 8;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// `cases` unless `PROPTEST_CASES` asks for another number; failures persist in the corpus.
fn config(cases: u32, regressions: &'static str) -> ProptestConfig {
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { cases },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        max_shrink_iters: 2_048,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// The seeds of one corpus target, sorted by name (the regressions file is proptest's, not a seed).
fn seeds(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.file_name().is_some_and(|n| n != "regressions.txt"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).expect("a readable seed")))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "{dir} holds only {} seeds", seeds.len());
    seeds
}

/// Runs `f`, failing if it took longer than [`LIMIT`].
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < LIMIT, "{what} took {:?}", start.elapsed());
    out
}

/// Arbitrary JSON of bounded depth: the scalars that trip comparisons (huge and negative numbers,
/// floats, empty and odd strings) and small arrays and objects with a few recurring keys.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop_oneof![Just(0i64), Just(7), Just(-1), Just(1 << 53)].prop_map(Value::from),
        arb_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["", "high", "low", "prod", "db-01.prod", "7", "1e3", "true", "null", "é\u{301}", "\u{0}", "🦀"])
            .prop_map(str::to_owned),
        "[a-z0-9 .-]{0,12}",
        any::<String>(),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["severity", "count", "tags", "host", "items", "0", "1", "user", "a", "b"]).prop_map(str::to_owned),
        "[a-z0-9_]{1,5}",
        any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Conditions

const CONDITIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/conditions");
const CONDITIONS_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/conditions/regressions.txt");

const OPS: [&str; 12] = ["eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "exists", "not_exists", "contains", "starts_with"];

/// Event contexts as ingestion builds them, and some it never builds.
fn contexts() -> Vec<Value> {
    let mut deep = json!("bottom");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    vec![
        json!({"event": "alert.triggered", "resource": "monitor", "resource_id": "m-1",
               "payload": {"severity": "high", "count": 7, "big": u64::MAX, "tags": ["db", "prod"], "host": "db-01.prod",
                           "items": [{"sku": "A1"}], "gone": null, "ünïcødé": {"🦀": "é\u{301}"}, "\u{0}": "\u{0}\u{1}\u{1f}\u{7f}"}}),
        json!({"event": "x", "resource": null, "resource_id": null, "payload": {}}),
        json!({"event": "x", "payload": {"items": deep, "count": -1.5e300, "host": ""}}),
        json!(null),
        json!([]),
        json!("payload"),
    ]
}

fn leaf(path: &str, op: &str, value: Option<Value>) -> Value {
    let mut m = Map::new();
    m.insert("path".into(), path.into());
    m.insert("op".into(), op.into());
    if let Some(v) = value {
        m.insert("value".into(), v);
    }
    Value::Object(m)
}

/// Paths as tenants write them, mostly valid: the four roots, payload fields and indexes; now
/// and then odd segments (empty, huge indexes, any text) or junk.
fn arb_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        prop::sample::select(vec!["severity", "count", "tags", "host", "items", "0", "1", "user", "a", "b"]).prop_map(str::to_owned),
        "[a-z0-9_]{1,5}",
    ];
    let odd = prop_oneof![arb_key(), Just("18446744073709551616".to_owned()), Just(String::new())];
    prop_oneof![
        6 => prop::sample::select(vec!["event", "resource", "resource_id", "payload"]).prop_map(str::to_owned),
        30 => prop::collection::vec(segment, 1..5).prop_map(|s| format!("payload.{}", s.join("."))),
        1 => prop::collection::vec(odd, 1..4).prop_map(|s| format!("payload.{}", s.join("."))),
        1 => "[a-z_.]{0,20}",
        1 => any::<String>(),
    ]
}

/// One leaf: a real operator (now and then a made-up one or a wrong type) with an operand of
/// the type it takes (mostly) or of any type, or none; now and then an extra key.
fn arb_leaf() -> impl Strategy<Value = Value> {
    let op = prop_oneof![60 => prop::sample::select(OPS.to_vec()).prop_map(Value::from), 1 => Just(json!("between")), 1 => arb_json()];
    let path = prop_oneof![60 => arb_path().prop_map(Value::from), 1 => arb_json()];
    let operand = prop_oneof![
        3 => arb_json(),
        1 => prop::collection::vec(arb_json(), 0..5).prop_map(Value::Array),
        1 => arb_text().prop_map(Value::from),
    ];
    (path, op, operand, prop::bool::weighted(0.97), prop::option::weighted(0.01, (arb_key(), arb_json()))).prop_map(
        |(path, op, operand, well_typed, extra)| {
            let mut m = Map::new();
            let value = match op.as_str() {
                _ if !well_typed => Some(operand),
                Some("exists" | "not_exists") => None,
                Some("in" | "not_in") if !operand.is_array() => Some(json!([operand])),
                Some("gt" | "gte" | "lt" | "lte") if !(operand.is_number() || operand.is_string()) => Some(json!(operand.to_string())),
                Some("starts_with" | "contains") if !operand.is_string() => Some(json!(operand.to_string())),
                _ => Some(operand),
            };
            m.insert("path".into(), path);
            m.insert("op".into(), op);
            if let Some(v) = value {
                m.insert("value".into(), v);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        },
    )
}

/// Trees of `all`/`any` groups over leaves, nesting up to past the depth limit.
fn arb_tree() -> impl Strategy<Value = Value> {
    arb_leaf().prop_recursive(10, 64, 4, |inner| {
        prop_oneof![
            40 => (prop::sample::select(vec!["all", "any"]), prop::collection::vec(inner.clone(), 0..5))
                .prop_map(|(group, children)| json!({ group: children })),
            1 => (prop::sample::select(vec!["all", "any"]), inner.clone()).prop_map(|(group, child)| json!({ group: child })),
            1 => prop::collection::vec(inner, 0..3).prop_map(|c| json!({"all": c.clone(), "any": c})),
        ]
    })
}

/// A context as ingestion builds it, with an arbitrary payload.
fn arb_context() -> impl Strategy<Value = Value> {
    (arb_text(), prop::option::of(arb_text()), prop::option::of(arb_text()), arb_json()).prop_map(
        |(event, resource, resource_id, payload)| json!({"event": event, "resource": resource, "resource_id": resource_id, "payload": payload}),
    )
}

/// A path that exists in `context`: from its payload, following `choices` through objects and
/// arrays while the keys can be written as path segments.
fn path_into(context: &Value, choices: &[usize]) -> String {
    let mut path = "payload".to_owned();
    let mut at = &context["payload"];
    for &choice in choices {
        let (segment, next) = match at {
            Value::Object(map) if !map.is_empty() => {
                let (k, v) = map.iter().nth(choice % map.len()).unwrap();
                (k.clone(), v)
            }
            Value::Array(items) if !items.is_empty() => ((choice % items.len()).to_string(), &items[choice % items.len()]),
            _ => break,
        };
        if segment.is_empty() || segment.contains('.') {
            break;
        }
        path = format!("{path}.{segment}");
        at = next;
    }
    path
}

fn nodes(c: &Condition) -> usize {
    match c {
        Condition::All(children) | Condition::Any(children) => 1 + children.iter().map(nodes).sum::<usize>(),
        Condition::Leaf { .. } => 1,
    }
}

fn depth(c: &Condition) -> usize {
    match c {
        Condition::All(children) | Condition::Any(children) => 1 + children.iter().map(depth).max().unwrap_or(0),
        Condition::Leaf { .. } => 0,
    }
}

fn parses(tree: &Value) -> Condition {
    Condition::parse(tree, "conditions").unwrap_or_else(|e| panic!("{tree} was refused: {e:?}"))
}

/// Parses a tree and, if accepted, checks its shape is within the limits and evaluates it.
fn exercise_condition(tree: &Value, contexts: &[Value]) -> Option<Vec<bool>> {
    let parsed = Condition::parse(tree, "conditions");
    let condition = match parsed {
        Ok(c) => c,
        Err(e) => {
            assert!(e.field.starts_with("conditions"), "{e:?}");
            assert!(!e.message.is_empty());
            return None;
        }
    };
    assert!(nodes(&condition) <= MAX_NODES, "{} nodes accepted", nodes(&condition));
    assert!(depth(&condition) <= MAX_DEPTH + 1, "depth {} accepted", depth(&condition));
    Some(contexts.iter().map(|c| condition.matches(c)).collect())
}

#[test]
fn conditions_corpus() {
    let contexts = contexts();
    let mut accepted = 0;
    for (name, bytes) in seeds(CONDITIONS) {
        // As the API reads a rule's body: serde_json with its recursion limit.
        let Ok(tree) = serde_json::from_slice::<Value>(&bytes) else { continue };
        if timed(&name, || exercise_condition(&tree, &contexts)).is_some() {
            accepted += 1;
        }
    }
    assert!(accepted >= 3, "only {accepted} seeds parse: the corpus lost its valid trees");
}

#[test]
fn conditions_at_the_limits() {
    let leaf = json!({"path": "payload.count", "op": "gt", "value": 1});
    let wide = |n: usize| json!({"any": vec![leaf.clone(); n]});
    assert!(Condition::parse(&wide(MAX_NODES - 1), "c").is_ok());
    assert!(Condition::parse(&wide(MAX_NODES), "c").is_err());
    let mut deep = leaf.clone();
    for _ in 0..MAX_DEPTH {
        deep = json!({"all": [deep]});
    }
    assert!(Condition::parse(&deep, "c").is_ok());
    assert!(Condition::parse(&json!({"all": [deep]}), "c").is_err());
    // A tree far deeper than any request could carry (serde_json stops at 128) is refused without
    // recursing through all of it.
    let mut very_deep = leaf;
    for _ in 0..1_000 {
        very_deep = json!({"all": [very_deep]});
    }
    assert!(timed("a tree 1,000 deep", || Condition::parse(&very_deep, "c")).is_err());
}

proptest! {
    #![proptest_config(config(512, CONDITIONS_REGRESSIONS))]

    /// Any JSON document is either refused with a field and a message, or evaluates.
    #[test]
    fn conditions_any_json(doc in arb_json(), ctx in arb_context()) {
        exercise_condition(&doc, &[ctx]);
    }

    /// Trees from the real syntax, valid or nearly so, over arbitrary events.
    #[test]
    fn conditions_structured(tree in arb_tree(), ctx in arb_context()) {
        let mut all = contexts();
        all.push(ctx);
        timed("a generated tree", || exercise_condition(&tree, &all));
    }

    /// Each operator and its negation disagree on every event; an operand equal to what the event
    /// holds matches `eq` and `in`; groups of one are their child; empty groups are true (all)
    /// and false (any).
    #[test]
    fn conditions_mean_what_they_say(
        ctx in arb_context(),
        choices in prop::collection::vec(any::<usize>(), 0..6),
        other_path in arb_path(),
        operand in arb_json(),
    ) {
        let here = path_into(&ctx, &choices);
        let held = lookup(&ctx, &here).cloned().expect("the path was taken from the context");
        prop_assert!(parses(&leaf(&here, "eq", Some(held.clone()))).matches(&ctx), "eq {held} at {here}");
        prop_assert!(parses(&leaf(&here, "in", Some(json!([operand.clone(), held.clone()])))).matches(&ctx));
        prop_assert!(!parses(&leaf(&here, "ne", Some(held.clone()))).matches(&ctx));
        for path in [here.as_str(), other_path.as_str()] {
            let Ok(exists) = Condition::parse(&leaf(path, "exists", None), "c") else { continue };
            let not_exists = parses(&leaf(path, "not_exists", None));
            prop_assert_ne!(exists.matches(&ctx), not_exists.matches(&ctx));
            let eq = parses(&leaf(path, "eq", Some(operand.clone())));
            let ne = parses(&leaf(path, "ne", Some(operand.clone())));
            prop_assert_ne!(eq.matches(&ctx), ne.matches(&ctx));
            let set = json!([operand.clone(), 1, "x"]);
            let is_in = parses(&leaf(path, "in", Some(set.clone())));
            let not_in = parses(&leaf(path, "not_in", Some(set)));
            prop_assert_ne!(is_in.matches(&ctx), not_in.matches(&ctx));
            let one = eq.matches(&ctx);
            prop_assert_eq!(parses(&json!({"all": [leaf(path, "eq", Some(operand.clone()))]})).matches(&ctx), one);
            prop_assert_eq!(parses(&json!({"any": [leaf(path, "eq", Some(operand.clone()))]})).matches(&ctx), one);
        }
        let (all, any) = (parses(&json!({"all": []})), parses(&json!({"any": []})));
        prop_assert!(all.matches(&ctx) && !any.matches(&ctx));
    }

    /// Orderings: where the event holds a number and the operand is one (or both are strings),
    /// exactly one of `gt`/`lte` and one of `lt`/`gte` hold; otherwise none of them does.
    #[test]
    fn conditions_order_consistently(held in arb_json(), operand in arb_json().prop_map(|v| match v {
        Value::Number(_) | Value::String(_) => v,
        other => Value::String(other.to_string()),
    })) {
        let ctx = json!({"payload": {"v": held}});
        let m = |op: &str| parses(&leaf("payload.v", op, Some(operand.clone()))).matches(&ctx);
        let comparable = (held.is_number() && operand.is_number()) || (held.is_string() && operand.is_string());
        if comparable {
            prop_assert_ne!(m("gt"), m("lte"));
            prop_assert_ne!(m("lt"), m("gte"));
        } else {
            prop_assert!(!m("gt") && !m("gte") && !m("lt") && !m("lte"));
        }
    }
}

/// The lookup `Condition::matches` does, re-done here as documented: objects by key, arrays by
/// numeric segment.
fn lookup<'a>(context: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(context, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

// ---------------------------------------------------------------------------------------------
// Patterns

const PATTERNS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/patterns");
const PATTERNS_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/patterns/regressions.txt");

/// What the module documentation says a pattern matches, written independently of the parser:
/// segments compared one by one, an inner `*` standing for one segment, a trailing `*` for one
/// or more.
fn documented_match(pattern: &str, name: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    let (pattern, name): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), name.split('.').collect());
    let trailing = pattern.last() == Some(&"*");
    let lengths_fit = if trailing { name.len() >= pattern.len() } else { name.len() == pattern.len() };
    lengths_fit && pattern.iter().zip(&name).all(|(p, n)| *p == "*" || p == n)
}

/// Checks one pattern against names; returns whether it was accepted.
fn exercise_pattern(pattern: &str, names: &[&str]) -> bool {
    let valid_name = validate_event_name(pattern).is_ok();
    let parsed = match EventPattern::parse(pattern) {
        Ok(p) => p,
        Err(message) => {
            assert!(!valid_name, "{pattern:?} is a valid name but not a valid pattern: {message}");
            assert!(!message.is_empty());
            return false;
        }
    };
    if valid_name {
        // A name is a pattern that matches exactly itself.
        assert_eq!(parsed.exact(), Some(pattern));
        assert!(parsed.matches(pattern));
    }
    assert!(pattern.len() <= MAX_EVENT_NAME_LEN || pattern == "*", "{} characters accepted", pattern.len());
    if pattern.contains('*') && pattern != "*" {
        for segment in pattern.split('.').filter(|s| *s != "*") {
            assert!(validate_event_name(segment).is_ok(), "{pattern:?} holds the segment {segment:?}");
        }
    }
    for name in names {
        assert_eq!(parsed.matches(name), documented_match(pattern, name), "{pattern:?} on {name:?}");
    }
    true
}

#[test]
fn patterns_corpus() {
    let seeds = seeds(PATTERNS);
    let texts: Vec<String> = seeds.iter().map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned()).collect();
    let mut names: Vec<&str> = texts.iter().map(String::as_str).collect();
    names.extend(["user", "user.created", "user.email.changed", "invoice.paid", "a.b.created", "", ".", "user."]);
    let mut accepted = 0;
    for ((name, _), text) in seeds.iter().zip(&texts) {
        if timed(name, || exercise_pattern(text, &names)) {
            accepted += 1;
        }
    }
    assert!(accepted >= 5, "only {accepted} seeds parse: the corpus lost its valid patterns");
}

/// A segment of a name: usually short and from a small alphabet, so that names and patterns
/// share segments often enough to match.
fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["user", "created", "a", "b", "billing", "x:y", "v-2", "_"]).prop_map(str::to_owned),
        2 => "[A-Za-z0-9_:-]{1,8}",
        1 => Just(String::new()),
        1 => any::<String>(),
    ]
}

/// Patterns built from segments, `*` and `**`, joined by dots.
fn arb_pattern() -> impl Strategy<Value = String> {
    let part = prop_oneof![4 => arb_segment(), 2 => Just("*".to_owned()), 1 => Just("**".to_owned()), 1 => Just("a*".to_owned())];
    prop_oneof![
        8 => prop::collection::vec(part, 1..8).prop_map(|p| p.join(".")),
        1 => prop::collection::vec(Just("*"), 1..70).prop_map(|p| p.join(".")),
        1 => any::<String>(),
    ]
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::collection::vec(arb_segment(), 1..8).prop_map(|s| s.join(".")),
        1 => "[A-Za-z0-9_.:-]{1,140}",
        1 => any::<String>(),
    ]
}

proptest! {
    #![proptest_config(config(1024, PATTERNS_REGRESSIONS))]

    /// Any pattern either parses or is refused with a reason; parsed ones match as documented.
    #[test]
    fn patterns_structured(pattern in arb_pattern(), names in prop::collection::vec(arb_name(), 1..6)) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        timed("a generated pattern", || exercise_pattern(&pattern, &names));
    }

    /// Every valid name is a pattern matching itself and nothing else.
    #[test]
    fn names_are_exact_patterns(name in "[A-Za-z0-9_.:-]{1,128}", other in arb_name()) {
        prop_assert!(validate_event_name(&name).is_ok());
        let p = EventPattern::parse(&name).unwrap();
        prop_assert!(p.matches(&name));
        prop_assert_eq!(p.matches(&other), other == name);
    }

    /// A pattern matches every name made by filling its wildcards: an inner `*` with one segment,
    /// a trailing `*` with one or more.
    #[test]
    fn patterns_match_their_instances(
        mut parts in prop::collection::vec(prop_oneof!["[A-Za-z0-9_:-]{1,6}", Just("*".to_owned())], 1..8),
        star in any::<prop::sample::Index>(),
        fills in prop::collection::vec(prop::collection::vec("[A-Za-z0-9_:-]{1,6}", 1..4), 8),
    ) {
        let last = parts.len() - 1;
        parts[star.index(last + 1)] = "*".to_owned();
        let pattern = parts.join(".");
        let name = parts
            .iter()
            .enumerate()
            .map(|(i, p)| match (p.as_str(), i == last) {
                ("*", true) => fills[i].join("."),
                ("*", false) => fills[i][0].clone(),
                (literal, _) => literal.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(".");
        prop_assert!(EventPattern::parse(&pattern).unwrap().matches(&name), "{} on {}", pattern, name);
    }
}
