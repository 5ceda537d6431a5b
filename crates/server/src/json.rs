//! JSON request bodies. Malformed JSON and wrong types are 400 `bad_request`; missing or unknown
//! fields are 422 `validation_failed`; both name the field path (`retry_policy.max_attempts`).
//! An oversized body is 413 `payload_too_large`.

use crate::error::{ApiError, FieldDetail};
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req, state).await?;
        parse_json(&bytes).map(ValidJson)
    }
}

/// A raw body, buffered within the route's limit; rejections use the API's error shape.
pub struct RawBody(pub Bytes);

impl RawBody {
    /// Parses the body, or returns the default when it is empty (optional request bodies).
    pub fn parse_or_default<T: DeserializeOwned + Default>(&self) -> Result<T, ApiError> {
        if self.0.iter().all(u8::is_ascii_whitespace) {
            Ok(T::default())
        } else {
            parse_json(&self.0)
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_body(req, state).await.map(RawBody)
    }
}

/// Buffers a body within the route's limit.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large("the request body is larger than this endpoint accepts")
        } else if let Some(timed_out) = timed_out(&rejection) {
            ApiError::request_timeout(timed_out.to_string())
        } else {
            ApiError::bad_request(format!("could not read the request body: {rejection}"))
        }
    })
}

/// The body deadline's error (see [`crate::serve`]), if that is why the body could not be read.
fn timed_out(rejection: &axum::extract::rejection::BytesRejection) -> Option<&crate::serve::BodyTimedOut> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(e) = cause {
        if let Some(t) = e.downcast_ref::<crate::serve::BodyTimedOut>() {
            return Some(t);
        }
        cause = e.source();
    }
    None
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON document"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        describe(&path, &inner)
    })?;
    de.end().map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Why well-formed JSON kept as raw text (an event's payload) could not be read back as a
/// `serde_json::Value`, which is how rules' conditions, templates and mappings read it: nesting
/// deeper than serde_json's limit, a number beyond a 64-bit float's range, or a `\u` escape of
/// half a UTF-16 surrogate pair. `raw` must be well-formed JSON (a `RawValue`'s text).
pub fn unreadable(raw: &str) -> Option<&'static str> {
    let b = raw.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some("nests deeper than 127 levels");
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => match string_end(b, i + 1) {
                Some(end) => i = end,
                None => return Some("holds a \\u escape of half a UTF-16 surrogate pair"),
            },
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                if !raw[start..i].parse::<f64>().is_ok_and(f64::is_finite) {
                    return Some("holds a number beyond the range of a 64-bit float");
                }
            }
            _ => i += 1,
        }
    }
    None
}

/// serde_json refuses a document nested deeper than this (its recursion limit, 128, counts the
/// outermost value too).
const MAX_DEPTH: usize = 127;

/// Where the string whose text starts at `i` ends (after its closing quote); `None` if it holds
/// a lone surrogate escape.
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    let unit = |at: usize| b.get(at..at + 4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u16::from_str_radix(h, 16).ok());
    while i < b.len() {
        match b[i] {
            b'"' => return Some(i + 1),
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let first = unit(i + 2)?;
                i += 6;
                match first {
                    0xD800..=0xDBFF => {
                        let escaped = b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u');
                        if !escaped || !matches!(unit(i + 2), Some(0xDC00..=0xDFFF)) {
                            return None;
                        }
                        i += 6;
                    }
                    0xDC00..=0xDFFF => return None,
                    _ => {}
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Some(i)
}

fn describe(path: &str, e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::bad_request(format!("malformed JSON: {message}")),
        Category::Data => {
            let quoted = message.split('`').nth(1).unwrap_or_default();
            let join = |name: &str| if path == "." || path.is_empty() { name.to_owned() } else { format!("{path}.{name}") };
            if message.starts_with("missing field") {
                ApiError::validation(vec![FieldDetail { field: join(quoted), message: "is required".into(), line: None, column: None }])
            } else if message.starts_with("unknown field") {
                // The path already ends at the unknown field.
                ApiError::validation(vec![FieldDetail {
                    field: path.to_owned(),
                    message: "is not a known field".into(),
                    line: None,
                    column: None,
                }])
            } else {
                let field = if path == "." { "body".to_owned() } else { path.to_owned() };
                let mut err = ApiError::bad_request(format!("{field}: {message}"));
                err.details.push(FieldDetail { field, message, line: None, column: None });
                err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn unreadable_agrees_with_what_serde_json_values_can_read() {
        let mut docs: Vec<String> = Vec::new();
        for depth in 120..=135 {
            docs.push(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
            docs.push(format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth)));
        }
        for n in [
            "0",
            "-1.5",
            "1e308",
            "1e309",
            "-1e400",
            "1E-400",
            "123456789012345678901234567890",
            &"9".repeat(400),
            "1.7976931348623157e308",
        ] {
            docs.push(format!(r#"{{"n": [{n}]}}"#));
        }
        for text in [
            r#"\ud800"#,
            r#"\udc00"#,
            r#"\ud83d\ude00"#,
            r#"\\ud800"#,
            r#"\ud83d x"#,
            r#"\ud83d\u0041"#,
            r#"a\"\ud800"#,
            r#"\u00e9 {[ 1e999"#,
        ] {
            docs.push(format!(r#"{{"s": "{text}", "k{text}": 1}}"#));
        }
        for doc in &docs {
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(doc).is_ok(), "not well-formed: {doc:.40}");
            let readable = serde_json::from_str::<serde_json::Value>(doc).is_ok();
            assert_eq!(unreadable(doc).is_none(), readable, "{doc:.60}: {:?}", unreadable(doc));
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        max_attempts: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        policy: Option<Inner>,
    }

    #[test]
    fn errors_name_the_field_and_pick_the_status() {
        let e = parse_json::<Body>(b"{").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "bad_request"));
        let e = parse_json::<Body>(br#"{"name": 5}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.details[0].field.as_str()), (400, "name"));
        let e = parse_json::<Body>(br#"{"name": "x", "policy": {"max_attempts": "many"}}"#).unwrap_err();
        assert_eq!(e.details[0].field, "policy.max_attempts");
        let e = parse_json::<Body>(br#"{}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.details[0].field.as_str()), (422, "name"));
        let e = parse_json::<Body>(br#"{"name": "x", "policy": {}}"#).unwrap_err();
        assert_eq!(e.details[0].field, "policy.max_attempts");
        let e = parse_json::<Body>(br#"{"name": "x", "nme": 1}"#).unwrap_err();
        assert_eq!((e.status.as_u16(), e.details[0].field.as_str()), (422, "nme"));
        let e = parse_json::<Body>(b"   ").unwrap_err();
        assert_eq!(e.code, "bad_request");
    }
}
