//! Plans and limits: what a workspace may use. A limit left out is no limit, so an installation
//! without plans is unlimited, as it always was.
//!
//! A workspace's limits are its plan's (or the installation's default plan's) with the
//! workspace's own overrides laid over them, field by field: an override of `null` lifts a limit
//! the plan sets.

use crate::Millis;
use chrono::{Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The limits of a plan, or of one workspace once its overrides are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Events accepted per calendar month (UTC); past it, ingestion answers 429 `quota_exceeded`
    /// until the month ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_month: Option<u64>,
    /// Events accepted per second, sustained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_second: Option<u32>,
    /// Events that may arrive at once above the sustained rate (default: one second's worth).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_burst: Option<u32>,
    /// Connections in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Rules in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_per_workspace: Option<u32>,
    /// Rules with the same event pattern in the workspace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_per_event_type: Option<u32>,
    /// Days of event history kept (events, their deliveries and attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// The names of the limits, as they appear in plans, overrides and errors.
pub const LIMIT_NAMES: [&str; 7] = [
    "events_per_month",
    "events_per_second",
    "events_burst",
    "connections",
    "rules_per_workspace",
    "rules_per_event_type",
    "retention_days",
];

impl Limits {
    /// Reads limits from a JSON object, naming the field that is wrong.
    pub fn from_json(value: &Value) -> Result<Self, (String, String)> {
        let Value::Object(map) = value else { return Err(("limits".into(), "must be an object".into())) };
        for (k, v) in map {
            if !LIMIT_NAMES.contains(&k.as_str()) {
                return Err((k.clone(), format!("is not a limit; the limits are {}", LIMIT_NAMES.join(", "))));
            }
            if !(v.is_null() || v.as_u64().is_some()) {
                return Err((k.clone(), "must be a whole number of 0 or more, or null for no limit".into()));
            }
        }
        let limits: Limits = serde_json::from_value(value.clone()).map_err(|e| ("limits".into(), e.to_string()))?;
        limits.check().map_err(|(f, m)| (f.to_owned(), m))?;
        Ok(limits)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        let too_big = |name: &'static str, v: Option<u64>, max: u64| match v {
            Some(v) if v > max => Err((name, format!("must be at most {max}"))),
            _ => Ok(()),
        };
        too_big("events_per_second", self.events_per_second.map(u64::from), 1_000_000)?;
        too_big("events_burst", self.events_burst.map(u64::from), 10_000_000)?;
        too_big("retention_days", self.retention_days.map(u64::from), 36_500)?;
        if self.retention_days == Some(0) {
            return Err(("retention_days", "must be at least 1 (leave it out to keep history forever)".into()));
        }
        if self.events_per_second == Some(0) {
            return Err(("events_per_second", "must be at least 1 (leave it out for no limit)".into()));
        }
        if self.events_burst == Some(0) {
            return Err(("events_burst", "must be at least 1 (leave it out for one second's worth)".into()));
        }
        Ok(())
    }

    /// These limits with `overrides` laid over them: a key present in `overrides` wins, and
    /// `null` there means no limit.
    pub fn with_overrides(&self, overrides: &Map<String, Value>) -> Self {
        let mut merged = match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        for (k, v) in overrides {
            if v.is_null() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(Value::Object(merged)).unwrap_or_default()
    }

    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

/// Checks a workspace's overrides: known limit names, each a number or `null`.
pub fn check_overrides(value: &Value) -> Result<Map<String, Value>, (String, String)> {
    Limits::from_json(&Value::Object(match value {
        Value::Object(map) => map.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect(),
        _ => return Err(("limits".into(), "must be an object".into())),
    }))?;
    match value {
        Value::Object(map) => {
            for k in map.keys() {
                if !LIMIT_NAMES.contains(&k.as_str()) {
                    return Err((k.clone(), format!("is not a limit; the limits are {}", LIMIT_NAMES.join(", "))));
                }
            }
            Ok(map.clone())
        }
        _ => unreachable!("checked above"),
    }
}

/// A named set of limits that workspaces are put on.
#[derive(Debug, Clone)]
pub struct Plan {
    /// `free`, `pro`, ...: 1..64 of `a-z0-9_-`.
    pub name: String,
    pub description: Option<String>,
    pub limits: Limits,
    /// Defined in the configuration file (read-only through the API) rather than through the API.
    pub from_config: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

pub fn validate_plan_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
        return Err("must be 1 to 64 characters of a-z, 0-9, _ and -".into());
    }
    Ok(())
}

/// The calendar month (UTC) that `at` falls in: its key (`2026-12`), start and end.
pub fn month_of(at: Millis) -> (String, Millis, Millis) {
    let t = Utc.timestamp_millis_opt(at).single().unwrap_or_else(Utc::now);
    let start = Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().expect("the first of a month exists");
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    let end = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().expect("the first of a month exists");
    (format!("{:04}-{:02}", t.year(), t.month()), start.timestamp_millis(), end.timestamp_millis())
}

/// The day (UTC) that `at` falls in, as `2026-12-01`.
pub fn day_of(at: Millis) -> String {
    let t = Utc.timestamp_millis_opt(at).single().unwrap_or_else(Utc::now);
    t.format("%Y-%m-%d").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_replace_add_and_lift_limits() {
        let plan = Limits { events_per_month: Some(10_000), connections: Some(3), ..Limits::default() };
        let overrides = json!({"connections": 10, "rules_per_workspace": 5, "events_per_month": null});
        let merged = plan.with_overrides(overrides.as_object().unwrap());
        assert_eq!(merged, Limits { connections: Some(10), rules_per_workspace: Some(5), ..Limits::default() });
        assert!(Limits::default().is_unlimited());
    }

    #[test]
    fn bad_limits_name_their_field() {
        assert_eq!(Limits::from_json(&json!({"events_per_day": 5})).unwrap_err().0, "events_per_day");
        assert_eq!(Limits::from_json(&json!({"connections": -1})).unwrap_err().0, "connections");
        assert_eq!(Limits::from_json(&json!({"connections": "3"})).unwrap_err().0, "connections");
        assert_eq!(Limits::from_json(&json!({"retention_days": 0})).unwrap_err().0, "retention_days");
        assert!(Limits::from_json(&json!({"connections": 3, "events_per_month": null})).is_ok());
        assert_eq!(check_overrides(&json!({"nope": null})).unwrap_err().0, "nope");
        assert!(check_overrides(&json!({"connections": null})).is_ok());
    }

    #[test]
    fn months_and_days_are_utc_calendar_ones() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap().timestamp_millis();
        let (key, start, end) = month_of(at);
        assert_eq!(key, "2026-12");
        assert_eq!(start, Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap().timestamp_millis());
        assert_eq!(end, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap().timestamp_millis());
        assert_eq!(day_of(at), "2026-12-31");
        assert!(validate_plan_name("pro-2026").is_ok());
        assert!(validate_plan_name("Pro").is_err());
    }
}
