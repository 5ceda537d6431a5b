//! Rules (which events go to which connection, and how): one implementation for both stores.
//! The SQL is the subset both databases speak (`$N` placeholders, `CAST(... AS TEXT)`, `TRUE`/`FALSE`); each store supplies
//! `writer()`, `reader()`, `bump_config_version` and `refresh_event_status`.

macro_rules! impl_rule_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::RuleStore for $store {
            async fn create_rule(&self, r: &Rule, caps: crate::RuleCaps) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                if caps.per_workspace.is_some() || caps.per_event_type.is_some() {
                    Self::lock_for_limits(&mut tx, r.workspace_id.as_str()).await?;
                    let live = "SELECT COUNT(*) FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL";
                    Self::check_limit(&mut tx, "rules_per_workspace", caps.per_workspace, live, &[r.workspace_id.as_str()]).await?;
                    let same = "SELECT COUNT(*) FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL AND event = $2";
                    Self::check_limit(&mut tx, "rules_per_event_type", caps.per_event_type, same, &[r.workspace_id.as_str(), &r.event]).await?;
                }
                Self::insert_rule(&mut tx, r).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn get_rule(&self, scope: &Scope, id: &RuleId) -> Result<Option<Rule>> {
                let row = sqlx::query("SELECT * FROM rules WHERE id = $1 AND deleted_at IS NULL AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2)")
                    .bind(id.as_str())
                    .bind(scope.workspace())
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(rows::rule).transpose()
            }

            async fn get_rule_for_delivery(&self, id: &RuleId) -> Result<Option<Rule>> {
                let row = sqlx::query("SELECT * FROM rules WHERE id = $1").bind(id.as_str()).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::rule).transpose()
            }

            async fn list_rules(&self, ws: &WorkspaceId, page: &Page, bound: Option<&ResourceRef>) -> Result<Vec<Rule>> {
                let rows = sqlx::query(
                    "SELECT * FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL AND (CAST($2 AS TEXT) IS NULL OR id < $2)
                     AND (CAST($4 AS TEXT) IS NULL OR (resource = $4 AND resource_id = $5)) ORDER BY id DESC LIMIT $3",
                )
                .bind(ws.as_str())
                .bind(page.before.as_deref())
                .bind(i64::from(page.limit))
                .bind(bound.map(|b| b.resource.as_str()))
                .bind(bound.map(|b| b.resource_id.as_str()))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(rows::rule).collect()
            }

            async fn active_rules(&self, ws: &WorkspaceId) -> Result<Vec<Rule>> {
                let rows = sqlx::query("SELECT * FROM rules WHERE workspace_id = $1 AND active = TRUE AND deleted_at IS NULL ORDER BY id")
                    .bind(ws.as_str())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::rule).collect()
            }

            async fn update_rule(&self, r: &Rule) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                Self::update_rule_row(&mut tx, r).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_rule(&self, scope: &Scope, id: &RuleId) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = sqlx::query(
                    "UPDATE rules SET deleted_at = $1, active = FALSE WHERE id = $2 AND deleted_at IS NULL AND (CAST($3 AS TEXT) IS NULL OR workspace_id = $3)",
                )
                .bind(switchyard_core::now_millis())
                .bind(id.as_str())
                .bind(scope.workspace())
                .execute(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }
        }

        impl $store {
            /// Inserts a rule, in the caller's transaction.
            pub(crate) async fn insert_rule(tx: &mut sqlx::Transaction<'_, $db>, r: &Rule) -> Result<()> {
                sqlx::query(
                    "INSERT INTO rules (id, workspace_id, name, event, connection_id, action, action_config, conditions, active, created_at, updated_at,
                        resource, resource_id)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(r.id.as_str())
                .bind(r.workspace_id.as_str())
                .bind(&r.name)
                .bind(&r.event)
                .bind(r.connection_id.as_str())
                .bind(&r.action)
                .bind(r.action_config.to_string())
                .bind(r.conditions.as_ref().map(|c| c.to_string()))
                .bind(r.active)
                .bind(r.created_at)
                .bind(r.updated_at)
                .bind(r.bound_to.as_ref().map(|b| b.resource.clone()))
                .bind(r.bound_to.as_ref().map(|b| b.resource_id.clone()))
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Writes a rule's settings, in the caller's transaction.
            pub(crate) async fn update_rule_row(tx: &mut sqlx::Transaction<'_, $db>, r: &Rule) -> Result<()> {
                sqlx::query(
                    "UPDATE rules SET name = $1, event = $2, connection_id = $3, action = $4, action_config = $5, conditions = $6, active = $7, updated_at = $8
                     WHERE id = $9 AND workspace_id = $10 AND deleted_at IS NULL",
                )
                .bind(&r.name)
                .bind(&r.event)
                .bind(r.connection_id.as_str())
                .bind(&r.action)
                .bind(r.action_config.to_string())
                .bind(r.conditions.as_ref().map(|c| c.to_string()))
                .bind(r.active)
                .bind(r.updated_at)
                .bind(r.id.as_str())
                .bind(r.workspace_id.as_str())
                .execute(&mut **tx)
                .await?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_rule_store;
