//! The embedded pages: what a product's customers see inside its iframe (see docs/embedding.md).
//!
//! - `GET /embed/launch/{token}` opens the pages once: the launch token is single-use and
//!   short-lived; a second load, or a late one, gets a page that says so (410).
//! - The page is a shell rendered here (escaped, with the session's facts in `data-` attributes)
//!   and one script, `app.js`, that waits for the host's `switchyard:auth` message, keeps the
//!   access token in memory and calls the API with it. Nothing is inline, so the policy is
//!   `script-src 'self'; style-src 'self'`.
//! - `GET /embed.js` is the host's helper (`Switchyard.mount`); `GET /embed/oauth/done` is where an
//!   OAuth popup lands and reports back to the frame that opened it.
//!
//! Assets are compiled into the binary and served compressed when the browser accepts gzip.

mod assets;
mod pages;

pub(crate) use assets::href;
pub(crate) use pages::{escape, head_with, html};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use switchyard_core::model::Branding;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/embed/launch/{token}", get(pages::launch))
        .route("/embed/oauth/done", get(pages::oauth_done))
        .route("/embed.js", get(assets::host_helper))
        .route("/embed/assets/{file}", get(assets::asset))
}

/// The first segments a page path may start with.
const PAGES: &[&str] = &["dashboard", "connections", "rules", "events"];

/// Whether `path` names a page: `dashboard`, `rules`, `rules/new`, `events/evt_...`,
/// `events?status=failed`, ... (at most two segments of ids and names, then an optional query).
pub fn valid_page(path: &str) -> bool {
    if path.len() > 512 {
        return false;
    }
    let (route, query) = path.split_once('?').unwrap_or((path, ""));
    let mut segments = route.split('/');
    let first_ok = segments.next().is_some_and(|s| PAGES.contains(&s));
    let rest: Vec<&str> = segments.collect();
    let rest_ok =
        rest.len() <= 1 && rest.iter().all(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    let query_ok = query.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.=&%+:*".contains(&b));
    first_ok && rest_ok && query_ok
}

/// Checks branding settings: `#rrggbb`, an http(s) logo URL, a name of at most 80 characters.
pub fn check_branding(b: &Branding, field: &str) -> ApiResult<()> {
    if let Some(c) = &b.accent_color {
        if !(c.len() == 7 && c.starts_with('#') && c[1..].bytes().all(|x| x.is_ascii_hexdigit())) {
            return Err(ApiError::invalid(format!("{field}.accent_color"), "must be a colour as #rrggbb"));
        }
    }
    if let Some(u) = &b.logo_url {
        let ok = url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "https" | "http") && p.host().is_some() && u.len() <= 2048);
        if !ok {
            return Err(ApiError::invalid(format!("{field}.logo_url"), "must be an https URL of an image"));
        }
    }
    if let Some(n) = &b.name {
        if n.trim().is_empty() || n.chars().count() > 80 {
            return Err(ApiError::invalid(format!("{field}.name"), "must be 1 to 80 characters"));
        }
    }
    Ok(())
}

/// Where browsers reach this server: `SWITCHYARD_PUBLIC_URL`, or else the address the request
/// was sent to.
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()).filter(|h| valid_authority(h));
    format!("http://{}", host.map(str::to_owned).unwrap_or_else(|| state.config.listen.to_string()))
}

fn valid_authority(host: &str) -> bool {
    !host.is_empty() && host.len() <= 255 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Whether an `Origin` header names this very server (its own pages calling the API): the origin
/// of `SWITCHYARD_PUBLIC_URL` (what browsers use behind a proxy), or the host and port the
/// request was sent to.
pub fn is_own_origin(origin: &str, headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let Ok(url) = url::Url::parse(origin) else { return false };
    if public_url.and_then(|p| url::Url::parse(p).ok()).is_some_and(|p| p.origin() == url.origin() && url.origin().is_tuple()) {
        return true;
    }
    let Some(host) = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let Some(origin_host) = url.host_str() else { return false };
    let authority = match url.port() {
        Some(port) => format!("{origin_host}:{port}"),
        None => origin_host.to_owned(),
    };
    authority.eq_ignore_ascii_case(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_paths() {
        for ok in
            ["dashboard", "connections", "rules/new", "events/evt_01J9", "events?status=failed&event=user.created", "connections/con_1"]
        {
            assert!(valid_page(ok), "{ok}");
        }
        for bad in ["", "settings", "events/evt_1/x", "rules/../x", "events/<script>", "events?x=\"", "dashboard/", "javascript:alert(1)"] {
            assert!(!valid_page(bad), "{bad}");
        }
    }

    #[test]
    fn own_origin_is_the_public_url_s_or_the_request_s_host_and_port() {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::HOST, "localhost:8080".parse().unwrap());
        assert!(is_own_origin("http://localhost:8080", &h, None));
        assert!(!is_own_origin("http://localhost:8081", &h, None));
        assert!(!is_own_origin("http://evil.example", &h, None));
        assert!(!is_own_origin("null", &h, None));
        // Behind a proxy that rewrites Host, the public URL's origin is the pages' own.
        let public = Some("https://switchyard.example.com/");
        assert!(is_own_origin("https://switchyard.example.com", &h, public));
        assert!(!is_own_origin("http://switchyard.example.com", &h, public));
        assert!(!is_own_origin("null", &h, public));
    }

    #[test]
    fn branding_is_checked() {
        let b = |c: &str, u: &str, n: &str| Branding { accent_color: Some(c.into()), logo_url: Some(u.into()), name: Some(n.into()) };
        assert!(check_branding(&b("#12abEF", "https://cdn.example/logo.png", "Acme"), "branding").is_ok());
        assert!(check_branding(&b("red", "https://x/l.png", "A"), "branding").is_err());
        assert!(check_branding(&b("#123456", "javascript:alert(1)", "A"), "branding").is_err());
        assert!(check_branding(&b("#123456", "https://x/l.png", &"n".repeat(81)), "branding").is_err());
    }
}
