//! Event types, learned and declared: one implementation for both stores. Each store supplies
//! `writer()` and `reader()`.

macro_rules! impl_event_type_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::EventTypeStore for $store {
            async fn learn_event_types(&self, learned: &[crate::LearnedEventType], now: Millis) -> Result<()> {
                if learned.is_empty() {
                    return Ok(());
                }
                let mut tx = self.writer().begin().await?;
                for l in learned {
                    let known = sqlx::query(
                        "UPDATE event_types SET received_count = received_count + $3,
                             first_seen_at = COALESCE(first_seen_at, $4),
                             sample_event_id = CASE WHEN last_seen_at IS NULL OR last_seen_at <= $5 THEN $6 ELSE sample_event_id END,
                             last_seen_at = CASE WHEN last_seen_at IS NULL OR last_seen_at <= $5 THEN $5 ELSE last_seen_at END,
                             updated_at = $7
                         WHERE workspace_id = $1 AND name = $2",
                    )
                    .bind(l.workspace_id.as_str())
                    .bind(&l.name)
                    .bind(l.count)
                    .bind(l.first_seen_at)
                    .bind(l.last_seen_at)
                    .bind(l.sample_event_id.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                        > 0;
                    if known {
                        continue;
                    }
                    // A new name: only into a workspace that still exists and has room.
                    sqlx::query(
                        "INSERT INTO event_types (workspace_id, name, received_count, first_seen_at, last_seen_at, sample_event_id, updated_at)
                         SELECT $1, $2, $3, $4, $5, $6, $7
                         WHERE EXISTS (SELECT 1 FROM workspaces WHERE id = $1)
                           AND (SELECT COUNT(*) FROM event_types WHERE workspace_id = $1) < $8
                         ON CONFLICT (workspace_id, name) DO UPDATE SET received_count = event_types.received_count + excluded.received_count,
                             last_seen_at = excluded.last_seen_at, sample_event_id = excluded.sample_event_id, updated_at = excluded.updated_at",
                    )
                    .bind(l.workspace_id.as_str())
                    .bind(&l.name)
                    .bind(l.count)
                    .bind(l.first_seen_at)
                    .bind(l.last_seen_at)
                    .bind(l.sample_event_id.as_str())
                    .bind(now)
                    .bind(crate::MAX_LEARNED_EVENT_TYPES)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_event_types(&self, ws: &WorkspaceId, after: Option<&str>, limit: u32) -> Result<Vec<EventType>> {
                let rows = sqlx::query(
                    "SELECT t.*, e.payload AS sample_payload FROM event_types t
                     LEFT JOIN events e ON e.id = t.sample_event_id AND e.workspace_id = t.workspace_id
                     WHERE t.workspace_id = $1 AND t.name > $2 ORDER BY t.name LIMIT $3",
                )
                .bind(ws.as_str())
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(rows::event_type).collect()
            }

            async fn get_event_type(&self, ws: &WorkspaceId, name: &str) -> Result<Option<EventType>> {
                let row = sqlx::query(
                    "SELECT t.*, e.payload AS sample_payload FROM event_types t
                     LEFT JOIN events e ON e.id = t.sample_event_id AND e.workspace_id = t.workspace_id
                     WHERE t.workspace_id = $1 AND t.name = $2",
                )
                .bind(ws.as_str())
                .bind(name)
                .fetch_optional(self.writer())
                .await?;
                row.as_ref().map(rows::event_type).transpose()
            }

            async fn declare_event_type(&self, d: &crate::EventTypeDeclaration, now: Millis) -> Result<EventType> {
                let mut tx = self.writer().begin().await?;
                let declared = Self::declare_event_type_in(&mut tx, d, now).await?;
                tx.commit().await?;
                if !declared {
                    return Err(crate::StoreError::Conflict(format!(
                        "the workspace has {} event types, the most it may have",
                        crate::MAX_EVENT_TYPES
                    )));
                }
                self.get_event_type(&d.workspace_id, &d.name)
                    .await?
                    .ok_or_else(|| crate::StoreError::Corrupt("event_types: a declared type is missing".into()))
            }

            async fn undeclare_event_type(&self, ws: &WorkspaceId, name: &str, now: Millis) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = Self::undeclare_event_type_in(&mut tx, ws.as_str(), name, now).await?;
                tx.commit().await?;
                Ok(done)
            }
        }

        impl $store {
            /// Declares an event type in the caller's transaction; false past [`crate::MAX_EVENT_TYPES`].
            pub(crate) async fn declare_event_type_in(tx: &mut sqlx::Transaction<'_, $db>, d: &crate::EventTypeDeclaration, now: Millis) -> Result<bool> {
                let done = sqlx::query(
                    "INSERT INTO event_types (workspace_id, name, description, json_schema, example, declared_at, updated_at)
                     SELECT $1, $2, $3, $4, $5, $6, $6
                     WHERE (SELECT COUNT(*) FROM event_types WHERE workspace_id = $1) < $7
                        OR EXISTS (SELECT 1 FROM event_types WHERE workspace_id = $1 AND name = $2)
                     ON CONFLICT (workspace_id, name) DO UPDATE SET description = excluded.description,
                         json_schema = excluded.json_schema, example = excluded.example,
                         declared_at = COALESCE(event_types.declared_at, excluded.declared_at), updated_at = excluded.updated_at",
                )
                .bind(d.workspace_id.as_str())
                .bind(&d.name)
                .bind(&d.description)
                .bind(&d.json_schema)
                .bind(&d.example)
                .bind(now)
                .bind(crate::MAX_EVENT_TYPES)
                .execute(&mut **tx)
                .await?;
                Ok(done.rows_affected() > 0)
            }

            /// Removes a declaration in the caller's transaction; false when there was none.
            pub(crate) async fn undeclare_event_type_in(tx: &mut sqlx::Transaction<'_, $db>, ws: &str, name: &str, now: Millis) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE event_types SET description = NULL, json_schema = NULL, example = NULL, declared_at = NULL, updated_at = $3
                     WHERE workspace_id = $1 AND name = $2 AND declared_at IS NOT NULL",
                )
                .bind(ws)
                .bind(name)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM event_types WHERE workspace_id = $1 AND name = $2 AND declared_at IS NULL AND received_count = 0")
                    .bind(ws)
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_event_type_store;
