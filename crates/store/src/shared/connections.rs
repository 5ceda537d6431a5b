//! Connections (configured destinations with their sealed secrets): one implementation for both
//! stores. The SQL is the subset both databases speak (`$N` placeholders, `CAST(... AS TEXT)`, `TRUE`/`FALSE`); each store supplies
//! `writer()`, `reader()`, `bump_config_version` and `refresh_event_status`.

/// A connection's breaker settings as stored: NULL for the defaults, so a later change of the
/// defaults reaches every connection that never set its own.
pub(crate) fn breaker_json(b: &switchyard_core::circuit::BreakerSettings) -> Option<String> {
    (*b != switchyard_core::circuit::BreakerSettings::default()).then(|| serde_json::to_string(b).unwrap_or_default())
}

macro_rules! impl_connection_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::ConnectionStore for $store {
            async fn create_connection(&self, c: &Connection, max: Option<u32>) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                if max.is_some() {
                    Self::lock_for_limits(&mut tx, c.workspace_id.as_str()).await?;
                    Self::check_limit(&mut tx, "connections", max, "SELECT COUNT(*) FROM connections WHERE workspace_id = $1", &[c.workspace_id.as_str()])
                        .await?;
                }
                Self::insert_connection(&mut tx, c).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_connection(&self, scope: &Scope, id: &ConnectionId) -> Result<Option<Connection>> {
                let row = sqlx::query("SELECT * FROM connections WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2)")
                    .bind(id.as_str())
                    .bind(scope.workspace())
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(rows::connection).transpose()
            }

            async fn list_connections(&self, ws: &WorkspaceId, page: &Page) -> Result<Vec<Connection>> {
                let rows = sqlx::query("SELECT * FROM connections WHERE workspace_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
                    .bind(ws.as_str())
                    .bind(page.before.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::connection).collect()
            }

            async fn update_connection(&self, c: &Connection) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                Self::update_connection_row(&mut tx, c).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_connection(&self, scope: &Scope, id: &ConnectionId, force: bool) -> Result<DeleteOutcome> {
                let mut tx = self.writer().begin().await?;
                let exists: Option<String> = sqlx::query_scalar("SELECT id FROM connections WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2)")
                    .bind(id.as_str())
                    .bind(scope.workspace())
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Ok(DeleteOutcome::NotFound);
                }
                if !force {
                    let active: Vec<String> =
                        sqlx::query_scalar("SELECT id FROM rules WHERE connection_id = $1 AND active = TRUE AND deleted_at IS NULL ORDER BY id")
                            .bind(id.as_str())
                            .fetch_all(&mut *tx)
                            .await?;
                    if !active.is_empty() {
                        return Ok(DeleteOutcome::InUse(active.into_iter().map(RuleId::from_trusted).collect()));
                    }
                }
                Self::delete_connection_row(&mut tx, id.as_str()).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(DeleteOutcome::Deleted)
            }
        }

        impl $store {
            /// Inserts a connection, in the caller's transaction.
            pub(crate) async fn insert_connection(tx: &mut sqlx::Transaction<'_, $db>, c: &Connection) -> Result<()> {
                sqlx::query(
                    "INSERT INTO connections (id, workspace_id, kind, name, config, credentials_sealed, signing_secret_sealed,
                        previous_secret_sealed, previous_secret_expires_at, retry_policy, timeout_ms, max_in_flight, created_at, updated_at,
                        rate_limit_per_minute, status, circuit_breaker)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(c.id.as_str())
                .bind(c.workspace_id.as_str())
                .bind(&c.kind)
                .bind(&c.name)
                .bind(c.config.to_string())
                .bind(&c.credentials_sealed)
                .bind(&c.signing_secret_sealed)
                .bind(&c.previous_secret_sealed)
                .bind(c.previous_secret_expires_at)
                .bind(serde_json::to_string(&c.retry_policy).unwrap_or_default())
                .bind(c.timeout_ms as i64)
                .bind(c.max_in_flight as i64)
                .bind(c.created_at)
                .bind(c.updated_at)
                .bind(c.rate_limit_per_minute.map(i64::from))
                .bind(c.status.as_str())
                .bind(crate::shared::connections::breaker_json(&c.breaker))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Writes a connection's settings, in the caller's transaction.
            pub(crate) async fn update_connection_row(tx: &mut sqlx::Transaction<'_, $db>, c: &Connection) -> Result<()> {
                sqlx::query(
                    "UPDATE connections SET name = $1, config = $2, credentials_sealed = $3, signing_secret_sealed = $4,
                        previous_secret_sealed = $5, previous_secret_expires_at = $6, retry_policy = $7, timeout_ms = $8,
                        max_in_flight = $9, updated_at = $10, rate_limit_per_minute = $13, status = $14, circuit_breaker = $15
                     WHERE id = $11 AND workspace_id = $12",
                )
                .bind(&c.name)
                .bind(c.config.to_string())
                .bind(&c.credentials_sealed)
                .bind(&c.signing_secret_sealed)
                .bind(&c.previous_secret_sealed)
                .bind(c.previous_secret_expires_at)
                .bind(serde_json::to_string(&c.retry_policy).unwrap_or_default())
                .bind(c.timeout_ms as i64)
                .bind(c.max_in_flight as i64)
                .bind(c.updated_at)
                .bind(c.id.as_str())
                .bind(c.workspace_id.as_str())
                .bind(c.rate_limit_per_minute.map(i64::from))
                .bind(c.status.as_str())
                .bind(crate::shared::connections::breaker_json(&c.breaker))
                .execute(&mut **tx)
                .await?;
                if !c.breaker.enabled {
                    // A breaker turned off leaves no circuit open or half open behind.
                    sqlx::query(
                        "UPDATE connections SET circuit_state = 'closed', circuit_reason = NULL, circuit_retry_at = 0, circuit_successes = 0,
                             circuit_cooldown_ms = 0, circuit_since = $2
                         WHERE id = $1 AND circuit_state <> 'closed'",
                    )
                    .bind(c.id.as_str())
                    .bind(c.updated_at)
                    .execute(&mut **tx)
                    .await?;
                }
                Ok(())
            }

            /// Deletes a connection (its rules cascade) and ends its waiting deliveries as dead, in
            /// the caller's transaction.
            pub(crate) async fn delete_connection_row(tx: &mut sqlx::Transaction<'_, $db>, id: &str) -> Result<()> {
                let now = switchyard_core::now_millis();
                let events: Vec<String> = sqlx::query_scalar(
                    "UPDATE deliveries SET status = 'dead', next_attempt_at = NULL, last_error = 'connection deleted', updated_at = $1
                     WHERE connection_id = $2 AND status IN ('pending', 'retrying') RETURNING event_id",
                )
                .bind(now)
                .bind(id)
                .fetch_all(&mut **tx)
                .await?;
                for event in events {
                    Self::refresh_event_status(tx, &event).await?;
                }
                // Rules cascade with the connection (foreign key).
                sqlx::query("DELETE FROM connections WHERE id = $1").bind(id).execute(&mut **tx).await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_connection_store;
