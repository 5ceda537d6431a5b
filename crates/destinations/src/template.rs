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
//!
//! Templates are written by tenants, so everything here is bounded. [`check`] refuses sources
//! longer than [`MAX_SOURCE`], tags with more than [`MAX_TAG_TOKENS`] tokens or brackets nested
//! deeper than [`MAX_NESTING`], and blocks nested deeper than [`MAX_NESTING`], before minijinja's
//! recursive compiler sees them; rendering spends at most [`FUEL`] instructions and stops writing
//! at [`MAX_OUTPUT`]. Memory and time are bounded by where rendering runs: see [`crate::sandbox`].

use crate::mapping;
use minijinja::machinery::{tokenize, Token, WhitespaceConfig};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior, Value};
use std::sync::OnceLock;

/// Instructions one render may spend: generous for a message, fatal to a runaway loop.
pub const FUEL: u64 = 200_000;
/// The longest rendered output kept: rendering stops there and the output is cut.
pub const MAX_OUTPUT: usize = 64 * 1024;
/// The longest template source accepted, in bytes.
pub const MAX_SOURCE: usize = 64 * 1024;
/// The most tokens one `{{ ... }}` or `{% ... %}` tag may hold (an expression's depth is below it).
pub const MAX_TAG_TOKENS: usize = 256;
/// The deepest nesting of brackets within a tag, and of blocks (`if`, `for`, ...) in a template.
pub const MAX_NESTING: usize = 32;
/// The deepest macro recursion while rendering.
const RECURSION_LIMIT: usize = 64;
/// The name [`render_html`] gives its templates: the `.html` suffix turns auto-escaping on.
const HTML_NAME: &str = "body.html";

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        // Messages are plain text or JSON-ish markup for the vendor, not HTML pages: only templates
        // rendered as HTML (named `*.html`, see `render_html`) are escaped.
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        env.set_formatter(format_value);
        env.add_filter("json", json_filter);
        env.add_filter("date", date_filter);
        // minijinja allocates what these ask for before any fuel is spent: bounded, so a template
        // cannot ask for gigabytes and abort the process.
        env.add_filter("slice", |state: &State, value: Value, count: usize, fill: Option<Value>| {
            within(count, "slice")?;
            minijinja::filters::slice(state, value, count, fill)
        });
        env.add_filter("batch", |state: &State, value: Value, count: usize, fill: Option<Value>| {
            within(count, "batch")?;
            minijinja::filters::batch(state, value, count, fill)
        });
        env.add_filter(
            "indent",
            |value: minijinja::value::StringInput<'_>,
             width: Option<usize>,
             first: Option<bool>,
             blank: Option<bool>,
             kwargs: minijinja::value::Kwargs| {
                within(width.or(kwargs.peek::<Option<usize>>("width")?).unwrap_or(0), "indent")?;
                minijinja::filters::indent(value, width, first, blank, kwargs)
            },
        );
        env.add_filter("tojson", |value: &Value, indent: Option<Value>, kwargs: minijinja::value::Kwargs| {
            let width = indent.as_ref().or(kwargs.peek::<Option<Value>>("indent")?.as_ref()).and_then(|v| v.as_usize());
            within(width.unwrap_or(0), "tojson's indent")?;
            minijinja::filters::tojson(value, indent, kwargs)
        });
        env.add_filter("format", |state: &State, format: &Value, args: minijinja::value::Rest<Value>| {
            if let Some(format) = format.as_str() {
                format_widths_within(format)?;
            }
            minijinja::filters::format(state, format, args)
        });
        env
    })
}

/// The largest count `slice` and `batch` take, and the widest `indent`, `tojson` indent and
/// `format` width or precision.
const MAX_FILTER_COUNT: usize = 1_000;

fn within(count: usize, filter: &str) -> Result<(), Error> {
    if count > MAX_FILTER_COUNT {
        return Err(Error::new(ErrorKind::InvalidOperation, format!("{filter} takes at most {MAX_FILTER_COUNT}, not {count}")));
    }
    Ok(())
}

/// Checks each printf-style field of a `format` string (`%[(key)][flags][width][.precision]type`):
/// minijinja pads to the width or precision asked for, however large.
fn format_widths_within(format: &str) -> Result<(), Error> {
    let bytes = format.as_bytes();
    let number = |i: &mut usize| {
        let start = *i;
        while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        // Saturates: anything too long to parse is too wide.
        format[start..*i].parse::<usize>().unwrap_or(if *i > start { usize::MAX } else { 0 })
    };
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        i += 1;
        if bytes.get(i) == Some(&b'%') {
            i += 1;
            continue;
        }
        if bytes.get(i) == Some(&b'(') {
            match format[i..].find(')') {
                Some(close) => i += close + 1,
                // Unclosed: minijinja refuses the format string itself.
                None => return Ok(()),
            }
        }
        while bytes.get(i).is_some_and(|b| b"#0- +".contains(b)) {
            i += 1;
        }
        within(number(&mut i), "format's width")?;
        if bytes.get(i) == Some(&b'.') {
            i += 1;
            within(number(&mut i), "format's precision")?;
        }
    }
    Ok(())
}

/// Checks a template: its size and nesting first ([`check_bounds`]), then its syntax. The message
/// says which limit was broken or names the line of the syntax error.
pub fn check(source: &str) -> Result<(), String> {
    check_bounds(source)?;
    environment().template_from_str(source).map(|_| ()).map_err(|e| format!("template syntax error: {}", describe(&e)))
}

/// Refuses templates whose size or nesting could exhaust the compiler's stack, by looking at their
/// tokens only (the lexer does not recurse).
pub fn check_bounds(source: &str) -> Result<(), String> {
    if source.len() > MAX_SOURCE {
        return Err(format!("the template is {} bytes long; the limit is {MAX_SOURCE}", source.len()));
    }
    // Block nesting: each open block is a frame; `elif` nests one level deeper inside its `if`.
    let mut blocks: Vec<usize> = Vec::new();
    let (mut in_tag, mut tag_tokens, mut brackets) = (false, 0usize, 0usize);
    let mut first_ident: Option<String> = None;
    let mut tag_assigns = false;
    // A unit struct without minijinja's custom_syntax feature; a struct with defaults with it.
    #[allow(clippy::default_constructed_unit_structs)]
    let syntax = SyntaxConfig::default();
    for token in tokenize(source, false, syntax, WhitespaceConfig::default()) {
        let (token, span) = match token {
            Ok(t) => t,
            // Syntax errors are for the parser to describe.
            Err(_) => return Ok(()),
        };
        let line = span.start_line;
        match token {
            Token::VariableStart | Token::BlockStart => {
                (in_tag, tag_tokens, brackets, first_ident, tag_assigns) = (true, 0, 0, None, false);
            }
            Token::VariableEnd => in_tag = false,
            Token::BlockEnd => {
                in_tag = false;
                match first_ident.as_deref() {
                    Some("if" | "for" | "with" | "filter" | "macro" | "call" | "autoescape" | "block" | "raw") => blocks.push(1),
                    // `{% set x %}...{% endset %}` is a block; `{% set x = ... %}` is not.
                    Some("set") if !tag_assigns => blocks.push(1),
                    Some("elif") => {
                        if let Some(top) = blocks.last_mut() {
                            *top += 1;
                        }
                    }
                    Some(name) if name.starts_with("end") => {
                        blocks.pop();
                    }
                    _ => {}
                }
                if blocks.iter().sum::<usize>() > MAX_NESTING {
                    return Err(format!("line {line}: blocks are nested more than {MAX_NESTING} deep"));
                }
            }
            Token::TemplateData(_) => {}
            other if in_tag => {
                tag_tokens += 1;
                if tag_tokens > MAX_TAG_TOKENS {
                    return Err(format!("line {line}: a tag holds more than {MAX_TAG_TOKENS} tokens; split the expression"));
                }
                match other {
                    Token::Ident(name) if first_ident.is_none() => first_ident = Some(name.to_owned()),
                    Token::Assign => tag_assigns = true,
                    Token::ParenOpen | Token::BracketOpen | Token::BraceOpen => {
                        brackets += 1;
                        if brackets > MAX_NESTING {
                            return Err(format!("line {line}: brackets are nested more than {MAX_NESTING} deep"));
                        }
                    }
                    Token::ParenClose | Token::BracketClose | Token::BraceClose => brackets = brackets.saturating_sub(1),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
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

/// Renders as [`render`] (`html` false) or [`render_html`] does.
pub fn render_as(html: bool, source: &str, context: &serde_json::Value) -> Result<String, String> {
    render_named(if html { HTML_NAME } else { "<string>" }, source, context)
}

fn render_named(name: &str, source: &str, context: &serde_json::Value) -> Result<String, String> {
    check_bounds(source)?;
    let template = environment().template_from_named_str(name, source).map_err(|e| describe(&e))?;
    let mut out = CappedOutput { bytes: Vec::new(), full: false };
    let rendered = template.render_captured_to(Value::from_serialize(context), &mut out).map(|_| ());
    match rendered {
        Ok(()) => {}
        // Output past the cap is dropped: stop there rather than render what nobody keeps.
        Err(_) if out.full => {}
        Err(e) => return Err(describe(&e)),
    }
    let mut bytes = out.bytes;
    // The cut may have fallen inside a character.
    while std::str::from_utf8(&bytes).is_err() {
        bytes.pop();
    }
    Ok(String::from_utf8(bytes).unwrap_or_default())
}

/// A writer that keeps the first [`MAX_OUTPUT`] bytes, then fails the render's next write.
struct CappedOutput {
    bytes: Vec<u8>,
    full: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_OUTPUT - self.bytes.len();
        if buf.len() > room {
            self.bytes.extend_from_slice(&buf[..room]);
            self.full = true;
            return Err(std::io::Error::other("output cap reached"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
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
        assert!(e.starts_with("template syntax error: line 2"), "{e}");
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

    #[test]
    fn filters_that_allocate_what_they_are_asked_for_are_bounded() {
        // Each of these once asked minijinja for gigabytes up front and aborted the process.
        for source in [
            "{{ [1, 2] | slice(5100000000) }}",
            "{{ [1] | batch(5100000000, 0) }}",
            "{{ 'a\nb' | indent(5100000000) }}",
            "{{ 'a\nb' | indent(width=5100000000) }}",
            "{{ payload | tojson(5100000000) }}",
            "{{ payload | tojson(indent=5100000000) }}",
            "{{ '%5100000000s' | format('a') }}",
            "{{ 'n=%-05100000000d' | format(1) }}",
            "{{ '%(a)5100000000s' | format(a=1) }}",
            "{{ '%.5100000000f' | format(1.5) }}",
            "{{ '%99999999999999999999999s' | format('a') }}",
            "{{ ('%' ~ 5100000000 ~ 's') | format('a') }}",
        ] {
            let e = render(source, &ctx()).unwrap_err();
            assert!(e.contains("at most 1000"), "{source}: {e}");
        }
        assert_eq!(render("{{ [1, 2, 3] | slice(2) | list }}", &ctx()).unwrap(), "[[1, 2], [3]]");
        assert_eq!(render("{{ [1, 2, 3] | batch(2) | list }}", &ctx()).unwrap(), "[[1, 2], [3]]");
        assert_eq!(render("{{ 'a\nb' | indent(2) }}", &ctx()).unwrap(), "a\n  b");
        // An unclosed key is minijinja's to refuse, not a panic in the check.
        assert!(render("{{ '%(a' | format(a=1) }}", &ctx()).is_err());
        assert!(render("{{ '%(' | format() }}", &ctx()).is_err());
        assert_eq!(render("{{ [1] | tojson(indent=2) }}", &ctx()).unwrap(), "[\n  1\n]");
        assert_eq!(render("{{ [1] | tojson(true) }}", &ctx()).unwrap(), "[\n  1\n]");
        assert_eq!(render("{{ '100%% of %5s, %-3d|%.2f' | format('ab', 7, 1.5) }}", &ctx()).unwrap(), "100% of    ab, 7  |1.50");
    }
}

#[cfg(test)]
mod bounds {
    use super::*;
    use serde_json::json;

    /// Each of these overflowed the compiler's stack (and aborted the server) before the bounds.
    #[test]
    fn deep_expressions_are_refused_before_compiling() {
        let attacks = [
            format!("{{{{ {}1 }}}}", "-".repeat(10_000)),
            format!("{{{{ payload{} }}}}", ".a".repeat(10_000)),
            format!("{{{{ payload{} }}}}", "|upper".repeat(10_000)),
            format!("{{{{ {}1{} }}}}", "(".repeat(10_000), ")".repeat(10_000)),
            format!("{{{{ {}1 }}}}", "not ".repeat(10_000)),
            // Blocks: as many as fit in the size limit.
            format!("{}x{}", "{% if a %}".repeat(2_500), "{% endif %}".repeat(2_500)),
            format!("{{% if a %}}{}{{% endif %}}", "{% elif b %}".repeat(5_000)),
            format!("{}x{}", "{% for a in b %}".repeat(1_500), "{% endfor %}".repeat(1_500)),
        ];
        for source in &attacks {
            assert!(source.len() <= MAX_SOURCE, "{}", source.len());
            let e = check(source).unwrap_err();
            assert!(e.contains("tokens") || e.contains("nested"), "{e}");
            // Rendering checks the same bounds first.
            assert!(render(source, &json!({})).is_err());
        }
        let long = "x".repeat(MAX_SOURCE + 1);
        assert!(check(&long).unwrap_err().contains("limit is 65536"));
    }

    #[test]
    fn ordinary_templates_stay_within_the_bounds() {
        let nested = format!("{}x{}", "{% if a %}".repeat(MAX_NESTING), "{% endif %}".repeat(MAX_NESTING));
        assert!(check(&nested).is_ok());
        let many_tags = "{{ payload.user.name | default('someone') | upper }} ".repeat(1_000);
        assert!(check(&many_tags).is_ok());
        let elifs = format!("{{% if a %}}{}{{% endif %}}{{% for x in y %}}{{% endfor %}}", "{% elif b %}".repeat(MAX_NESTING - 1));
        assert!(check(&elifs).is_ok());
        // Assigning `set`s are not blocks; block `set`s are.
        let sets = "{% set a = 1 %}".repeat(100);
        assert!(check(&sets).is_ok());
    }

    /// The deepest templates the bounds let through compile and render on a 2 MiB stack (this test
    /// thread's; tokio's blocking pool gives the same), in a debug build.
    #[test]
    fn the_deepest_accepted_templates_fit_a_small_stack() {
        let deepest = [
            format!("{{{{ {}1 }}}}", "-".repeat(MAX_TAG_TOKENS - 1)),
            format!("{{{{ payload{} }}}}", ".a".repeat(MAX_TAG_TOKENS / 2 - 1)),
            format!("{{{{ payload{} }}}}", "|upper".repeat(MAX_TAG_TOKENS / 2 - 1)),
            format!("{{{{ {}1 }}}}", "not ".repeat(MAX_TAG_TOKENS - 1)),
            format!("{{{{ {}1{} }}}}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING)),
        ];
        for expression in &deepest {
            let blocks = format!("{}{expression}{}", "{% if payload %}".repeat(MAX_NESTING), "{% endif %}".repeat(MAX_NESTING));
            for source in [expression, &blocks] {
                check(source).unwrap_or_else(|e| panic!("{e}: {source}"));
                let _ = render(source, &json!({"payload": {"a": 1}}));
            }
        }
    }

    #[test]
    fn output_stops_at_the_cap_instead_of_growing() {
        let out = render("{% for i in range(100000) %}0123456789{% endfor %}", &json!({})).unwrap();
        assert_eq!(out.len(), MAX_OUTPUT);
        // A cut inside a character drops the partial character.
        let out = render("{% for i in range(100000) %}é{% endfor %}x", &json!({})).unwrap();
        assert!(out.len() <= MAX_OUTPUT && out.len() > MAX_OUTPUT - 2);
    }
}
