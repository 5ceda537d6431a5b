//! The HTML the server renders: the application shell a launch opens, the page a used or expired
//! launch shows instead, and the page an OAuth popup lands on. Every value written into them is
//! escaped; nothing in them is inline script or style.

use super::assets::href;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchyard_core::crypto::hash_token;
use switchyard_core::model::{Branding, Session};
use switchyard_store::LaunchTaken;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who may frame a page: the session's allowed origins, or nobody.
fn frame_ancestors(origins: Option<&[String]>) -> String {
    match origins {
        Some([]) => "'none'".into(),
        Some(list) => list.join(" "),
        // A token nobody knows: the page explaining so may show in any frame (it has no controls).
        None => "*".into(),
    }
}

fn policy(frame_ancestors: &str, logo: Option<&str>) -> String {
    let img = match logo.and_then(|l| url::Url::parse(l).ok()) {
        Some(u) => format!("'self' data: {}", u.origin().ascii_serialization()),
        None => "'self' data:".into(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src {img}; connect-src 'self'; font-src 'self'; \
         form-action 'none'; base-uri 'none'; frame-ancestors {frame_ancestors}"
    )
}

pub(crate) fn html(status: StatusCode, csp: String, body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers
        .insert("content-security-policy", HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")));
    (status, headers, body).into_response()
}

fn branding(state: &AppState, session: Option<&Session>) -> Branding {
    let installation = &state.config.branding;
    session.and_then(|s| s.branding.as_ref()).map(|b| b.or(installation)).unwrap_or_else(|| installation.clone())
}

fn head(title: &str) -> String {
    head_with(title, &["app.css"], "no-referrer")
}

/// The start of a page: its title, stylesheets (by asset name) and referrer policy.
pub(crate) fn head_with(title: &str, styles: &[&str], referrer: &str) -> String {
    let links: String = styles.iter().map(|s| format!("<link rel=\"stylesheet\" href=\"{}\">\n", href(s))).collect();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<meta name=\"referrer\" content=\"{referrer}\">\n<title>{}</title>\n{links}",
        escape(title),
    )
}

fn brand_attributes(b: &Branding) -> String {
    let mut out = String::new();
    if let Some(c) = &b.accent_color {
        out.push_str(&format!(" data-accent=\"{}\"", escape(c)));
    }
    out
}

fn brand_header(b: &Branding) -> String {
    let name = b.name.as_deref().unwrap_or("Integrations");
    let logo = match &b.logo_url {
        Some(u) => format!("<img class=\"logo\" src=\"{}\" alt=\"\" width=\"24\" height=\"24\">", escape(u)),
        None => String::new(),
    };
    format!("<header class=\"brand\">{logo}<span class=\"brand-name\">{}</span></header>\n", escape(name))
}

/// `GET /embed/launch/{token}`: the pages, once.
pub async fn launch(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let taken = if token.starts_with("lt_") && token.len() <= 128 {
        state.store.take_launch(&hash_token(&token), switchyard_core::now_millis()).await
    } else {
        Ok(LaunchTaken::Unknown)
    };
    match taken {
        Ok(LaunchTaken::Opened { session, page }) => app_shell(&state, &session, &page),
        Ok(LaunchTaken::Used { session }) => problem(
            &state,
            StatusCode::GONE,
            Some(&session),
            "This link was already used",
            "A launch link opens these pages once. Reloading the frame, or opening the link a second time, needs a new session: the product that embeds these pages must mint one.",
        ),
        Ok(LaunchTaken::Expired { session }) => problem(
            &state,
            StatusCode::GONE,
            Some(&session),
            "This link has expired",
            "A launch link must be opened within seconds of being made, while its session lasts. The product that embeds these pages must mint a new session.",
        ),
        Ok(LaunchTaken::Unknown) => problem(
            &state,
            StatusCode::UNAUTHORIZED,
            None,
            "This link is not valid",
            "These pages open only from a launch link made for a session. The product that embeds them must mint a new session.",
        ),
        Err(e) => {
            tracing::error!(error = %e, "could not open a launch link");
            problem(
                &state,
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "These pages could not open",
                "The server could not read its database. Try again in a moment; if it persists, the product that embeds these pages must mint a new session.",
            )
        }
    }
}

fn app_shell(state: &AppState, session: &Session, page: &str) -> Response {
    let b = branding(state, Some(session));
    let origins = serde_json::to_string(&session.allowed_origins).unwrap_or_else(|_| "[]".into());
    let title = format!("{} · integrations", b.name.as_deref().unwrap_or("Switchyard"));
    let body = format!(
        "{head}<script src=\"{ui}\" defer></script>\n<script src=\"{app}\" defer></script>\n</head>\n<body data-session-id=\"{session}\" data-origins=\"{origins}\" data-page=\"{page}\" data-expires-at=\"{expires}\"{brand}>\n\
         <div class=\"shell\">\n{header}<nav id=\"nav\" aria-label=\"Integrations\"></nav>\n\
         <main id=\"main\" tabindex=\"-1\"><p class=\"status\" role=\"status\">Connecting to the host page…</p>\n\
         <noscript><p>These pages need JavaScript.</p></noscript></main>\n</div>\n</body>\n</html>\n",
        head = head(&title),
        ui = href("ui.js"),
        app = href("app.js"),
        session = escape(session.id.as_str()),
        origins = escape(&origins),
        page = escape(page),
        expires = session.expires_at,
        brand = brand_attributes(&b),
        header = brand_header(&b),
    );
    html(StatusCode::OK, policy(&frame_ancestors(Some(&session.allowed_origins)), b.logo_url.as_deref()), body)
}

fn problem(state: &AppState, status: StatusCode, session: Option<&Session>, title: &str, explanation: &str) -> Response {
    let b = branding(state, session);
    let body = format!(
        "{head}</head>\n<body class=\"problem\"{brand}>\n<div class=\"shell\">\n{header}<main id=\"main\">\n<h1>{title}</h1>\n<p>{explanation}</p>\n</main>\n</div>\n</body>\n</html>\n",
        head = head(title),
        brand = brand_attributes(&b),
        header = brand_header(&b),
        title = escape(title),
        explanation = escape(explanation),
    );
    html(status, policy(&frame_ancestors(session.map(|s| s.allowed_origins.as_slice())), b.logo_url.as_deref()), body)
}

/// `GET /embed/oauth/done`: an OAuth popup's last stop. Its script tells the frame that opened it
/// (same origin only) how the connection went, then closes the window.
pub async fn oauth_done() -> Response {
    let body = format!(
        "{head}<script src=\"{script}\" defer></script>\n</head>\n<body>\n<main id=\"main\">\n<h1>Connecting…</h1>\n\
         <p id=\"outcome\" role=\"status\">You can close this window.</p>\n</main>\n</body>\n</html>\n",
        head = head("Connecting"),
        script = href("oauth.js"),
    );
    html(StatusCode::OK, policy("'none'", None), body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(escape("<img src=x onerror=alert(1)> & \"'"), "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;&#39;");
    }

    #[test]
    fn frames_only_where_allowed() {
        assert_eq!(frame_ancestors(Some(&[])), "'none'");
        assert_eq!(
            frame_ancestors(Some(&["https://a.example".into(), "http://localhost:3000".into()])),
            "https://a.example http://localhost:3000"
        );
        let p = policy("'none'", Some("https://cdn.example/x/logo.png"));
        assert!(p.contains("img-src 'self' data: https://cdn.example;"), "{p}");
        assert!(p.contains("script-src 'self';"));
    }
}
