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
                ApiError::validation(vec![FieldDetail { field: join(quoted), message: "is required".into() }])
            } else if message.starts_with("unknown field") {
                // The path already ends at the unknown field.
                ApiError::validation(vec![FieldDetail { field: path.to_owned(), message: "is not a known field".into() }])
            } else {
                let field = if path == "." { "body".to_owned() } else { path.to_owned() };
                let mut err = ApiError::bad_request(format!("{field}: {message}"));
                err.details.push(FieldDetail { field, message });
                err
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

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
