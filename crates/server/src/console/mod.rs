//! The operator console (`/console`): a top-level page for the team that runs the installation.
//!
//! - Sign-in is its own page. With an OpenID Connect provider configured (`SWITCHYARD_OIDC_*`,
//!   see [`oidc`]) people sign in there and become members with the role the operator's settings
//!   give them; without one, the console signs in with an admin API key.
//! - A sign-in is a console session: its token lives only in the `sy_console` cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Secure` when served over https, `Path=/`) and is stored as a digest. The
//!   console's pages call the same API as everyone else with that cookie (see `auth`), and every
//!   changing call must carry the session's CSRF token in `X-CSRF-Token`: the shell page holds it,
//!   derived from the cookie, so no other site can know it.
//! - Sessions expire (`SWITCHYARD_CONSOLE_SESSION_HOURS`), end on sign-out, and end everywhere on
//!   "sign out everywhere", when the member is removed or the key is revoked.
//! - Repeated failed sign-ins from one address are slowed down ([`Throttle`]).
//!
//! Each workspace's own pages are the embedded ones, opened in a frame with a session the console
//! mints for itself.

pub mod oidc;
mod pages;

use crate::audit::Change;
use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use switchyard_core::crypto::{generate_token, hash_token};
use switchyard_core::ids::ConsoleSessionId;
use switchyard_core::model::{ConsoleSession, MemberRole};
use switchyard_core::Millis;

/// The console session's cookie.
pub const COOKIE: &str = "sy_console";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::shell))
        .route("/console/sign-in", get(pages::sign_in_page).post(pages::sign_in_with_key))
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/oidc/start", get(oidc::start))
        .route("/console/oidc/callback", get(oidc::callback))
}

/// The CSRF token of a console session: derived from its cookie, so the server can write it into
/// the shell page without storing it, and no page of another site can know it.
pub fn csrf_token(cookie_token: &str) -> String {
    hash_token(&format!("csrf:{cookie_token}"))
}

/// The console session token a request's cookies carry.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE && value.starts_with("cs_") && value.len() < 128).then_some(value)
    })
}

/// Whether the console is served over https (its cookie is then `Secure`).
fn secure(state: &AppState) -> bool {
    state.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
}

fn cookie(state: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"))
        .expect("a token and fixed attributes are a valid header value")
}

/// Who signs in, and as what.
pub struct NewSignIn {
    pub member_id: Option<switchyard_core::ids::MemberId>,
    pub api_key_id: Option<switchyard_core::ids::ApiKeyId>,
    pub role: MemberRole,
    pub label: String,
}

/// Starts a console session; returns the `Set-Cookie` value.
pub async fn start_session(
    state: &AppState,
    who: NewSignIn,
    client_addr: Option<IpAddr>,
    user_agent: Option<&str>,
) -> Result<(ConsoleSession, HeaderValue), crate::error::ApiError> {
    let token = generate_token("cs_");
    let now = switchyard_core::now_millis();
    let ttl = state.config.console_session_ttl.as_millis() as i64;
    let session = ConsoleSession {
        id: ConsoleSessionId::generate(),
        member_id: who.member_id,
        api_key_id: who.api_key_id,
        role: who.role,
        label: who.label,
        client_addr: client_addr.map(|a| a.to_string()),
        user_agent: user_agent.map(|u| u.chars().take(256).collect()),
        created_at: now,
        expires_at: now + ttl,
    };
    state.store.create_console_session(&session, &hash_token(&token)).await?;
    Ok((session, cookie(state, &token, ttl / 1000)))
}

/// The cookie that ends a session in the browser.
pub fn clearing_cookie(state: &AppState) -> HeaderValue {
    cookie(state, "", 0)
}

/// The audit description of a sign-in.
pub fn sign_in_change(session: &ConsoleSession, method: &str) -> Change {
    let actor = crate::auth::Operator::from_console(session).actor;
    Change::new("sign_in.succeeded", "console_session", &session.id)
        .summary(serde_json::json!({"method": method, "role": session.role}))
        .by(actor)
}

/// Failed sign-ins per client address: after [`FREE_FAILURES`] within [`WINDOW_MS`], each attempt
/// waits twice as long as the one before (from 2 s, at most 15 minutes) and is refused with 429
/// until then.
#[derive(Default)]
pub struct Throttle(Mutex<HashMap<IpAddr, (u32, Millis)>>);

pub const FREE_FAILURES: u32 = 5;
const WINDOW_MS: Millis = 15 * 60_000;
const MAX_WAIT_MS: Millis = 15 * 60_000;

impl Throttle {
    /// How long this address must still wait before trying again, in seconds (0: it may try).
    pub fn wait(&self, addr: Option<IpAddr>, now: Millis) -> u64 {
        let Some(addr) = addr else { return 0 };
        let guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match guard.get(&addr) {
            Some(&(failures, last)) if failures >= FREE_FAILURES && now - last < WINDOW_MS => {
                let wait = (2_000i64 << (failures - FREE_FAILURES).min(20)).min(MAX_WAIT_MS);
                ((last + wait - now).max(0) as u64).div_ceil(1000)
            }
            _ => 0,
        }
    }

    pub fn failed(&self, addr: Option<IpAddr>, now: Millis) {
        let Some(addr) = addr else { return };
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if guard.len() > 100_000 {
            guard.retain(|_, (_, last)| now - *last < WINDOW_MS);
        }
        let entry = guard.entry(addr).or_insert((0, now));
        if now - entry.1 >= WINDOW_MS {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.1 = now;
    }

    pub fn succeeded(&self, addr: Option<IpAddr>) {
        if let Some(addr) = addr {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_sign_ins_are_slowed_down_per_address() {
        let t = Throttle::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.wait(Some(a), 1_000), 0);
            t.failed(Some(a), 1_000);
        }
        assert_eq!(t.wait(Some(a), 1_000), 2, "the sixth attempt waits");
        assert_eq!(t.wait(Some(b), 1_000), 0, "another address does not");
        t.failed(Some(a), 3_000);
        assert_eq!(t.wait(Some(a), 3_000), 4, "each failure doubles the wait");
        assert_eq!(t.wait(Some(a), 3_000 + WINDOW_MS), 0, "and it is forgotten after the window");
        t.succeeded(Some(a));
        assert_eq!(t.wait(Some(a), 3_000), 0);
    }

    #[test]
    fn the_cookie_is_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; sy_console=cs_abc; b=2"));
        assert_eq!(cookie_token(&h), Some("cs_abc"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("sy_console=not-ours"));
        assert_eq!(cookie_token(&h), None);
    }
}
