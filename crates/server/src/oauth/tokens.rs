//! Access tokens of OAuth connections: obtained by the connect flow, refreshed before they expire
//! and once after a destination refuses one, one refresh at a time per connection across every
//! worker and node; a refused refresh token turns the connection `needs_reauth`.
//!
//! A connection's credentials (sealed, like any) then hold:
//! `{"oauth_provider": "hubspot", "access_token", "refresh_token", "expires_at": ms | null,
//!   "obtained_at": ms}`; Zoom's server-to-server credentials hold `account_id`, `client_id` and
//! `client_secret`, and the access token obtained with them.

use super::providers::Providers;
use super::providers::{ClientAuth, Provider};
use crate::cache::Cache;
use crate::keyring::Vault;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_core::ids::ConnectionId;
use switchyard_core::model::{Connection, ConnectionStatus};
use switchyard_core::Millis;
use switchyard_destinations::http::root_cause;
use switchyard_destinations::OpenedSecrets;
use switchyard_store::{Scope, Store};

/// The longest a refresh may hold a connection's lock.
const LOCK_MS: i64 = 30_000;
/// Refresh this long before expiry at most (a quarter of the token's life when that is shorter).
const REFRESH_MARGIN_MS: i64 = 60_000;
/// Errors a token endpoint gives for a refresh token that will never work again.
/// (`invalid_client` is not among them: a wrong client secret is the operator's to fix, and
/// must not send every connection of the provider to `needs_reauth`.)
const DEAD_GRANT: &[&str] = &["invalid_grant", "invalid_refresh_token", "token_revoked", "token_expired"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The provider refused the refresh token (or the client): someone must reconnect.
    NeedsReauth(String),
    /// The token endpoint could not be reached or answered oddly: try again later.
    Failed(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::NeedsReauth(m) => write!(f, "the provider refused the connection's refresh token ({m}); reconnect it"),
            TokenError::Failed(m) => write!(f, "could not refresh the access token: {m}"),
        }
    }
}

/// What kind of token a connection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Managed {
    /// An API key or a token given by hand: nothing to manage.
    No,
    /// From an OAuth flow; refreshable when a refresh token came with it.
    Flow,
    /// Zoom server-to-server: a new token comes from the account credentials.
    ZoomServerToServer,
}

pub fn managed(credentials: Option<&Value>) -> Managed {
    let Some(c) = credentials else { return Managed::No };
    if c.get("oauth_provider").is_some() {
        Managed::Flow
    } else if ["account_id", "client_id", "client_secret"].iter().all(|k| c.get(*k).and_then(Value::as_str).is_some()) {
        Managed::ZoomServerToServer
    } else {
        Managed::No
    }
}

fn access_token(c: &Value) -> Option<&str> {
    c.get("access_token").and_then(Value::as_str)
}

/// True when the token is missing or expires within the margin.
pub fn needs_refresh(c: &Value, now: Millis) -> bool {
    if access_token(c).is_none() {
        return true;
    }
    let Some(expires_at) = c.get("expires_at").and_then(Value::as_i64) else { return false };
    let obtained = c.get("obtained_at").and_then(Value::as_i64).unwrap_or(expires_at - 3_600_000);
    let margin = REFRESH_MARGIN_MS.min((expires_at - obtained) / 4);
    expires_at - now <= margin
}

/// Token refreshes and exchanges, shared by the node's workers. It holds what a refresh touches:
/// the store, the vault that seals the new tokens, the providers' apps, and the cache it clears.
pub struct Tokens {
    http: reqwest::Client,
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    providers: Providers,
    cache: Arc<Cache>,
    owner: String,
    local: Mutex<HashMap<ConnectionId, Arc<tokio::sync::Mutex<()>>>>,
    zoom_token_url: String,
}

impl Tokens {
    pub fn new(zoom_token_url: String, store: Arc<dyn Store>, vault: Arc<Vault>, providers: Providers, cache: Arc<Cache>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("Switchyard/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the token client's static configuration is valid");
        Self {
            http,
            store,
            vault,
            providers,
            cache,
            owner: format!("refresh_{}", ulid::Ulid::new()),
            local: Mutex::default(),
            zoom_token_url,
        }
    }

    fn local_lock(&self, id: &ConnectionId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.clone()).or_default().clone()
    }

    /// Makes sure `secrets` hold a usable access token: refreshes one that is missing or about to
    /// expire, or the one a destination just refused (`rejected`). Returns whether it refreshed.
    pub async fn ensure_fresh(
        &self,
        connection: &Connection,
        secrets: &mut OpenedSecrets,
        rejected: Option<&str>,
    ) -> Result<bool, TokenError> {
        // Every attempt passes here: credentials that are not tokens cost one look, no copy.
        if managed(secrets.credentials.as_ref()) == Managed::No {
            return Ok(false);
        }
        let Some(current) = secrets.credentials.clone() else { return Ok(false) };
        let now = switchyard_core::now_millis();
        let stale = |c: &Value, now| needs_refresh(c, now) || (rejected.is_some() && access_token(c) == rejected);
        if !stale(&current, now) {
            return Ok(false);
        }
        // Workers of this node queue here; nodes queue on the lock in the database.
        let local = self.local_lock(&connection.id);
        let _guard = local.lock().await;
        let deadline = now + LOCK_MS + 5_000;
        loop {
            let now = switchyard_core::now_millis();
            let latest = match self.stored(&connection.id).await {
                Ok(latest) => latest,
                Err(TokenError::NeedsReauth(reason)) => return Err(self.needs_reauth(connection, reason).await),
                Err(e) => return Err(e),
            };
            if latest.0 == ConnectionStatus::NeedsReauth {
                return Err(TokenError::NeedsReauth("the connection is waiting to be reconnected".into()));
            }
            // Someone else refreshed it meanwhile: use theirs.
            if !stale(&latest.1, now) {
                secrets.credentials = Some(latest.1);
                return Ok(true);
            }
            let locked = self
                .store
                .lock_refresh(&connection.id, &self.owner, now, now + LOCK_MS)
                .await
                .map_err(|e| TokenError::Failed(e.to_string()))?;
            if locked {
                // Read again under the lock: another node may have refreshed between our read and
                // our lock, and its refresh token may be single-use (using the old one again
                // would make the provider revoke the whole grant).
                let current = match self.stored(&connection.id).await {
                    Ok((_, creds)) => creds,
                    Err(e) => {
                        let _ = self.store.unlock_refresh(&connection.id, &self.owner).await;
                        return Err(e);
                    }
                };
                if !stale(&current, switchyard_core::now_millis()) {
                    let _ = self.store.unlock_refresh(&connection.id, &self.owner).await;
                    secrets.credentials = Some(current);
                    return Ok(true);
                }
                let result = self.refresh_locked(connection, current).await;
                match &result {
                    Ok(fresh) => secrets.credentials = Some(fresh.clone()),
                    Err(TokenError::NeedsReauth(reason)) => {
                        return Err(self.needs_reauth(connection, reason.clone()).await);
                    }
                    Err(TokenError::Failed(reason)) => {
                        tracing::warn!(connection = %connection.id, reason = %reason, "token refresh failed");
                        metrics::counter!("switchyard_token_refreshes_total", "outcome" => "failed").increment(1);
                        let _ = self.store.unlock_refresh(&connection.id, &self.owner).await;
                    }
                }
                return result.map(|_| true);
            }
            if now > deadline {
                return Err(TokenError::Failed("another node has held the refresh lock too long".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks the connection `needs_reauth` (its deliveries then wait); if that cannot be stored,
    /// the failure is a transient one, so the delivery is retried rather than deferred forever.
    async fn needs_reauth(&self, connection: &Connection, reason: String) -> TokenError {
        tracing::warn!(connection = %connection.id, reason = %reason, "the provider refused the connection's tokens; it needs to be reconnected");
        metrics::counter!("switchyard_token_refreshes_total", "outcome" => "needs_reauth").increment(1);
        match self.store.set_connection_status(&connection.id, ConnectionStatus::NeedsReauth).await {
            Ok(()) => {
                self.cache.clear();
                TokenError::NeedsReauth(reason)
            }
            Err(e) => TokenError::Failed(format!("could not mark the connection needs_reauth: {e}")),
        }
    }

    /// The connection's status and credentials as stored now (not as cached).
    async fn stored(&self, id: &ConnectionId) -> Result<(ConnectionStatus, Value), TokenError> {
        let conn = self
            .store
            .get_connection(&Scope::All, id)
            .await
            .map_err(|e| TokenError::Failed(e.to_string()))?
            .ok_or_else(|| TokenError::Failed("the connection was deleted".into()))?;
        let sealed = conn.credentials_sealed.ok_or_else(|| TokenError::NeedsReauth("the connection has no credentials".into()))?;
        let plain = self.vault.open(&sealed, id.as_str()).map_err(|e| TokenError::Failed(e.to_string()))?;
        let creds = serde_json::from_slice(&plain).map_err(|_| TokenError::Failed("the stored credentials are not JSON".into()))?;
        Ok((conn.status, creds))
    }

    /// Refreshes while holding the lock, and stores the result (which releases the lock).
    async fn refresh_locked(&self, connection: &Connection, current: Value) -> Result<Value, TokenError> {
        let fresh = match managed(Some(&current)) {
            Managed::ZoomServerToServer => self.zoom_server_to_server(&current).await?,
            _ => {
                let name = current.get("oauth_provider").and_then(Value::as_str).unwrap_or_default();
                let provider =
                    self.providers.get(name).ok_or_else(|| TokenError::Failed(format!("no OAuth app is configured for {name}")))?;
                let Some(refresh_token) = current.get("refresh_token").and_then(Value::as_str) else {
                    // Nothing to refresh with: the token is dead for good.
                    return Err(TokenError::NeedsReauth("the token expired and came without a refresh token".into()));
                };
                let answer = self.token_request(provider, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await?;
                merge_grant(&current, &answer, provider)
            }
        };
        let sealed = self.vault.seal(fresh.to_string().as_bytes(), connection.id.as_str());
        self.store
            .store_credentials(&connection.id, &sealed, None, ConnectionStatus::Active)
            .await
            .map_err(|e| TokenError::Failed(e.to_string()))?;
        self.cache.clear();
        metrics::counter!("switchyard_token_refreshes_total", "outcome" => "refreshed").increment(1);
        tracing::info!(connection = %connection.id, "access token refreshed");
        Ok(fresh)
    }

    /// Zoom's account-credentials grant: a new token from the account's own app credentials.
    async fn zoom_server_to_server(&self, current: &Value) -> Result<Value, TokenError> {
        let text = |k: &str| current.get(k).and_then(Value::as_str).unwrap_or_default();
        let mut url = url::Url::parse(&self.zoom_token_url).map_err(|_| TokenError::Failed("the Zoom token URL is invalid".into()))?;
        url.query_pairs_mut().append_pair("grant_type", "account_credentials").append_pair("account_id", text("account_id"));
        let response = self
            .http
            .post(url)
            .basic_auth(text("client_id"), Some(text("client_secret")))
            .send()
            .await
            .map_err(|e| TokenError::Failed(format!("the Zoom token endpoint could not be reached: {}", root_cause(&e))))?;
        let answer = read_grant(response).await?;
        let mut fresh = current.as_object().cloned().unwrap_or_default();
        apply_grant(&mut fresh, &answer);
        Ok(Value::Object(fresh))
    }

    /// A form POST to one of a provider's endpoints, with the app's client authentication
    /// (Basic, or the id and secret in the form).
    fn client_post(&self, provider: &Provider, url: &str, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.http.post(url).header("accept", "application/json");
        match provider.client_auth {
            ClientAuth::Basic => request = request.basic_auth(&provider.client_id, Some(&provider.client_secret)),
            ClientAuth::Post => {
                fields.push(("client_id", &provider.client_id));
                fields.push(("client_secret", &provider.client_secret));
            }
        }
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        request.header("content-type", "application/x-www-form-urlencoded").body(body)
    }

    /// A request to a provider's token endpoint with the app's client authentication.
    pub async fn token_request(&self, provider: &Provider, form: &[(&str, &str)]) -> Result<Value, TokenError> {
        let response = self
            .client_post(provider, &provider.token_url, form)
            .send()
            .await
            .map_err(|e| TokenError::Failed(format!("the token endpoint could not be reached: {}", root_cause(&e))))?;
        read_grant(response).await
    }

    /// Best effort: tells the provider to forget a disconnected connection's tokens.
    pub async fn revoke(&self, provider: &Provider, credentials: &Value) {
        let Some(url) = &provider.revoke_url else { return };
        // Slack revokes by its access token; the others by the refresh token, which takes the
        // access tokens issued from it along.
        let token = if provider.name == "slack" { None } else { credentials.get("refresh_token").and_then(Value::as_str) }
            .or_else(|| access_token(credentials));
        let Some(token) = token else { return };
        match self.client_post(provider, url, &[("token", token)]).send().await {
            Ok(r) if r.status().is_success() => tracing::info!(provider = %provider.name, "revoked the disconnected connection's token"),
            Ok(r) => tracing::warn!(provider = %provider.name, status = r.status().as_u16(), "the provider did not revoke the token"),
            Err(e) => tracing::warn!(provider = %provider.name, error = %root_cause(&e), "could not reach the revocation endpoint"),
        }
    }

    /// GET with a bearer token (provider metadata after a connect flow).
    pub async fn get_json(&self, url: &str, authorization: &str) -> Result<Value, TokenError> {
        let response = self
            .http
            .get(url)
            .header("authorization", authorization)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| TokenError::Failed(format!("{url} could not be reached: {}", root_cause(&e))))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|_| TokenError::Failed(format!("{url} did not answer JSON")))?;
        if !status.is_success() {
            return Err(TokenError::Failed(format!("{url} answered HTTP {}", status.as_u16())));
        }
        Ok(body)
    }
}

/// Reads a token endpoint's answer: the grant, or why not (never echoing tokens).
async fn read_grant(response: reqwest::Response) -> Result<Value, TokenError> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // Slack answers errors as HTTP 200 with ok: false.
    let error = body.get("error").and_then(Value::as_str).map(str::to_owned);
    let ok = (200..300).contains(&status) && body.get("ok") != Some(&Value::Bool(false)) && access_token(&body).is_some();
    if ok {
        return Ok(body);
    }
    match error {
        Some(e) if DEAD_GRANT.contains(&e.as_str()) => Err(TokenError::NeedsReauth(e)),
        Some(e) => Err(TokenError::Failed(format!("HTTP {status}: {}", e.chars().take(100).collect::<String>()))),
        None if matches!(status, 400 | 401) => Err(TokenError::NeedsReauth(format!("HTTP {status}"))),
        None => Err(TokenError::Failed(format!("HTTP {status} without an access token"))),
    }
}

/// New credentials from a grant: the answer's tokens over the old ones (a refresh token that was
/// not rotated stays), an expiry when the provider gave one (Salesforce gives none).
pub fn merge_grant(current: &Value, answer: &Value, provider: &Provider) -> Value {
    let mut fresh: Map<String, Value> = current.as_object().cloned().unwrap_or_default();
    fresh.insert("oauth_provider".into(), json!(provider.name));
    apply_grant(&mut fresh, answer);
    Value::Object(fresh)
}

fn apply_grant(fresh: &mut Map<String, Value>, answer: &Value) {
    let now = switchyard_core::now_millis();
    if let Some(token) = access_token(answer) {
        fresh.insert("access_token".into(), json!(token));
    }
    if let Some(refresh) = answer.get("refresh_token").and_then(Value::as_str) {
        fresh.insert("refresh_token".into(), json!(refresh));
    }
    // Mailchimp says `"expires_in": 0` for tokens that never expire.
    let expires_in =
        answer.get("expires_in").and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).filter(|s| *s > 0);
    fresh.insert("expires_at".into(), expires_in.map_or(Value::Null, |s| json!(now + s * 1000)));
    fresh.insert("obtained_at".into(), json!(now));
    if let Some(scope) = answer.get("scope").and_then(Value::as_str) {
        fresh.insert("scope".into(), json!(scope));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        Provider {
            name: "salesforce".into(),
            client_id: "id".into(),
            client_secret: "secret".into(),
            authorize_url: "https://x/authorize".into(),
            token_url: "https://x/token".into(),
            revoke_url: None,
            scopes: String::new(),
            authorize_params: vec![],
            client_auth: ClientAuth::Post,
            metadata_url: None,
            accounts_url: None,
        }
    }

    #[test]
    fn grants_merge_over_old_credentials() {
        let old = json!({"oauth_provider": "salesforce", "access_token": "a1", "refresh_token": "r1", "expires_at": 5});
        // Salesforce: no expires_in and no new refresh token.
        let fresh = merge_grant(&old, &json!({"access_token": "a2", "instance_url": "https://na1.salesforce.com"}), &provider());
        assert_eq!(fresh["access_token"], "a2");
        assert_eq!(fresh["refresh_token"], "r1");
        assert_eq!(fresh["expires_at"], Value::Null);
        assert!(!needs_refresh(&fresh, switchyard_core::now_millis()), "no expiry: refreshed only when refused");
        // Zoom: a single-use refresh token is replaced every time.
        let fresh = merge_grant(&old, &json!({"access_token": "a3", "refresh_token": "r2", "expires_in": 3600}), &provider());
        assert_eq!(fresh["refresh_token"], "r2");
        let now = switchyard_core::now_millis();
        assert!(!needs_refresh(&fresh, now));
        assert!(needs_refresh(&fresh, now + 3_550_000), "refreshed within the last minute");
    }

    #[test]
    fn short_lived_tokens_refresh_in_their_last_quarter() {
        let c = json!({"access_token": "a", "obtained_at": 0, "expires_at": 4_000});
        assert!(!needs_refresh(&c, 2_999));
        assert!(needs_refresh(&c, 3_000));
        assert!(needs_refresh(&json!({"refresh_token": "r"}), 0), "no access token at all");
    }

    #[test]
    fn kinds_of_credentials() {
        assert_eq!(managed(Some(&json!({"api_key": "k"}))), Managed::No);
        assert_eq!(managed(Some(&json!({"oauth_provider": "hubspot", "access_token": "a"}))), Managed::Flow);
        assert_eq!(managed(Some(&json!({"account_id": "a", "client_id": "b", "client_secret": "c"}))), Managed::ZoomServerToServer);
        assert_eq!(managed(None), Managed::No);
    }
}
