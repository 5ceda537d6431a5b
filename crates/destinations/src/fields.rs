//! Validation driven by the catalog: a connector describes its fields once ([`FieldSpec`]) and
//! connections and rules are checked against that description, each problem naming its field.

use crate::catalog::FieldSpec;
use crate::mapping::Mapping;
use crate::{guard, template, FieldError, ValidationContext};
use serde_json::{Map, Value};

/// Checks `value` (an object) against `specs`; `prefix` names it in errors (`config`,
/// `credentials`, `action_config`). Returns the object with defaults filled in.
pub fn validate(specs: &[FieldSpec], value: &Value, prefix: &str, ctx: &ValidationContext) -> Result<Value, Vec<FieldError>> {
    let empty = Map::new();
    let obj = match value {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err(vec![FieldError::new(prefix, "must be an object")]),
    };
    let mut errors = Vec::new();
    for key in obj.keys().filter(|k| !specs.iter().any(|s| &s.key == *k)) {
        let known: Vec<&str> = specs.iter().map(|s| s.key.as_str()).collect();
        let hint = if known.is_empty() { "this takes no fields".to_owned() } else { format!("expected one of {}", known.join(", ")) };
        errors.push(FieldError::new(format!("{prefix}.{key}"), format!("unknown field; {hint}")));
    }
    let mut out = Map::new();
    for spec in specs {
        let field = format!("{prefix}.{}", spec.key);
        match obj.get(&spec.key) {
            None | Some(Value::Null) => {
                if spec.required {
                    errors.push(FieldError::new(field, "is required"));
                } else if let Some(default) = &spec.default {
                    out.insert(spec.key.clone(), default.clone());
                }
            }
            Some(v) => match check(spec, v, &field, ctx) {
                Ok(normalised) => {
                    out.insert(spec.key.clone(), normalised);
                }
                Err(mut e) => errors.append(&mut e),
            },
        }
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}

fn check(spec: &FieldSpec, v: &Value, field: &str, ctx: &ValidationContext) -> Result<Value, Vec<FieldError>> {
    let err = |m: String| Err(vec![FieldError::new(field, m)]);
    let text = || v.as_str().map(str::trim).filter(|s| !s.is_empty());
    match spec.kind.as_str() {
        "string" | "secret" => match (text(), v) {
            (Some(_), _) => Ok(v.clone()),
            // Ids are often numeric at the vendor; accept a number and keep it as text.
            (None, Value::Number(n)) if spec.kind == "string" => Ok(Value::String(n.to_string())),
            _ => err("must be a non-empty string".into()),
        },
        "template" => match v.as_str() {
            Some(source) if !source.trim().is_empty() => match template::check(source) {
                Ok(()) => Ok(v.clone()),
                Err(e) => err(e),
            },
            _ => err("must be a non-empty template string".into()),
        },
        "url" => {
            let Some(raw) = text() else { return err("must be a URL".into()) };
            match url::Url::parse(raw) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => match guard::check_url(&url, ctx.allow_private_destinations) {
                    Ok(()) => Ok(Value::String(raw.trim_end_matches('/').to_owned())),
                    Err(e) => err(e.to_string()),
                },
                _ => err("must be an http or https URL".into()),
            }
        }
        "select" => match text() {
            Some(s) if spec.options.iter().any(|o| o == s) => Ok(v.clone()),
            _ => err(format!("must be one of {}", spec.options.join(", "))),
        },
        "integer" => match v.as_u64() {
            Some(_) => Ok(v.clone()),
            None => err("must be a non-negative integer".into()),
        },
        "object" => match v {
            Value::Object(_) => Ok(v.clone()),
            _ => err("must be an object".into()),
        },
        "mapping" => Mapping::parse(v, field).map(|_| v.clone()),
        other => err(format!("has an unknown field type {other:?} in the catalog")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs() -> Vec<FieldSpec> {
        vec![
            FieldSpec::new("channel", "Channel", "string", true),
            FieldSpec::new("template", "Message", "template", true),
            FieldSpec::new("region", "Region", "select", false).options(&["us", "eu"]).default(json!("us")),
            FieldSpec::new("base_url", "Base URL", "url", false),
            FieldSpec::new("mapping", "Mapping", "mapping", false),
        ]
    }

    #[test]
    fn fills_defaults_and_accepts_numeric_ids() {
        let out =
            validate(&specs(), &json!({"channel": 123, "template": "hi {{ payload.x }}"}), "action_config", &Default::default()).unwrap();
        assert_eq!(out, json!({"channel": "123", "template": "hi {{ payload.x }}", "region": "us"}));
    }

    #[test]
    fn every_problem_names_its_field() {
        let errors = validate(
            &specs(),
            &json!({"template": "{{ oops", "region": "mars", "base_url": "ftp://x", "mapping": {"schema_version": 1}, "extra": 1}),
            "action_config",
            &Default::default(),
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "action_config.channel",
            "action_config.template",
            "action_config.region",
            "action_config.base_url",
            "action_config.mapping",
            "action_config.extra",
        ] {
            assert!(fields.contains(&f), "{f} not in {fields:?}");
        }
        let template = errors.iter().find(|e| e.field == "action_config.template").unwrap();
        assert!(template.message.contains("syntax"), "{}", template.message);
    }

    #[test]
    fn private_base_urls_need_the_deployment_to_allow_them() {
        let v = json!({"channel": "c", "template": "t", "base_url": "http://127.0.0.1:9/"});
        assert!(validate(&specs(), &v, "config", &ValidationContext { allow_private_destinations: false }).is_err());
        let out = validate(&specs(), &v, "config", &ValidationContext { allow_private_destinations: true }).unwrap();
        assert_eq!(out["base_url"], "http://127.0.0.1:9");
    }
}
