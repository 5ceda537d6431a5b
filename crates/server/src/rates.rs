//! Rate limits on the API (docs/limits.md, "Rate limits"): a GCRA bucket per credential, per client
//! address for requests without a valid one, and per workspace for its plan's events per second.
//!
//! Every decision is made in memory: no request waits on the database. In a cluster on PostgreSQL
//! each node adds what it admitted to a shared table every [`SYNC_INTERVAL`] and adopts what all
//! nodes admitted ([`Rates::sync`]), so a bucket fills at the cluster's pace. Between two syncs a
//! node knows only its own admissions; that is the documented tolerance: at most one burst (and one
//! interval's worth of the rate) per node beyond the limit, paid back by every node before the
//! bucket admits anything again.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_store::Store;

/// How often a node of a cluster shares its admissions.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Buckets full again for this long are forgotten (locally, and in the shared table).
const IDLE_MS: f64 = 60_000.0;

/// A limit: `per_second` sustained, and up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    fn interval_ms(&self) -> f64 {
        1000.0 / self.per_second
    }

    fn validate(&self, what: &str) -> Result<(), String> {
        if !(self.per_second.is_finite() && self.per_second > 0.0) || self.burst == 0 {
            return Err(format!("rate_limits.{what}: per_second must be above 0 and burst at least 1"));
        }
        Ok(())
    }
}

/// The limits per kind of caller, from the plans file's `[rate_limits]` (none: unlimited).
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimits {
    /// Each API key, and each console sign-in.
    pub api_key: Option<Rate>,
    /// Each embed session.
    pub session: Option<Rate>,
    /// Each publishable key (requests; the plan's `events_per_second` counts events).
    pub publishable_key: Option<Rate>,
    /// Each client address, for requests without a valid credential.
    pub anonymous: Option<Rate>,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            api_key: Some(Rate { per_second: 100.0, burst: 200 }),
            session: Some(Rate { per_second: 20.0, burst: 100 }),
            publishable_key: None,
            anonymous: Some(Rate { per_second: 10.0, burst: 50 }),
        }
    }
}

/// One kind's entry in the file: a limit, or `"unlimited"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Entry {
    Rate(Rate),
    Word(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RateLimitsFile {
    api_key: Option<toml::Value>,
    session: Option<toml::Value>,
    publishable_key: Option<toml::Value>,
    anonymous: Option<toml::Value>,
}

impl RateLimitsFile {
    /// The limits the file's section sets, over the defaults for what it leaves out.
    pub(crate) fn resolve(self) -> Result<RateLimits, String> {
        let mut limits = RateLimits::default();
        let read = |what: &str, value: Option<toml::Value>, default: Option<Rate>| -> Result<Option<Rate>, String> {
            let Some(value) = value else { return Ok(default) };
            match Entry::deserialize(value) {
                Ok(Entry::Rate(rate)) => rate.validate(what).map(|()| Some(rate)),
                Ok(Entry::Word(w)) if w == "unlimited" => Ok(None),
                _ => Err(format!("rate_limits.{what}: expected {{ per_second = 10, burst = 50 }} or \"unlimited\"")),
            }
        };
        limits.api_key = read("api_key", self.api_key, limits.api_key)?;
        limits.session = read("session", self.session, limits.session)?;
        limits.publishable_key = read("publishable_key", self.publishable_key, limits.publishable_key)?;
        limits.anonymous = read("anonymous", self.anonymous, limits.anonymous)?;
        Ok(limits)
    }
}

/// What a bucket said about one request, for its `RateLimit` headers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// The policy's name in the headers: the kind of caller, or `events`.
    pub policy: &'static str,
    pub rate: Rate,
    /// What the bucket still admits at once.
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset_s: u64,
    /// Refused: seconds until the request would be admitted.
    pub retry_after_s: Option<u64>,
}

impl Decision {
    pub fn admitted(&self) -> bool {
        self.retry_after_s.is_none()
    }

    /// `"api_key";q=200;w=2`: the draft's quota (the burst) over the window that refills it.
    fn write_policy_item(&self, out: &mut String, digits: &mut itoa::Buffer) {
        let window = (f64::from(self.rate.burst) / self.rate.per_second).ceil().max(1.0) as u64;
        for part in ["\"", self.policy, "\";q=", digits.format(self.rate.burst), ";w="] {
            out.push_str(part);
        }
        out.push_str(digits.format(window));
    }

    /// `"api_key";r=187;t=1`: what is left, and the seconds until the bucket is full.
    fn write_limit_item(&self, out: &mut String, digits: &mut itoa::Buffer) {
        for part in ["\"", self.policy, "\";r=", digits.format(self.remaining), ";t="] {
            out.push_str(part);
        }
        out.push_str(digits.format(self.reset_s));
    }

    /// 429 `rate_limited`, naming the limit and when to come back.
    pub fn refusal(&self, whose: &str) -> ApiError {
        metrics::counter!("switchyard_rate_limited_total", "policy" => self.policy).increment(1);
        let wait = self.retry_after_s.unwrap_or(1);
        let mut e = ApiError::bad_request(format!(
            "{whose} is limited to {} requests per second (bursts of {}); retry in {wait} s",
            self.rate.per_second, self.rate.burst
        ));
        e.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
        e.code = "rate_limited";
        e.retry_after = Some(wait);
        e
    }
}

struct Bucket {
    /// The theoretical arrival time (ms): when the bucket would be full again.
    tat: f64,
    /// What this node admitted since its last sync, in milliseconds of the bucket.
    pending: f64,
    /// Where the first of those admissions started (the bucket's base then): the cluster's bucket
    /// takes them from there, not from the time of the sync.
    since: f64,
    /// Asked about since the last sync: the next sync reads the cluster's view of it.
    touched: bool,
}

impl Bucket {
    /// GCRA: takes `cost` places if the bucket holds them at `now` (ms).
    fn take(&mut self, policy: &'static str, rate: Rate, cost: u32, now: f64) -> Decision {
        let interval = rate.interval_ms();
        let capacity = f64::from(rate.burst) * interval;
        self.touched = true;
        let base = self.tat.max(now);
        let next = base + f64::from(cost) * interval;
        let seconds = |ms: f64| (ms / 1000.0).ceil().max(0.0) as u64;
        if next - now <= capacity + EPSILON_MS {
            if self.pending == 0.0 {
                self.since = base;
            }
            self.tat = next;
            self.pending += next - base;
            let remaining = ((capacity + EPSILON_MS - (next - now)) / interval).floor().max(0.0) as u64;
            Decision { policy, rate, remaining, reset_s: seconds(next - now - EPSILON_MS), retry_after_s: None }
        } else {
            let remaining = ((capacity + EPSILON_MS - (base - now)) / interval).floor().max(0.0) as u64;
            let wait = seconds(next - capacity - now).max(1);
            Decision { policy, rate, remaining, reset_s: seconds(base - now - EPSILON_MS), retry_after_s: Some(wait) }
        }
    }
}

/// Every bucket of this node.
pub struct Rates {
    buckets: Mutex<HashMap<Box<str>, Bucket>>,
}

impl Default for Rates {
    fn default() -> Self {
        Self { buckets: Mutex::new(HashMap::new()) }
    }
}

/// Slack in the comparisons, in milliseconds of a bucket: times are around 1.8e12 ms, where an f64
/// steps by 2.4e-4 ms, so a bucket with an interval like 1000/7 ms would otherwise lose a place
/// to rounding.
const EPSILON_MS: f64 = 0.5;
/// Most buckets kept for client addresses; past it, new addresses share one bucket, so a flood
/// from ever-new addresses neither grows the map nor escapes the limit.
const MAX_ADDRESS_BUCKETS: usize = 100_000;

impl Rates {
    /// Takes `cost` from `key`'s bucket if it holds that much now; says what is left either way.
    pub fn check(&self, key: &str, policy: &'static str, rate: Rate, cost: u32, now: f64) -> Decision {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // One hash for a bucket that exists (nearly every request); the key is copied only for a new one.
        if let Some(bucket) = buckets.get_mut(key) {
            return bucket.take(policy, rate, cost, now);
        }
        let bucket = buckets.entry(key.into()).or_insert(Bucket { tat: now, pending: 0.0, since: now, touched: false });
        bucket.take(policy, rate, cost, now)
    }

    /// The refusal `key`'s bucket would give one more request now, without taking anything.
    pub fn refusal(&self, key: &str, policy: &'static str, rate: Rate, now: f64) -> Option<Decision> {
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let tat = buckets.get(key)?.tat;
        let interval = rate.interval_ms();
        let capacity = f64::from(rate.burst) * interval;
        let base = tat.max(now);
        if base + interval - now <= capacity + EPSILON_MS {
            return None;
        }
        let seconds = |ms: f64| (ms / 1000.0).ceil().max(0.0) as u64;
        Some(Decision {
            policy,
            rate,
            remaining: 0,
            reset_s: seconds(base - now),
            retry_after_s: Some(seconds(base + interval - capacity - now).max(1)),
        })
    }

    /// The bucket key of a client address: IPv4 whole, IPv6 by its /64 (what one client holds);
    /// new addresses past [`MAX_ADDRESS_BUCKETS`] share one bucket. (The shared table gets a hash
    /// of it, never the address: see [`shared_key`].)
    fn address_key(&self, addr: std::net::IpAddr) -> String {
        let key = match addr {
            std::net::IpAddr::V4(v4) => format!("ip:{v4}"),
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("ip:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_ADDRESS_BUCKETS && !buckets.contains_key(key.as_str()) {
            return "ip:overflow".into();
        }
        key
    }

    /// Shares this node's admissions with the cluster and adopts the cluster's view of the
    /// buckets they went to. A store that is not shared (SQLite) is skipped. What a failed sync
    /// carried is kept for the next.
    pub async fn sync(&self, store: &dyn Store, now: f64) -> switchyard_store::Result<()> {
        let shared = store.shares_rates();
        let mut keys = Vec::new();
        let (mut costs, mut since) = (Vec::new(), Vec::new());
        {
            let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
            buckets.retain(|_, b| b.touched || b.pending > 0.0 || b.tat + IDLE_MS > now);
            if !shared {
                return Ok(());
            }
            for (k, b) in buckets.iter_mut() {
                b.touched = false;
                if b.pending > 0.0 {
                    keys.push(k.to_string());
                    since.push(b.since);
                    costs.push(std::mem::take(&mut b.pending));
                }
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| shared_key(k)).collect();
        let shared = match store.share_rates(&names, &costs, &since, now - IDLE_MS).await {
            Ok(shared) => shared,
            Err(e) => {
                let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
                for ((key, cost), from) in keys.iter().zip(&costs).zip(&since) {
                    if let Some(b) = buckets.get_mut(key.as_str()) {
                        b.since = if b.pending > 0.0 { b.since.min(*from) } else { *from };
                        b.pending += cost;
                    }
                }
                return Err(e);
            }
        };
        let local: HashMap<&str, &str> = names.iter().map(String::as_str).zip(keys.iter().map(String::as_str)).collect();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for (name, tat) in shared {
            let Some(key) = local.get(name.as_str()) else { continue };
            if let Some(b) = buckets.get_mut(*key) {
                // What this node admitted while the sync was under way comes on top.
                b.tat = b.tat.max(tat + b.pending);
            }
        }
        Ok(())
    }
}

/// The name of a bucket in the shared table: an address's is hashed, so no client address is
/// written to the database (credentials' buckets are named by their digests already).
fn shared_key(key: &str) -> String {
    match key.strip_prefix("ip:") {
        Some(address) => format!("ip:{}", &switchyard_core::crypto::hash_token(address)[..32]),
        None => key.to_owned(),
    }
}

/// Runs [`Rates::sync`] every [`SYNC_INTERVAL`] until `stop`.
pub async fn sync_loop(state: crate::state::AppState, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(SYNC_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned_at = None::<std::time::Instant>;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = state.rates.sync(&*state.store, switchyard_core::now_millis() as f64).await {
            metrics::counter!("switchyard_rate_sync_failures_total").increment(1);
            // Once a minute at most: the database being away is reported elsewhere too.
            if warned_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                warned_at = Some(std::time::Instant::now());
                tracing::warn!(error = %e, "could not share rate-limit buckets with the cluster; limits hold per node until it can");
            }
        }
    }
}

/// Where the decisions about a request are left for [`layer`] to turn into headers, and whether
/// a credential vouched for it.
#[derive(Clone, Default)]
pub struct RateSlot(Arc<Mutex<SlotInner>>);

#[derive(Default)]
struct SlotInner {
    decisions: Vec<Decision>,
    vouched: bool,
}

impl RateSlot {
    pub fn push(&self, decision: Decision) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).decisions.push(decision);
    }

    /// A credential was accepted: the request is its caller's, not its address's.
    pub fn vouch(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).vouched = true;
    }
}

/// Which kind of caller a token claims to be, and its limit.
pub fn limit_for(limits: &RateLimits, token: &str) -> Option<(&'static str, Rate)> {
    match token.get(..3)? {
        "sk_" | "cs_" => limits.api_key.map(|r| ("api_key", r)),
        "st_" => limits.session.map(|r| ("session", r)),
        "pk_" => limits.publishable_key.map(|r| ("publishable_key", r)),
        _ => None,
    }
}

/// Leaves `decision` for the headers and turns a refusal into its 429.
fn settle(slot: Option<&RateSlot>, decision: Decision, whose: &str) -> Result<(), ApiError> {
    if let Some(slot) = slot {
        slot.push(decision);
    }
    if decision.admitted() {
        Ok(())
    } else {
        Err(decision.refusal(whose))
    }
}

const ANONYMOUS: &str = "a request without a valid credential, from this address,";

/// The bucket of a client address and its limit, when requests without a credential are limited.
fn address_bucket(state: &crate::state::AppState, addr: Option<std::net::IpAddr>) -> Option<(String, Rate)> {
    let (Some(rate), Some(addr)) = (state.config.plans.rate_limits.anonymous, addr) else { return None };
    Some((state.rates.address_key(addr), rate))
}

/// Checks the bucket of a credential that authenticated (`digest` names it), leaving the decision
/// for the headers; `Err` is the 429.
pub fn admit_credential(state: &crate::state::AppState, slot: Option<&RateSlot>, token: &str, digest: &str) -> Result<(), ApiError> {
    let Some((policy, rate)) = limit_for(&state.config.plans.rate_limits, token) else { return Ok(()) };
    settle(slot, state.rates.check(digest, policy, rate, 1, switchyard_core::now_millis() as f64), "this credential")
}

/// Checks the bucket of the client's address, for a request without a valid credential.
pub fn admit_anonymous(state: &crate::state::AppState, slot: Option<&RateSlot>, addr: Option<std::net::IpAddr>) -> Result<(), ApiError> {
    let Some((key, rate)) = address_bucket(state, addr) else { return Ok(()) };
    settle(slot, state.rates.check(&key, "anonymous", rate, 1, switchyard_core::now_millis() as f64), ANONYMOUS)
}

/// Refuses, before any credential is looked up, a request from an address whose bucket is empty
/// (it has been sending requests without a valid credential): guessing keys costs no lookups.
pub fn screen_address(state: &crate::state::AppState, slot: Option<&RateSlot>, addr: Option<std::net::IpAddr>) -> Result<(), ApiError> {
    let Some((key, rate)) = address_bucket(state, addr) else { return Ok(()) };
    match state.rates.refusal(&key, "anonymous", rate, switchyard_core::now_millis() as f64) {
        None => Ok(()),
        Some(decision) => settle(slot, decision, ANONYMOUS),
    }
}

/// Takes `events` from a workspace's events-per-second bucket, when its plan has one.
pub fn admit_events(
    state: &crate::state::AppState,
    slot: Option<&RateSlot>,
    ws: &switchyard_core::ids::WorkspaceId,
    limits: &switchyard_core::limits::Limits,
    events: usize,
) -> Result<(), ApiError> {
    let Some(per_second) = limits.events_per_second.filter(|r| *r > 0) else { return Ok(()) };
    let burst = limits.events_burst.unwrap_or(per_second).max(1);
    if events > burst as usize {
        metrics::counter!("switchyard_limit_hits_total", "limit" => "events_burst").increment(1);
        return Err(ApiError::invalid(
            "limits.events_burst",
            format!(
                "this request holds {events} events; this workspace's plan takes at most {burst} at once: send them in smaller requests"
            ),
        ));
    }
    let rate = Rate { per_second: f64::from(per_second), burst };
    let mut key = String::with_capacity(3 + ws.as_str().len());
    key.push_str("ev:");
    key.push_str(ws.as_str());
    let decision = state.rates.check(&key, "events", rate, events as u32, switchyard_core::now_millis() as f64);
    if let Some(slot) = slot {
        slot.push(decision);
    }
    if decision.admitted() {
        return Ok(());
    }
    metrics::counter!("switchyard_limit_hits_total", "limit" => "events_per_second").increment(1);
    let wait = decision.retry_after_s.unwrap_or(1);
    let message = format!(
        "this workspace's plan accepts {per_second} events per second (bursts of {burst}); this request's {events} would pass it: retry in {wait} s"
    );
    let mut e = ApiError::invalid("limits.events_per_second", message.clone());
    e.status = axum::http::StatusCode::TOO_MANY_REQUESTS;
    e.code = "quota_exceeded";
    e.message = message;
    e.retry_after = Some(wait);
    Err(e)
}

/// Whether a request carries anything that claims to be a credential (valid or not).
pub fn carries_credential(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::AUTHORIZATION)
        || headers.contains_key("x-publishable-key")
        || crate::console::cookie_token(headers).is_some()
}

/// The layer: gives each request a [`RateSlot`]; limits by their address the requests that no
/// credential vouches for (up front when they carry none; afterwards when what they carried was
/// refused or never looked at, and up front again once the address's bucket is empty); and writes
/// `RateLimit-Policy` and `RateLimit` on the response.
pub async fn layer(State(state): State<crate::state::AppState>, mut req: Request, next: Next) -> Response {
    let slot = RateSlot::default();
    req.extensions_mut().insert(slot.clone());
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0);
    let addr = crate::audit::client_addr(&state, req.headers(), peer);
    let carries = carries_credential(req.headers());
    let screened = if carries { screen_address(&state, Some(&slot), addr) } else { admit_anonymous(&state, Some(&slot), addr) };
    if let Err(e) = screened {
        let mut response = axum::response::IntoResponse::into_response(e);
        write_headers(&slot, &mut response);
        return response;
    }
    let mut response = next.run(req).await;
    if carries {
        let (vouched, decided) = {
            let inner = slot.0.lock().unwrap_or_else(|p| p.into_inner());
            (inner.vouched, !inner.decisions.is_empty())
        };
        if !vouched && !decided {
            // A route that looked at no credential (a page, a callback): the request was the address's.
            let _ = admit_anonymous(&state, Some(&slot), addr);
        }
    }
    write_headers(&slot, &mut response);
    response
}

const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

fn write_headers(slot: &RateSlot, response: &mut Response) {
    let decisions = std::mem::take(&mut slot.0.lock().unwrap_or_else(|p| p.into_inner()).decisions);
    if decisions.is_empty() {
        return;
    }
    let (mut policy, mut limit) = (String::with_capacity(40 * decisions.len()), String::with_capacity(32 * decisions.len()));
    let mut digits = itoa::Buffer::new();
    for (i, decision) in decisions.iter().enumerate() {
        if i > 0 {
            policy.push_str(", ");
            limit.push_str(", ");
        }
        decision.write_policy_item(&mut policy, &mut digits);
        decision.write_limit_item(&mut limit, &mut digits);
    }
    let headers = response.headers_mut();
    for (name, value) in [(RATELIMIT_POLICY, policy), (RATELIMIT, limit)] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN: Rate = Rate { per_second: 10.0, burst: 5 };

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let rates = Rates::default();
        for left in (0..5).rev() {
            let d = rates.check("k", "api_key", TEN, 1, 0.0);
            assert!(d.admitted());
            assert_eq!(d.remaining, left);
        }
        let refused = rates.check("k", "api_key", TEN, 1, 0.0);
        assert_eq!(refused.retry_after_s, Some(1));
        assert_eq!(refused.remaining, 0);
        // One interval (100 ms) later, one more.
        assert!(rates.check("k", "api_key", TEN, 1, 100.0).admitted());
        assert!(!rates.check("k", "api_key", TEN, 1, 100.0).admitted());
        // Other keys have their own bucket.
        assert!(rates.check("other", "api_key", TEN, 1, 100.0).admitted());
        // Idle long enough, the bucket is full again.
        assert_eq!(rates.check("k", "api_key", TEN, 1, 10_000.0).remaining, 4);
    }

    #[test]
    fn rounding_at_real_times_never_costs_a_place() {
        let now = 1.75e12 + 0.123;
        for per_second in [3.0, 6.0, 7.0, 11.0, 13.0, 15.0, 18.0, 100.0] {
            for burst in [1u32, 7, 10, 50] {
                let rates = Rates::default();
                let rate = Rate { per_second, burst };
                let admitted = (0..burst + 3).filter(|_| rates.check("k", "api_key", rate, 1, now).admitted()).count();
                assert_eq!(admitted, burst as usize, "{per_second}/s, bursts of {burst}");
                let whole = Rates::default();
                assert!(
                    whole.check("k", "events", rate, burst, now).admitted(),
                    "a cost of the whole burst fits ({per_second}/s, {burst})"
                );
            }
        }
    }

    #[test]
    fn an_empty_bucket_refuses_without_taking_anything() {
        let rates = Rates::default();
        assert_eq!(rates.refusal("k", "anonymous", TEN, 0.0), None, "no bucket yet: nothing to refuse");
        for _ in 0..5 {
            rates.check("k", "anonymous", TEN, 1, 0.0);
        }
        let refused = rates.refusal("k", "anonymous", TEN, 0.0).expect("empty");
        assert_eq!(refused.retry_after_s, Some(1));
        assert_eq!(rates.refusal("k", "anonymous", TEN, 100.0), None, "one interval later there is room");
    }

    #[test]
    fn addresses_go_by_their_64_and_are_hashed_for_the_cluster() {
        let rates = Rates::default();
        let a = rates.address_key("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = rates.address_key("2001:db8:1:2:bbbb::9".parse().unwrap());
        let c = rates.address_key("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        let v4 = rates.address_key("203.0.113.7".parse().unwrap());
        assert_eq!(v4, "ip:203.0.113.7");
        let shared = shared_key(&v4);
        assert!(shared.starts_with("ip:") && !shared.contains("203") && shared.len() == 35, "{shared}");
        assert_eq!(shared_key("0123abcd"), "0123abcd", "a credential's digest is shared as it is");
    }

    #[test]
    fn a_cost_is_taken_whole_or_not_at_all() {
        let rates = Rates::default();
        assert!(rates.check("k", "events", TEN, 3, 0.0).admitted());
        let d = rates.check("k", "events", TEN, 3, 0.0);
        assert!(!d.admitted());
        assert_eq!(d.remaining, 2, "a refusal takes nothing");
        assert!(rates.check("k", "events", TEN, 2, 0.0).admitted());
    }

    #[test]
    fn headers_follow_the_draft() {
        let rates = Rates::default();
        let d = rates.check("k", "api_key", Rate { per_second: 100.0, burst: 200 }, 1, 0.0);
        let (mut policy, mut limit, mut digits) = (String::new(), String::new(), itoa::Buffer::new());
        d.write_policy_item(&mut policy, &mut digits);
        d.write_limit_item(&mut limit, &mut digits);
        assert_eq!(policy, "\"api_key\";q=200;w=2");
        assert_eq!(limit, "\"api_key\";r=199;t=1");
        // Two decisions, as one response can carry (a credential's and its workspace's events).
        let slot = RateSlot::default();
        slot.push(d);
        slot.push(rates.check("ev:ws", "events", Rate { per_second: 5.0, burst: 7 }, 3, 0.0));
        let mut response = Response::new(axum::body::Body::empty());
        write_headers(&slot, &mut response);
        assert_eq!(response.headers()["ratelimit-policy"], "\"api_key\";q=200;w=2, \"events\";q=7;w=2");
        assert_eq!(response.headers()["ratelimit"], "\"api_key\";r=199;t=1, \"events\";r=4;t=1");
    }

    #[test]
    fn the_file_section_overrides_defaults_and_refuses_nonsense() {
        let file: RateLimitsFile = toml::from_str("api_key = { per_second = 5, burst = 10 }\nanonymous = \"unlimited\"").unwrap();
        let limits = file.resolve().unwrap();
        assert_eq!(limits.api_key, Some(Rate { per_second: 5.0, burst: 10 }));
        assert_eq!(limits.anonymous, None);
        assert_eq!(limits.session, RateLimits::default().session);
        for bad in ["api_key = { per_second = 0, burst = 1 }", "session = \"none\"", "api_key = { per_second = 1 }"] {
            let file: RateLimitsFile = toml::from_str(bad).unwrap();
            assert!(file.resolve().unwrap_err().starts_with("rate_limits."), "{bad}");
        }
        assert!(toml::from_str::<RateLimitsFile>("sessions = \"unlimited\"").is_err());
    }
}
