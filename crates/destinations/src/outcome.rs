//! What an attempt's result means: success, retry (perhaps after a wait the destination asked
//! for), or a permanent failure. Destinations signal "later" in different ways; they are
//! normalised here into one wait.

use crate::http::{ResponseSummary, Sent, TransportErrorKind};
use reqwest::header::HeaderMap;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Try again; `after` is the destination's requested wait, if it named one.
    Retry {
        after: Option<Duration>,
    },
    Permanent,
}

/// An outcome with the short reason recorded as the attempt's error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    pub outcome: Outcome,
    pub error: Option<String>,
}

impl Classified {
    pub fn success() -> Self {
        Self { outcome: Outcome::Success, error: None }
    }

    pub fn retry(after: Option<Duration>, error: impl Into<String>) -> Self {
        Self { outcome: Outcome::Retry { after }, error: Some(error.into()) }
    }

    pub fn permanent(error: impl Into<String>) -> Self {
        Self { outcome: Outcome::Permanent, error: Some(error.into()) }
    }
}

/// HTTP semantics: 2xx succeeds; 408, 425, 429 and 5xx retry (honouring Retry-After); other
/// statuses (4xx, and 3xx since redirects are not followed) are permanent.
pub fn classify_http(r: &ResponseSummary) -> Classified {
    match r.status {
        200..=299 => Classified::success(),
        408 | 425 | 429 | 500..=599 => Classified::retry(retry_after(&r.headers, SystemTime::now()), format!("HTTP {}", r.status)),
        300..=399 => Classified::permanent(format!("HTTP {} (redirects are not followed)", r.status)),
        _ => Classified::permanent(format!("HTTP {}", r.status)),
    }
}

/// Classifies a whole attempt: transport failures first, then the connector's view of the response.
pub fn classify_sent(sent: &Sent, classify_response: impl FnOnce(&ResponseSummary) -> Classified) -> Classified {
    match &sent.result {
        Ok(response) => classify_response(response),
        Err(e) => match e.kind {
            TransportErrorKind::Forbidden => Classified::permanent(e.message.clone()),
            TransportErrorKind::Timeout | TransportErrorKind::Connect | TransportErrorKind::Other => {
                Classified::retry(None, e.message.clone())
            }
        },
    }
}

/// Reads `Retry-After` as delay seconds (integer or fractional) or an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, RETRY_AFTER};

    fn response(status: u16, retry: Option<&str>) -> ResponseSummary {
        let mut headers = HeaderMap::new();
        if let Some(r) = retry {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(r).unwrap());
        }
        ResponseSummary { status, headers, body: Default::default() }
    }

    #[test]
    fn statuses_map_to_the_documented_outcomes() {
        assert_eq!(classify_http(&response(204, None)).outcome, Outcome::Success);
        for s in [408, 425, 429, 500, 502, 503, 599] {
            assert!(matches!(classify_http(&response(s, None)).outcome, Outcome::Retry { .. }), "{s}");
        }
        for s in [301, 400, 401, 403, 404, 410, 422] {
            assert_eq!(classify_http(&response(s, None)).outcome, Outcome::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        let later = now + Duration::from_secs(120);
        h.insert(RETRY_AFTER, HeaderValue::from_str(&httpdate::fmt_http_date(later)).unwrap());
        let d = retry_after(&h, now).unwrap();
        assert!(d <= Duration::from_secs(120) && d >= Duration::from_secs(118), "{d:?}");
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("-4"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn a_429_carries_its_requested_wait() {
        let c = classify_http(&response(429, Some("7")));
        assert_eq!(c.outcome, Outcome::Retry { after: Some(Duration::from_secs(7)) });
    }
}
