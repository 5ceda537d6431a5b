//! In-memory caches of configuration the hot paths read: credentials, each workspace's active
//! rules (compiled), connections and rules by id. Every change to them bumps a version in the
//! store; each node compares it every `cache_check_interval` and drops everything when it moved,
//! so a deleted key or a changed rule takes effect on every node within that interval. The node
//! that made a change clears its own cache at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use switchyard_core::conditions::Condition;
use switchyard_core::events::EventPattern;
use switchyard_core::ids::*;
use switchyard_core::model::{Connection, Rule};
use switchyard_store::{Scope, Store};
use tokio_util::sync::CancellationToken;

/// A rule ready for matching: its pattern and conditions parsed once.
pub struct CompiledRule {
    pub rule: Rule,
    pub pattern: EventPattern,
    pub conditions: Option<Condition>,
}

impl CompiledRule {
    pub fn compile(rule: Rule) -> Option<Self> {
        let pattern = EventPattern::parse(&rule.event).ok()?;
        let conditions = match &rule.conditions {
            Some(c) => Some(Condition::parse(c, "conditions").ok()?),
            None => None,
        };
        Some(Self { rule, pattern, conditions })
    }
}

/// What a key resolves to.
#[derive(Debug, Clone)]
pub enum KeyOwner {
    /// An API key: what it may do, and until when.
    Api {
        id: ApiKeyId,
        operator: Arc<crate::auth::Operator>,
        expires_at: Option<switchyard_core::Millis>,
    },
    Workspace(WorkspaceId),
}

#[derive(Default)]
pub struct Cache {
    /// The config version the cached entries were read under.
    version: AtomicI64,
    /// Key digest → owner. Only hits are cached, so unknown keys cannot fill memory.
    keys: RwLock<HashMap<String, KeyOwner>>,
    /// Workspace → its active rules, compiled.
    rules: RwLock<HashMap<WorkspaceId, Arc<[CompiledRule]>>>,
    /// Connection id → connection (the dispatcher's view).
    connections: RwLock<HashMap<ConnectionId, Arc<Connection>>>,
    /// Rule id → rule, including soft-deleted ones (the dispatcher's view).
    rules_by_id: RwLock<HashMap<RuleId, Arc<Rule>>>,
    /// Workspace → its effective limits (plan and overrides).
    limits: RwLock<HashMap<WorkspaceId, Arc<switchyard_core::limits::Limits>>>,
    /// Bumped by every clear: a value read before a clear is not cached after it.
    generation: std::sync::atomic::AtomicU64,
}

fn read<T: Clone, K: std::hash::Hash + Eq>(lock: &RwLock<HashMap<K, T>>, key: &K) -> Option<T> {
    lock.read().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
}

fn write<T, K: std::hash::Hash + Eq>(lock: &RwLock<HashMap<K, T>>, key: K, value: T) {
    lock.write().unwrap_or_else(|p| p.into_inner()).insert(key, value);
}

impl Cache {
    pub fn clear(&self) {
        self.keys.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.rules.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.connections.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.rules_by_id.write().unwrap_or_else(|p| p.into_inner()).clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.limits.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// A workspace's effective limits; `None` when it does not exist.
    pub async fn limits(
        &self,
        store: &dyn Store,
        ws: &WorkspaceId,
        default_plan: Option<&str>,
    ) -> switchyard_store::Result<Option<Arc<switchyard_core::limits::Limits>>> {
        if let Some(l) = read(&self.limits, ws) {
            return Ok(Some(l));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let Some(workspace) = store.get_workspace(&Scope::All, ws).await? else { return Ok(None) };
        let limits = Arc::new(crate::limits::effective(store, &workspace, default_plan).await?);
        // Read under an older configuration: use it now, but do not keep it.
        let mut map = self.limits.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            map.insert(ws.clone(), limits.clone());
        }
        Ok(Some(limits))
    }

    pub async fn key_owner(&self, store: &dyn Store, digest: &str, prefix: &str) -> switchyard_store::Result<Option<KeyOwner>> {
        if let Some(owner) = read(&self.keys, &digest.to_owned()) {
            return Ok(Some(owner));
        }
        let owner = match prefix {
            "sk_" => store.find_api_key(digest).await?.map(|key| KeyOwner::Api {
                operator: Arc::new(crate::auth::Operator::from_key(&key)),
                expires_at: key.expires_at,
                id: key.id,
            }),
            "pk_" => store.find_publishable_key(digest).await?.map(KeyOwner::Workspace),
            _ => None,
        };
        if let Some(owner) = &owner {
            write(&self.keys, digest.to_owned(), owner.clone());
        }
        Ok(owner)
    }

    pub async fn active_rules(&self, store: &dyn Store, ws: &WorkspaceId) -> switchyard_store::Result<Arc<[CompiledRule]>> {
        if let Some(rules) = read(&self.rules, ws) {
            return Ok(rules);
        }
        let compiled: Arc<[CompiledRule]> = store.active_rules(ws).await?.into_iter().filter_map(CompiledRule::compile).collect();
        write(&self.rules, ws.clone(), compiled.clone());
        Ok(compiled)
    }

    pub async fn connection(&self, store: &dyn Store, id: &ConnectionId) -> switchyard_store::Result<Option<Arc<Connection>>> {
        if let Some(c) = read(&self.connections, id) {
            return Ok(Some(c));
        }
        let Some(conn) = store.get_connection(&Scope::All, id).await? else { return Ok(None) };
        let conn = Arc::new(conn);
        write(&self.connections, id.clone(), conn.clone());
        Ok(Some(conn))
    }

    pub async fn rule(&self, store: &dyn Store, id: &RuleId) -> switchyard_store::Result<Option<Arc<Rule>>> {
        if let Some(r) = read(&self.rules_by_id, id) {
            return Ok(Some(r));
        }
        let Some(rule) = store.get_rule_for_delivery(id).await? else { return Ok(None) };
        let rule = Arc::new(rule);
        write(&self.rules_by_id, id.clone(), rule.clone());
        Ok(Some(rule))
    }

    /// Compares the store's config version every `interval` until cancelled; clears on change.
    pub async fn watch(self: Arc<Self>, store: Arc<dyn Store>, interval: std::time::Duration, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            match store.config_version().await {
                Ok(v) if v != self.version.load(Ordering::Acquire) => {
                    self.clear();
                    self.version.store(v, Ordering::Release);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not read the config version"),
            }
        }
    }
}
