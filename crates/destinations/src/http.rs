//! The one HTTP client every connector sends through: pooled connections, no redirects, a timeout
//! per attempt, the address guard, and a bounded read of the response.

use crate::guard::{self, ForbiddenAddress, GuardedResolver};
use crate::OutboundRequest;
use bytes::{Bytes, BytesMut};
use reqwest::header::HeaderMap;
use std::error::Error as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a response is kept in the attempt history.
pub const EXCERPT_BYTES: usize = 2048;
/// How much of a response body is read for classification; the rest is dropped unread.
const READ_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    read_limit: usize,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct ResponseSummary {
    pub status: u16,
    pub headers: HeaderMap,
    /// The start of the body (up to 64 KiB), for connectors that classify by content.
    pub body: Bytes,
}

impl ResponseSummary {
    /// The first 2 KiB of the body as text, for the attempt history.
    pub fn excerpt(&self) -> String {
        let end = self.body.len().min(EXCERPT_BYTES);
        String::from_utf8_lossy(&self.body[..end]).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportErrorKind {
    Timeout,
    Connect,
    /// The address guard refused the destination.
    Forbidden,
    Other,
}

#[derive(Debug, Clone)]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub result: Result<ResponseSummary, TransportError>,
    pub duration: Duration,
}

impl Sender {
    pub fn new(allow_private: bool) -> Self {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect on our behalf and bypass the address guard.
            .no_proxy()
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(GuardedResolver));
        }
        let client = builder.build().expect("the HTTP client's static configuration is valid");
        Self { client, allow_private, read_limit: READ_LIMIT }
    }

    /// The same client reading up to `bytes` of each answer (listings of a destination's choices
    /// are larger than delivery answers).
    pub fn with_read_limit(mut self, bytes: usize) -> Self {
        self.read_limit = bytes;
        self
    }

    pub async fn send(&self, req: OutboundRequest, timeout: Duration) -> Sent {
        let started = Instant::now();
        let result = self.send_inner(req, timeout).await;
        Sent { result, duration: started.elapsed() }
    }

    async fn send_inner(&self, req: OutboundRequest, timeout: Duration) -> Result<ResponseSummary, TransportError> {
        // Literal addresses never reach the resolver, so they are checked here.
        if !self.allow_private {
            let literal = match req.url.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some(ip) = literal.filter(|ip| guard::is_forbidden(*ip)) {
                return Err(TransportError { kind: TransportErrorKind::Forbidden, message: ForbiddenAddress(ip.to_string()).to_string() });
            }
            if guard::check_url(&req.url, false).is_err() {
                let host = req.url.host_str().unwrap_or_default().to_owned();
                return Err(TransportError { kind: TransportErrorKind::Forbidden, message: ForbiddenAddress(host).to_string() });
            }
        }
        let deadline = Instant::now() + timeout;
        let response = self
            .client
            .request(req.method, req.url)
            .headers(req.headers)
            .body(req.body)
            .timeout(timeout)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_bounded(response, self.read_limit, deadline).await?;
        Ok(ResponseSummary { status, headers, body })
    }
}

/// Reads up to `limit` bytes of the body by `deadline`; the rest is dropped unread (which closes
/// the connection rather than draining it). A body that stalls or breaks off fails the attempt,
/// and the error says how far it got.
async fn read_bounded(mut response: reqwest::Response, limit: usize, deadline: Instant) -> Result<Bytes, TransportError> {
    let status = response.status().as_u16();
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        let chunk = match tokio::time::timeout_at(deadline.into(), response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) if !e.is_timeout() => {
                let message = format!("the response (HTTP {status}) broke off after {} bytes: {}", buf.len(), root_cause(&e));
                return Err(TransportError { kind: TransportErrorKind::Other, message });
            }
            Ok(Err(_)) | Err(_) => {
                let message = format!("timed out reading the response (HTTP {status}, {} bytes read)", buf.len());
                return Err(TransportError { kind: TransportErrorKind::Timeout, message });
            }
        };
        buf.extend_from_slice(&chunk[..chunk.len().min(limit - buf.len())]);
    }
    Ok(buf.freeze())
}

fn transport_error(e: reqwest::Error) -> TransportError {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(forbidden) = s.downcast_ref::<ForbiddenAddress>() {
            return TransportError { kind: TransportErrorKind::Forbidden, message: forbidden.to_string() };
        }
        source = s.source();
    }
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    let message = match kind {
        TransportErrorKind::Timeout => "timed out waiting for the destination".to_owned(),
        TransportErrorKind::Connect => format!("could not connect: {}", root_cause(&e)),
        _ => format!("request failed: {}", root_cause(&e)),
    };
    TransportError { kind, message }
}

/// The innermost error message (reqwest's own wraps it in context that repeats the URL).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_keeps_the_first_2_kib_even_mid_character() {
        let body = "é".repeat(3000); // 2 bytes each: byte 2048 falls on a boundary, 2047 would not
        let r = ResponseSummary { status: 200, headers: HeaderMap::new(), body: Bytes::from(format!("x{body}")) };
        let excerpt = r.excerpt();
        assert!(excerpt.len() <= EXCERPT_BYTES + 2);
        assert!(excerpt.starts_with("xé"));
        assert_eq!(ResponseSummary { status: 200, headers: HeaderMap::new(), body: Bytes::from_static(b"short") }.excerpt(), "short");
    }
}
