//! Blueprints and their versions: one implementation for both stores.

macro_rules! impl_blueprint_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::BlueprintStore for $store {
            async fn put_blueprint(
                &self,
                new_id: &str,
                name: &str,
                document: &str,
                source: &str,
                now: Millis,
            ) -> Result<(crate::BlueprintRecord, bool)> {
                let mut tx = self.writer().begin().await?;
                // One writer of a name at a time: two first submissions cannot both insert it.
                Self::lock_for_limits(&mut tx, &format!("blueprint/{name}")).await?;
                let current: Option<(String, i64)> = sqlx::query_as("SELECT id, current_version FROM blueprints WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let (id, version) = match current {
                    None => {
                        sqlx::query(
                            "INSERT INTO blueprints (id, name, current_version, created_at, updated_at) VALUES ($1, $2, 1, $3, $3)",
                        )
                        .bind(new_id)
                        .bind(name)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        (new_id.to_owned(), 1)
                    }
                    Some((id, version)) => {
                        let same: Option<String> =
                            sqlx::query_scalar("SELECT document FROM blueprint_versions WHERE blueprint_id = $1 AND version = $2")
                                .bind(&id)
                                .bind(version)
                                .fetch_optional(&mut *tx)
                                .await?;
                        if same.as_deref() == Some(document) {
                            let record = Self::blueprint_record(&mut tx, &id).await?;
                            tx.commit().await?;
                            return Ok((record, false));
                        }
                        sqlx::query("UPDATE blueprints SET current_version = $1, updated_at = $2 WHERE id = $3")
                            .bind(version + 1)
                            .bind(now)
                            .bind(&id)
                            .execute(&mut *tx)
                            .await?;
                        (id, version + 1)
                    }
                };
                sqlx::query(
                    "INSERT INTO blueprint_versions (blueprint_id, version, document, source, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&id)
                .bind(version)
                .bind(document)
                .bind(source)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                // Read in the transaction: what this request stored, whatever follows it.
                let record = Self::blueprint_record(&mut tx, &id).await?;
                tx.commit().await?;
                Ok((record, true))
            }

            async fn list_blueprints(&self) -> Result<Vec<crate::BlueprintRecord>> {
                let rows: Vec<(String, String, i64, i64, i64)> =
                    sqlx::query_as("SELECT id, name, current_version, created_at, updated_at FROM blueprints ORDER BY name")
                        .fetch_all(self.reader())
                        .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name, version, created_at, updated_at)| crate::BlueprintRecord { id, name, version, created_at, updated_at })
                    .collect())
            }

            async fn get_blueprint(
                &self,
                id_or_name: &str,
                version: Option<i64>,
            ) -> Result<Option<(crate::BlueprintRecord, crate::BlueprintVersion)>> {
                let row: Option<(String, String, i64, i64, i64)> =
                    sqlx::query_as("SELECT id, name, current_version, created_at, updated_at FROM blueprints WHERE id = $1 OR name = $1")
                        .bind(id_or_name)
                        .fetch_optional(self.reader())
                        .await?;
                let Some((id, name, current, created_at, updated_at)) = row else { return Ok(None) };
                let wanted = version.unwrap_or(current);
                let v: Option<(String, String, i64)> =
                    sqlx::query_as("SELECT document, source, created_at FROM blueprint_versions WHERE blueprint_id = $1 AND version = $2")
                        .bind(&id)
                        .bind(wanted)
                        .fetch_optional(self.reader())
                        .await?;
                let Some((document, source, version_created_at)) = v else { return Ok(None) };
                Ok(Some((
                    crate::BlueprintRecord { id, name, version: current, created_at, updated_at },
                    crate::BlueprintVersion { version: wanted, document, source, created_at: version_created_at },
                )))
            }

            async fn delete_blueprint(&self, id: &str) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                sqlx::query("DELETE FROM blueprint_versions WHERE blueprint_id = $1").bind(id).execute(&mut *tx).await?;
                let done = sqlx::query("DELETE FROM blueprints WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn managed_resources(&self, ws: &WorkspaceId) -> Result<Vec<crate::ManagedResource>> {
                let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
                    "SELECT blueprint_id, kind, key, resource_id, overrides FROM blueprint_resources WHERE workspace_id = $1
                     ORDER BY blueprint_id, kind, key",
                )
                .bind(ws.as_str())
                .fetch_all(self.writer())
                .await?;
                rows.into_iter().map(Self::managed_resource).collect()
            }

            async fn blueprint_applications(&self, blueprint_id: &str, ws: Option<&WorkspaceId>) -> Result<Vec<crate::BlueprintApplication>> {
                let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
                    "SELECT workspace_id, blueprint_id, version, applied_at FROM blueprint_applications
                     WHERE blueprint_id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2) ORDER BY workspace_id",
                )
                .bind(blueprint_id)
                .bind(ws.map(WorkspaceId::as_str))
                .fetch_all(self.reader())
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(ws, blueprint_id, version, applied_at)| crate::BlueprintApplication {
                        workspace_id: WorkspaceId::from_trusted(ws),
                        blueprint_id,
                        version,
                        applied_at,
                    })
                    .collect())
            }

            async fn apply_blueprint(&self, a: &crate::BlueprintApply, now: Millis) -> Result<()> {
                let ws = a.workspace_id.as_str();
                let mut tx = self.writer().begin().await?;
                // One apply to a workspace at a time, the second seeing what the first did; and the
                // lock a connection or rule made by hand takes, so that the caps hold across both.
                Self::lock_for_limits(&mut tx, ws).await?;
                let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
                    "SELECT blueprint_id, kind, key, resource_id, overrides FROM blueprint_resources
                     WHERE workspace_id = $1 AND blueprint_id = $2 ORDER BY blueprint_id, kind, key",
                )
                .bind(ws)
                .bind(&a.blueprint_id)
                .fetch_all(&mut *tx)
                .await?;
                let mut current = rows.into_iter().map(Self::managed_resource).collect::<Result<Vec<_>>>()?;
                current.sort_by(|x, y| (x.kind, &x.key).cmp(&(y.kind, &y.key)));
                let mut expected = a.expected.clone();
                expected.sort_by(|x, y| (x.kind, &x.key).cmp(&(y.kind, &y.key)));
                if current != expected {
                    return Err(crate::StoreError::Conflict("the workspace changed while the plan was made".into()));
                }
                for (id, read_at) in &a.read_at {
                    let now_at: Option<i64> = sqlx::query_scalar(
                        "SELECT updated_at FROM connections WHERE id = $1 AND workspace_id = $2
                         UNION ALL SELECT updated_at FROM rules WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
                    )
                    .bind(id)
                    .bind(ws)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if now_at != Some(*read_at) {
                        return Err(crate::StoreError::Conflict("the workspace changed while the plan was made".into()));
                    }
                }
                for id in &a.delete_rules {
                    sqlx::query("UPDATE rules SET deleted_at = $1, active = FALSE WHERE id = $2 AND workspace_id = $3 AND deleted_at IS NULL")
                        .bind(now)
                        .bind(id.as_str())
                        .bind(ws)
                        .execute(&mut *tx)
                        .await?;
                }
                for id in &a.delete_connections {
                    let here: Option<String> = sqlx::query_scalar("SELECT id FROM connections WHERE id = $1 AND workspace_id = $2")
                        .bind(id.as_str())
                        .bind(ws)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if here.is_some() {
                        Self::delete_connection_row(&mut tx, id.as_str()).await?;
                    }
                }
                for name in &a.undeclare_event_types {
                    Self::undeclare_event_type_in(&mut tx, ws, name, now).await?;
                }
                for c in &a.create_connections {
                    Self::insert_connection(&mut tx, c).await?;
                }
                for c in &a.update_connections {
                    Self::update_connection_row(&mut tx, c).await?;
                }
                for r in &a.create_rules {
                    Self::insert_rule(&mut tx, r).await?;
                }
                for r in &a.update_rules {
                    Self::update_rule_row(&mut tx, r).await?;
                }
                for d in &a.declare_event_types {
                    if !Self::declare_event_type_in(&mut tx, d, now).await? {
                        return Err(crate::StoreError::Limit { limit: "event_types", max: crate::MAX_EVENT_TYPES as u64 });
                    }
                }
                // The caps, once everything is in (so a plan that frees room and takes it is fine):
                // past `max` is `max + 1` rows, reported as the cap it is.
                let cap = |e: crate::StoreError| match e {
                    crate::StoreError::Limit { limit, max } => crate::StoreError::Limit { limit, max: max - 1 },
                    other => other,
                };
                if !a.create_connections.is_empty() {
                    Self::check_limit(&mut tx, "connections", a.max_connections.map(|m| m + 1), "SELECT COUNT(*) FROM connections WHERE workspace_id = $1", &[ws])
                        .await
                        .map_err(cap)?;
                }
                if !a.create_rules.is_empty() {
                    let live = "SELECT COUNT(*) FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL";
                    Self::check_limit(&mut tx, "rules_per_workspace", a.rule_caps.per_workspace.map(|m| m + 1), live, &[ws]).await.map_err(cap)?;
                }
                if !a.create_rules.is_empty() || !a.update_rules.is_empty() {
                    let same = "SELECT COUNT(*) FROM rules WHERE workspace_id = $1 AND deleted_at IS NULL AND event = $2";
                    for r in a.create_rules.iter().chain(&a.update_rules) {
                        Self::check_limit(&mut tx, "rules_per_event_type", a.rule_caps.per_event_type.map(|m| m + 1), same, &[ws, &r.event])
                            .await
                            .map_err(cap)?;
                    }
                }
                sqlx::query("DELETE FROM blueprint_resources WHERE workspace_id = $1 AND blueprint_id = $2")
                    .bind(ws)
                    .bind(&a.blueprint_id)
                    .execute(&mut *tx)
                    .await?;
                for m in &a.resources {
                    sqlx::query(
                        "INSERT INTO blueprint_resources (workspace_id, blueprint_id, kind, key, resource_id, overrides) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(ws)
                    .bind(&a.blueprint_id)
                    .bind(m.kind.as_str())
                    .bind(&m.key)
                    .bind(&m.resource_id)
                    .bind(serde_json::to_string(&m.overrides).unwrap_or_default())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match e {
                        sqlx::Error::Database(d) if d.is_unique_violation() => crate::StoreError::Conflict(format!(
                            "the {} {:?} is managed by another blueprint",
                            m.kind.as_str().replace('_', " "),
                            m.resource_id
                        )),
                        other => other.into(),
                    })?;
                }
                sqlx::query(
                    "INSERT INTO blueprint_applications (workspace_id, blueprint_id, version, applied_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (workspace_id, blueprint_id) DO UPDATE SET version = excluded.version, applied_at = excluded.applied_at",
                )
                .bind(ws)
                .bind(&a.blueprint_id)
                .bind(a.version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn set_overrides(
                &self,
                ws: &WorkspaceId,
                blueprint_id: &str,
                overrides: &[(crate::ManagedKind, String, Vec<String>)],
            ) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                Self::lock_for_limits(&mut tx, ws.as_str()).await?;
                let applied: Option<i64> =
                    sqlx::query_scalar("SELECT version FROM blueprint_applications WHERE workspace_id = $1 AND blueprint_id = $2")
                        .bind(ws.as_str())
                        .bind(blueprint_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if applied.is_none() {
                    return Ok(false);
                }
                sqlx::query("UPDATE blueprint_resources SET overrides = '[]' WHERE workspace_id = $1 AND blueprint_id = $2")
                    .bind(ws.as_str())
                    .bind(blueprint_id)
                    .execute(&mut *tx)
                    .await?;
                for (kind, key, fields) in overrides {
                    sqlx::query("UPDATE blueprint_resources SET overrides = $1 WHERE workspace_id = $2 AND blueprint_id = $3 AND kind = $4 AND key = $5")
                        .bind(serde_json::to_string(fields).unwrap_or_default())
                        .bind(ws.as_str())
                        .bind(blueprint_id)
                        .bind(kind.as_str())
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn note_hand_change(&self, ws: &WorkspaceId, kind: crate::ManagedKind, resource_id: &str, fields: &[&str], now: Millis) -> Result<()> {
                let managed: Option<(String, String, String)> = sqlx::query_as(
                    "SELECT r.blueprint_id, b.name, r.key FROM blueprint_resources r JOIN blueprints b ON b.id = r.blueprint_id
                     WHERE r.workspace_id = $1 AND r.kind = $2 AND r.resource_id = $3",
                )
                .bind(ws.as_str())
                .bind(kind.as_str())
                .bind(resource_id)
                .fetch_optional(self.reader())
                .await?;
                let Some((blueprint_id, blueprint, key)) = managed else { return Ok(()) };
                let section = match kind {
                    crate::ManagedKind::Connection => "connections",
                    crate::ManagedKind::Rule => "rules",
                    crate::ManagedKind::EventType => "event_types",
                };
                let n = crate::Notification {
                    id: format!("blueprint.drift:{resource_id}:{now}"),
                    workspace_id: ws.clone(),
                    kind: "blueprint.drift".into(),
                    payload: serde_json::json!({
                        "blueprint_id": blueprint_id, "blueprint": blueprint, "resource": format!("{section}.{key}"),
                        "resource_id": resource_id, "fields": fields,
                    }),
                    created_at: now,
                };
                let mut tx = self.writer().begin().await?;
                Self::add_notification(&mut tx, &n).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        impl $store {
            fn managed_resource((blueprint_id, kind, key, resource_id, overrides): (String, String, String, String, String)) -> Result<crate::ManagedResource> {
                Ok(crate::ManagedResource {
                    blueprint_id,
                    kind: crate::ManagedKind::parse(&kind).ok_or_else(|| crate::StoreError::Corrupt("blueprint_resources.kind".into()))?,
                    key,
                    resource_id,
                    overrides: serde_json::from_str(&overrides).map_err(|_| crate::StoreError::Corrupt("blueprint_resources.overrides".into()))?,
                })
            }

            async fn blueprint_record(tx: &mut sqlx::Transaction<'_, $db>, id: &str) -> Result<crate::BlueprintRecord> {
                let (id, name, version, created_at, updated_at): (String, String, i64, i64, i64) =
                    sqlx::query_as("SELECT id, name, current_version, created_at, updated_at FROM blueprints WHERE id = $1")
                        .bind(id)
                        .fetch_one(&mut **tx)
                        .await?;
                Ok(crate::BlueprintRecord { id, name, version, created_at, updated_at })
            }
        }
    };
}

pub(crate) use impl_blueprint_store;
