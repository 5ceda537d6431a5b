//! API keys and the audit log: one implementation for both stores. Each store supplies
//! `writer()`, `reader()` and `bump_config_version`.

macro_rules! impl_operator_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::OperatorStore for $store {
            async fn count_admin_keys(&self, now: Millis) -> Result<u64> {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM api_keys WHERE scope = 'admin' AND (expires_at IS NULL OR expires_at > $1)")
                        .bind(now)
                        .fetch_one(self.writer())
                        .await?;
                Ok(n as u64)
            }

            async fn create_api_key(&self, key: &ApiKey, key_hash: &str) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO api_keys (id, name, key_hash, hint, scope, workspaces, expires_at, last_used_at, created_by, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(key.id.as_str())
                .bind(&key.name)
                .bind(key_hash)
                .bind(&key.hint)
                .bind(key.scope.as_str())
                .bind(serde_json::to_string(&key.workspaces).unwrap_or_else(|_| "[]".into()))
                .bind(key.expires_at)
                .bind(key.last_used_at)
                .bind(&key.created_by)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn find_api_key(&self, key_hash: &str) -> Result<Option<ApiKey>> {
                let row = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1").bind(key_hash).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::api_key).transpose()
            }

            async fn get_api_key(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
                let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1").bind(id.as_str()).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::api_key).transpose()
            }

            async fn list_api_keys(&self, page: &Page) -> Result<Vec<ApiKey>> {
                let rows = sqlx::query("SELECT * FROM api_keys WHERE (CAST($1 AS TEXT) IS NULL OR id < $1) ORDER BY id DESC LIMIT $2")
                    .bind(page.before.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::api_key).collect()
            }

            async fn delete_api_key(&self, id: &ApiKeyId, now: Millis, other_admin: bool) -> Result<crate::RevokeOutcome> {
                let mut tx = self.writer().begin().await?;
                // First: on PostgreSQL this takes the config row's lock, so two revocations of the
                // last two admin keys run one after the other and the second sees the first.
                Self::bump_config_version(&mut tx).await?;
                let done = sqlx::query(
                    "DELETE FROM api_keys WHERE id = $1 AND (
                         scope <> 'admin' OR $3 OR (expires_at IS NOT NULL AND expires_at <= $2)
                         OR EXISTS (SELECT 1 FROM api_keys o WHERE o.scope = 'admin' AND o.id <> $1 AND (o.expires_at IS NULL OR o.expires_at > $2)))",
                )
                .bind(id.as_str())
                .bind(now)
                .bind(other_admin)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if done > 0 {
                    tx.commit().await?;
                    return Ok(crate::RevokeOutcome::Revoked);
                }
                let exists: Option<String> =
                    sqlx::query_scalar("SELECT id FROM api_keys WHERE id = $1").bind(id.as_str()).fetch_optional(&mut *tx).await?;
                tx.rollback().await?;
                Ok(if exists.is_some() { crate::RevokeOutcome::LastAdmin } else { crate::RevokeOutcome::NotFound })
            }

            async fn touch_api_key(&self, id: &ApiKeyId, at: Millis) -> Result<()> {
                sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1)")
                    .bind(at)
                    .bind(id.as_str())
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn append_audit(&self, e: &AuditEntry) -> Result<()> {
                sqlx::query(
                    "INSERT INTO audit_log (id, at, workspace_id, actor_kind, actor_id, actor_name, action, resource_type, resource_id,
                        summary, client_addr, user_agent)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(e.id.as_str())
                .bind(e.at)
                .bind(e.workspace_id.as_ref().map(|w| w.as_str()))
                .bind(&e.actor_kind)
                .bind(&e.actor_id)
                .bind(&e.actor_name)
                .bind(&e.action)
                .bind(&e.resource_type)
                .bind(&e.resource_id)
                .bind(e.summary.to_string())
                .bind(&e.client_addr)
                .bind(&e.user_agent)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn list_audit(&self, f: &crate::AuditFilter, page: &Page) -> Result<Vec<AuditEntry>> {
                let (action, prefix) = match f.action.as_deref() {
                    Some(a) if a.ends_with(".*") => (None, Some(&a[..a.len() - 1])),
                    Some(a) => (Some(a), None),
                    None => (None, None),
                };
                let rows = sqlx::query(
                    "SELECT * FROM audit_log
                     WHERE (CAST($1 AS TEXT) IS NULL OR workspace_id = $1)
                       AND (CAST($2 AS TEXT) IS NULL OR actor_id = $2)
                       AND (CAST($3 AS TEXT) IS NULL OR action = $3)
                       AND (CAST($4 AS TEXT) IS NULL OR substr(action, 1, length($4)) = $4)
                       AND (CAST($5 AS BIGINT) IS NULL OR at >= $5)
                       AND (CAST($6 AS BIGINT) IS NULL OR at < $6)
                       AND (CAST($7 AS TEXT) IS NULL OR id < $7)
                     ORDER BY id DESC LIMIT $8",
                )
                .bind(f.workspace_id.as_ref().map(|w| w.as_str()))
                .bind(f.actor_id.as_deref())
                .bind(action)
                .bind(prefix)
                .bind(f.since)
                .bind(f.until)
                .bind(page.before.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(rows::audit_entry).collect()
            }

            async fn prune_audit(&self, before: Millis, limit: u32) -> Result<u64> {
                let floor = crate::id_floor(AuditId::PREFIX, before);
                let done = sqlx::query("DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id < $1 ORDER BY id LIMIT $2)")
                    .bind(floor)
                    .bind(i64::from(limit))
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected())
            }
        }
    };
}

pub(crate) use impl_operator_store;
