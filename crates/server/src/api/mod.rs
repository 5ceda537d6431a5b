//! The HTTP API under `/api/v1`, one module per resource, each with its own `router()`; merged
//! here with the operational endpoints and the OpenAPI document generated from the handlers.

pub mod api_keys;
pub mod audit_log;
pub mod blueprints;
pub mod common;
pub mod connections;
pub mod deliveries;
pub mod event_types;
pub mod events;
pub mod oauth;
pub mod options;
pub mod plans;
pub mod rules;
pub mod secrets;
pub mod sessions;
pub mod stats;
pub mod team;
pub mod workspaces;

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use switchyard_destinations::CatalogEntry;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard",
        description = "The outbound integration layer for SaaS products: events in, deliveries out, with retries, history and replay."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "workspaces", description = "The isolation boundary: keys, connections, rules and history of one customer or environment."),
        (name = "connections", description = "Configured destinations with write-only credentials."),
        (name = "rules", description = "Which events go to which connection."),
        (name = "events", description = "Ingestion and event history."),
        (name = "deliveries", description = "One event through one rule: attempts and replay."),
        (name = "sessions", description = "Short-lived tokens for embedded pages."),
        (name = "integrations", description = "The catalog of destination types."),
        (name = "api-keys", description = "Management credentials: admin, read-only, or scoped to workspaces."),
        (name = "audit", description = "Who changed what, when, and from where."),
        (name = "team", description = "The people who run the installation, their console sign-ins, and the installation's state."),
        (name = "blueprints", description = "One integration design (connections, rules, templates, mappings, event types) for many workspaces (see docs/blueprints.md)."),
        (name = "plans", description = "Plans and their limits, and what each workspace has used of them (see docs/limits.md)."),
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, format, description) in [
            (
                "api_key",
                "sk_",
                "API key. Scope `admin`: everything; `read_only`: every GET; `workspaces`: the listed workspaces, with a role in each. \
                 An operation's requirement names `installation` (admin scope only, read-only scope for reads) or the least workspace role.",
            ),
            ("publishable_key", "pk_", "Publishable key: POST /events into its workspace only. Also accepted as X-Publishable-Key."),
            ("session_token", "st_", "Embed session token: its role, inside its workspace. An operation's requirement names the least role."),
        ] {
            let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format(format).description(Some(description)).build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
    }
}

fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(workspaces::router())
        .merge(connections::router())
        .merge(rules::router())
        .merge(events::router())
        .merge(event_types::router())
        .merge(secrets::router())
        .merge(blueprints::router())
        .merge(deliveries::router())
        .merge(sessions::router())
        .merge(stats::router())
        .merge(oauth::router())
        .merge(options::router())
        .merge(api_keys::router())
        .merge(audit_log::router())
        .merge(team::router())
        .merge(plans::router())
        .routes(routes!(list_integrations))
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = OpenApiRouter::<AppState>::with_openapi(ApiDoc::openapi()).nest("/api/v1", api_routes()).split_for_parts().1;
    document_common_answers(&mut doc);
    doc
}

/// Adds to every operation the answers any request of its kind can get, beside those its handler
/// documents: refused credentials where it takes one, a path that names nothing, a malformed or
/// invalid query or body, a body too large or too slow, and the server's own failures. Each has
/// the error shape.
fn document_common_answers(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build()
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
        for op in ops.into_iter().flatten() {
            let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_query = op.parameters.iter().flatten().any(|p| matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query));
            let has_body = op.request_body.is_some();
            let mut add = |status: &str, description: &str| {
                op.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description).into());
            };
            if has_query || has_body {
                add("400", "Malformed JSON or query string, or a value of the wrong type.");
                add("422", "A value is missing or not valid; `details` names each field.");
            }
            if has_body {
                add("408", "The request body did not arrive in time.");
                add("413", "The request body is larger than this endpoint accepts.");
            }
            if secured {
                add("401", "The credential is missing, unknown or expired.");
                add("403", "This credential may not do this: its kind, scope or role does not allow it.");
            }
            if path.contains('{') {
                add("404", "Nothing of that id here, or not this credential's to see.");
            }
            add(
                "429",
                "Too many requests: `rate_limited` past the credential's rate limit (or, without a valid credential, the client \
                 address's), or `quota_exceeded` past a limit of the workspace's plan; retry after `Retry-After` seconds. Every \
                 limited response carries `RateLimit-Policy` and `RateLimit` (docs/limits.md).",
            );
            add("500", "An internal error; it is logged, and the answer says no more.");
            add("503", "Unavailable for now (the database cannot be reached, or the server has too many connections); retry after `Retry-After` seconds.");
        }
    }
}

/// The whole HTTP surface of a node. Worker-only nodes serve just the operational endpoints.
/// `stop` ends the MCP endpoint's open streams at shutdown.
pub fn router(state: AppState, serve_api: bool, stop: tokio_util::sync::CancellationToken) -> Router {
    let ops = Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics));
    if !serve_api {
        return ops.fallback(not_found).method_not_allowed_fallback(method_not_allowed).with_state(state);
    }
    let (api, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api/v1", api_routes()).split_for_parts();
    document_common_answers(&mut spec);
    let spec = std::sync::Arc::new(spec);
    let app: Router = api
        .route("/oauth/callback", get(oauth::callback))
        .merge(crate::console::router())
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::layer))
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::rates::layer))
        .route("/api/v1/openapi.json", get(move || async move { Json(spec.as_ref().clone()) }))
        .route("/llms.txt", get(llms_txt))
        .merge(crate::embed::router())
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);
    // The MCP endpoint's tools call the API above, in process, with each request's credential.
    let mcp = crate::mcp::endpoint(app.clone(), stop);
    app.merge(mcp)
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

async fn method_not_allowed() -> ApiError {
    let mut e = ApiError::bad_request("this method is not allowed on this path");
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e.code = "method_not_allowed";
    e
}

#[derive(serde::Serialize, utoipa::ToSchema)]
struct Catalog {
    data: Vec<CatalogEntry>,
}

/// Every destination type: its auth, config fields and actions.
#[utoipa::path(get, path = "/integrations", tag = "integrations", responses((status = 200, body = Catalog)),
    security(("api_key" = ["viewer"]), ("session_token" = ["viewer"])))]
async fn list_integrations(State(state): State<AppState>, principal: Principal) -> ApiResult<Json<Catalog>> {
    principal.reads_something()?;
    Ok(Json(Catalog { data: state.registry.catalog() }))
}

/// `/llms.txt`: what an AI agent should know to use this server (see docs/agents.md).
async fn llms_txt() -> Response {
    ([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], include_str!("../../assets/llms.txt")).into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "unavailable"}))).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}
