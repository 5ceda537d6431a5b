//! Message templates: minijinja over the event (`event`, `payload`, `resource`, `resource_id`,
//! `workspace_id`, `occurred_at`, `event_id`).
//!
//! Besides minijinja's built-in filters (`default`, `tojson`, `upper`, `join`, ...) templates get
//! `json` (compact JSON of any value) and `date(format, tz)` (formats RFC 3339 strings, dates and
//! unix seconds or milliseconds with strftime patterns, in a time zone). A missing path renders as
//! nothing rather than failing, so `{{ payload.user.name | default("someone") }}` works on events
//! without a user. Rendering is bounded (fuel), since templates come from tenants.

use crate::mapping;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};
use std::sync::OnceLock;

/// Instructions one render may spend: generous for a message, fatal to a runaway loop.
const FUEL: u64 = 200_000;
/// The longest rendered output kept.
pub const MAX_OUTPUT: usize = 64 * 1024;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        // Messages are plain text or JSON-ish markup for the vendor, not HTML pages; e-mail bodies
        // that need escaping use the `escape` filter explicitly.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("json", json_filter);
        env.add_filter("date", date_filter);
        env
    })
}

/// Checks a template's syntax; the message names the line.
pub fn check(source: &str) -> Result<(), String> {
    environment().template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// Renders a template over a context (see [`crate::DeliveryContext::template_context`]).
pub fn render(source: &str, context: &serde_json::Value) -> Result<String, String> {
    let template = environment().template_from_str(source).map_err(|e| describe(&e))?;
    let mut out = template.render(Value::from_serialize(context)).map_err(|e| describe(&e))?;
    if out.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    Ok(out)
}

fn describe(e: &Error) -> String {
    let mut message = match e.kind() {
        ErrorKind::OutOfFuel => "the template does too much work (a loop that never ends?)".to_owned(),
        _ => e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string()),
    };
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    message
}

fn json_filter(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot encode as JSON: {e}")))
}

/// `{{ occurred_at | date("%d %b %Y", "Europe/Paris") }}`; the default format is RFC 3339.
fn date_filter(value: Value, format: Option<String>, tz: Option<String>) -> Result<String, Error> {
    let json: serde_json::Value =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not a date: {e}")))?;
    let at = mapping::parse_instant(&json).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
    let zone = mapping::parse_zone(tz.as_deref()).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
    let local = at.with_timezone(&zone);
    let format = format.unwrap_or_else(|| "%Y-%m-%dT%H:%M:%S%:z".to_owned());
    let mut out = String::new();
    use std::fmt::Write as _;
    write!(out, "{}", local.format(&format))
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, format!("{format:?} is not a valid date format")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> serde_json::Value {
        json!({"event": "user.created", "payload": {"email": "a@b.co", "name": "Ada", "plan": {"tier": "pro"}, "at": 1_700_000_000},
               "occurred_at": "2026-11-23T17:00:00Z", "resource": null, "resource_id": null, "workspace_id": "ws_1"})
    }

    #[test]
    fn renders_paths_and_filters() {
        assert_eq!(render("{{ event }}: {{ payload.name }} ({{ payload.plan.tier | upper }})", &ctx()).unwrap(), "user.created: Ada (PRO)");
        assert_eq!(render("{{ payload.missing.deeper | default('none') }}", &ctx()).unwrap(), "none");
        assert_eq!(render("{{ payload.plan | json }}", &ctx()).unwrap(), r#"{"tier":"pro"}"#);
        assert_eq!(render("{{ payload.plan | tojson }}", &ctx()).unwrap(), r#"{"tier":"pro"}"#);
    }

    #[test]
    fn dates_format_in_a_time_zone() {
        assert_eq!(render("{{ occurred_at | date('%Y-%m-%d %H:%M') }}", &ctx()).unwrap(), "2026-11-23 17:00");
        assert_eq!(render("{{ occurred_at | date('%H:%M %Z', 'Europe/Paris') }}", &ctx()).unwrap(), "18:00 CET");
        assert_eq!(render("{{ payload.at | date('%Y-%m-%d') }}", &ctx()).unwrap(), "2023-11-14");
        assert_eq!(render("{{ occurred_at | date }}", &ctx()).unwrap(), "2026-11-23T17:00:00+00:00");
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let e = check("Hello\n{{ payload.name ").unwrap_err();
        assert!(e.starts_with("line 2"), "{e}");
        assert!(check("{% if %}").is_err());
        assert!(check("{{ payload.name | default('x') }}").is_ok());
    }

    #[test]
    fn render_errors_are_reported_not_panicked() {
        let e = render("{{ payload.name | date }}", &ctx()).unwrap_err();
        assert!(e.contains("date"), "{e}");
        let e = render("{{ payload.name | date('%Y', 'Mars/Olympus') }}", &json!({"payload": {"name": "2026-01-01"}})).unwrap_err();
        assert!(e.contains("time zone"), "{e}");
        let e = render("{{ payload | nosuchfilter }}", &ctx()).unwrap_err();
        assert!(e.contains("nosuchfilter") || e.contains("unknown filter"), "{e}");
    }

    #[test]
    fn runaway_templates_stop() {
        let e = render("{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}", &ctx()).unwrap_err();
        assert!(e.contains("too much work"), "{e}");
    }
}
