//! What SaaS connectors share: the `base_url` override, request building, the person an event
//! is about (through a field mapping), and reading a vendor's error message.

use crate::catalog::FieldSpec;
use crate::http::ResponseSummary;
use crate::mapping::{lookup, Mapping};
use crate::outcome::{classify_http, Classified};
use crate::sandbox::RenderError;
use crate::{BuildError, DeliveryContext, OutboundRequest};
use base64::Engine as _;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{Map, Value};

/// The `base_url` config field every SaaS connector takes: it replaces the vendor's origin
/// (regions, sandboxes, tests); paths stay as the vendor documents them.
pub fn base_url_field(default: &str) -> FieldSpec {
    FieldSpec::new("base_url", "Base URL", "url", false)
        .describe(&format!("Replaces the vendor's origin ({default}) for regions, sandboxes and tests; paths stay as documented"))
}

/// The `mapping` action field of CRM and e-mail actions.
pub fn mapping_field() -> FieldSpec {
    FieldSpec::new("mapping", "Field mapping", "mapping", false)
        .describe("How the event becomes the record's fields; without one, email, first and last name and phone come from the payload")
}

/// A URL at the connection's origin (its `base_url`, else `default_origin`), with each path
/// segment percent-encoded (ids come from rules and events).
pub fn endpoint(config: &Value, default_origin: &str, segments: &[&str]) -> Result<url::Url, BuildError> {
    let origin = config.get("base_url").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or(default_origin);
    endpoint_at(origin, segments)
}

/// A URL under an explicit origin (Salesforce's instance URL, Mailchimp's data centre).
pub fn endpoint_at(origin: &str, segments: &[&str]) -> Result<url::Url, BuildError> {
    let mut url = url::Url::parse(origin).map_err(|_| BuildError(format!("{origin:?} is not a valid base URL")))?;
    {
        let mut path = url.path_segments_mut().map_err(|_| BuildError(format!("{origin:?} cannot be a base URL")))?;
        path.pop_if_empty();
        for s in segments {
            path.push(s);
        }
    }
    Ok(url)
}

impl OutboundRequest {
    /// A request with a JSON body.
    pub fn json(method: Method, url: url::Url, body: &Value) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Self { method, url, headers, body: serde_json::to_vec(body).unwrap_or_default().into() }
    }

    /// A request without a body.
    pub fn empty(method: Method, url: url::Url) -> Self {
        Self { method, url, headers: Default::default(), body: Default::default() }
    }

    pub fn bearer(self, token: &str) -> Result<Self, BuildError> {
        self.secret_header(AUTHORIZATION, &format!("Bearer {token}"))
    }

    pub fn basic(self, user: &str, password: &str) -> Result<Self, BuildError> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.secret_header(AUTHORIZATION, &format!("Basic {encoded}"))
    }

    /// A header whose value is a credential: marked sensitive, never recorded.
    pub fn secret_header(mut self, name: HeaderName, value: &str) -> Result<Self, BuildError> {
        let mut v =
            HeaderValue::from_str(value).map_err(|_| BuildError("the credentials contain characters not allowed in a header".into()))?;
        v.set_sensitive(true);
        self.headers.insert(name, v);
        Ok(self)
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self, BuildError> {
        let v = HeaderValue::from_str(value).map_err(|_| BuildError(format!("invalid value for header {name}")))?;
        self.headers.insert(HeaderName::from_static(name), v);
        Ok(self)
    }
}

/// The person an event is about, as the destination's fields: the rule's mapping (or the
/// connector's default one) applied to the event. `email` must come out of it.
pub fn person(ctx: &DeliveryContext<'_>, context: &Value, defaults: &[(&str, &str)]) -> Result<Map<String, Value>, Classified> {
    let fields = mapped(ctx, context, defaults)?;
    match fields.get("email") {
        Some(_) => checked_email(fields),
        None => Err(Classified::permanent("the event has no e-mail address (payload.email, or map one with action_config.mapping)")),
    }
}

/// Like [`person`], for a person identified otherwise (Customer.io by id): `email` may be
/// missing, but when the mapping gives one it must be an e-mail address.
pub fn person_email_optional(
    ctx: &DeliveryContext<'_>,
    context: &Value,
    defaults: &[(&str, &str)],
) -> Result<Map<String, Value>, Classified> {
    let fields = mapped(ctx, context, defaults)?;
    if fields.contains_key("email") {
        checked_email(fields)
    } else {
        Ok(fields)
    }
}

/// The rule's mapping (or the connector's default one) applied to the event.
fn mapped(ctx: &DeliveryContext<'_>, context: &Value, defaults: &[(&str, &str)]) -> Result<Map<String, Value>, Classified> {
    let mapping = match ctx.action_config().get("mapping") {
        Some(v) if !v.is_null() => Mapping::parse(v, "action_config.mapping").map_err(|e| {
            Classified::permanent(format!("the rule's mapping is invalid: {}", e.first().map(|f| f.message.as_str()).unwrap_or("")))
        })?,
        _ => Mapping::defaults(defaults),
    };
    mapping.apply(context).map_err(Classified::permanent)
}

fn checked_email(fields: Map<String, Value>) -> Result<Map<String, Value>, Classified> {
    match fields.get("email") {
        Some(Value::String(s)) if s.contains('@') => Ok(fields),
        Some(other) => Err(Classified::permanent(format!("the mapped email {other} is not an e-mail address"))),
        None => Ok(fields),
    }
}

/// The person's e-mail from [`person`]'s result.
pub fn email(fields: &Map<String, Value>) -> &str {
    fields.get("email").and_then(Value::as_str).unwrap_or_default()
}

/// The first of `paths` that holds text in a JSON error body (`message`, `errors.0.message`, ...).
pub fn error_message(r: &ResponseSummary, paths: &[&str]) -> Option<String> {
    let body: Value = serde_json::from_slice(&r.body).ok()?;
    paths.iter().find_map(|p| lookup(&body, p).and_then(Value::as_str).map(str::to_owned))
}

/// HTTP semantics, with the vendor's own error message added to the recorded error.
pub fn classify_with_message(r: &ResponseSummary, paths: &[&str]) -> Classified {
    let verdict = classify_http(r);
    match (&verdict.outcome, error_message(r, paths)) {
        (crate::Outcome::Success, _) | (_, None) => verdict,
        (_, Some(message)) => verdict.with_detail(&message),
    }
}

/// Renders a template setting of the rule, or fails the delivery with the template's message.
pub async fn render(ctx: &DeliveryContext<'_>, key: &str, context: &Value) -> Result<String, Classified> {
    render_with(ctx, key, context, false).await
}

/// Like [`render`], for a setting that is an HTML document (an e-mail body): every value the
/// template prints is HTML-escaped.
pub async fn render_html(ctx: &DeliveryContext<'_>, key: &str, context: &Value) -> Result<String, Classified> {
    render_with(ctx, key, context, true).await
}

async fn render_with(ctx: &DeliveryContext<'_>, key: &str, context: &Value, html: bool) -> Result<String, Classified> {
    let source = ctx.action_str(key)?;
    ctx.renderer.render(html, source, context).await.map_err(|e| match e {
        RenderError::Template(e) => Classified::permanent(format!("the {key} template failed: {e}")),
        // Nothing was sent: a later attempt renders again.
        RenderError::Unavailable(e) => Classified::retry(None, e),
    })
}

/// Like [`render`], for a setting that may be absent.
pub async fn render_optional(ctx: &DeliveryContext<'_>, key: &str, context: &Value) -> Result<Option<String>, Classified> {
    match ctx.action_config().get(key).and_then(Value::as_str) {
        Some(s) if !s.is_empty() => render(ctx, key, context).await.map(Some),
        _ => Ok(None),
    }
}

/// Person fields other than the identity, as given.
pub fn attributes(fields: &Map<String, Value>) -> Map<String, Value> {
    fields.iter().filter(|(k, _)| k.as_str() != "email").map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Pages a listing fetches at most (each page at most 100 or so choices).
pub const MAX_PAGES: usize = 20;

/// The choices in a listing: each item of the array at `list` (a JSON pointer, `""` for the
/// whole answer) with its `value` and `label` (pointers into the item; numbers become text).
/// Items lacking either are left out.
pub fn choices_at(body: &Value, list: &str, value: &str, label: &str) -> Vec<crate::Choice> {
    let text = |v: &Value| match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    body.pointer(list)
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let value = item.pointer(value).and_then(text)?;
                    let label = item.pointer(label).and_then(text).unwrap_or_else(|| value.clone());
                    Some(crate::Choice { value, label })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches a listing page by page: `next(page, previous answer)` makes the request for page
/// `page` (0-based), or says there is none (when the previous answer says it was the last, or
/// says nothing about more); `read` takes a page's choices from its answer. Stops at
/// [`crate::MAX_CHOICES`] choices or [`MAX_PAGES`] pages.
pub async fn paged(
    exchange: &mut crate::Exchange<'_>,
    mut next: impl FnMut(usize, Option<&Value>) -> Result<Option<OutboundRequest>, Classified>,
    classify: impl Fn(&ResponseSummary) -> Classified,
    read: impl Fn(&Value) -> Vec<crate::Choice>,
) -> Result<Vec<crate::Choice>, Classified> {
    let mut out = Vec::new();
    let mut previous: Option<Value> = None;
    for page in 0..MAX_PAGES {
        let Some(request) = next(page, previous.as_ref())? else { break };
        let answer = exchange.expect(request, &classify).await?;
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| Classified::retry(None, "the destination's answer was not the listing expected (or was too large)"))?;
        out.extend(read(&body));
        if out.len() >= crate::MAX_CHOICES {
            break;
        }
        previous = Some(body);
    }
    out.truncate(crate::MAX_CHOICES);
    Ok(out)
}

/// The default classification for listings: HTTP semantics with the vendor's message at `paths`.
pub fn listing_classifier(paths: &'static [&'static str]) -> impl Fn(&ResponseSummary) -> Classified {
    move |r| classify_with_message(r, paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_keep_documented_paths_and_encode_ids() {
        let config = json!({"base_url": "http://127.0.0.1:4000"});
        let url = endpoint(&config, "https://api.example.com", &["3.0", "lists", "a/b c", "members"]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4000/3.0/lists/a%2Fb%20c/members");
        let url = endpoint(&json!({}), "https://api.example.com/", &["v2", "x"]).unwrap();
        assert_eq!(url.as_str(), "https://api.example.com/v2/x");
    }
}
