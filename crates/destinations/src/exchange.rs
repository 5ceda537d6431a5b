//! One attempt's conversation with a destination: the requests a connector sends (one, or a few
//! for vendors without an upsert), each recorded with secrets removed, and the answers.

use crate::http::{ResponseSummary, Sender, EXCERPT_BYTES};
use crate::outcome::{classify_sent, Classified};
use crate::{OpenedSecrets, OutboundRequest};
use std::time::Duration;

/// Headers whose values are never recorded, whatever a connector marks.
const SECRET_HEADERS: &[&str] = &["authorization", "api-token", "x-api-key", "api-key", "cookie", "proxy-authorization"];
/// Secrets shorter than this are not scrubbed from text (they would match everywhere).
const MIN_SCRUB_LEN: usize = 6;
/// Path segments of a secret URL at least this long are secrets too (tokens, not words).
const MIN_URL_SECRET_LEN: usize = 20;
pub const REDACTED: &str = "[redacted]";

/// What was sent and what came back, for the attempt history.
#[derive(Debug, Clone)]
pub struct Step {
    /// `METHOD url`, the headers and the start of the body, secrets replaced by `[redacted]`.
    pub request: String,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
}

pub struct Exchange<'a> {
    sender: &'a Sender,
    timeout: Duration,
    scrub: Vec<String>,
    steps: Vec<Step>,
}

impl<'a> Exchange<'a> {
    pub fn new(sender: &'a Sender, timeout: Duration, secrets: &OpenedSecrets) -> Self {
        let mut scrub = Vec::new();
        if let Some(credentials) = &secrets.credentials {
            collect_strings(credentials, &mut scrub);
        }
        scrub.extend(secrets.signing_secrets.iter().cloned());
        scrub.retain(|s| s.len() >= MIN_SCRUB_LEN);
        // Longest first, so a secret containing another is replaced whole.
        scrub.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { sender, timeout, scrub, steps: Vec::new() }
    }

    /// Sends a request. Transport failures come back classified (timeouts and refused
    /// connections retry, a forbidden address is permanent); any HTTP answer is returned.
    pub async fn send(&mut self, req: OutboundRequest) -> Result<ResponseSummary, Classified> {
        let recorded = self.describe(&req);
        let sent = self.sender.send(req, self.timeout).await;
        let (status, excerpt) = match &sent.result {
            Ok(r) => (Some(r.status), Some(self.redact(&r.excerpt()))),
            Err(_) => (None, None),
        };
        self.steps.push(Step { request: recorded, status, response_excerpt: excerpt });
        match sent.result {
            Ok(response) => Ok(response),
            Err(_) => Err(classify_sent(&sent, |_| Classified::success())),
        }
    }

    /// Sends a request and lets `classify` judge the answer: a success returns the response,
    /// anything else stops the attempt with its classification.
    pub async fn expect(
        &mut self,
        req: OutboundRequest,
        classify: impl FnOnce(&ResponseSummary) -> Classified,
    ) -> Result<ResponseSummary, Classified> {
        let response = self.send(req).await?;
        let verdict = classify(&response);
        if verdict.outcome == crate::Outcome::Success {
            Ok(response)
        } else {
            Err(verdict)
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Every request of the attempt, for the attempt record; earlier steps show their status.
    pub fn request_record(&self) -> Option<String> {
        if self.steps.is_empty() {
            return None;
        }
        let last = self.steps.len() - 1;
        let parts: Vec<String> = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| match (i == last, s.status) {
                (false, Some(status)) => format!("{}\n-> HTTP {status}", s.request),
                (false, None) => format!("{}\n-> no response", s.request),
                (true, _) => s.request.clone(),
            })
            .collect();
        Some(parts.join("\n\n"))
    }

    /// The last answer's status and excerpt.
    pub fn last_response(&self) -> (Option<u16>, Option<String>) {
        self.steps.last().map(|s| (s.status, s.response_excerpt.clone())).unwrap_or((None, None))
    }

    /// Removes every known secret from text.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.scrub {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }

    fn describe(&self, req: &OutboundRequest) -> String {
        let mut text = format!("{} {}\n", req.method, req.url);
        for (name, value) in &req.headers {
            let shown = if value.is_sensitive() || SECRET_HEADERS.contains(&name.as_str()) {
                REDACTED.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            text.push_str(&format!("{name}: {shown}\n"));
        }
        if !req.body.is_empty() {
            let end = req.body.len().min(EXCERPT_BYTES);
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&req.body[..end]));
        }
        self.redact(&text)
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => {
            out.push(s.clone());
            // A secret URL (a Discord webhook) may be sent to another origin (a base_url): its
            // long path segments and password are secrets on their own.
            if let Ok(url) = url::Url::parse(s) {
                out.extend(url.path_segments().into_iter().flatten().filter(|p| p.len() >= MIN_URL_SECRET_LEN).map(str::to_owned));
                out.extend(url.password().map(str::to_owned));
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    #[test]
    fn recorded_requests_hide_secrets_in_headers_urls_and_bodies() {
        let sender = Sender::new(true);
        let secrets = OpenedSecrets { credentials: Some(json!({"api_key": "key-abcdef123-us6", "n": 1})), signing_secrets: vec![] };
        let x = Exchange::new(&sender, Duration::from_secs(1), &secrets);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Basic eDprZXk="));
        headers.insert("x-custom", HeaderValue::from_static("token key-abcdef123-us6"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let req = OutboundRequest {
            method: reqwest::Method::POST,
            url: url::Url::parse("https://h.example/hooks/key-abcdef123-us6?x=1").unwrap(),
            headers,
            body: bytes::Bytes::from_static(br#"{"key":"key-abcdef123-us6","email":"a@b.co"}"#),
        };
        let text = x.describe(&req);
        assert!(!text.contains("key-abcdef123-us6"), "{text}");
        assert!(!text.contains("eDprZXk="), "{text}");
        assert!(text.contains("content-type: application/json"));
        assert!(text.contains("a@b.co"));
        assert!(text.starts_with("POST https://h.example/hooks/[redacted]?x=1"), "{text}");
    }
}
