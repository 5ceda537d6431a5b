//! The master keys that seal secrets at rest, and their rotation.
//!
//! Keys come from `SWITCHYARD_MASTER_KEY` (the current key) and `SWITCHYARD_PREVIOUS_MASTER_KEYS`
//! (comma-separated older keys, accepted for opening only), or, on the embedded default, from the
//! key file in the data folder: one base64 key per line, the first current. Every sealed value
//! names the id of the key that sealed it, so several keys can be in use during a rotation.
//!
//! A node re-reads the key file when it changes (and when it meets a value sealed under a key it
//! does not hold), so `switchyard rotate-master-key` can replace the key under a running server:
//! the command adds a new current key to the file, waits for running nodes to take it up,
//! re-seals every value under it, then removes the old key.

use crate::config::Config;
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use switchyard_core::crypto::{CryptoError, MasterKey, SecretBox};
use switchyard_store::Store;

pub const MASTER_KEY_FILE: &str = "master.key";
pub const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"switchyard master key check";

/// Where the keys come from.
#[derive(Debug, Clone)]
enum Source {
    Env { current: String, previous: Vec<String> },
    File(PathBuf),
}

/// The node's keys: seals with the current one, opens with any.
pub struct Vault {
    source: Source,
    /// The keys, and the key file's text they were read from.
    inner: RwLock<(Arc<SecretBox>, Option<String>)>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("current_key_id", &self.current_key_id()).finish_non_exhaustive()
    }
}

impl Vault {
    /// Loads the keys (creating the key file on first start of the embedded default) and proves
    /// they open this database's secrets.
    pub async fn load(config: &Config, store: &dyn Store) -> anyhow::Result<Self> {
        let source = match (&config.master_key, config.data_dir()) {
            (Some(key), _) => Source::Env { current: key.clone(), previous: config.previous_master_keys.clone() },
            (None, Some(dir)) => {
                let path = dir.join(MASTER_KEY_FILE);
                create_key_file_if_missing(&path)?;
                Source::File(path)
            }
            (None, None) => {
                bail!("SWITCHYARD_MASTER_KEY is required with this database (32 random bytes, base64: `openssl rand -base64 32`)")
            }
        };
        let (secret_box, modified) = read(&source)?;
        let vault = Self { source, inner: RwLock::new((Arc::new(secret_box), modified)) };
        vault.check(store).await?;
        Ok(vault)
    }

    async fn check(&self, store: &dyn Store) -> anyhow::Result<()> {
        match store.get_meta(KEY_CHECK).await? {
            Some(sealed) => {
                if self.open(&sealed, KEY_CHECK).is_err() {
                    bail!(
                        "the master key (id {}) is not one this database's secrets were sealed with; \
                         set SWITCHYARD_MASTER_KEY to the key in use (or restore the key file)",
                        self.current_key_id()
                    );
                }
            }
            None => store.set_meta(KEY_CHECK, &self.seal(KEY_CHECK_PLAINTEXT, KEY_CHECK)).await?,
        }
        Ok(())
    }

    fn current(&self) -> Arc<SecretBox> {
        self.inner.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    pub fn current_key_id(&self) -> String {
        self.current().current_key_id().to_owned()
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        self.current().seal(plaintext, context)
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, CryptoError> {
        match self.current().open(sealed, context) {
            // Sealed under a key this node has not loaded yet: a rotation may be under way.
            Err(CryptoError::UnknownKey(_)) if self.reload().unwrap_or(false) => self.current().open(sealed, context),
            other => other,
        }
    }

    pub fn open_string(&self, sealed: &str, context: &str) -> Result<String, CryptoError> {
        String::from_utf8(self.open(sealed, context)?).map_err(|_| CryptoError::Undecryptable)
    }

    /// Re-reads the key file (a few hundred bytes) if its contents changed; true when they did.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let Source::File(_) = &self.source else { return Ok(false) };
        let (secret_box, text) = read(&self.source)?;
        if text == self.inner.read().unwrap_or_else(|p| p.into_inner()).1 {
            return Ok(false);
        }
        let changed = secret_box.current_key_id() != self.current_key_id();
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(secret_box), text);
        if changed {
            tracing::info!(key_id = %self.current_key_id(), "master key file changed; sealing with the new key");
        }
        Ok(true)
    }
}

/// Re-reads the key file every second, so a rotation reaches a running node quickly.
pub async fn watch(vault: Arc<Vault>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = vault.reload() {
            tracing::error!(error = %e, "could not re-read the master key file; keeping the keys loaded");
        }
    }
}

fn parse_keys(current: &str, previous: &[String], origin: &str, previous_origin: &str) -> anyhow::Result<SecretBox> {
    let current = MasterKey::from_base64(current).with_context(|| format!("{origin} is malformed (32 random bytes, base64)"))?;
    let previous = previous
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| MasterKey::from_base64(k).with_context(|| format!("a key in {previous_origin} is malformed")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(SecretBox::new(current).with_previous(previous))
}

fn read(source: &Source) -> anyhow::Result<(SecretBox, Option<String>)> {
    match source {
        Source::Env { current, previous } => {
            Ok((parse_keys(current, previous, "SWITCHYARD_MASTER_KEY", "SWITCHYARD_PREVIOUS_MASTER_KEYS")?, None))
        }
        Source::File(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("could not read the master key at {}", path.display()))?;
            let keys: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
            let (current, previous) = keys.split_first().with_context(|| format!("the master key file {} is empty", path.display()))?;
            let origin = format!("the master key file {}", path.display());
            Ok((parse_keys(current, previous, &origin, &origin)?, Some(text)))
        }
    }
}

fn read_key_file(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("could not read the master key at {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn create_key_file_if_missing(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    write_key_file(path, &[MasterKey::generate_base64()])
        .with_context(|| format!("could not write the master key to {}", path.display()))?;
    tracing::info!(path = %path.display(), "generated a master key for secrets at rest; back it up with the database");
    Ok(())
}

/// Replaces the key file atomically (a private temporary file, synced, renamed over it).
fn write_key_file(path: &Path, keys: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("key.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(keys.join("\n").as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotation {
    pub old_key_ids: Vec<String>,
    pub new_key_id: String,
    pub resealed: u64,
}

/// Re-seals every secret under a new master key, while servers keep running.
///
/// - Embedded default (key file): generates the new key, makes it current in the file, waits
///   `settle` for running nodes to take it up, re-seals, then drops the old keys from the file.
/// - `SWITCHYARD_MASTER_KEY` set: that key is the new one and `SWITCHYARD_PREVIOUS_MASTER_KEYS`
///   the old ones (every node should already run with both); re-seals everything under it.
pub async fn rotate(config: &Config, store: &dyn Store, settle: Duration) -> anyhow::Result<Rotation> {
    let vault = Vault::load(config, store).await?;
    let old_key_ids: Vec<String>;
    let path = match &vault.source {
        Source::File(path) => {
            let old = read_key_file(path)?;
            old_key_ids = old.iter().filter_map(|k| MasterKey::from_base64(k).ok()).map(|k| k.id().to_owned()).collect();
            let mut keys = vec![MasterKey::generate_base64()];
            keys.extend(old);
            write_key_file(path, &keys)?;
            vault.reload()?;
            tracing::info!(key_id = %vault.current_key_id(), "new master key written; waiting for running nodes to take it up");
            tokio::time::sleep(settle).await;
            Some(path.clone())
        }
        Source::Env { previous, .. } => {
            old_key_ids = previous.iter().filter_map(|k| MasterKey::from_base64(k).ok()).map(|k| k.id().to_owned()).collect();
            None
        }
    };
    let new_key_id = vault.current_key_id();
    let mut resealed = 0u64;
    loop {
        let batch = store.sealed_values(&new_key_id, 500).await?;
        if batch.is_empty() {
            break;
        }
        for value in batch {
            let plain = vault.open(&value.sealed, &value.key).map_err(|e| {
                anyhow::anyhow!("could not open {}.{} of {}: {e}; is every old key given?", value.table, value.column, value.key)
            })?;
            // A value changed meanwhile is simply read again by the next batch.
            if store.reseal(&value, &vault.seal(&plain, &value.key)).await? {
                resealed += 1;
            }
        }
    }
    store.scrub_freed_space().await?;
    if let Some(path) = path {
        let keys = read_key_file(&path)?;
        write_key_file(&path, &keys[..1])?;
        // Anything sealed with an old key between the last batch and now (a node that had not
        // reloaded) would now be unreadable: check, and put the old keys back if so.
        if !store.sealed_values(&new_key_id, 1).await?.is_empty() {
            write_key_file(&path, &keys)?;
            bail!("values sealed under the old key appeared during the rotation; the old key stays in the file: run the command again");
        }
    }
    Ok(Rotation { old_key_ids, new_key_id, resealed })
}
