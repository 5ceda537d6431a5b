//! One attempt's conversation with a destination: the requests a connector sends (one, or a few
//! for vendors without an upsert), each recorded with secrets removed, and the answers.

use crate::http::{ResponseSummary, Sender, EXCERPT_BYTES};
use crate::outcome::{classify_sent, Classified};
use crate::{OpenedSecrets, OutboundRequest};
use std::time::Duration;

/// Headers whose values are never recorded, whatever a connector marks.
const SECRET_HEADERS: &[&str] = &["authorization", "api-token", "x-api-key", "api-key", "cookie", "proxy-authorization"];
/// Query parameters whose values are never recorded.
const SECRET_PARAMS: &[&str] = &["api_key", "apikey", "key", "token", "access_token", "secret", "password", "signature", "sig"];
/// Text shorter than this is not scrubbed from answers and errors (it would match everywhere).
const MIN_SCRUB_LEN: usize = 6;
/// Path segments of a secret URL at least this long are secrets too (tokens, not words).
const MIN_URL_SECRET_LEN: usize = 20;
pub const REDACTED: &str = "[redacted]";
/// Up to this many patterns, answers are scrubbed by plain substring searches; past it, by one
/// automaton. Measured on a 2 KiB answer: 200 patterns cost 43 µs an attempt searched one by one
/// and 132 µs through an automaton built for the attempt, so the automaton only pays for a very
/// large payload.
const NAIVE_PATTERNS: usize = 1_000;

/// What was sent and what came back, for the attempt history.
#[derive(Debug, Clone)]
pub struct Step {
    /// `METHOD url`, the headers and the start of the body, secrets replaced by `[redacted]`.
    pub request: String,
    pub status: Option<u16>,
    pub response_excerpt: Option<String>,
}

/// One attempt's requests and answers, and what must never be recorded of them.
///
/// Credentials are redacted **where they were placed**: secret headers (whatever their length),
/// the parts of a secret URL (a Discord webhook's token) and secret query parameters. Request
/// bodies are recorded as built: no connector puts a credential in a body, and scrubbing a body
/// by content would tell an event's author which of the values they sent equals a credential.
///
/// Answers and errors can only be scrubbed by content (a destination may echo what it got). They
/// lose every form of the credentials that was sent (the values, their URL- and JSON-escaped
/// forms, the secret header values such as `Basic <base64>`) and, so that scrubbing never
/// confirms a guess, every value the event carries (a value in the payload that equals a
/// credential is then redacted exactly like any other value of the payload). Values shorter than
/// six characters are too common to scrub from free text; in errors, they are still removed
/// where they are quoted.
pub struct Exchange<'a> {
    sender: &'a Sender,
    timeout: Duration,
    /// Every string of the credentials and signing secrets, whatever its length.
    credentials: Vec<String>,
    /// Parts of credentials that are URLs: where they appear in a request URL, they are secrets.
    url_parts: Vec<String>,
    /// Removed from answers and errors, longest first.
    scrub: Vec<String>,
    /// The event's short values, removed from answers and errors where quoted.
    short_values: Vec<String>,
    /// `scrub` and the quoted short values as one automaton, with each pattern's replacement,
    /// for payloads of very many values: built when first needed, once per change.
    matcher: std::sync::OnceLock<Option<(aho_corasick::AhoCorasick, Vec<String>)>>,
    steps: Vec<Step>,
}

impl<'a> Exchange<'a> {
    /// `payload` is the event's payload as stored (JSON text).
    pub fn new(sender: &'a Sender, timeout: Duration, secrets: &OpenedSecrets, payload: &str) -> Self {
        let mut credentials = Vec::new();
        if let Some(c) = &secrets.credentials {
            collect_strings(c, &mut credentials);
        }
        credentials.extend(secrets.signing_secrets.iter().cloned());
        credentials.retain(|s| !s.is_empty());
        let mut url_parts = Vec::new();
        for c in &credentials {
            if let Ok(url) = url::Url::parse(c) {
                url_parts.extend(url.path_segments().into_iter().flatten().filter(|p| p.len() >= MIN_URL_SECRET_LEN).map(str::to_owned));
                url_parts.extend(url.password().map(str::to_owned));
            }
        }
        let mut scrub = Vec::new();
        for c in credentials.iter().chain(&url_parts) {
            scrub.push(c.clone());
            scrub.push(url::form_urlencoded::byte_serialize(c.as_bytes()).collect());
            let json = serde_json::to_string(c).unwrap_or_default();
            let json = json[1..json.len().saturating_sub(1).max(1)].to_owned();
            // Some encoders (PHP's among them) escape slashes too.
            scrub.push(json.replace('/', "\\/"));
            scrub.push(json);
        }
        let mut short_values = Vec::new();
        if let Ok(payload) = serde_json::from_str::<serde_json::Value>(payload) {
            let mut values = Vec::new();
            collect_scalars(&payload, &mut values);
            for v in values {
                if v.len() >= MIN_SCRUB_LEN {
                    scrub.push(v);
                } else if !v.is_empty() {
                    short_values.push(v);
                }
            }
        }
        let mut x =
            Self { sender, timeout, credentials, url_parts, scrub, short_values, matcher: std::sync::OnceLock::new(), steps: Vec::new() };
        x.settle_scrub();
        x
    }

    fn settle_scrub(&mut self) {
        self.scrub.retain(|s| s.len() >= MIN_SCRUB_LEN);
        self.scrub.sort();
        self.scrub.dedup();
        self.matcher = std::sync::OnceLock::new();
    }

    fn matcher(&self) -> Option<&(aho_corasick::AhoCorasick, Vec<String>)> {
        self.matcher
            .get_or_init(|| {
                let mut patterns: Vec<String> = Vec::with_capacity(self.scrub.len() + 4 * self.short_values.len());
                let mut replacements = Vec::with_capacity(patterns.capacity());
                for s in &self.scrub {
                    patterns.push(s.clone());
                    replacements.push(REDACTED.to_owned());
                }
                for value in &self.short_values {
                    for (open, close) in [("'", "'"), ("\"", "\""), ("`", "`"), ("\\\"", "\\\"")] {
                        patterns.push(format!("{open}{value}{close}"));
                        replacements.push(format!("{open}{REDACTED}{close}"));
                    }
                }
                if patterns.is_empty() {
                    return None;
                }
                // Leftmost-longest: a value containing another is replaced whole.
                aho_corasick::AhoCorasick::builder()
                    .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                    // Built per attempt and used on a few KiB: the cheapest to build.
                    .kind(Some(aho_corasick::AhoCorasickKind::NoncontiguousNFA))
                    .build(&patterns)
                    .ok()
                    .map(|m| (m, replacements))
            })
            .as_ref()
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

    /// Removes from an answer or an error every form of the credentials sent, and the event's
    /// values (see the type's documentation).
    pub fn redact(&self, text: &str) -> String {
        // A few patterns (the usual case): a substring search each is cheaper than building an
        // automaton on every attempt. Many (a large payload): one pass of the automaton.
        if self.scrub.len() + 4 * self.short_values.len() > NAIVE_PATTERNS {
            return match self.matcher() {
                Some((matcher, replacements)) => matcher.replace_all(text, replacements),
                None => text.to_owned(),
            };
        }
        let mut out = text.to_owned();
        // Longest first, so a value containing another is replaced whole.
        let mut scrub: Vec<&String> = self.scrub.iter().filter(|s| out.contains(s.as_str())).collect();
        scrub.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in scrub {
            out = out.replace(secret.as_str(), REDACTED);
        }
        for value in &self.short_values {
            for (open, close) in [("'", "'"), ("\"", "\""), ("`", "`"), ("\\\"", "\\\"")] {
                let quoted = format!("{open}{value}{close}");
                if out.contains(&quoted) {
                    out = out.replace(&quoted, &format!("{open}{REDACTED}{close}"));
                }
            }
        }
        out
    }

    /// The request as recorded: secrets removed where they were placed.
    fn describe(&mut self, req: &OutboundRequest) -> String {
        let mut text = format!("{} {}\n", req.method, self.recorded_url(&req.url));
        let mut sent_secrets = Vec::new();
        for (name, value) in &req.headers {
            let raw = String::from_utf8_lossy(value.as_bytes()).into_owned();
            let secret = value.is_sensitive() || SECRET_HEADERS.contains(&name.as_str()) || self.carries_credential(&raw);
            if secret {
                // An echo of it in the answer is a credential too (`Basic <base64>`, a token).
                if let Some((_, token)) = raw.split_once(' ') {
                    sent_secrets.push(token.to_owned());
                }
                sent_secrets.push(format!("{name}: {raw}"));
                sent_secrets.push(raw);
                text.push_str(&format!("{name}: {REDACTED}\n"));
            } else {
                text.push_str(&format!("{name}: {raw}\n"));
            }
        }
        self.scrub.extend(sent_secrets);
        self.settle_scrub();
        if !req.body.is_empty() {
            let end = req.body.len().min(EXCERPT_BYTES);
            text.push('\n');
            text.push_str(&String::from_utf8_lossy(&req.body[..end]));
        }
        text
    }

    /// Whether a header value is, or holds, a credential (`Bearer <token>`, a raw key).
    fn carries_credential(&self, value: &str) -> bool {
        self.credentials
            .iter()
            .any(|c| value == c || value.rsplit(' ').next() == Some(c.as_str()) || (c.len() >= MIN_SCRUB_LEN && value.contains(c.as_str())))
    }

    /// The URL with the parts of secret URLs and secret query parameters redacted.
    fn recorded_url(&self, url: &url::Url) -> String {
        let mut url = url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some(REDACTED));
        }
        if url.query().is_some() {
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    // By name only: a value that came from the event and happens to equal a
                    // credential is shown as sent, like any other.
                    let secret = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
                    (k.into_owned(), if secret { REDACTED.to_owned() } else { v.into_owned() })
                })
                .collect();
            url.query_pairs_mut().clear().extend_pairs(pairs);
        }
        let mut text = url.to_string();
        for part in &self.url_parts {
            text = text.replace(part.as_str(), REDACTED);
        }
        text
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// Every string and number of a payload, as text.
fn collect_scalars(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_scalars(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_scalars(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use serde_json::json;

    fn request(url: &str, headers: &[(&'static str, &str, bool)], body: &str) -> OutboundRequest {
        let mut map = HeaderMap::new();
        for (name, value, sensitive) in headers {
            let mut v = HeaderValue::from_str(value).unwrap();
            v.set_sensitive(*sensitive);
            map.insert(*name, v);
        }
        OutboundRequest {
            method: reqwest::Method::POST,
            url: url::Url::parse(url).unwrap(),
            headers: map,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn credentials_are_redacted_where_they_were_placed() {
        let sender = Sender::new(true);
        let secrets = OpenedSecrets {
            credentials: Some(
                json!({"api_key": "key-abcdef123-us6", "pin": "42", "hook": "https://discord.com/api/webhooks/1/abcdefghijklmnopqrstuvwxyz"}),
            ),
            signing_secrets: vec![],
        };
        let mut x = Exchange::new(&sender, Duration::from_secs(1), &secrets, r#"{"email":"a@b.co"}"#);
        let req = request(
            "https://discord.com/api/webhooks/1/abcdefghijklmnopqrstuvwxyz?wait=true&api_key=k1&x=1",
            &[
                ("authorization", "Basic eDprZXk=", true),
                ("x-custom", "token key-abcdef123-us6", false),
                ("x-short-secret", "42", true),
                ("x-short", "42", false),
                ("content-type", "application/json", false),
            ],
            r#"{"email":"a@b.co"}"#,
        );
        let text = x.describe(&req);
        for secret in ["key-abcdef123-us6", "eDprZXk=", "abcdefghijklmnopqrstuvwxyz", "k1", ": 42"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("content-type: application/json"));
        assert!(text.contains("x-short-secret: [redacted]") && text.contains("x-short: [redacted]"), "{text}");
        assert!(text.starts_with("POST https://discord.com/api/webhooks/1/[redacted]?wait=true&api_key=%5Bredacted%5D&x=1"), "{text}");
        assert!(text.contains(r#"{"email":"a@b.co"}"#), "{text}");
    }

    #[test]
    fn echoed_credentials_are_redacted_from_answers_in_every_form_sent() {
        let sender = Sender::new(true);
        let secrets = OpenedSecrets { credentials: Some(json!({"username": "ada", "password": "pa ss/wörd"})), signing_secrets: vec![] };
        let mut x = Exchange::new(&sender, Duration::from_secs(1), &secrets, "{}");
        x.describe(&request("https://h.example/", &[("authorization", "Basic YWRhOnBhIHNzL3fDtnJk", true)], ""));
        let echo = r#"{"headers":{"Authorization":"Basic YWRhOnBhIHNzL3fDtnJk"},"form":"pw=pa+ss%2Fw%C3%B6rd","json":"pa ss\/wörd"}"#;
        let shown = x.redact(echo);
        for form in ["YWRhOnBhIHNzL3fDtnJk", "pa+ss%2Fw%C3%B6rd", "pa ss"] {
            assert!(!shown.contains(form), "{form} in {shown}");
        }
    }

    /// An event's author who can read the history must not learn which of the values they sent
    /// equals a credential: right and wrong guesses are recorded alike.
    #[test]
    fn redaction_never_tells_a_right_guess_from_a_wrong_one() {
        let sender = Sender::new(true);
        let secrets = OpenedSecrets { credentials: Some(json!({"password": "hunter2!"})), signing_secrets: vec![] };
        let record = |guess: &str| {
            let payload = json!({"guess": guess}).to_string();
            let mut x = Exchange::new(&sender, Duration::from_secs(1), &secrets, &payload);
            let sent = x.describe(&request("https://h.example/", &[("authorization", "Basic aHVudGVyMiE=", true)], &payload));
            // A destination that echoes the whole request, credential and payload.
            let answer = x.redact(&format!("got {payload} with password hunter2!"));
            (sent.replace(guess, "GUESS"), answer)
        };
        assert_eq!(record("hunter2!"), record("hunter3!"));
        assert_eq!(record("hunter2!").1, r#"got {"guess":"[redacted]"} with password [redacted]"#);
    }

    #[test]
    fn errors_lose_the_event_s_values_even_short_quoted_ones() {
        let sender = Sender::new(true);
        let x = Exchange::new(
            &sender,
            Duration::from_secs(1),
            &OpenedSecrets::default(),
            r#"{"age":"abc","email":"ada@example.com","n":1234567}"#,
        );
        let e = x.redact("payload.age: 'abc' is not a number; ada@example.com is taken; 1234567 too big; a b c");
        assert_eq!(e, "payload.age: '[redacted]' is not a number; [redacted] is taken; [redacted] too big; a b c");
    }

    /// Values containing one another are replaced whole; a payload of thousands of values is one
    /// pass over the answer.
    #[test]
    fn many_and_nested_values_are_all_replaced_whole() {
        let sender = Sender::new(true);
        let values: Vec<String> = (0..5_000).map(|i| format!("value-{i:05}")).collect();
        let payload = json!({"list": values, "outer": "value-00001-and-more"}).to_string();
        let x = Exchange::new(&sender, Duration::from_secs(1), &OpenedSecrets::default(), &payload);
        let answer = "saw value-04999, value-00001-and-more and value-00001; nothing else";
        assert_eq!(x.redact(answer), "saw [redacted], [redacted] and [redacted]; nothing else");
    }
}
