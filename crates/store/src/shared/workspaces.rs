//! Workspaces, their publishable keys and embed sessions: one implementation for both stores.
//! The SQL is the subset both databases speak (`$N` placeholders, `CAST(... AS TEXT)`, `TRUE`/`FALSE`); each store supplies
//! `writer()`, `reader()`, `bump_config_version` and `refresh_event_status`.

macro_rules! impl_workspace_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::WorkspaceStore for $store {
            async fn create_workspace(&self, ws: &Workspace, key: &PublishableKey, key_hash: &str, max: Option<u32>) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                if max.is_some() {
                    Self::lock_for_limits(&mut tx, "workspaces").await?;
                    Self::check_limit(&mut tx, "workspaces", max, "SELECT COUNT(*) FROM workspaces", &[]).await?;
                }
                sqlx::query(
                    "INSERT INTO workspaces (id, name, description, plan, limit_overrides, labels, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(ws.id.as_str())
                .bind(&ws.name)
                .bind(&ws.description)
                .bind(&ws.plan)
                .bind(serde_json::Value::Object(ws.limit_overrides.clone()).to_string())
                .bind(serde_json::to_string(&ws.labels).expect("labels are JSON"))
                .bind(ws.created_at)
                .bind(ws.updated_at)
                .execute(&mut *tx)
                .await?;
                Self::write_labels(&mut tx, ws).await?;
                Self::insert_publishable_key(&mut tx, key, key_hash).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_workspaces(&self, scope: &Scope, page: &Page) -> Result<Vec<Workspace>> {
                let rows =
                    sqlx::query("SELECT * FROM workspaces WHERE (CAST($1 AS TEXT) IS NULL OR id = $1) AND (CAST($2 AS TEXT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
                        .bind(scope.workspace())
                        .bind(page.before.as_deref())
                        .bind(i64::from(page.limit))
                        .fetch_all(self.reader())
                        .await?;
                rows.iter().map(rows::workspace).collect()
            }

            async fn labelled_workspaces(&self, selector: &std::collections::BTreeMap<String, String>, page: &Page) -> Result<Vec<Workspace>> {
                if selector.is_empty() {
                    return self.list_workspaces(&Scope::All, page).await;
                }
                // A workspace matches when it has every label of the selector: one row per label.
                let pairs: Vec<String> = (0..selector.len()).map(|i| format!("(key = ${} AND value = ${})", 2 * i + 1, 2 * i + 2)).collect();
                let n = 2 * selector.len();
                let sql = format!(
                    "SELECT * FROM workspaces WHERE id IN (SELECT workspace_id FROM workspace_labels WHERE {} GROUP BY workspace_id HAVING COUNT(*) = ${}) \
                     AND (CAST(${} AS TEXT) IS NULL OR id < ${}) ORDER BY id DESC LIMIT ${}",
                    pairs.join(" OR "),
                    n + 1,
                    n + 2,
                    n + 2,
                    n + 3
                );
                let mut query = sqlx::query(&sql);
                for (k, v) in selector {
                    query = query.bind(k).bind(v);
                }
                let rows = query
                    .bind(selector.len() as i64)
                    .bind(page.before.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::workspace).collect()
            }

            async fn get_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<Option<Workspace>> {
                if !scope.allows(id) {
                    return Ok(None);
                }
                let row = sqlx::query("SELECT * FROM workspaces WHERE id = $1").bind(id.as_str()).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::workspace).transpose()
            }

            async fn update_workspace(&self, ws: &Workspace, read_at: Millis) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = sqlx::query(
                    "UPDATE workspaces SET name = $1, description = $2, plan = $3, limit_overrides = $4, labels = $5, updated_at = $6
                     WHERE id = $7 AND updated_at = $8",
                )
                    .bind(&ws.name)
                    .bind(&ws.description)
                    .bind(&ws.plan)
                    .bind(serde_json::Value::Object(ws.limit_overrides.clone()).to_string())
                    .bind(serde_json::to_string(&ws.labels).expect("labels are JSON"))
                    .bind(ws.updated_at)
                    .bind(ws.id.as_str())
                    .bind(read_at)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM workspace_labels WHERE workspace_id = $1").bind(ws.id.as_str()).execute(&mut *tx).await?;
                Self::write_labels(&mut tx, ws).await?;
                // Limits are cached beside keys and rules: the plan may have changed.
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn delete_workspace(&self, scope: &Scope, id: &WorkspaceId) -> Result<bool> {
                if !scope.allows(id) {
                    return Ok(false);
                }
                let mut tx = self.writer().begin().await?;
                // History tables have no foreign key (see the migration); clear them explicitly.
                for table in ["attempts", "deliveries", "idempotency_keys", "events"] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE workspace_id = $1")).bind(id.as_str()).execute(&mut *tx).await?;
                }
                let done = sqlx::query("DELETE FROM workspaces WHERE id = $1").bind(id.as_str()).execute(&mut *tx).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_publishable_key(&self, key: &PublishableKey, key_hash: &str) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                Self::insert_publishable_key(&mut tx, key, key_hash).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn list_publishable_keys(&self, ws: &WorkspaceId, page: &Page) -> Result<Vec<PublishableKey>> {
                let rows =
                    sqlx::query("SELECT * FROM publishable_keys WHERE workspace_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3")
                        .bind(ws.as_str())
                        .bind(page.before.as_deref())
                        .bind(i64::from(page.limit))
                        .fetch_all(self.reader())
                        .await?;
                rows.iter().map(rows::publishable_key).collect()
            }

            async fn delete_publishable_key(&self, ws: &WorkspaceId, id: &PublishableKeyId) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = sqlx::query("DELETE FROM publishable_keys WHERE id = $1 AND workspace_id = $2")
                    .bind(id.as_str())
                    .bind(ws.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn workspace_of(&self, owned: crate::Owned, id: &str) -> Result<Option<WorkspaceId>> {
                let ws: Option<String> = sqlx::query_scalar(&format!("SELECT workspace_id FROM {} WHERE id = $1", owned.table()))
                    .bind(id)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(ws.map(WorkspaceId::from_trusted))
            }

            async fn list_sessions(&self, ws: &WorkspaceId, now: Millis, page: &Page) -> Result<Vec<Session>> {
                let rows = sqlx::query(
                    "SELECT * FROM sessions WHERE workspace_id = $1 AND expires_at > $2 AND (CAST($3 AS TEXT) IS NULL OR id < $3)
                     ORDER BY id DESC LIMIT $4",
                )
                .bind(ws.as_str())
                .bind(now)
                .bind(page.before.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(rows::session).collect()
            }

            async fn find_publishable_key(&self, key_hash: &str) -> Result<Option<WorkspaceId>> {
                let ws: Option<String> = sqlx::query_scalar("SELECT workspace_id FROM publishable_keys WHERE key_hash = $1")
                    .bind(key_hash)
                    .fetch_optional(self.reader())
                    .await?;
                Ok(ws.map(WorkspaceId::from_trusted))
            }

            async fn create_session(&self, s: &Session, token_hash: &str, launch: Option<&crate::NewLaunch>) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO sessions (id, workspace_id, token_hash, role, scopes, allowed_origins, external_user_id, expires_at, created_at, branding,
                        resource, resource_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                )
                .bind(s.id.as_str())
                .bind(s.workspace_id.as_str())
                .bind(token_hash)
                .bind(s.role.as_str())
                .bind(serde_json::to_string(&s.scopes).unwrap_or_default())
                .bind(serde_json::to_string(&s.allowed_origins).unwrap_or_default())
                .bind(&s.external_user_id)
                .bind(s.expires_at)
                .bind(s.created_at)
                .bind(s.branding.as_ref().map(|b| serde_json::to_string(b).unwrap_or_default()))
                .bind(s.resource.as_ref().map(|r| r.resource.clone()))
                .bind(s.resource.as_ref().map(|r| r.resource_id.clone()))
                .execute(&mut *tx)
                .await?;
                if let Some(launch) = launch {
                    sqlx::query("INSERT INTO session_launches (token_hash, session_id, page, expires_at) VALUES ($1, $2, $3, $4)")
                        .bind(&launch.token_hash)
                        .bind(s.id.as_str())
                        .bind(&launch.page)
                        .bind(launch.expires_at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn take_launch(&self, token_hash: &str, now: Millis) -> Result<crate::LaunchTaken> {
                use crate::LaunchTaken;
                let taken = sqlx::query(
                    "UPDATE session_launches SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2
                     AND session_id IN (SELECT id FROM sessions WHERE expires_at > $2)",
                )
                .bind(token_hash)
                .bind(now)
                .execute(self.writer())
                .await?
                .rows_affected()
                    > 0;
                // Read from the writer: the row just changed there.
                let row = sqlx::query(
                    "SELECT s.*, l.page AS launch_page, l.used_at AS launch_used_at, l.expires_at AS launch_expires_at
                     FROM session_launches l JOIN sessions s ON s.id = l.session_id WHERE l.token_hash = $1",
                )
                .bind(token_hash)
                .fetch_optional(self.writer())
                .await?;
                let Some(row) = row else { return Ok(LaunchTaken::Unknown) };
                let session = rows::session(&row)?;
                Ok(if taken {
                    LaunchTaken::Opened { page: row.text("launch_page")?, session }
                } else if row.opt_int("launch_used_at")?.is_some() {
                    LaunchTaken::Used { session }
                } else {
                    LaunchTaken::Expired { session }
                })
            }

            async fn find_session(&self, token_hash: &str) -> Result<Option<Session>> {
                let row = sqlx::query("SELECT * FROM sessions WHERE token_hash = $1").bind(token_hash).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::session).transpose()
            }

            async fn get_session(&self, id: &SessionId) -> Result<Option<Session>> {
                let row = sqlx::query("SELECT * FROM sessions WHERE id = $1").bind(id.as_str()).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::session).transpose()
            }

            async fn refresh_session(&self, id: &SessionId, token_hash: &str, expires_at: Millis, now: Millis) -> Result<bool> {
                let done = sqlx::query("UPDATE sessions SET token_hash = $1, expires_at = $2 WHERE id = $3 AND expires_at > $4")
                    .bind(token_hash)
                    .bind(expires_at)
                    .bind(id.as_str())
                    .bind(now)
                    .execute(self.writer())
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn delete_session(&self, id: &SessionId) -> Result<bool> {
                let done = sqlx::query("DELETE FROM sessions WHERE id = $1").bind(id.as_str()).execute(self.writer()).await?;
                Ok(done.rows_affected() > 0)
            }
        }

        impl $store {
            async fn write_labels(tx: &mut sqlx::Transaction<'_, $db>, ws: &Workspace) -> Result<()> {
                for (key, value) in &ws.labels {
                    sqlx::query("INSERT INTO workspace_labels (workspace_id, key, value) VALUES ($1, $2, $3)")
                        .bind(ws.id.as_str())
                        .bind(key)
                        .bind(value)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            async fn insert_publishable_key(tx: &mut sqlx::Transaction<'_, $db>, key: &PublishableKey, key_hash: &str) -> Result<()> {
                sqlx::query("INSERT INTO publishable_keys (id, workspace_id, key_hash, hint, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(key.id.as_str())
                    .bind(key.workspace_id.as_str())
                    .bind(key_hash)
                    .bind(&key.hint)
                    .bind(key.created_at)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_workspace_store;
