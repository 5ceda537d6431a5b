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
    /// The destination said "too many requests": the whole connection should slow down, not
    /// only this delivery.
    pub rate_limited: bool,
    /// The destination refused the credential (HTTP 401, Slack `token_expired`): an OAuth token
    /// is refreshed and the attempt made once more; otherwise this is permanent.
    pub unauthorized: bool,
}

impl Classified {
    pub fn success() -> Self {
        Self { outcome: Outcome::Success, error: None, rate_limited: false, unauthorized: false }
    }

    pub fn retry(after: Option<Duration>, error: impl Into<String>) -> Self {
        Self { outcome: Outcome::Retry { after }, error: Some(error.into()), rate_limited: false, unauthorized: false }
    }

    /// A rate limit: retry after the destination's wait, and hold the connection until then.
    pub fn rate_limited(after: Option<Duration>, error: impl Into<String>) -> Self {
        Self { outcome: Outcome::Retry { after }, error: Some(error.into()), rate_limited: true, unauthorized: false }
    }

    pub fn permanent(error: impl Into<String>) -> Self {
        Self { outcome: Outcome::Permanent, error: Some(error.into()), rate_limited: false, unauthorized: false }
    }

    /// The credential was refused: permanent, unless a refreshed token gets past it.
    pub fn unauthorized(error: impl Into<String>) -> Self {
        Self { unauthorized: true, ..Self::permanent(error) }
    }

    /// Adds detail (the vendor's own message) to the recorded error.
    pub fn with_detail(mut self, detail: &str) -> Self {
        let detail = detail.trim();
        if !detail.is_empty() {
            let base = self.error.take().unwrap_or_default();
            let detail: String = detail.chars().take(300).collect();
            self.error = Some(if base.is_empty() { detail } else { format!("{base}: {detail}") });
        }
        self
    }
}

/// HTTP semantics: 2xx succeeds; 408, 425, 429 and 5xx retry (honouring the destination's
/// requested wait, see [`requested_wait`]); other statuses (4xx, and 3xx since redirects are not
/// followed) are permanent.
pub fn classify_http(r: &ResponseSummary) -> Classified {
    match r.status {
        200..=299 => Classified::success(),
        429 => Classified::rate_limited(requested_wait(r, SystemTime::now()), "HTTP 429"),
        408 | 425 | 500..=599 => Classified::retry(requested_wait(r, SystemTime::now()), format!("HTTP {}", r.status)),
        300..=399 => Classified::permanent(format!("HTTP {} (redirects are not followed)", r.status)),
        401 => Classified::unauthorized("HTTP 401"),
        _ => Classified::permanent(format!("HTTP {}", r.status)),
    }
}

/// How long the destination asked us to wait, whatever way it said it. One place for every
/// vendor's dialect, tried in this order:
/// - `Retry-After`: delay seconds, integer or fractional (Slack, Resend, Intercom, MailerLite,
///   Discord), or an HTTP date;
/// - a JSON body's `retry_after` in float seconds (Discord);
/// - `X-RateLimit-Reset` / `RateLimit-Reset`: an epoch time in seconds when it is larger than
///   10^9 (SendGrid, Intercom), otherwise delay seconds;
/// - HubSpot's `X-HubSpot-RateLimit-Interval-Milliseconds` when `...-Remaining` is 0: the
///   window's length.
pub fn requested_wait(r: &ResponseSummary, now: SystemTime) -> Option<Duration> {
    if let Some(wait) = retry_after(&r.headers, now) {
        return Some(wait);
    }
    if r.body.first() == Some(&b'{') {
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&r.body) {
            if let Some(secs) = body.get("retry_after").and_then(serde_json::Value::as_f64).filter(|s| s.is_finite() && *s >= 0.0) {
                return Some(Duration::from_secs_f64(secs.min(1e9)));
            }
        }
    }
    for name in ["x-ratelimit-reset", "ratelimit-reset"] {
        if let Some(value) = header_f64(&r.headers, name) {
            let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
            let wait = if value > 1e9 { value - now_secs } else { value };
            return Some(Duration::from_secs_f64(wait.clamp(0.0, 1e9)));
        }
    }
    if header_f64(&r.headers, "x-hubspot-ratelimit-remaining") == Some(0.0) {
        if let Some(ms) = header_f64(&r.headers, "x-hubspot-ratelimit-interval-milliseconds") {
            return Some(Duration::from_millis(ms.clamp(0.0, 1e12) as u64));
        }
    }
    None
}

fn header_f64(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok().filter(|v| v.is_finite())
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
        assert!(c.rate_limited);
        assert!(!classify_http(&response(503, Some("7"))).rate_limited);
    }

    #[test]
    fn every_vendor_dialect_of_wait_is_understood() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let with = |pairs: &[(&str, &str)], body: &str| {
            let mut headers = HeaderMap::new();
            for (k, v) in pairs {
                headers.insert(reqwest::header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
            ResponseSummary { status: 429, headers, body: bytes::Bytes::from(body.to_owned()) }
        };
        // Discord: float seconds in the body (and the header).
        assert_eq!(requested_wait(&with(&[], r#"{"retry_after": 64.57, "global": false}"#), now), Some(Duration::from_secs_f64(64.57)));
        assert_eq!(requested_wait(&with(&[("retry-after", "1.25")], ""), now), Some(Duration::from_millis(1250)));
        // SendGrid and Intercom: the epoch second the window resets.
        assert_eq!(requested_wait(&with(&[("x-ratelimit-reset", "1800000030")], ""), now), Some(Duration::from_secs(30)));
        assert_eq!(requested_wait(&with(&[("x-ratelimit-reset", "12")], ""), now), Some(Duration::from_secs(12)));
        // A reset already past means "now".
        assert_eq!(requested_wait(&with(&[("x-ratelimit-reset", "1700000000")], ""), now), Some(Duration::ZERO));
        // HubSpot: the window length once nothing remains.
        let hubspot = [("x-hubspot-ratelimit-remaining", "0"), ("x-hubspot-ratelimit-interval-milliseconds", "10000")];
        assert_eq!(requested_wait(&with(&hubspot, r#"{"errorType":"RATE_LIMIT"}"#), now), Some(Duration::from_secs(10)));
        assert_eq!(requested_wait(&with(&hubspot[1..], ""), now), None);
        assert_eq!(requested_wait(&with(&[], "not json"), now), None);
    }
}
