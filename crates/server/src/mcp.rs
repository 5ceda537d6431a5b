//! `/mcp`: the Model Context Protocol over streamable HTTP, with the same credentials as the API.
//!
//! Each tool call becomes an API request sent through this node's own router, in process, with
//! the MCP request's `Authorization` header: the same authentication, scopes, roles, validation
//! and audit entries as a call from outside, and nothing an API client could not do.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::{header, Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_client::{Client, Exchange, Transport};
use tower::ServiceExt;

/// The largest API answer a tool call reads: a page of 200 events of the largest size (256 KiB
/// each) is 50 MiB.
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Sends the client's requests through the router, as if from the MCP request's own connection.
struct InProcess {
    router: Router,
    peer: Option<ConnectInfo<SocketAddr>>,
    /// The MCP request's own headers that the API reads about its caller (every value of each).
    forwarded: http::HeaderMap,
}

impl Transport for InProcess {
    fn send(&self, request: Request<Bytes>) -> Exchange<'_> {
        Box::pin(async move {
            let mut request = request.map(Body::from);
            if let Some(peer) = self.peer {
                request.extensions_mut().insert(peer);
            }
            for (name, value) in &self.forwarded {
                request.headers_mut().append(name.clone(), value.clone());
            }
            let response = self.router.clone().oneshot(request).await.unwrap_or_else(|never| match never {});
            let (parts, body) = response.into_parts();
            let body = axum::body::to_bytes(body, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| switchyard_client::Error::Transport(format!("the answer could not be read: {e}")))?;
            Ok(Response::from_parts(parts, body))
        })
    }
}

/// `/mcp` as the node serves it: a request without a bearer credential is refused with `401`, as
/// the API refuses one, before the protocol sees it.
pub fn endpoint(router: Router, stop: tokio_util::sync::CancellationToken) -> Router {
    let mcp = service(router, stop);
    Router::new().route_service("/mcp", mcp).layer(axum::middleware::from_fn(require_bearer))
}

async fn require_bearer(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    if crate::auth::bearer_token(request.headers()).is_none_or(str::is_empty) {
        let mut refused = axum::response::IntoResponse::into_response(crate::error::ApiError::unauthorized(
            "send the API key (or session token) as `Authorization: Bearer ...`, as for the API",
        ));
        refused.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return refused;
    }
    next.run(request).await
}

/// The `/mcp` service over `router` (the API it calls into).
pub fn service(
    router: Router,
    stop: tokio_util::sync::CancellationToken,
) -> rmcp::transport::StreamableHttpService<
    switchyard_mcp::Tools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let router = Arc::new(router);
    let make: switchyard_mcp::ClientForRequest = Arc::new(move |parts: &http::request::Parts| {
        let credential = crate::auth::bearer_token(&parts.headers)
            .filter(|v| !v.is_empty())
            .ok_or("send the API key (or session token) as `Authorization: Bearer ...`, as for the API")?;
        // The host the agent reached (launch URLs name it), where it came from (the audit log and
        // address limits read it, through a trusted proxy's every X-Forwarded-For line), and its
        // origin (a session token's allowed origins are checked against it).
        let mut forwarded = http::HeaderMap::new();
        for name in [header::HOST, header::USER_AGENT, header::ORIGIN, header::HeaderName::from_static("x-forwarded-for")] {
            for value in parts.headers.get_all(&name) {
                forwarded.append(name.clone(), value.clone());
            }
        }
        let transport =
            InProcess { router: Router::clone(&router), peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().copied(), forwarded };
        // The URL's host is never used to route: the request goes straight into the router.
        Client::with_transport("http://localhost", Some(credential), Arc::new(transport))
            .map(|c| c.retries(switchyard_client::Retries { max_retries: 0, ..Default::default() }))
            .map_err(|e| e.to_string())
    });
    switchyard_mcp::http_service(make, stop)
}
