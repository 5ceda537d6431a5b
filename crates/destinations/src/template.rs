//! Message templates: minijinja over the event (`event`, `payload`, `resource`, `resource_id`,
//! `workspace_id`, `occurred_at`, `event_id`).
//!
//! Besides minijinja's built-in filters (`default`, `tojson`, `upper`, `join`, ...) templates get
//! `json` (compact JSON of any value) and `date(format, tz)` (formats RFC 3339 strings, dates and
//! unix seconds or milliseconds with strftime patterns, in a time zone). A missing path and a JSON
//! null render as nothing rather than failing (or printing `none`), so
//! `{{ payload.user.name | default("someone") }}` works on events without a user, and `date` of
//! nothing is nothing. Rendering is bounded (fuel), since templates come from tenants.
//!
//! [`render`] does not escape (messages are plain text or the vendor's own markup); [`render_html`]
//! HTML-escapes every value it prints, for e-mail bodies.

use crate::mapping;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};
use std::sync::OnceLock;

/// Instructions one render may spend: generous for a message, fatal to a runaway loop.
const FUEL: u64 = 200_000;
/// The longest rendered output kept.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// The name [`render_html`] gives its templates: the `.html` suffix turns auto-escaping on.
const HTML_NAME: &str = "body.html";

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        // Messages are plain text or JSON-ish markup for the vendor, not HTML pages: only templates
        // rendered as HTML (named `*.html`, see `render_html`) are escaped.
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        env.set_formatter(format_value);
        env.add_filter("json", json_filter);
        env.add_filter("date", date_filter);
        env
    })
}

/// Checks a template's syntax; the message names the line.
pub fn check(source: &str) -> Result<(), String> {
    environment().template_from_str(source).map(|_| ()).map_err(|e| describe(&e))
}

/// Renders a template over a context (see [`crate::DeliveryContext::template_context`]), without
/// escaping.
pub fn render(source: &str, context: &serde_json::Value) -> Result<String, String> {
    render_named("<string>", source, context)
}

/// Like [`render`], for an HTML document: every printed value is HTML-escaped (`<`, `>`, `&`,
/// `"`, `'` and `/`), except values marked `| safe` (and the output of `| escape`, not escaped
/// twice).
pub fn render_html(source: &str, context: &serde_json::Value) -> Result<String, String> {
    render_named(HTML_NAME, source, context)
}

fn render_named(name: &str, source: &str, context: &serde_json::Value) -> Result<String, String> {
    let template = environment().template_from_named_str(name, source).map_err(|e| describe(&e))?;
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

/// Prints values as minijinja does (escaping as the template asks), except that none and
/// undefined print nothing rather than `none`.
fn format_value(out: &mut Output, state: &State, value: &Value) -> Result<(), Error> {
    if value.is_none() || value.is_undefined() {
        return Ok(());
    }
    minijinja::escape_formatter(out, state, value)
}

fn json_filter(value: Value) -> Result<String, Error> {
    serde_json::to_string(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("cannot encode as JSON: {e}")))
}

/// `{{ occurred_at | date("%d %b %Y", "Europe/Paris") }}`; the default format is RFC 3339. Nothing
/// (a missing path, a null) formats as nothing.
fn date_filter(value: Value, format: Option<String>, tz: Option<String>) -> Result<String, Error> {
    let zone = mapping::parse_zone(tz.as_deref()).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
    if value.is_none() || value.is_undefined() {
        return Ok(String::new());
    }
    let json: serde_json::Value =
        serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("not a date: {e}")))?;
    let at = mapping::parse_instant(&json).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
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
    fn none_and_undefined_render_as_nothing() {
        let c = json!({"payload": {"nickname": null, "tags": [null, "a"]}, "resource": null});
        assert_eq!(render("[{{ payload.nickname }}]", &c).unwrap(), "[]");
        assert_eq!(render("[{{ resource }}][{{ payload.missing }}][{{ payload.missing.deeper }}]", &c).unwrap(), "[][][]");
        assert_eq!(render("{% for t in payload.tags %}<{{ t }}>{% endfor %}", &c).unwrap(), "<><a>");
        // Only printing changes: text a filter makes of a null is its own (`None`).
        assert_eq!(render("{{ payload.tags | join(',') }}", &c).unwrap(), "None,a");
        assert_eq!(render("{{ none }}{{ payload.nickname | default('x', true) }}", &c).unwrap(), "x");
        assert_eq!(render_html("<p>{{ payload.nickname }}</p>", &c).unwrap(), "<p></p>");
        // Other values print as before.
        assert_eq!(render("{{ 0 }} {{ false }} {{ '' }}{{ payload.tags | length }}", &c).unwrap(), "0 False 2");
    }

    #[test]
    fn date_of_nothing_is_nothing() {
        let c = json!({"payload": {"at": null}, "resource": null});
        assert_eq!(render("[{{ payload.at | date }}]", &c).unwrap(), "[]");
        assert_eq!(render("[{{ payload.missing | date('%Y') }}]", &c).unwrap(), "[]");
        assert_eq!(render("[{{ resource | date('%d %b', 'Europe/Paris') }}]", &c).unwrap(), "[]");
        // A bad zone is still an error, value or not; so is a value that is not a date.
        assert!(render("{{ payload.missing | date('%Y', 'Mars/Olympus') }}", &c).unwrap_err().contains("time zone"));
        assert!(render("{{ 'soon' | date }}", &c).is_err());
    }

    #[test]
    fn html_rendering_escapes_values_and_plain_rendering_does_not() {
        let c = json!({"payload": {"name": "<b>Ada</b> & \"Bob\"", "html": "<i>ok</i>"}});
        let source = "<p>Hi {{ payload.name }}</p>";
        assert_eq!(render_html(source, &c).unwrap(), "<p>Hi &lt;b&gt;Ada&lt;&#x2f;b&gt; &amp; &quot;Bob&quot;</p>");
        assert_eq!(render(source, &c).unwrap(), "<p>Hi <b>Ada</b> & \"Bob\"</p>");
        // `safe` opts out; `escape` is not applied twice; filters' output is escaped too.
        assert_eq!(render_html("{{ payload.html | safe }}", &c).unwrap(), "<i>ok</i>");
        assert_eq!(render_html("{{ payload.html | escape }}", &c).unwrap(), "&lt;i&gt;ok&lt;&#x2f;i&gt;");
        assert_eq!(render_html("{{ payload.html | upper }}", &c).unwrap(), "&lt;I&gt;OK&lt;&#x2f;I&gt;");
        // The template's own markup is kept as written.
        assert_eq!(render_html("<a href=\"x\">{{ 1 + 1 }}</a>", &c).unwrap(), "<a href=\"x\">2</a>");
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
