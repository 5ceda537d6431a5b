//! Plans and usage: one implementation for both stores (see `crate::shared`).

macro_rules! impl_limit_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::LimitStore for $store {
            async fn list_plans(&self) -> Result<Vec<switchyard_core::limits::Plan>> {
                let rows = sqlx::query("SELECT * FROM plans ORDER BY name").fetch_all(self.reader()).await?;
                rows.iter().map(rows::plan).collect()
            }

            async fn get_plan(&self, name: &str) -> Result<Option<switchyard_core::limits::Plan>> {
                let row = sqlx::query("SELECT * FROM plans WHERE name = $1").bind(name).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::plan).transpose()
            }

            async fn put_plan(&self, plan: &switchyard_core::limits::Plan) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                sqlx::query(
                    "INSERT INTO plans (name, description, limits, from_config, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, limits = EXCLUDED.limits,
                        from_config = EXCLUDED.from_config, updated_at = EXCLUDED.updated_at",
                )
                .bind(&plan.name)
                .bind(&plan.description)
                .bind(serde_json::to_string(&plan.limits).unwrap_or_else(|_| "{}".into()))
                .bind(plan.from_config)
                .bind(plan.created_at)
                .bind(plan.updated_at)
                .execute(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delete_plan(&self, name: &str) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let on_it: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspaces WHERE plan = $1").bind(name).fetch_one(&mut *tx).await?;
                if on_it > 0 {
                    return Err(crate::StoreError::Conflict(format!("{on_it} workspaces are on this plan")));
                }
                let done = sqlx::query("DELETE FROM plans WHERE name = $1").bind(name).execute(&mut *tx).await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn sync_config_plans(&self, plans: &[switchyard_core::limits::Plan]) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let names: Vec<String> = plans.iter().map(|p| p.name.clone()).collect();
                let stored: Vec<String> = sqlx::query_scalar("SELECT name FROM plans WHERE from_config = TRUE").fetch_all(&mut *tx).await?;
                for gone in stored.iter().filter(|n| !names.contains(n)) {
                    sqlx::query("UPDATE plans SET from_config = FALSE WHERE name = $1").bind(gone).execute(&mut *tx).await?;
                }
                for plan in plans {
                    sqlx::query(
                        "INSERT INTO plans (name, description, limits, from_config, created_at, updated_at) VALUES ($1, $2, $3, TRUE, $4, $4)
                         ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description, limits = EXCLUDED.limits, from_config = TRUE,
                            updated_at = CASE WHEN plans.limits = EXCLUDED.limits AND plans.from_config = TRUE THEN plans.updated_at ELSE EXCLUDED.updated_at END",
                    )
                    .bind(&plan.name)
                    .bind(&plan.description)
                    .bind(serde_json::to_string(&plan.limits).unwrap_or_else(|_| "{}".into()))
                    .bind(plan.updated_at)
                    .execute(&mut *tx)
                    .await?;
                }
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn month_events(&self, ws: &WorkspaceId, month: &str) -> Result<u64> {
                let n: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(SUM(events) AS BIGINT) FROM usage_days WHERE workspace_id = $1 AND day >= $2 AND day < $3",
                )
                .bind(ws.as_str())
                .bind(format!("{month}-01"))
                .bind(format!("{month}-32"))
                .fetch_one(self.reader())
                .await?;
                Ok(n.unwrap_or(0).max(0) as u64)
            }

            async fn daily_usage(&self, ws: &WorkspaceId, from_day: &str) -> Result<Vec<crate::DayUsage>> {
                let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT day, events, deliveries, succeeded, dead FROM usage_days WHERE workspace_id = $1 AND day >= $2 ORDER BY day",
                )
                .bind(ws.as_str())
                .bind(from_day)
                .fetch_all(self.reader())
                .await?;
                let n = |v: i64| v.max(0) as u64;
                Ok(rows
                    .into_iter()
                    .map(|(day, e, d, s, x)| crate::DayUsage { day, events: n(e), deliveries: n(d), succeeded: n(s), dead: n(x) })
                    .collect())
            }

            async fn installation_month(&self, month: &str, top: u32) -> Result<(u64, Vec<crate::WorkspaceUsage>)> {
                let (from, to) = (format!("{month}-01"), format!("{month}-32"));
                let total: Option<i64> = sqlx::query_scalar("SELECT CAST(SUM(events) AS BIGINT) FROM usage_days WHERE day >= $1 AND day < $2")
                    .bind(&from)
                    .bind(&to)
                    .fetch_one(self.reader())
                    .await?;
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT u.workspace_id, CAST(SUM(u.events) AS BIGINT) AS n FROM usage_days u JOIN workspaces w ON w.id = u.workspace_id
                     WHERE u.day >= $1 AND u.day < $2 GROUP BY u.workspace_id HAVING SUM(u.events) > 0 ORDER BY n DESC, u.workspace_id LIMIT $3",
                )
                .bind(&from)
                .bind(&to)
                .bind(i64::from(top))
                .fetch_all(self.reader())
                .await?;
                let busiest = rows
                    .into_iter()
                    .map(|(w, n)| crate::WorkspaceUsage { workspace_id: WorkspaceId::from_trusted(w), events: n.max(0) as u64 })
                    .collect();
                Ok((total.unwrap_or(0).max(0) as u64, busiest))
            }

            async fn count_connections(&self, ws: &WorkspaceId) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM connections WHERE workspace_id = $1").bind(ws.as_str()).fetch_one(self.reader()).await?;
                Ok(n as u64)
            }

            async fn count_rules(&self, ws: &WorkspaceId, event: Option<&str>) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL AND (CAST($2 AS TEXT) IS NULL OR event = $2)",
                )
                .bind(ws.as_str())
                .bind(event)
                .fetch_one(self.reader())
                .await?;
                Ok(n as u64)
            }

            async fn count_workspaces(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workspaces").fetch_one(self.reader()).await?;
                Ok(n as u64)
            }
        }

        impl $store {
            /// Fails with [`crate::StoreError::Limit`] when the count a query gives (inside `tx`,
            /// after [`Self::lock_for_limits`]) has reached `max`.
            async fn check_limit(
                tx: &mut sqlx::Transaction<'_, $db>,
                limit: &'static str,
                max: Option<u32>,
                count_sql: &str,
                binds: &[&str],
            ) -> Result<()> {
                let Some(max) = max else { return Ok(()) };
                let mut query = sqlx::query_scalar::<_, i64>(count_sql);
                for b in binds {
                    query = query.bind(*b);
                }
                let n = query.fetch_one(&mut **tx).await?;
                if n >= i64::from(max) {
                    return Err(crate::StoreError::Limit { limit, max: u64::from(max) });
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_limit_store;
