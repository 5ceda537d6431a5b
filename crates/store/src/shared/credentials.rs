//! Credentials: sealed values for master-key rotation, the token-refresh lock, and OAuth flows in
//! progress. One implementation for both stores (`$N` placeholders, `CAST(... AS TEXT)`).

macro_rules! impl_credential_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::CredentialStore for $store {
            async fn put_secret(&self, ws: &WorkspaceId, name: &str, sealed: &str, now: Millis, max: Option<u32>) -> Result<bool> {
                let id = crate::secret_id(ws, name);
                let mut tx = self.writer().begin().await?;
                // One writer of a workspace's secrets at a time: two first writes of a name
                // cannot both insert, nor two new names both pass the limit.
                Self::lock_for_limits(&mut tx, &format!("secrets/{ws}")).await?;
                let updated = sqlx::query("UPDATE workspace_secrets SET value_sealed = $1, updated_at = $2 WHERE id = $3")
                    .bind(sealed)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated == 0 {
                    Self::check_limit(&mut tx, "secrets", max, "SELECT COUNT(*) FROM workspace_secrets WHERE workspace_id = $1", &[ws.as_str()]).await?;
                    sqlx::query("INSERT INTO workspace_secrets (id, workspace_id, name, value_sealed, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)")
                        .bind(&id)
                        .bind(ws.as_str())
                        .bind(name)
                        .bind(sealed)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(updated == 0)
            }

            async fn list_secrets(&self, ws: &WorkspaceId) -> Result<Vec<crate::SecretInfo>> {
                let rows: Vec<(String, i64, i64)> =
                    sqlx::query_as("SELECT name, created_at, updated_at FROM workspace_secrets WHERE workspace_id = $1 ORDER BY name")
                        .bind(ws.as_str())
                        .fetch_all(self.reader())
                        .await?;
                Ok(rows.into_iter().map(|(name, created_at, updated_at)| crate::SecretInfo { name, created_at, updated_at }).collect())
            }

            async fn get_secret(&self, ws: &WorkspaceId, name: &str) -> Result<Option<String>> {
                Ok(sqlx::query_scalar("SELECT value_sealed FROM workspace_secrets WHERE id = $1")
                    .bind(crate::secret_id(ws, name))
                    .fetch_optional(self.reader())
                    .await?)
            }

            async fn delete_secret(&self, ws: &WorkspaceId, name: &str) -> Result<bool> {
                let done = sqlx::query("DELETE FROM workspace_secrets WHERE id = $1").bind(crate::secret_id(ws, name)).execute(self.writer()).await?;
                Ok(done.rows_affected() > 0)
            }

            async fn sealed_values(&self, key_id: &str, limit: u32) -> Result<Vec<crate::SealedValue>> {
                let prefix = format!("v1:{key_id}:%");
                let mut out = Vec::new();
                for (table, key_column, column, condition) in crate::SEALED_COLUMNS {
                    let remaining = i64::from(limit) - out.len() as i64;
                    if remaining <= 0 {
                        break;
                    }
                    let rows: Vec<(String, String)> = sqlx::query_as(&format!(
                        "SELECT {key_column}, {column} FROM {table}
                         WHERE {column} IS NOT NULL AND {column} NOT LIKE $1 AND {condition} ORDER BY {key_column} LIMIT $2"
                    ))
                    .bind(&prefix)
                    .bind(remaining)
                    .fetch_all(self.writer())
                    .await?;
                    out.extend(rows.into_iter().map(|(key, sealed)| crate::SealedValue { table, key_column, column, key, sealed }));
                }
                Ok(out)
            }

            async fn reseal(&self, v: &crate::SealedValue, resealed: &str) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done =
                    sqlx::query(&format!("UPDATE {} SET {} = $1 WHERE {} = $2 AND {} = $3", v.table, v.column, v.key_column, v.column))
                        .bind(resealed)
                        .bind(&v.key)
                        .bind(&v.sealed)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                        == 1;
                if done && v.table == "connections" {
                    // Nodes cache connections: make them read the new ciphertext.
                    Self::bump_config_version(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(done)
            }

            async fn lock_refresh(&self, id: &ConnectionId, owner: &str, now: Millis, until: Millis) -> Result<bool> {
                let taken = sqlx::query(
                    "UPDATE connections SET refresh_lock_owner = $1, refresh_lock_until = $2
                     WHERE id = $3 AND (refresh_lock_until IS NULL OR refresh_lock_until < $4 OR refresh_lock_owner = $1)",
                )
                .bind(owner)
                .bind(until)
                .bind(id.as_str())
                .bind(now)
                .execute(self.writer())
                .await?
                .rows_affected();
                Ok(taken == 1)
            }

            async fn unlock_refresh(&self, id: &ConnectionId, owner: &str) -> Result<()> {
                sqlx::query(
                    "UPDATE connections SET refresh_lock_owner = NULL, refresh_lock_until = NULL WHERE id = $1 AND refresh_lock_owner = $2",
                )
                .bind(id.as_str())
                .bind(owner)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn store_credentials(
                &self,
                id: &ConnectionId,
                sealed: &str,
                config: Option<&serde_json::Value>,
                status: ConnectionStatus,
            ) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "UPDATE connections SET credentials_sealed = $1, config = COALESCE(CAST($2 AS TEXT), config), status = $3,
                        refresh_lock_owner = NULL, refresh_lock_until = NULL, updated_at = $4,
                        failing_since = CASE WHEN status = 'needs_reauth' THEN NULL ELSE failing_since END
                     WHERE id = $5",
                )
                .bind(sealed)
                .bind(config.map(|c| c.to_string()))
                .bind(status.as_str())
                .bind(switchyard_core::now_millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_connection_status(&self, id: &ConnectionId, status: ConnectionStatus) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let was: Option<String> =
                    sqlx::query_scalar("SELECT status FROM connections WHERE id = $1").bind(id.as_str()).fetch_optional(&mut *tx).await?;
                sqlx::query("UPDATE connections SET status = $1, refresh_lock_owner = NULL, refresh_lock_until = NULL WHERE id = $2")
                    .bind(status.as_str())
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await?;
                if status == ConnectionStatus::NeedsReauth && was.as_deref().is_some_and(|w| w != status.as_str()) {
                    let row: (String, String, String, String) =
                        sqlx::query_as("SELECT id, workspace_id, name, kind FROM connections WHERE id = $1")
                            .bind(id.as_str())
                            .fetch_one(&mut *tx)
                            .await?;
                    let now = switchyard_core::now_millis();
                    let reason = Some("the provider refused the connection's refresh token: reconnect it");
                    Self::add_notification(&mut tx, &Self::connection_notification("connection.needs_reauth", &row, reason, now)).await?;
                }
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_oauth_state(&self, s: &crate::OAuthState) -> Result<()> {
                sqlx::query(
                    "INSERT INTO oauth_states (id, state_hash, workspace_id, provider, connection_id, request, code_verifier_sealed,
                        expires_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&s.id)
                .bind(&s.state_hash)
                .bind(s.workspace_id.as_str())
                .bind(&s.provider)
                .bind(s.connection_id.as_ref().map(ConnectionId::as_str))
                .bind(s.request.to_string())
                .bind(&s.code_verifier_sealed)
                .bind(s.expires_at)
                .bind(s.created_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn take_oauth_state(&self, state_hash: &str, now: Millis) -> Result<Option<crate::OAuthState>> {
                let row: Option<(String, String, String, Option<String>, String, String, i64, i64)> = sqlx::query_as(
                    "DELETE FROM oauth_states WHERE state_hash = $1
                     RETURNING id, workspace_id, provider, connection_id, request, code_verifier_sealed, expires_at, created_at",
                )
                .bind(state_hash)
                .fetch_optional(self.writer())
                .await?;
                let Some((id, ws, provider, connection, request, verifier, expires_at, created_at)) = row else {
                    return Ok(None);
                };
                if expires_at <= now {
                    return Ok(None);
                }
                Ok(Some(crate::OAuthState {
                    id,
                    state_hash: state_hash.to_owned(),
                    workspace_id: WorkspaceId::from_trusted(ws),
                    provider,
                    connection_id: connection.map(ConnectionId::from_trusted),
                    request: serde_json::from_str(&request).map_err(|_| crate::StoreError::Corrupt("oauth_states.request".into()))?,
                    code_verifier_sealed: verifier,
                    expires_at,
                    created_at,
                }))
            }

            async fn purge_oauth_states(&self, now: Millis) -> Result<u64> {
                Ok(sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1").bind(now).execute(self.writer()).await?.rows_affected())
            }
        }
    };
}

pub(crate) use impl_credential_store;
