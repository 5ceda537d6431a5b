//! The console's server-rendered pages: the shell (signed in), the sign-in page, and the form
//! handlers for signing in with an admin key and signing out. Nothing inline: `script-src 'self'`.

use super::{clearing_cookie, cookie_token, csrf_token, sign_in_change, start_session, NewSignIn};
use crate::audit::{client_addr, Actor, Change};
use crate::embed::{escape, head_with, href, html};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use switchyard_core::crypto::{constant_time_eq, hash_token};
use switchyard_core::model::{KeyScopeKind, MemberRole};
use switchyard_store::EndSessions;

/// The console is never framed; it may frame its own (embedded) pages.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
     frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The client's address and user agent, for sign-in records and the throttle.
pub struct Client {
    pub addr: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0);
        Ok(Self {
            addr: client_addr(state, &parts.headers, peer),
            user_agent: parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned),
        })
    }
}

fn head(title: &str) -> String {
    head_with(title, &["app.css", "console.css"], "same-origin")
}

/// `GET /console`: the signed-in console, or the way to the sign-in page.
pub async fn shell(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if cookie_token(&headers).is_none() {
        return Redirect::to("/console/sign-in").into_response();
    }
    let (session, token) = match crate::auth::console_sign_in(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return Redirect::to("/console/sign-in?error=expired").into_response(),
        Err(e) => return e.into_response(),
    };
    let body = format!(
        "{head}<script src=\"/embed.js\" defer></script>\n<script src=\"{ui}\" defer></script>\n<script src=\"{script}\" defer></script>\n</head>\n\
         <body class=\"console\" data-csrf=\"{csrf}\" data-role=\"{role}\" data-label=\"{label}\" data-session-id=\"{id}\" data-member=\"{member}\">\n\
         <a class=\"skip\" href=\"#main\">Skip to content</a>\n<div class=\"console-shell\">\n\
         <header class=\"console-bar\"><span class=\"brand-name\">Switchyard console</span>\n\
         <span class=\"who\">{label} · {role}</span>\n\
         <form method=\"post\" action=\"/console/sign-out\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" class=\"link\">Sign out</button>\
         <button type=\"submit\" name=\"everywhere\" value=\"1\" class=\"link\">Sign out everywhere</button></form></header>\n\
         <nav id=\"nav\" aria-label=\"Console\"></nav>\n\
         <main id=\"main\" tabindex=\"-1\"><p class=\"status\" role=\"status\">Loading…</p>\n\
         <noscript><p>The console needs JavaScript.</p></noscript></main>\n</div>\n</body>\n</html>\n",
        head = head("Switchyard console"),
        ui = href("ui.js"),
        script = href("console.js"),
        csrf = escape(&csrf_token(token)),
        role = session.role,
        label = escape(&session.label),
        id = escape(session.id.as_str()),
        member = escape(session.member_id.as_ref().map(|m| m.as_str()).unwrap_or("")),
    );
    page(StatusCode::OK, body)
}

#[derive(Deserialize)]
pub struct SignInQuery {
    error: Option<String>,
    signed_out: Option<String>,
}

/// What each sign-in error code says (codes only travel in the URL; no text from outside is shown).
fn error_text(code: &str) -> &'static str {
    match code {
        "key" => "That is not an admin API key of this installation, or it has expired.",
        "expired" => "Your sign-in has expired. Sign in again.",
        "not_allowed" => "Your account is not on this installation's list of members. Ask an owner to add you.",
        "removed" => "An owner removed you from this installation's members. Ask them to restore you.",
        "unverified" => "Your provider did not confirm that e-mail address.",
        "state" => "That sign-in link has expired or was already used. Start again.",
        "token" => "The provider's answer could not be verified, so you were not signed in. Try again.",
        "provider" => "The identity provider could not be reached or refused the sign-in. Try again shortly.",
        "denied" => "The sign-in was cancelled at the identity provider.",
        "origin" => "That sign-in did not come from this console's own page.",
        "throttled" => "Too many failed sign-ins from your address. Wait a few minutes, then try again.",
        _ => "You could not be signed in. Try again.",
    }
}

fn sign_in_html(state: &AppState, status: StatusCode, message: Option<(&str, &str)>) -> Response {
    let alert = match message {
        Some(("error", text)) => format!("<p class=\"alert error\" role=\"alert\">{}</p>\n", escape(text)),
        Some((_, text)) => format!("<p class=\"alert\" role=\"status\">{}</p>\n", escape(text)),
        None => String::new(),
    };
    let method = match &state.config.oidc {
        Some(oidc) => format!(
            "<p>Sign in with your team account.</p>\n<p><a class=\"button primary\" href=\"/console/oidc/start\">Sign in with {}</a></p>\n",
            escape(&oidc.display_name)
        ),
        None => "<form method=\"post\" action=\"/console/sign-in\" class=\"sign-in\">\n\
             <label for=\"key\">Admin API key</label>\n\
             <input id=\"key\" name=\"key\" type=\"password\" autocomplete=\"current-password\" required spellcheck=\"false\" \
             aria-describedby=\"key-help\">\n\
             <p id=\"key-help\" class=\"help\">A key with the admin scope (<code>sk_…</code>), such as the one printed at first start.</p>\n\
             <button type=\"submit\" class=\"primary\">Sign in</button>\n</form>\n"
            .to_owned(),
    };
    let body = format!(
        "{head}</head>\n<body class=\"console sign-in-page\">\n<main id=\"main\" class=\"sign-in-box\">\n<h1>Switchyard console</h1>\n{alert}{method}</main>\n</body>\n</html>\n",
        head = head("Sign in · Switchyard console"),
    );
    page(status, body)
}

/// `GET /console/sign-in`.
pub async fn sign_in_page(State(state): State<AppState>, Query(q): Query<SignInQuery>) -> Response {
    let message = match (q.error.as_deref(), q.signed_out.is_some()) {
        (Some(code), _) => Some(("error", error_text(code))),
        (None, true) => Some(("status", "You are signed out.")),
        _ => None,
    };
    sign_in_html(&state, StatusCode::OK, message)
}

/// A form posted from anywhere but this server's own pages is refused (login CSRF).
fn from_own_page(state: &AppState, headers: &HeaderMap) -> bool {
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => crate::embed::is_own_origin(origin, headers, state.config.public_url.as_deref()),
        // Browsers send Origin with every POST; a request without one comes from no page.
        None => false,
    }
}

fn too_many(state: &AppState, wait: u64) -> Response {
    let mut response = sign_in_html(
        state,
        StatusCode::TOO_MANY_REQUESTS,
        Some(("error", &format!("Too many failed sign-ins from your address. Try again in {wait} seconds."))),
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
    response
}

/// A refused sign-in: slowed down, recorded, and back to the sign-in page with its reason.
pub fn refused(state: &AppState, client: &Client, method: &str, code: &str, actor: Option<Actor>) -> Response {
    state.sign_in_throttle.failed(client.addr, switchyard_core::now_millis());
    let change = Change { resource_id: None, ..Change::new("sign_in.failed", "console_session", "") }
        .summary(serde_json::json!({"method": method, "reason": code}))
        .by(actor.unwrap_or_else(Actor::anonymous));
    (change, Redirect::to(&format!("/console/sign-in?error={code}"))).into_response()
}

/// Signs in: the cookie, and on to the console. After a provider's redirect the browser is on a
/// navigation another site started, which carries no `SameSite=Strict` cookie: this page then
/// moves on by itself (a same-site navigation, which does).
pub fn signed_in(
    state: &AppState,
    session: &switchyard_core::model::ConsoleSession,
    cookie: HeaderValue,
    client: &Client,
    method: &str,
) -> Response {
    state.sign_in_throttle.succeeded(client.addr);
    let mut response = if method == "oidc" {
        let body = format!(
            "{head}<meta http-equiv=\"refresh\" content=\"0;url=/console\">\n</head>\n<body class=\"console sign-in-page\">\n\
             <main id=\"main\" class=\"sign-in-box\">\n<h1>Signed in</h1>\n<p><a href=\"/console\">Continue to the console</a></p>\n</main>\n</body>\n</html>\n",
            head = head("Signed in · Switchyard console"),
        );
        (sign_in_change(session, method), page(StatusCode::OK, body)).into_response()
    } else {
        (sign_in_change(session, method), Redirect::to("/console")).into_response()
    };
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
}

/// A console page: its policy, and a referrer policy under which the browser names this origin in
/// `Origin` on the console's own form posts (and tells other sites nothing).
fn page(status: StatusCode, body: String) -> Response {
    let mut response = html(status, POLICY.into(), body);
    response.headers_mut().insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

#[derive(Deserialize)]
pub struct KeyForm {
    key: String,
}

/// `POST /console/sign-in`: with an admin API key, where no provider is configured.
pub async fn sign_in_with_key(State(state): State<AppState>, headers: HeaderMap, client: Client, Form(form): Form<KeyForm>) -> Response {
    if state.config.oidc.is_some() {
        return sign_in_html(&state, StatusCode::FORBIDDEN, Some(("error", "This installation signs in through its identity provider.")));
    }
    if !from_own_page(&state, &headers) {
        return refused(&state, &client, "api_key", "origin", None);
    }
    let now = switchyard_core::now_millis();
    let wait = state.sign_in_throttle.wait(client.addr, now);
    if wait > 0 {
        metrics::counter!("switchyard_sign_ins_throttled_total").increment(1);
        return too_many(&state, wait);
    }
    let key = form.key.trim();
    let digest = hash_token(key);
    let who =
        if state.env_admin_digest.as_ref().is_some_and(|d| key.starts_with("sk_") && constant_time_eq(d.as_bytes(), digest.as_bytes())) {
            Some(NewSignIn { member_id: None, api_key_id: None, role: MemberRole::Owner, label: "SWITCHYARD_ADMIN_KEY".into() })
        } else if key.starts_with("sk_") && key.len() < 256 {
            match state.store.find_api_key(&digest).await {
                Ok(Some(k)) if k.scope == KeyScopeKind::Admin && !k.expired(now) => {
                    Some(NewSignIn { member_id: None, api_key_id: Some(k.id.clone()), role: MemberRole::Owner, label: k.name.clone() })
                }
                Ok(_) => None,
                Err(e) => return crate::error::ApiError::from(e).into_response(),
            }
        } else {
            None
        };
    let Some(who) = who else { return refused(&state, &client, "api_key", "key", None) };
    match start_session(&state, who, client.addr, client.user_agent.as_deref()).await {
        Ok((session, cookie)) => signed_in(&state, &session, cookie, &client, "api_key"),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct SignOutForm {
    csrf: String,
    everywhere: Option<String>,
}

/// `POST /console/sign-out`: this session, or (`everywhere`) every session of the same person or key.
pub async fn sign_out(State(state): State<AppState>, headers: HeaderMap, Form(form): Form<SignOutForm>) -> Response {
    let Some(token) = cookie_token(&headers) else { return Redirect::to("/console/sign-in").into_response() };
    if !from_own_page(&state, &headers) || !constant_time_eq(form.csrf.as_bytes(), csrf_token(token).as_bytes()) {
        return sign_in_html(&state, StatusCode::FORBIDDEN, Some(("error", "That sign-out did not come from the console's own page.")));
    }
    let found = crate::auth::console_sign_in(&state, &headers).await;
    let mut response = Redirect::to("/console/sign-in?signed_out=1").into_response();
    if let Ok(Some((session, _))) = found {
        let everywhere = form.everywhere.is_some();
        let end = match (&session.member_id, &session.api_key_id) {
            (Some(m), _) if everywhere => EndSessions::Member(m.clone()),
            (_, Some(k)) if everywhere => EndSessions::ApiKey(k.clone()),
            (None, None) if everywhere => EndSessions::ConfiguredKey,
            _ => EndSessions::One(session.id.clone()),
        };
        if let Err(e) = state.store.end_console_sessions(&end).await {
            return crate::error::ApiError::from(e).into_response();
        }
        let actor = sign_in_change(&session, "").actor;
        let change = Change::new(if everywhere { "sign_out.everywhere" } else { "sign_out" }, "console_session", &session.id);
        response = (change.by(actor.unwrap_or_else(Actor::anonymous)), response).into_response();
    }
    response.headers_mut().insert(header::SET_COOKIE, clearing_cookie(&state));
    response
}
