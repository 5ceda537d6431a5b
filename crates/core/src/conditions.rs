//! The condition tree a rule filters events with.
//!
//! `{"all": [..]}` and `{"any": [..]}` nest; a leaf is `{"path": "payload.severity", "op": "in",
//! "value": [..]}`. Paths start at `event`, `resource`, `resource_id` or `payload`; numeric segments
//! index arrays (`payload.items.0.sku`). Trees are validated once, when a rule is saved, into a form
//! that evaluates without re-parsing on the ingest path.

use serde_json::Value;

const MAX_DEPTH: usize = 8;
const MAX_NODES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    NotIn,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
    NotExists,
    Contains,
    StartsWith,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "in" => Self::In,
            "not_in" => Self::NotIn,
            "gt" => Self::Gt,
            "gte" => Self::Gte,
            "lt" => Self::Lt,
            "lte" => Self::Lte,
            "exists" => Self::Exists,
            "not_exists" => Self::NotExists,
            "contains" => Self::Contains,
            "starts_with" => Self::StartsWith,
            _ => return None,
        })
    }
}

/// A validated condition tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Leaf { path: Vec<String>, op: Op, value: Value },
}

/// A problem with one node of a submitted tree: where it is (`conditions.all[1].op`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    pub field: String,
    pub message: String,
}

fn err(field: &str, message: impl Into<String>) -> ConditionError {
    ConditionError { field: field.to_owned(), message: message.into() }
}

impl Condition {
    /// Validates a submitted tree; `field` names it in errors (usually `conditions`).
    pub fn parse(value: &Value, field: &str) -> Result<Self, ConditionError> {
        let mut nodes = 0;
        Self::parse_node(value, field, 0, &mut nodes)
    }

    fn parse_node(value: &Value, field: &str, depth: usize, nodes: &mut usize) -> Result<Self, ConditionError> {
        *nodes += 1;
        if *nodes > MAX_NODES {
            return Err(err(field, format!("a condition tree may hold at most {MAX_NODES} nodes")));
        }
        if depth > MAX_DEPTH {
            return Err(err(field, format!("conditions may nest at most {MAX_DEPTH} levels")));
        }
        let Some(obj) = value.as_object() else {
            return Err(err(field, "must be an object: {\"all\": [...]}, {\"any\": [...]} or {\"path\", \"op\", \"value\"}"));
        };
        for group in ["all", "any"] {
            if let Some(children) = obj.get(group) {
                if obj.len() != 1 {
                    return Err(err(field, format!("a group holds only its \"{group}\" list")));
                }
                let Some(children) = children.as_array() else {
                    return Err(err(&format!("{field}.{group}"), "must be an array of conditions"));
                };
                let parsed = children
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Self::parse_node(c, &format!("{field}.{group}[{i}]"), depth + 1, nodes))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok(if group == "all" { Self::All(parsed) } else { Self::Any(parsed) });
            }
        }
        Self::parse_leaf(obj, field)
    }

    fn parse_leaf(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Self, ConditionError> {
        if let Some(unknown) = obj.keys().find(|k| !matches!(k.as_str(), "path" | "op" | "value")) {
            return Err(err(&format!("{field}.{unknown}"), "unknown key; a condition has path, op and value"));
        }
        let path_field = format!("{field}.path");
        let path = obj.get("path").and_then(Value::as_str).ok_or_else(|| err(&path_field, "is required and must be a string"))?;
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        let root_ok = match segments[0].as_str() {
            "event" | "resource" | "resource_id" => segments.len() == 1,
            "payload" => segments.iter().all(|s| !s.is_empty()),
            _ => false,
        };
        if !root_ok {
            return Err(err(&path_field, "must be event, resource, resource_id or payload.<field>[.<field>...]"));
        }
        let op_field = format!("{field}.op");
        let op_name = obj.get("op").and_then(Value::as_str).ok_or_else(|| err(&op_field, "is required and must be a string"))?;
        let op = Op::parse(op_name).ok_or_else(|| {
            err(&op_field, "must be one of eq, ne, in, not_in, gt, gte, lt, lte, exists, not_exists, contains, starts_with")
        })?;
        let value_field = format!("{field}.value");
        let value = obj.get("value").cloned();
        let value = match (op, value) {
            (Op::Exists | Op::NotExists, None) => Value::Null,
            (Op::Exists | Op::NotExists, Some(_)) => return Err(err(&value_field, format!("{op_name} takes no value"))),
            (_, None) => return Err(err(&value_field, format!("is required for {op_name}"))),
            (Op::In | Op::NotIn, Some(v)) if !v.is_array() => return Err(err(&value_field, "must be an array")),
            (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(v)) if !(v.is_number() || v.is_string()) => {
                return Err(err(&value_field, "must be a number or a string"))
            }
            (Op::StartsWith, Some(v)) if !v.is_string() => return Err(err(&value_field, "must be a string")),
            (_, Some(v)) => v,
        };
        Ok(Self::Leaf { path: segments, op, value })
    }

    /// Evaluates the tree against an event's context: an object with `event`, `resource`,
    /// `resource_id` and `payload`.
    pub fn matches(&self, context: &Value) -> bool {
        match self {
            Self::All(children) => children.iter().all(|c| c.matches(context)),
            Self::Any(children) => children.iter().any(|c| c.matches(context)),
            Self::Leaf { path, op, value } => eval_leaf(lookup(context, path), *op, value),
        }
    }
}

fn lookup<'a>(context: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut current = context;
    for segment in path {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn eval_leaf(actual: Option<&Value>, op: Op, expected: &Value) -> bool {
    use std::cmp::Ordering::*;
    let present = actual.filter(|v| !v.is_null());
    match op {
        Op::Exists => present.is_some(),
        Op::NotExists => present.is_none(),
        Op::Eq => actual.is_some_and(|a| json_eq(a, expected)),
        Op::Ne => !actual.is_some_and(|a| json_eq(a, expected)),
        Op::In => actual.is_some_and(|a| expected.as_array().is_some_and(|set| set.iter().any(|e| json_eq(a, e)))),
        Op::NotIn => !actual.is_some_and(|a| expected.as_array().is_some_and(|set| set.iter().any(|e| json_eq(a, e)))),
        Op::Gt => present.and_then(|a| compare(a, expected)) == Some(Greater),
        Op::Gte => matches!(present.and_then(|a| compare(a, expected)), Some(Greater | Equal)),
        Op::Lt => present.and_then(|a| compare(a, expected)) == Some(Less),
        Op::Lte => matches!(present.and_then(|a| compare(a, expected)), Some(Less | Equal)),
        Op::Contains => match present {
            Some(Value::String(s)) => expected.as_str().is_some_and(|e| s.contains(e)),
            Some(Value::Array(items)) => items.iter().any(|i| json_eq(i, expected)),
            _ => false,
        },
        Op::StartsWith => match (present, expected) {
            (Some(Value::String(s)), Value::String(prefix)) => s.starts_with(prefix.as_str()),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({
            "event": "alert.triggered",
            "resource": "monitor",
            "resource_id": "m-1",
            "payload": {"severity": "high", "count": 7, "tags": ["db", "prod"], "host": "db-01.prod", "items": [{"sku": "A1"}], "gone": null}
        })
    }

    fn check(tree: Value) -> bool {
        Condition::parse(&tree, "conditions").unwrap().matches(&ctx())
    }

    #[test]
    fn every_operator_behaves_as_documented() {
        assert!(check(json!({"path": "payload.severity", "op": "eq", "value": "high"})));
        assert!(check(json!({"path": "payload.severity", "op": "ne", "value": "low"})));
        assert!(check(json!({"path": "payload.severity", "op": "in", "value": ["high", "critical"]})));
        assert!(check(json!({"path": "payload.severity", "op": "not_in", "value": ["low"]})));
        assert!(check(json!({"path": "payload.count", "op": "gt", "value": 6})));
        assert!(check(json!({"path": "payload.count", "op": "gte", "value": 7.0})));
        assert!(check(json!({"path": "payload.count", "op": "lt", "value": 8})));
        assert!(check(json!({"path": "payload.count", "op": "lte", "value": 7})));
        assert!(check(json!({"path": "payload.severity", "op": "exists"})));
        assert!(check(json!({"path": "payload.missing", "op": "not_exists"})));
        assert!(check(json!({"path": "payload.gone", "op": "not_exists"})));
        assert!(check(json!({"path": "payload.tags", "op": "contains", "value": "prod"})));
        assert!(check(json!({"path": "payload.host", "op": "contains", "value": ".prod"})));
        assert!(check(json!({"path": "payload.host", "op": "starts_with", "value": "db-"})));
        assert!(check(json!({"path": "payload.items.0.sku", "op": "eq", "value": "A1"})));
        assert!(check(json!({"path": "event", "op": "eq", "value": "alert.triggered"})));
        assert!(check(json!({"path": "resource_id", "op": "eq", "value": "m-1"})));
        assert!(!check(json!({"path": "payload.count", "op": "gt", "value": "7"})));
        assert!(!check(json!({"path": "payload.missing", "op": "eq", "value": null})));
        assert!(check(json!({"path": "payload.missing", "op": "ne", "value": 1})));
    }

    #[test]
    fn groups_nest() {
        assert!(check(json!({"all": [
            {"path": "payload.severity", "op": "eq", "value": "high"},
            {"any": [{"path": "payload.count", "op": "gt", "value": 100}, {"path": "resource", "op": "eq", "value": "monitor"}]}
        ]})));
        assert!(!check(json!({"any": [{"path": "payload.count", "op": "gt", "value": 100}]})));
        assert!(check(json!({"all": []})));
    }

    #[test]
    fn bad_trees_name_the_offending_field() {
        let e = Condition::parse(&json!({"all": [{"path": "payload.x", "op": "between", "value": 1}]}), "conditions").unwrap_err();
        assert_eq!(e.field, "conditions.all[0].op");
        let e = Condition::parse(&json!({"path": "secrets.x", "op": "eq", "value": 1}), "conditions").unwrap_err();
        assert_eq!(e.field, "conditions.path");
        let e = Condition::parse(&json!({"path": "payload.x", "op": "in", "value": 1}), "conditions").unwrap_err();
        assert_eq!(e.field, "conditions.value");
        let e = Condition::parse(&json!({"path": "payload.x", "op": "eq"}), "conditions").unwrap_err();
        assert_eq!(e.field, "conditions.value");
        assert!(Condition::parse(&json!([1]), "conditions").is_err());
    }

    #[test]
    fn deep_trees_are_refused() {
        let mut tree = json!({"path": "event", "op": "exists"});
        for _ in 0..20 {
            tree = json!({"all": [tree]});
        }
        assert!(Condition::parse(&tree, "conditions").is_err());
    }
}
