//! The embedded store: one SQLite file in WAL mode.
//!
//! All writes go through a single connection (SQLite has one writer at a time anyway; one connection
//! avoids lock contention and lets the server batch writes into few transactions). Reads use a small
//! pool of their own, which WAL lets run beside the writer. `synchronous = FULL`: a committed
//! transaction survives power loss, which is what "a 202 means durable" promises.

mod deliveries;
mod events;

/// Workspaces, connections, rules and history reads: SQL shared with PostgreSQL (see `crate::shared`).
mod config_tables {
    use super::SqliteStore;
    use crate::rows;
    use crate::rows::AnyRow as _;
    use crate::{DeleteOutcome, DeliveryFilter, EventFilter, Page, Result, Scope};
    use switchyard_core::ids::*;
    use switchyard_core::model::*;
    use switchyard_core::Millis;

    crate::shared::workspaces::impl_workspace_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::connections::impl_connection_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::rules::impl_rule_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::history::impl_history_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::credentials::impl_credential_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::event_types::impl_event_type_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::operators::impl_operator_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::console::impl_console_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::limits::impl_limit_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::queue::impl_queue_store!(SqliteStore, sqlx::Sqlite);
    crate::shared::blueprints::impl_blueprint_store!(SqliteStore, sqlx::Sqlite);
}

use crate::migrate::SQLITE;
use crate::{AdminStore, Result, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Checkpoints the WAL in the background (see `checkpoint_loop`); stopped with the store.
    checkpointer: tokio::task::JoinHandle<()>,
    /// The current month's event count of each capped workspace that ingested since start, as
    /// committed. One process writes an embedded database, through one connection, so after the
    /// first read (the sum of the month's days) the cap is checked without a query; it is
    /// advanced only once a batch has committed.
    pub(crate) month_counts: std::sync::Mutex<(String, std::collections::HashMap<String, u64>)>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

/// Opens a relaxed transaction (see [`SqliteStore::relaxed_tx`]), first in its first trip.
const RELAXED_BEGIN: &str = "PRAGMA synchronous = NORMAL; BEGIN";
/// Ends a relaxed transaction, last in its last trip.
const RELAXED_COMMIT: &str = "COMMIT; PRAGMA synchronous = FULL";

/// The writer connection in a transaction whose commit does not wait for the disk (see
/// [`SqliteStore::relaxed_tx`]), begun and ended by hand: `synchronous` is lowered and `BEGIN`
/// sent in the same trip to SQLite as the transaction's first statement ([`RELAXED_BEGIN`]), and
/// `COMMIT` and the restoration of `synchronous` in the same trip as its last
/// ([`RELAXED_COMMIT`]). Each statement sqlx runs is a trip to the connection's own thread and
/// back; so a claim takes three trips and a record two, where they took seven and up to nine.
///
/// Dropped before it ended (a statement failed, or the future was dropped midway), the connection
/// is closed: SQLite rolls its transaction back, and the pool opens a fresh connection with the
/// durable settings.
struct RelaxedTx {
    conn: Option<sqlx::pool::PoolConnection<Sqlite>>,
}

impl RelaxedTx {
    /// The trip that ended with [`RELAXED_COMMIT`] ran: the connection goes back to the pool.
    fn ended(mut self) {
        drop(self.conn.take());
    }

    /// Ends the transaction with nothing kept.
    async fn rollback(mut self) -> Result<()> {
        sqlx::query("ROLLBACK; PRAGMA synchronous = FULL").execute(&mut *self).await?;
        self.ended();
        Ok(())
    }
}

impl Drop for RelaxedTx {
    /// Not ended: the connection must not go back to the pool in a transaction, nor with commits
    /// that do not wait for the disk. It is closed, and the pool opens a fresh one.
    fn drop(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }
}

impl std::ops::Deref for RelaxedTx {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        self.conn.as_deref().expect("a writer transaction holds its connection until it ends")
    }
}

impl std::ops::DerefMut for RelaxedTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.conn.as_deref_mut().expect("a writer transaction holds its connection until it ends")
    }
}

/// The writer's page cache, in KiB (SQLite's negative form): the queue's and the events' hot
/// index pages stay in memory from one commit to the next.
const WRITER_CACHE_SIZE: &str = "-32000";
/// Each reader's page cache, in KiB: SQLite's default (see `SqliteStore::open`).
const READER_CACHE_SIZE: &str = "-2000";

/// How often the WAL is copied back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// Checkpoints the WAL off the request path. SQLite's automatic checkpoint runs inside whichever
/// commit crosses the threshold, stalling that writer (and every request queued behind it); a
/// PASSIVE checkpoint from its own connection never blocks the writer or readers.
async fn checkpoint_loop(pool: SqlitePool) {
    loop {
        tokio::time::sleep(CHECKPOINT_INTERVAL).await;
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing, with its folder) the database a `sqlite://PATH` URL names.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            .pragma("cache_size", WRITER_CACHE_SIZE)
            .pragma("wal_autocheckpoint", "0")
            // Deleted and replaced content (old sealed secrets among it) is zeroed on the pages
            // written anyway, at no extra I/O.
            .pragma("secure_delete", "fast");
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
            }
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        let checkpoints = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        // Readers keep SQLite's default 2 MB page cache: a read transaction that follows any
        // write drops its reader's whole cache (the WAL changed), so under load a larger one is
        // never reused, while one scan of a big table (the queue gauge's count over a million
        // waiting deliveries) would fill it and keep it resident until the next write.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true).pragma("cache_size", READER_CACHE_SIZE))
            .await?;
        Ok(Self { writer, reader, checkpointer: tokio::spawn(checkpoint_loop(checkpoints)), month_counts: Default::default() })
    }
}

impl SqliteStore {
    fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    /// The writer, for a transaction whose commit need not wait for the disk (see [`RelaxedTx`]):
    /// claims and attempt records. Losing their last commits to a power cut or an operating-system
    /// crash (a process crash loses nothing in WAL mode) is harmless: a lost claim leaves its
    /// deliveries due, a lost record leaves its delivery leased until recovery makes it due again,
    /// and the attempt is made again (at least once, as ever). The next durable commit (an ingest
    /// batch, say) makes them durable too: the WAL is synced up to its end. Ingestion never
    /// relaxes: its commit is what a 202 promises.
    async fn relaxed_tx(&self) -> Result<RelaxedTx> {
        Ok(RelaxedTx { conn: Some(self.writer.acquire().await?) })
    }

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Bumps the version caches compare; called in the transaction of every configuration change.
    async fn bump_config_version(tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        sqlx::query("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'config_version'").execute(&mut **tx).await?;
        Ok(())
    }

    async fn refresh_event_status(tx: &mut Transaction<'_, Sqlite>, event_id: &str) -> Result<()> {
        events::refresh_event_status(tx, event_id).await
    }

    async fn refresh_event_statuses(tx: &mut Transaction<'_, Sqlite>, event_ids: &[&str]) -> Result<()> {
        events::refresh_event_statuses(tx, &serde_json::to_string(event_ids).unwrap_or_default()).await
    }

    /// Nothing to do: a connection's deliveries in flight are counted from their rows.
    async fn free_slots<'a>(_tx: &mut Transaction<'_, Sqlite>, _connections: impl Iterator<Item = &'a str>) -> Result<()> {
        Ok(())
    }

    /// Nothing to do: the one node's dispatcher polls its own store.
    async fn queue_changed(_tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }

    /// SQLite has no row locks: the one writer connection serialises every change.
    const ROW_LOCK: &'static str = "";

    /// Nothing to do: the one writer connection already serialises the creations a limit counts.
    async fn lock_for_limits(_tx: &mut Transaction<'_, Sqlite>, _key: &str) -> Result<()> {
        Ok(())
    }
}

async fn run_script(tx: &mut Transaction<'_, Sqlite>, script: &str) -> Result<()> {
    for statement in crate::migrate::statements(script) {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    Ok(())
}

/// A single node: its buckets are its own.
impl crate::RateStore for SqliteStore {}

#[async_trait]
impl AdminStore for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
        )
        .execute(&self.writer)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(&self.writer).await?;
        for migration in SQLITE.iter().filter(|m| !applied.contains(&m.version)) {
            let mut tx = self.writer.begin().await?;
            run_script(&mut tx, migration.sql).await?;
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
                .bind(migration.version)
                .bind(migration.name)
                .bind(switchyard_core::now_millis())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version = migration.version, name = migration.name, "applied migration");
        }
        if let Some(newest) = applied.iter().max() {
            let known = SQLITE.iter().map(|m| m.version).max().unwrap_or(0);
            if *newest > known {
                return Err(StoreError::Corrupt(format!(
                    "the database has migration {newest}, newer than this binary knows ({known}); upgrade switchyard"
                )));
            }
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn config_version(&self) -> Result<i64> {
        let v: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'config_version'").fetch_one(&self.reader).await?;
        v.parse().map_err(|_| StoreError::Corrupt("config_version is not a number".into()))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = ?").bind(key).fetch_optional(&self.writer).await?)
    }

    async fn scrub_freed_space(&self) -> Result<()> {
        // Old page images live on in the WAL until a checkpoint that resets it; readers of the
        // running server may hold it for a moment, so try a few times.
        for _ in 0..50 {
            let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)").fetch_one(&self.writer).await?;
            if busy == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("the WAL could not be truncated; old page images go at the next checkpoint");
        Ok(())
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(value)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
