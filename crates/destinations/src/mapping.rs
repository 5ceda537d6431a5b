//! Field mappings: how an event becomes the fields of a CRM or e-mail record.
//!
//! ```json
//! {"schema_version": 1, "fields": [
//!   {"dest": "email", "source": {"type": "path", "value": "payload.user.email"}, "transforms": ["trim", "lower"]},
//!   {"dest": "plan", "source": {"type": "literal", "value": "pro"}},
//!   {"dest": "signed_up", "source": {"type": "path", "value": "occurred_at"},
//!    "transforms": [{"type": "to_date"}], "on_error": "skip_field"}
//! ]}
//! ```
//!
//! `dest` names the destination's own field (a HubSpot property, a Mailchimp merge field); `email`
//! is always the person's identity. A path that leads nowhere gives null, and null fields are left
//! out; a transform that fails either drops the field (`skip_field`) or fails the delivery
//! permanently with the reason (`fail_action`, the default).

use crate::FieldError;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Offset, TimeZone, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub schema_version: u32,
    pub fields: Vec<FieldMapping>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldMapping {
    pub dest: String,
    pub source: Source,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    #[serde(default)]
    pub on_error: OnError,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Source {
    Path(String),
    Literal(Value),
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    SkipField,
    #[default]
    FailAction,
}

/// A transform, written either as its name (`"trim"`) or as an object with its options
/// (`{"type": "substring", "start": 0, "length": 10}`). The derived (tagged) form is reached
/// through `remote = "Self"`; the `Deserialize` impl below turns a bare name into it first.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(remote = "Self", tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    ToString,
    ToNumber,
    ToBoolean,
    /// `YYYY-MM-DD`, in `timezone` (UTC unless given).
    ToDate {
        #[serde(default)]
        timezone: Option<String>,
    },
    /// RFC 3339 with the offset of `timezone` (UTC unless given).
    ToDatetime {
        #[serde(default)]
        timezone: Option<String>,
    },
    Default {
        value: Value,
    },
    Trim,
    Lower,
    Upper,
    /// Characters (not bytes) from `start`, at most `length` of them.
    Substring {
        start: usize,
        #[serde(default)]
        length: Option<usize>,
    },
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = match Value::deserialize(d)? {
            Value::String(name) => serde_json::json!({ "type": name }),
            other => other,
        };
        Transform::deserialize(value).map_err(serde::de::Error::custom)
    }
}

impl Mapping {
    /// A mapping of `(dest, path)` pairs whose missing values are skipped (the e-mail trimmed and
    /// lower-cased, since vendors key people by it):
    /// what a connector uses when a rule brings no mapping of its own.
    pub fn defaults(pairs: &[(&str, &str)]) -> Self {
        let fields = pairs
            .iter()
            .map(|(dest, path)| FieldMapping {
                dest: (*dest).to_owned(),
                source: Source::Path((*path).to_owned()),
                transforms: if *dest == "email" { vec![Transform::Trim, Transform::Lower] } else { Vec::new() },
                on_error: OnError::SkipField,
            })
            .collect();
        Self { schema_version: 1, fields }
    }

    /// Parses and checks a mapping as submitted in a rule's `action_config` (`field` names it).
    pub fn parse(value: &Value, field: &str) -> Result<Self, Vec<FieldError>> {
        let mapping: Mapping = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let at = if path == "." { field.to_owned() } else { format!("{field}.{path}") };
            vec![FieldError::new(at, e.inner().to_string())]
        })?;
        let mut errors = Vec::new();
        if mapping.schema_version != 1 {
            errors.push(FieldError::new(format!("{field}.schema_version"), "must be 1"));
        }
        for (i, f) in mapping.fields.iter().enumerate() {
            if f.dest.trim().is_empty() {
                errors.push(FieldError::new(format!("{field}.fields[{i}].dest"), "must not be empty"));
            }
            if let Source::Path(p) = &f.source {
                if p.is_empty() || p.split('.').any(str::is_empty) {
                    errors
                        .push(FieldError::new(format!("{field}.fields[{i}].source.value"), "must be a dotted path such as payload.email"));
                }
            }
            for (j, t) in f.transforms.iter().enumerate() {
                if let Transform::ToDate { timezone } | Transform::ToDatetime { timezone } = t {
                    if let Err(e) = parse_zone(timezone.as_deref()) {
                        errors.push(FieldError::new(format!("{field}.fields[{i}].transforms[{j}].timezone"), e));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(mapping)
        } else {
            Err(errors)
        }
    }

    /// Applies the mapping to a template context; fields whose value ends up null are left out.
    pub fn apply(&self, context: &Value) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for f in &self.fields {
            let value = match &f.source {
                Source::Path(path) => lookup(context, path).cloned().unwrap_or(Value::Null),
                Source::Literal(v) => v.clone(),
            };
            match f.transforms.iter().try_fold(value, |v, t| t.apply(v)) {
                Ok(Value::Null) => {}
                Ok(v) => {
                    out.insert(f.dest.clone(), v);
                }
                Err(e) => match f.on_error {
                    OnError::SkipField => {}
                    OnError::FailAction => return Err(format!("mapping for {:?}: {e}", f.dest)),
                },
            }
        }
        Ok(out)
    }
}

/// Follows a dotted path (`payload.user.email`, `payload.items.0.sku`) through objects and arrays.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, segment| match v {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

impl Transform {
    fn apply(&self, value: Value) -> Result<Value, String> {
        if value.is_null() {
            return Ok(match self {
                Transform::Default { value } => value.clone(),
                _ => Value::Null,
            });
        }
        Ok(match self {
            Transform::Default { .. } => value,
            Transform::ToString => Value::String(as_text(&value)),
            Transform::ToNumber => match &value {
                Value::Number(_) => value,
                Value::Bool(b) => Value::from(u8::from(*b)),
                Value::String(s) => {
                    let t = s.trim();
                    if let Ok(i) = t.parse::<i64>() {
                        Value::from(i)
                    } else {
                        t.parse::<f64>()
                            .ok()
                            .filter(|f| f.is_finite())
                            .and_then(serde_json::Number::from_f64)
                            .map(Value::Number)
                            .ok_or_else(|| format!("{s:?} is not a number"))?
                    }
                }
                _ => return Err("only strings, numbers and booleans convert to a number".into()),
            },
            Transform::ToBoolean => match &value {
                Value::Bool(_) => value,
                Value::Number(n) => Value::Bool(n.as_f64() != Some(0.0)),
                Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "y" | "1" | "on" => Value::Bool(true),
                    "false" | "no" | "n" | "0" | "off" | "" => Value::Bool(false),
                    _ => return Err(format!("{s:?} is not a boolean")),
                },
                _ => return Err("only strings, numbers and booleans convert to a boolean".into()),
            },
            Transform::ToDate { timezone } => {
                let zone = parse_zone(timezone.as_deref())?;
                Value::String(parse_instant(&value)?.with_timezone(&zone).format("%Y-%m-%d").to_string())
            }
            Transform::ToDatetime { timezone } => {
                let zone = parse_zone(timezone.as_deref())?;
                let local = parse_instant(&value)?.with_timezone(&zone);
                // chrono panics writing a local time past the last (or before the first) it holds.
                if local.naive_utc().checked_add_offset(local.offset().fix()).is_none() {
                    return Err(format!("{value} is out of range for a date in {}", zone.name()));
                }
                Value::String(local.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
            Transform::Trim => map_text(value, |s| s.trim().to_owned())?,
            Transform::Lower => map_text(value, str::to_lowercase)?,
            Transform::Upper => map_text(value, str::to_uppercase)?,
            Transform::Substring { start, length } => map_text(value, |s| {
                let rest = s.chars().skip(*start);
                match length {
                    Some(n) => rest.take(*n).collect(),
                    None => rest.collect(),
                }
            })?,
        })
    }
}

fn as_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn map_text(value: Value, f: impl FnOnce(&str) -> String) -> Result<Value, String> {
    match &value {
        Value::String(s) => Ok(Value::String(f(s))),
        Value::Number(_) | Value::Bool(_) => Ok(Value::String(f(&as_text(&value)))),
        _ => Err("expects text".into()),
    }
}

/// A time zone by IANA name (`Europe/Paris`); none means UTC.
pub fn parse_zone(name: Option<&str>) -> Result<chrono_tz::Tz, String> {
    match name {
        None => Ok(chrono_tz::UTC),
        Some(n) => n.parse().map_err(|_| format!("{n:?} is not a time zone (use an IANA name such as Europe/Paris)")),
    }
}

/// An instant from RFC 3339 text, a bare date or date-time (taken as UTC), or unix seconds or
/// milliseconds (numbers above 10^11 are taken as milliseconds).
pub fn parse_instant(value: &Value) -> Result<DateTime<Utc>, String> {
    let from_number = |n: f64| -> Result<DateTime<Utc>, String> {
        let millis = if n.abs() >= 1e11 { n } else { n * 1000.0 };
        Utc.timestamp_millis_opt(millis as i64).single().ok_or_else(|| format!("{n} is out of range for a date"))
    };
    match value {
        Value::Number(n) => from_number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc));
            }
            if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
            {
                return Ok(t.and_utc());
            }
            if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
                return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
            }
            match s.parse::<f64>() {
                Ok(n) if n.is_finite() => from_number(n),
                _ => Err(format!("{s:?} is not a date")),
            }
        }
        _ => Err("expects a date (text or unix time)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Value {
        json!({"event": "user.created", "occurred_at": "2026-11-23T23:30:00Z",
               "payload": {"email": "  Ada@Example.COM ", "age": "42", "vip": "yes", "name": "Ada Lovelace",
                           "items": [{"sku": "A1"}], "signup": 1_763_942_400_000_i64, "bad": "soon"}})
    }

    fn mapping(v: Value) -> Mapping {
        Mapping::parse(&v, "action_config.mapping").unwrap()
    }

    #[test]
    fn paths_literals_and_transforms() {
        let m = mapping(json!({"schema_version": 1, "fields": [
            {"dest": "email", "source": {"type": "path", "value": "payload.email"}, "transforms": ["trim", "lower"]},
            {"dest": "age", "source": {"type": "path", "value": "payload.age"}, "transforms": ["to_number"]},
            {"dest": "vip", "source": {"type": "path", "value": "payload.vip"}, "transforms": ["to_boolean"]},
            {"dest": "first", "source": {"type": "path", "value": "payload.name"}, "transforms": [{"type": "substring", "start": 0, "length": 3}, "upper"]},
            {"dest": "sku", "source": {"type": "path", "value": "payload.items.0.sku"}},
            {"dest": "plan", "source": {"type": "literal", "value": "pro"}},
            {"dest": "tier", "source": {"type": "path", "value": "payload.tier"}, "transforms": [{"type": "default", "value": "free"}]},
            {"dest": "gone", "source": {"type": "path", "value": "payload.nothing"}},
            {"dest": "day", "source": {"type": "path", "value": "occurred_at"}, "transforms": [{"type": "to_date", "timezone": "Asia/Tokyo"}]},
            {"dest": "at", "source": {"type": "path", "value": "payload.signup"}, "transforms": [{"type": "to_datetime", "timezone": "America/New_York"}]},
            {"dest": "age_text", "source": {"type": "literal", "value": 42}, "transforms": ["to_string"]}
        ]}));
        let out = m.apply(&ctx()).unwrap();
        assert_eq!(out["email"], "ada@example.com");
        assert_eq!(out["age"], 42);
        assert_eq!(out["vip"], true);
        assert_eq!(out["first"], "ADA");
        assert_eq!(out["sku"], "A1");
        assert_eq!(out["plan"], "pro");
        assert_eq!(out["tier"], "free");
        assert!(!out.contains_key("gone"));
        assert_eq!(out["day"], "2026-11-24");
        assert_eq!(out["at"], "2025-11-23T19:00:00-05:00");
        assert_eq!(out["age_text"], "42");
    }

    #[test]
    fn on_error_skips_or_fails() {
        let skip = mapping(json!({"schema_version": 1, "fields": [
            {"dest": "n", "source": {"type": "path", "value": "payload.bad"}, "transforms": ["to_number"], "on_error": "skip_field"},
            {"dest": "email", "source": {"type": "path", "value": "payload.email"}}]}));
        let out = skip.apply(&ctx()).unwrap();
        assert!(!out.contains_key("n"));
        assert!(out.contains_key("email"));
        let fail = mapping(json!({"schema_version": 1, "fields": [
            {"dest": "when", "source": {"type": "path", "value": "payload.bad"}, "transforms": ["to_date"]}]}));
        let e = fail.apply(&ctx()).unwrap_err();
        assert!(e.contains("\"when\"") && e.contains("not a date"), "{e}");
    }

    #[test]
    fn bad_mappings_name_the_field() {
        let cases = [
            (json!({"schema_version": 2, "fields": []}), "action_config.mapping.schema_version"),
            (
                json!({"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "column", "value": "a"}}]}),
                "action_config.mapping.fields[0].source.type",
            ),
            (
                json!({"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "path", "value": "a"}, "transforms": ["reverse"]}]}),
                "action_config.mapping.fields[0].transforms[0]",
            ),
            (
                json!({"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "path", "value": "a..b"}}]}),
                "action_config.mapping.fields[0].source.value",
            ),
            (
                json!({"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "path", "value": "a"}, "transforms": [{"type": "to_date", "timezone": "Nowhere/City"}]}]}),
                "action_config.mapping.fields[0].transforms[0].timezone",
            ),
            (
                json!({"schema_version": 1, "fields": [{"dest": "x", "source": {"type": "path", "value": "a"}, "on_error": "ignore"}]}),
                "action_config.mapping.fields[0].on_error",
            ),
            (json!({"fields": []}), "action_config.mapping"),
        ];
        for (value, field) in cases {
            let errors = Mapping::parse(&value, "action_config.mapping").unwrap_err();
            assert_eq!(errors[0].field, field, "{value}: {errors:?}");
        }
    }

    #[test]
    fn instants_come_in_many_shapes() {
        for v in [
            json!("2026-01-02T03:04:05Z"),
            json!("2026-01-02T04:04:05+01:00"),
            json!("2026-01-02 03:04:05"),
            json!(1_767_323_045),
            json!(1_767_323_045_000_i64),
        ] {
            assert_eq!(parse_instant(&v).unwrap().to_rfc3339(), "2026-01-02T03:04:05+00:00", "{v}");
        }
        assert_eq!(parse_instant(&json!("2026-01-02")).unwrap().to_rfc3339(), "2026-01-02T00:00:00+00:00");
        assert!(parse_instant(&json!("tomorrow")).is_err());
        assert!(parse_instant(&json!({"a": 1})).is_err());
    }
}
