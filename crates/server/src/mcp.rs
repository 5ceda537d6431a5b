//! `/mcp`: the Model Context Protocol over streamable HTTP, with the same credentials as the API.
//!
//! Each tool call becomes an API request sent through this node's own router, in process, with
//! the MCP request's `Authorization` header: the same authentication, scopes, roles, validation
//! and audit entries as a call from outside, and nothing an API client could not do.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use switchyard_client::{Client, Exchange, Transport};
use tower::ServiceExt;

/// The largest API answer a tool call reads (a page of 200 events with payloads fits easily).
const MAX_ANSWER_BYTES: usize = 32 << 20;

/// Sends the client's requests through the router, as if from the MCP request's own connection.
struct InProcess {
    router: Router,
    peer: Option<ConnectInfo<SocketAddr>>,
    forwarded: Vec<(header::HeaderName, HeaderValue)>,
}

impl Transport for InProcess {
    fn send(&self, request: Request<Bytes>) -> Exchange<'_> {
        Box::pin(async move {
            let mut request = request.map(Body::from);
            if let Some(peer) = self.peer {
                request.extensions_mut().insert(peer);
            }
            for (name, value) in &self.forwarded {
                request.headers_mut().insert(name.clone(), value.clone());
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
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .ok_or("send the API key (or session token) as `Authorization: Bearer ...`, as for the API")?;
        // Launch URLs and the like name the host the agent reached.
        let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let forwarded = [header::HOST, header::USER_AGENT, header::HeaderName::from_static("x-forwarded-for")]
            .into_iter()
            .filter_map(|name| parts.headers.get(&name).map(|v| (name, v.clone())))
            .collect();
        let transport =
            InProcess { router: Router::clone(&router), peer: parts.extensions.get::<ConnectInfo<SocketAddr>>().copied(), forwarded };
        Client::with_transport(&format!("http://{host}"), Some(credential), Arc::new(transport))
            .map(|c| c.retries(switchyard_client::Retries { max_retries: 0, ..Default::default() }))
            .map_err(|e| e.to_string())
    });
    switchyard_mcp::http_service(make, stop)
}
