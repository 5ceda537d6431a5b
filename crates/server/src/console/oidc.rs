//! Team sign-in through the operator's OpenID Connect provider: discovery, the authorization code
//! flow with PKCE (S256), and ID tokens checked against the provider's JWKS (signature with an
//! asymmetric algorithm only, issuer, audience, expiry, and the nonce this sign-in sent). The role
//! comes from a claim (`SWITCHYARD_OIDC_ROLE_CLAIM`) or the e-mail lists, in that order; anyone
//! neither names is refused.

use super::pages::{refused, signed_in, Client};
use super::{start_session, NewSignIn};
use crate::audit::Actor;
use crate::config::OidcConfig;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use switchyard_core::crypto::{constant_time_eq, generate_token, hash_token};
use switchyard_core::model::MemberRole;
use switchyard_store::SignedIn;

/// How long a sign-in may take at the provider.
const STATE_TTL_MS: i64 = 10 * 60_000;
/// How long discovery and keys are kept; unknown key ids refetch the keys, at most this often.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
const JWKS_REFETCH: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

/// The provider's discovery document and keys, fetched when first needed and kept for a while.
pub struct Provider {
    http: reqwest::Client,
    discovery: Mutex<Option<(Discovery, Instant)>>,
    keys: Mutex<Option<(JwkSet, Instant)>>,
}

impl Default for Provider {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static client settings are valid");
        Self { http, discovery: Mutex::default(), keys: Mutex::default() }
    }
}

impl Provider {
    async fn discovery(&self, config: &OidcConfig) -> Result<Discovery, String> {
        if let Some((d, at)) = self.discovery.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if at.elapsed() < DISCOVERY_TTL {
                return Ok(d);
            }
        }
        let url = format!("{}/.well-known/openid-configuration", config.issuer.trim_end_matches('/'));
        let d: Discovery = self.get_json(&url).await?;
        // The document must be the configured issuer's own (OpenID Connect Discovery 1.0, 4.3).
        if d.issuer.trim_end_matches('/') != config.issuer.trim_end_matches('/') {
            return Err(format!("the discovery document names issuer {:?}, not the configured one", d.issuer));
        }
        *self.discovery.lock().unwrap_or_else(|p| p.into_inner()) = Some((d.clone(), Instant::now()));
        Ok(d)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let res = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url} could not be reached: {}", switchyard_destinations::http::root_cause(&e)))?;
        if !res.status().is_success() {
            return Err(format!("{url} answered {}", res.status()));
        }
        res.json().await.map_err(|e| format!("{url} did not answer JSON as expected: {e}"))
    }

    /// The key that signed a token: from the cached set, or a fresh one when the id is new.
    async fn key(&self, jwks_uri: &str, kid: Option<&str>) -> Result<DecodingKey, String> {
        for attempt in 0..2 {
            let cached = self.keys.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let fresh_enough = cached.as_ref().is_some_and(|(_, at)| at.elapsed() < DISCOVERY_TTL);
            let set = match cached {
                Some((set, at)) if fresh_enough && (attempt == 0 || at.elapsed() < JWKS_REFETCH) => set,
                _ => {
                    let set: JwkSet = self.get_json(jwks_uri).await?;
                    *self.keys.lock().unwrap_or_else(|p| p.into_inner()) = Some((set.clone(), Instant::now()));
                    set
                }
            };
            let found = match kid {
                Some(kid) => set.find(kid).cloned(),
                None if set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            };
            if let Some(jwk) = found {
                return DecodingKey::from_jwk(&jwk).map_err(|e| format!("the provider's key cannot be used: {e}"));
            }
        }
        Err("no key of the provider matches the token's key id".into())
    }
}

fn callback_url(state: &AppState) -> String {
    format!("{}/console/oidc/callback", state.config.public_url.as_deref().unwrap_or_default().trim_end_matches('/'))
}

/// `GET /console/oidc/start`: to the provider, with a state, a nonce and a PKCE challenge.
pub async fn start(State(state): State<AppState>, client: Client) -> Response {
    let Some(config) = &state.config.oidc else { return Redirect::to("/console/sign-in").into_response() };
    let discovery = match state.oidc.discovery(config).await {
        Ok(d) => d,
        Err(reason) => {
            tracing::warn!(reason = %reason, "the OpenID provider's discovery failed");
            return refused(&state, &client, "oidc", "provider", None);
        }
    };
    let state_param = generate_token("");
    let nonce = generate_token("");
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let id = format!("sis_{}", ulid::Ulid::new());
    let sealed = state.vault.seal(verifier.as_bytes(), &id);
    let expires_at = switchyard_core::now_millis() + STATE_TTL_MS;
    if let Err(e) = state.store.create_sign_in_state(&hash_token(&state_param), &nonce, &sealed, &id, expires_at).await {
        return crate::error::ApiError::from(e).into_response();
    }
    let Ok(mut url) = url::Url::parse(&discovery.authorization_endpoint) else {
        return refused(&state, &client, "oidc", "provider", None);
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &config.client_id)
        .append_pair("redirect_uri", &callback_url(&state))
        .append_pair("scope", &config.scopes)
        .append_pair("state", &state_param)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct IdClaims {
    sub: String,
    nonce: Option<String>,
    email: Option<String>,
    email_verified: Option<Value>,
    name: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// Why a sign-in was refused: the code shown to the person, and what is logged.
struct Refusal {
    code: &'static str,
    log: String,
    email: Option<String>,
}

fn refuse(code: &'static str) -> impl FnOnce(String) -> Refusal {
    move |log| Refusal { code, log, email: None }
}

/// `GET /console/oidc/callback`: the provider sends the browser back here.
pub async fn callback(State(state): State<AppState>, client: Client, Query(params): Query<CallbackParams>) -> Response {
    let Some(config) = state.config.oidc.clone() else { return Redirect::to("/console/sign-in").into_response() };
    let now = switchyard_core::now_millis();
    let wait = state.sign_in_throttle.wait(client.addr, now);
    if wait > 0 {
        metrics::counter!("switchyard_sign_ins_throttled_total").increment(1);
        return Redirect::to("/console/sign-in?error=throttled").into_response();
    }
    match finish(&state, &config, &params).await {
        Ok(who) => match start_session(&state, who, client.addr, client.user_agent.as_deref()).await {
            Ok((session, cookie)) => signed_in(&state, &session, cookie, &client, "oidc"),
            Err(e) => e.into_response(),
        },
        Err(Refusal { code, log, email }) => {
            tracing::warn!(reason = %log, "a console sign-in was refused");
            let actor = email.map(|e| Actor { kind: "anonymous", id: None, name: Some(e) });
            refused(&state, &client, "oidc", code, actor)
        }
    }
}

async fn finish(state: &AppState, config: &OidcConfig, params: &CallbackParams) -> Result<NewSignIn, Refusal> {
    let state_param =
        params.state.as_deref().filter(|s| !s.is_empty() && s.len() < 256).ok_or_else(|| refuse("state")("no state".into()))?;
    let (nonce, sealed, id) = state
        .store
        .take_sign_in_state(&hash_token(state_param), switchyard_core::now_millis())
        .await
        .map_err(|e| refuse("provider")(e.to_string()))?
        .ok_or_else(|| refuse("state")("unknown, used or expired state".into()))?;
    if let Some(error) = &params.error {
        let error: String = error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        return Err(refuse("denied")(format!("the provider answered {error}")));
    }
    let code = params.code.as_deref().filter(|c| !c.is_empty()).ok_or_else(|| refuse("provider")("no code".into()))?;
    let verifier = state.vault.open_string(&sealed, &id).map_err(|e| refuse("provider")(e.to_string()))?;
    let discovery = state.oidc.discovery(config).await.map_err(refuse("provider"))?;

    // The code for tokens, authenticated as the provider allows (client_secret_basic by default).
    let redirect_uri = callback_url(state);
    let form = [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", &redirect_uri), ("code_verifier", &verifier)];
    let methods = &discovery.token_endpoint_auth_methods_supported;
    let post =
        !methods.is_empty() && !methods.iter().any(|m| m == "client_secret_basic") && methods.iter().any(|m| m == "client_secret_post");
    let request = state.oidc.http.post(&discovery.token_endpoint);
    let request = if post {
        let mut with_client = form.to_vec();
        with_client.extend([("client_id", config.client_id.as_str()), ("client_secret", config.client_secret.as_str())]);
        request.form(&with_client)
    } else {
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        request.basic_auth(enc(&config.client_id), Some(enc(&config.client_secret))).form(&form)
    };
    let answer = request.send().await.map_err(|e| refuse("provider")(switchyard_destinations::http::root_cause(&e)))?;
    if !answer.status().is_success() {
        return Err(refuse("provider")(format!("the token endpoint answered {}", answer.status())));
    }
    let answer: Value = answer.json().await.map_err(|e| refuse("provider")(e.to_string()))?;
    let id_token = answer.get("id_token").and_then(Value::as_str).ok_or_else(|| refuse("token")("no id_token in the answer".into()))?;

    let mut claims = verify(state, config, &discovery, id_token).await?;
    let sent = claims.nonce.as_deref().unwrap_or_default();
    if !constant_time_eq(sent.as_bytes(), nonce.as_bytes()) {
        return Err(refuse("token")("the ID token's nonce is not this sign-in's".into()));
    }
    // Providers that keep profile claims out of the ID token in the code flow give them at the
    // UserInfo endpoint, for the same subject.
    if claims.email.is_none() {
        if let (Some(endpoint), Some(access)) = (&discovery.userinfo_endpoint, answer.get("access_token").and_then(Value::as_str)) {
            let info: Value = state
                .oidc
                .http
                .get(endpoint)
                .bearer_auth(access)
                .send()
                .await
                .map_err(|e| refuse("provider")(switchyard_destinations::http::root_cause(&e)))?
                .json()
                .await
                .map_err(|e| refuse("provider")(format!("the UserInfo answer is not JSON: {e}")))?;
            if info.get("sub").and_then(Value::as_str) != Some(claims.sub.as_str()) {
                return Err(refuse("token")("the UserInfo answer is for another subject".into()));
            }
            claims.email = info.get("email").and_then(Value::as_str).map(str::to_owned);
            claims.email_verified = info.get("email_verified").cloned();
            claims.name = claims.name.or_else(|| info.get("name").and_then(Value::as_str).map(str::to_owned));
            if let Some(obj) = info.as_object() {
                for (k, v) in obj {
                    claims.other.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let email = claims.email.as_deref().map(str::to_lowercase).filter(|e| e.contains('@'));
    let Some(email) = email else { return Err(refuse("not_allowed")("the ID token has no e-mail".into())) };
    let unverified = matches!(&claims.email_verified, Some(Value::Bool(false)))
        || matches!(&claims.email_verified, Some(Value::String(s)) if s == "false");
    if unverified {
        return Err(Refusal { code: "unverified", log: format!("{email} is not verified"), email: Some(email) });
    }
    let Some(role) = role_for(config, &email, &claims.other) else {
        return Err(Refusal { code: "not_allowed", log: format!("{email} has no role here"), email: Some(email) });
    };
    let signed_in = SignedIn { email: email.clone(), name: claims.name.clone(), subject: Some(claims.sub.clone()), role };
    let member = state
        .store
        .member_signed_in(&signed_in, switchyard_core::now_millis())
        .await
        .map_err(|e| refuse("provider")(e.to_string()))?
        .ok_or_else(|| Refusal { code: "removed", log: format!("{email} was removed"), email: Some(email.clone()) })?;
    Ok(NewSignIn { member_id: Some(member.id), api_key_id: None, role: member.role, label: member.email })
}

/// Checks an ID token: an asymmetric signature by one of the provider's keys, the issuer, this
/// client as its audience, and its expiry (a minute of leeway for clocks).
async fn verify(state: &AppState, config: &OidcConfig, discovery: &Discovery, token: &str) -> Result<IdClaims, Refusal> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| refuse("token")(format!("the ID token is malformed: {e}")))?;
    let allowed = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];
    if !allowed.contains(&header.alg) {
        return Err(refuse("token")(format!("the ID token is signed with {:?}, which is not accepted", header.alg)));
    }
    let key = state.oidc.key(&discovery.jwks_uri, header.kid.as_deref()).await.map_err(refuse("token"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[config.issuer.as_str(), config.issuer.trim_end_matches('/')]);
    validation.set_audience(&[config.client_id.as_str()]);
    validation.leeway = 60;
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<IdClaims>(token, &key, &validation)
        .map_err(|e| refuse("token")(format!("the ID token was refused: {e}")))?;
    Ok(data.claims)
}

/// The role the operator's settings give: the claim's values first, then the e-mail lists
/// (addresses, or `@domain` for everyone there). The highest role named wins.
pub fn role_for(config: &OidcConfig, email: &str, claims: &serde_json::Map<String, Value>) -> Option<MemberRole> {
    if let Some(name) = &config.role_claim {
        let values: Vec<&str> = match claims.get(name) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let has = |wanted: &[String]| values.iter().any(|v| wanted.iter().any(|w| w == v));
        if has(&config.owner_values) {
            return Some(MemberRole::Owner);
        }
        if has(&config.admin_values) {
            return Some(MemberRole::Admin);
        }
        if has(&config.viewer_values) {
            return Some(MemberRole::Viewer);
        }
    }
    let domain = email.rsplit_once('@').map(|(_, d)| format!("@{d}")).unwrap_or_default();
    let listed = |list: &[String]| list.iter().any(|x| x == email || *x == domain);
    if listed(&config.owners) {
        Some(MemberRole::Owner)
    } else if listed(&config.admins) {
        Some(MemberRole::Admin)
    } else if listed(&config.viewers) {
        Some(MemberRole::Viewer)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_claim_then_the_lists() {
        let config = OidcConfig {
            owners: vec!["ada@example.com".into()],
            admins: vec!["@ops.example.com".into()],
            viewers: vec!["@example.com".into()],
            role_claim: Some("groups".into()),
            owner_values: vec!["sy-owners".into()],
            admin_values: vec!["sy-admins".into()],
            ..Default::default()
        };
        let none = serde_json::Map::new();
        assert_eq!(role_for(&config, "ada@example.com", &none), Some(MemberRole::Owner));
        assert_eq!(role_for(&config, "bob@ops.example.com", &none), Some(MemberRole::Admin));
        assert_eq!(role_for(&config, "cy@example.com", &none), Some(MemberRole::Viewer));
        assert_eq!(role_for(&config, "eve@example.org", &none), None);
        assert_eq!(role_for(&config, "eve@notexample.com", &none), None, "a domain matches whole");
        let groups = serde_json::json!({"groups": ["staff", "sy-admins"]});
        assert_eq!(role_for(&config, "eve@example.org", groups.as_object().unwrap()), Some(MemberRole::Admin));
        let owner = serde_json::json!({"groups": "sy-owners"});
        assert_eq!(role_for(&config, "cy@example.com", owner.as_object().unwrap()), Some(MemberRole::Owner));
    }
}
