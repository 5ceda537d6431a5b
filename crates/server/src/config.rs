//! Server configuration: what `switchyard serve` reads from flags and the environment, validated
//! before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use switchyard_core::retry::RetryPolicy;
use switchyard_destinations::sandbox::{Limits as TemplateLimits, Renderer, WorkerCommand};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// HTTP API only.
    Api,
    /// Dispatch only.
    Worker,
    All,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(Self::Api),
            "worker" => Some(Self::Worker),
            "all" => Some(Self::All),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Worker => "worker",
            Self::All => "all",
        }
    }

    pub fn serves_api(self) -> bool {
        matches!(self, Self::Api | Self::All)
    }

    pub fn dispatches(self) -> bool {
        matches!(self, Self::Worker | Self::All)
    }
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Plans, the default plan and the installation's limits (`SWITCHYARD_PLANS_FILE`).
    pub plans: crate::limits::PlansConfig,
    pub database_url: String,
    /// Pool size and statement timeout (PostgreSQL).
    pub postgres: switchyard_store::PgOptions,
    pub role: Role,
    pub allow_private_destinations: bool,
    /// Base64 master key; when absent on the embedded store, one is generated into the data folder.
    pub master_key: Option<String>,
    /// Older master keys still accepted for opening secrets (`SWITCHYARD_PREVIOUS_MASTER_KEYS`).
    pub previous_master_keys: Vec<String>,
    /// The OAuth apps registered with each provider (`SWITCHYARD_OAUTH_<PROVIDER>_*`).
    pub oauth: crate::oauth::providers::Providers,
    /// The externally visible base URL (`SWITCHYARD_PUBLIC_URL`): OAuth providers send users back
    /// to `{public_url}/oauth/callback`.
    pub public_url: Option<String>,
    /// Where Zoom server-to-server credentials get their tokens (`SWITCHYARD_OAUTH_ZOOM_TOKEN_URL`).
    pub zoom_token_url: String,
    /// Accepted as an admin key in addition to the stored ones (`SWITCHYARD_ADMIN_KEY`).
    pub admin_key: Option<String>,
    pub dispatcher: DispatcherConfig,
    pub defaults: ConnectionDefaults,
    /// How long an idempotency key returns the first event.
    pub idempotency_window: Duration,
    /// Most events committed in one ingest transaction.
    pub ingest_batch_max: usize,
    /// Most deliveries one ingestion request may create (its events times the rules each
    /// matches); a request over it is refused, or for a bulk request, the events past it.
    pub max_deliveries_per_request: usize,
    /// How long shutdown waits for in-flight deliveries before handing their leases back.
    pub shutdown_grace: Duration,
    /// How often caches compare the store's config version (multi-node freshness). Where the
    /// store announces changes (PostgreSQL NOTIFY) this is only the backstop, and at least 5 s.
    pub cache_check_interval: Duration,
    /// Finished history older than this is deleted; `None` keeps it forever.
    pub retention: Option<Duration>,
    /// Where and within what limits rules' templates render.
    pub templates: TemplateConfig,
    /// Timeouts and the connection cap of the HTTP listener.
    pub http: crate::serve::HttpLimits,
    /// The embedded pages' look where a session sets none (accent colour, logo URL, name).
    pub branding: switchyard_core::model::Branding,
    /// Audit entries older than this are deleted (`SWITCHYARD_AUDIT_RETENTION_DAYS`, default 365);
    /// `None` keeps them forever.
    pub audit_retention: Option<Duration>,
    /// A connection every attempt to which has failed for this long is disabled (its deliveries
    /// wait until someone resumes it): `SWITCHYARD_DISABLE_FAILING_AFTER_HOURS`, default 120 (5
    /// days); `None` never disables one.
    pub disable_failing_after: Option<Duration>,
    /// The operator's workspace (`SWITCHYARD_NOTIFY_WORKSPACE`): every workspace's operational
    /// notifications are also emitted there, for the operator's own rules to deliver.
    pub notify_workspace: Option<switchyard_core::ids::WorkspaceId>,
    /// Proxies whose `X-Forwarded-For` names the client (`SWITCHYARD_TRUSTED_PROXIES`: addresses
    /// or CIDR ranges). From any other peer the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Team sign-in to the console through an OpenID Connect provider (`SWITCHYARD_OIDC_*`); without
    /// it, the console signs in with an admin API key.
    pub oidc: Option<OidcConfig>,
    /// How long a console sign-in lasts (`SWITCHYARD_CONSOLE_SESSION_HOURS`, default 12).
    pub console_session_ttl: Duration,
}

/// The operator's OpenID Connect provider and who may sign in as what.
#[derive(Clone, Default)]
pub struct OidcConfig {
    /// e.g. `https://accounts.google.com`; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated; `openid email profile` by default.
    pub scopes: String,
    /// The sign-in button's label, e.g. `Google`.
    pub display_name: String,
    /// E-mail addresses (or `@example.com` for a whole domain) of owners, admins and viewers.
    pub owners: Vec<String>,
    pub admins: Vec<String>,
    pub viewers: Vec<String>,
    /// A claim of the ID token (e.g. `groups` or `roles`) whose values give the role, checked before
    /// the e-mail lists.
    pub role_claim: Option<String>,
    pub owner_values: Vec<String>,
    pub admin_values: Vec<String>,
    pub viewer_values: Vec<String>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("role_claim", &self.role_claim)
            .finish_non_exhaustive()
    }
}

/// An address range: `10.0.0.0/8`, `::1/128`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: std::net::IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::*;
        match (self.addr, ip) {
            (V4(net), V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (V6(net), V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            (V6(net), V4(ip)) => net.to_ipv4_mapped() == Some(ip) && self.prefix == 128,
            (V4(net), V6(ip)) => {
                ip.to_ipv4_mapped().is_some_and(|ip| IpNet { addr: V4(ip), prefix: self.prefix }.contains(V4(net)) && self.prefix == 32)
            }
        }
    }
}

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a.parse::<std::net::IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim().parse::<std::net::IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

/// Template rendering (see `switchyard_destinations::sandbox`).
#[derive(Debug, Clone, Default)]
pub struct TemplateConfig {
    /// The program rendering templates in worker processes; `None` renders in this process, with
    /// fuel and the output cap but no memory or time bound (for tests and trusted templates only).
    pub worker: Option<WorkerCommand>,
    /// Worker processes, and so renders at once (`--template-workers`).
    pub workers: usize,
    pub limits: TemplateLimits,
}

impl TemplateConfig {
    pub fn renderer(&self) -> Renderer {
        match &self.worker {
            Some(command) => Renderer::sandbox(command.clone(), self.workers, self.limits),
            None => Renderer::InProcess,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("role", &self.role)
            .field("allow_private_destinations", &self.allow_private_destinations)
            .field("master_key", &self.master_key.as_ref().map(|_| "[redacted]"))
            .field("previous_master_keys", &format_args!("[{} redacted]", self.previous_master_keys.len()))
            .field("admin_key", &self.admin_key.as_ref().map(|_| "[redacted]"))
            .field("dispatcher", &self.dispatcher)
            .finish_non_exhaustive()
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Most attempts in flight on this node.
    pub max_concurrency: usize,
    /// Most deliveries claimed per query.
    pub claim_batch: u32,
    /// Idle poll interval (new work also wakes the dispatcher directly). Where the store
    /// announces new work (PostgreSQL NOTIFY) this is only the backstop, and at least 5 s.
    pub poll_interval: Duration,
    /// Added to a connection's timeout to make a lease: long enough that a live node never loses one.
    pub lease_margin: Duration,
    /// How often expired leases (of dead nodes) are looked for.
    pub lease_check_interval: Duration,
    /// Alone on its store, lease fresh deliveries as they are stored and hand them to the
    /// dispatcher, skipping the claim (see `dispatch::intake`).
    pub hand_over_at_ingest: bool,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            max_concurrency: 512,
            claim_batch: 256,
            poll_interval: Duration::from_millis(1000),
            lease_margin: Duration::from_secs(10),
            lease_check_interval: Duration::from_secs(2),
            hand_over_at_ingest: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionDefaults {
    pub retry_policy: RetryPolicy,
    pub timeout_ms: u64,
    pub max_in_flight: u32,
}

impl Default for ConnectionDefaults {
    fn default() -> Self {
        Self { retry_policy: RetryPolicy::default(), timeout_ms: 10_000, max_in_flight: 16 }
    }
}

impl Config {
    /// The defaults of `switchyard serve` with no flags.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            listen: ([127, 0, 0, 1], 8080).into(),
            database_url: database_url.into(),
            postgres: switchyard_store::PgOptions::default(),
            role: Role::All,
            allow_private_destinations: false,
            master_key: None,
            previous_master_keys: Vec::new(),
            oauth: Default::default(),
            public_url: None,
            zoom_token_url: "https://zoom.us/oauth/token".into(),
            admin_key: None,
            dispatcher: DispatcherConfig::default(),
            defaults: ConnectionDefaults::default(),
            idempotency_window: Duration::from_secs(24 * 3600),
            ingest_batch_max: 5_000,
            max_deliveries_per_request: 10_000,
            shutdown_grace: Duration::from_secs(10),
            cache_check_interval: Duration::from_millis(500),
            retention: None,
            templates: TemplateConfig { worker: None, workers: 2, limits: TemplateLimits::default() },
            http: crate::serve::HttpLimits::default(),
            branding: Default::default(),
            audit_retention: Some(Duration::from_secs(365 * 86_400)),
            disable_failing_after: Some(Duration::from_secs(120 * 3_600)),
            notify_workspace: None,
            trusted_proxies: Vec::new(),
            oidc: None,
            plans: crate::limits::PlansConfig::default(),
            console_session_ttl: Duration::from_secs(12 * 3600),
        }
    }

    /// The folder beside an embedded database, where a generated master key is kept.
    pub fn data_dir(&self) -> Option<PathBuf> {
        let path = self.database_url.strip_prefix("sqlite://").or_else(|| self.database_url.strip_prefix("sqlite:"))?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path.starts_with(":memory:") {
            return None;
        }
        Some(PathBuf::from(path).parent().map(PathBuf::from).unwrap_or_default())
    }

    /// Checks settings that flags alone cannot, with messages that say what to change.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            return Err(format!("--database-url must start with sqlite:// or postgres:// (got {:?})", redact_url(&self.database_url)));
        }
        if let Some(admin) = &self.admin_key {
            if !admin.starts_with("sk_") || admin.len() < 24 {
                return Err("SWITCHYARD_ADMIN_KEY must start with sk_ and be at least 24 characters long".into());
            }
        }
        if let Some(public) = &self.public_url {
            let ok = url::Url::parse(public).map(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()).unwrap_or(false);
            if !ok {
                return Err(format!(
                    "SWITCHYARD_PUBLIC_URL must be an http(s) URL such as https://switchyard.example.com (got {public:?})"
                ));
            }
        }
        if let Err(e) = crate::embed::check_branding(&self.branding, "SWITCHYARD_BRAND") {
            let field = e.body().error.details.first().map(|d| d.field.to_uppercase().replace('.', "_")).unwrap_or_default();
            let message = e.body().error.details.first().map(|d| d.message.clone()).unwrap_or_default();
            return Err(format!("{field} {message}"));
        }
        if let Some(oidc) = &self.oidc {
            let ok = url::Url::parse(&oidc.issuer).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(format!("SWITCHYARD_OIDC_ISSUER must be an http(s) URL (got {:?})", oidc.issuer));
            }
            if oidc.client_id.is_empty() || oidc.client_secret.is_empty() {
                return Err("SWITCHYARD_OIDC_ISSUER needs SWITCHYARD_OIDC_CLIENT_ID and SWITCHYARD_OIDC_CLIENT_SECRET".into());
            }
            if self.public_url.is_none() {
                return Err(
                    "team sign-in (SWITCHYARD_OIDC_ISSUER) needs SWITCHYARD_PUBLIC_URL, where the provider sends people back".into()
                );
            }
            let lists = oidc.owners.len() + oidc.admins.len() + oidc.viewers.len();
            let values = oidc.owner_values.len() + oidc.admin_values.len() + oidc.viewer_values.len();
            if lists == 0 && (oidc.role_claim.is_none() || values == 0) {
                return Err("team sign-in lets nobody in: set SWITCHYARD_OIDC_OWNERS (or _ADMINS, _VIEWERS), or SWITCHYARD_OIDC_ROLE_CLAIM with its values".into());
            }
        }
        if self.templates.limits.memory_bytes < 16 << 20 || self.templates.limits.time.is_zero() {
            return Err("templates need at least 16 MiB of memory and a time limit above zero".into());
        }
        let http = &self.http;
        if http.header_read_timeout.is_zero() || http.header_read_timeout > Duration::from_secs(30) {
            return Err("the HTTP header read timeout must be between 1 ms and 30 s".into());
        }
        if http.idle_timeout.is_zero() || http.body_read_timeout.is_zero() || http.max_connections == 0 {
            return Err("the HTTP idle and body read timeouts and the connection cap must be above zero".into());
        }
        if self.max_deliveries_per_request == 0 {
            return Err("--max-deliveries-per-request must be at least 1".into());
        }
        if self.dispatcher.max_concurrency == 0 {
            return Err("the dispatcher needs a concurrency of at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod ipnet_tests {
    use super::IpNet;

    #[test]
    fn ranges_contain_their_addresses_only() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
        assert!("proxy".parse::<IpNet>().is_err());
    }
}
