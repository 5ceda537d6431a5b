//! The queue's operations other than claiming and recording (which each store does its own way):
//! releasing, lease recovery, holds, replay. One implementation for both stores, in the SQL
//! subset both speak. Each store supplies, as associated functions:
//! - `writer()`: where writes go;
//! - `refresh_event_statuses(tx, &[&str])`: the rollup of events whose deliveries moved;
//! - `free_slots(tx, connection ids)`: lower the in-flight counters of deliveries that left
//!   `delivering` (PostgreSQL counts them on the connection; SQLite counts rows, so does nothing);
//! - `queue_changed(tx)`: wake the claiming nodes (PostgreSQL's NOTIFY; nothing on SQLite);
//! - `ROW_LOCK`: `FOR UPDATE` where the database has it, to read a row it will then change.

macro_rules! impl_queue_store {
    ($store:ty, $db:ty) => {
        /// Sends a delivery back to the queue without an attempt: `retrying` once it was tried, else
        /// `pending`; `cancelled` if a cancel came while it was leased.
        const RETURN_TO_QUEUE: &str = "status = CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled' \
             WHEN attempt_count > 0 THEN 'retrying' ELSE 'pending' END, lease_owner = NULL, lease_expires_at = NULL";

        impl $store {
            /// Writes a notification in the transaction of the change it reports (once per id).
            pub(crate) async fn add_notification(tx: &mut <$db as sqlx::Database>::Connection, n: &crate::Notification) -> Result<()> {
                sqlx::query(
                    "INSERT INTO notifications (id, workspace_id, kind, payload, created_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&n.id)
                .bind(n.workspace_id.as_str())
                .bind(&n.kind)
                .bind(n.payload.to_string())
                .bind(n.created_at)
                .execute(&mut *tx)
                .await?;
                Ok(())
            }

            /// A notification about a connection, from its row (`id`, `workspace_id`, `name`, `kind`).
            fn connection_notification(kind: &str, row: &(String, String, String, String), reason: Option<&str>, now: Millis) -> crate::Notification {
                let (id, ws, name, connection_kind) = row;
                crate::Notification {
                    id: format!("{kind}:{id}:{now}"),
                    workspace_id: WorkspaceId::from_trusted(ws.clone()),
                    kind: kind.to_owned(),
                    payload: serde_json::json!({
                        "connection": {"id": id, "name": name, "type": connection_kind},
                        "reason": reason,
                    }),
                    created_at: now,
                }
            }

            /// Notifies `delivery.exhausted` for each of these deliveries that is now dead, unless it
            /// delivered a notification itself (a notification about a notification would never end).
            pub(crate) async fn notify_exhausted(tx: &mut <$db as sqlx::Database>::Connection, ids: &[&str], now: Millis) -> Result<()> {
                for chunk in ids.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT d.id, d.workspace_id, d.event_id, e.event, d.connection_id, d.rule_id, d.attempt_count, d.last_error
                         FROM deliveries d JOIN events e ON e.id = d.event_id
                         WHERE d.status = 'dead' AND substr(e.event, 1, 11) <> 'switchyard.' AND d.id IN (",
                    );
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    q.push(")");
                    let dead: Vec<(String, String, String, String, String, String, i64, Option<String>)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    for (id, ws, event_id, event, connection_id, rule_id, attempts, last_error) in dead {
                        let n = crate::Notification {
                            id: format!("delivery.exhausted:{id}:{attempts}"),
                            workspace_id: WorkspaceId::from_trusted(ws),
                            kind: "delivery.exhausted".into(),
                            payload: serde_json::json!({
                                "delivery": {"id": id, "event_id": event_id, "event": event, "connection_id": connection_id,
                                             "rule_id": rule_id, "attempts": attempts, "last_error": last_error},
                            }),
                            created_at: now,
                        };
                        Self::add_notification(tx, &n).await?;
                    }
                }
                Ok(())
            }

            /// Takes back the leases of stopped nodes that `condition` picks (see
            /// [`crate::recover_lease_set`]), and rolls up the events of deliveries set aside.
            async fn recover_leases(&self, condition: &str, now: Millis, owner: Option<&str>) -> Result<u64> {
                let mut tx = self.writer().begin().await?;
                let recovered: Vec<(String, String, String, String)> = sqlx::query_as(&format!(
                    "UPDATE deliveries SET {} WHERE status = 'delivering' AND {condition} RETURNING id, connection_id, event_id, status",
                    crate::recover_lease_set("$1")
                ))
                .bind(now)
                .bind(owner)
                .fetch_all(&mut *tx)
                .await?;
                Self::free_slots(&mut tx, recovered.iter().map(|(_, c, _, _)| c.as_str())).await?;
                let dead: Vec<&(String, String, String, String)> = recovered.iter().filter(|(_, _, _, s)| s == "dead").collect();
                if !dead.is_empty() {
                    tracing::warn!(deliveries = dead.len(), "deliveries set aside: their attempts kept ending with the node making them");
                    let events: std::collections::BTreeSet<&str> = dead.iter().map(|(_, _, e, _)| e.as_str()).collect();
                    Self::refresh_event_statuses(&mut tx, &events.into_iter().collect::<Vec<_>>()).await?;
                    let ids: Vec<&str> = dead.iter().map(|(id, _, _, _)| id.as_str()).collect();
                    Self::notify_exhausted(&mut tx, &ids, now).await?;
                }
                tx.commit().await?;
                Ok(recovered.len() as u64)
            }
        }

        #[async_trait::async_trait]
        impl crate::QueueStore for $store {
            async fn hold_connection(&self, id: &ConnectionId, until: Millis) -> Result<()> {
                sqlx::query("UPDATE connections SET held_until = CASE WHEN held_until < $2 THEN $2 ELSE held_until END WHERE id = $1")
                    .bind(id.as_str())
                    .bind(until)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn connection_held_until(&self, id: &ConnectionId) -> Result<Millis> {
                let until: Option<i64> = sqlx::query_scalar("SELECT held_until FROM connections WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(self.reader())
                    .await?;
                Ok(until.unwrap_or(0))
            }

            async fn release(&self, owner: &str, ids: &[DeliveryId], at: Millis) -> Result<()> {
                let mut tx = self.writer().begin().await?;
                let mut freed: Vec<String> = Vec::new();
                // In statements of at most 1,000 ids: far inside either database's limit on parameters.
                for chunk in ids.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(format!("UPDATE deliveries SET {RETURN_TO_QUEUE}, next_attempt_at = "));
                    q.push_bind(at).push(", updated_at = ").push_bind(at);
                    q.push(" WHERE status = 'delivering' AND lease_owner = ").push_bind(owner).push(" AND id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_str());
                    }
                    q.push(") RETURNING connection_id");
                    freed.extend(q.build_query_scalar::<String>().fetch_all(&mut *tx).await?);
                }
                Self::free_slots(&mut tx, freed.iter().map(String::as_str)).await?;
                if !freed.is_empty() {
                    Self::queue_changed(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn recover_expired_leases(&self, now: Millis) -> Result<u64> {
                self.recover_leases("lease_expires_at < $1", now, None).await
            }

            async fn recover_foreign_leases(&self, owner: &str, now: Millis) -> Result<u64> {
                self.recover_leases("lease_owner IS DISTINCT FROM $2", now, Some(owner)).await
            }

            async fn waiting_count(&self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'retrying')")
                    .fetch_one(self.reader())
                    .await?;
                Ok(n as u64)
            }

            async fn replay_delivery(&self, scope: &Scope, id: &DeliveryId, now: Millis) -> Result<Option<bool>> {
                let mut tx = self.writer().begin().await?;
                let current: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT status FROM deliveries WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2){}",
                    Self::ROW_LOCK
                ))
                .bind(id.as_str())
                .bind(scope.workspace())
                .fetch_optional(&mut *tx)
                .await?;
                match current.as_deref() {
                    None => return Ok(None),
                    Some("delivering") => return Ok(Some(false)),
                    Some(_) => {}
                }
                let event: String = sqlx::query_scalar(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, replay_base = attempt_count, lease_recoveries = 0,
                         last_error = NULL, cancelled_at = NULL, updated_at = $1
                     WHERE id = $2 RETURNING event_id",
                )
                .bind(now)
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
                Self::refresh_event_statuses(&mut tx, &[event.as_str()]).await?;
                Self::queue_changed(&mut tx).await?;
                tx.commit().await?;
                Ok(Some(true))
            }

            async fn replay_matching(&self, ws: &WorkspaceId, f: &DeliveryFilter, now: Millis) -> Result<u64> {
                // In batches of REPLAY_BATCH by id, each its own transaction (see `crate::REPLAY_BATCH`).
                let (mut after, mut replayed) = (String::new(), 0u64);
                loop {
                    let mut tx = self.writer().begin().await?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE deliveries SET status = 'pending', replay_base = attempt_count, lease_recoveries = 0, last_error = NULL, \
                         cancelled_at = NULL, next_attempt_at = ",
                    );
                    q.push_bind(now).push(", updated_at = ").push_bind(now);
                    // The status is checked again on the row itself: a claim may have taken it meanwhile.
                    q.push(
                        " WHERE status <> 'delivering' AND id IN (SELECT id FROM deliveries WHERE status <> 'delivering' AND workspace_id = ",
                    )
                    .push_bind(ws.as_str());
                    Self::push_delivery_filter(&mut q, f);
                    q.push(" AND id > ").push_bind(after.clone());
                    q.push(" ORDER BY id LIMIT ").push_bind(crate::REPLAY_BATCH).push(") RETURNING id, event_id");
                    let moved: Vec<(String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    let events: Vec<&str> =
                        moved.iter().map(|(_, e)| e.as_str()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
                    if !events.is_empty() {
                        Self::refresh_event_statuses(&mut tx, &events).await?;
                        Self::queue_changed(&mut tx).await?;
                    }
                    tx.commit().await?;
                    replayed += moved.len() as u64;
                    match moved.iter().map(|(id, _)| id).max() {
                        Some(last) if moved.len() as i64 == crate::REPLAY_BATCH => after = last.clone(),
                        _ => return Ok(replayed),
                    }
                    // Let ingestion and the dispatcher in between batches.
                    tokio::task::yield_now().await;
                }
            }

            async fn pause_connection(&self, scope: &Scope, id: &ConnectionId, reason: InactiveReason, now: Millis) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let found: Option<String> = sqlx::query_scalar(
                    "UPDATE connections SET inactive_reason = $1,
                         inactive_since = CASE WHEN inactive_reason IS NULL OR inactive_reason <> $1 THEN $2 ELSE inactive_since END,
                         updated_at = $2
                     WHERE id = $3 AND (CAST($4 AS TEXT) IS NULL OR workspace_id = $4) RETURNING id",
                )
                .bind(reason.as_str())
                .bind(now)
                .bind(id.as_str())
                .bind(scope.workspace())
                .fetch_optional(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                tx.commit().await?;
                Ok(found.is_some())
            }

            async fn resume_connection(&self, scope: &Scope, id: &ConnectionId, now: Millis) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let found: Option<String> = sqlx::query_scalar(
                    // An open circuit may probe at once: resuming is someone saying "try again now".
                    "UPDATE connections SET inactive_reason = NULL, inactive_since = NULL, failing_since = NULL, circuit_retry_at = 0,
                         updated_at = $1
                     WHERE id = $2 AND (CAST($3 AS TEXT) IS NULL OR workspace_id = $3) RETURNING id",
                )
                .bind(now)
                .bind(id.as_str())
                .bind(scope.workspace())
                .fetch_optional(&mut *tx)
                .await?;
                Self::bump_config_version(&mut tx).await?;
                Self::queue_changed(&mut tx).await?;
                tx.commit().await?;
                Ok(found.is_some())
            }

            async fn disable_failing_connections(&self, before: Millis, now: Millis) -> Result<Vec<(ConnectionId, WorkspaceId)>> {
                let mut tx = self.writer().begin().await?;
                let disabled: Vec<(String, String, String, String)> = sqlx::query_as(
                    // Rows locked in id order, as every other writer of connections locks them.
                    &format!(
                        "UPDATE connections SET inactive_reason = 'failing', inactive_since = $2, updated_at = $2
                         WHERE id IN (SELECT id FROM connections
                                      WHERE status = 'active' AND inactive_reason IS NULL AND failing_since IS NOT NULL AND failing_since < $1
                                      ORDER BY id{})
                         RETURNING id, workspace_id, name, kind",
                        Self::ROW_LOCK
                    ),
                )
                .bind(before)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for row in &disabled {
                    let n = Self::connection_notification("connection.disabled", row, Some("every attempt failed for too long"), now);
                    Self::add_notification(&mut tx, &n).await?;
                }
                if !disabled.is_empty() {
                    Self::bump_config_version(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(disabled.into_iter().map(|(c, w, _, _)| (ConnectionId::from_trusted(c), WorkspaceId::from_trusted(w))).collect())
            }

            async fn take_notifications(&self, limit: u32) -> Result<Vec<crate::Notification>> {
                let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT id, workspace_id, kind, payload, created_at FROM notifications WHERE emitted_at IS NULL ORDER BY created_at, id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(self.writer())
                .await?;
                rows.into_iter()
                    .map(|(id, ws, kind, payload, created_at)| {
                        Ok(crate::Notification {
                            id,
                            workspace_id: WorkspaceId::from_trusted(ws),
                            kind,
                            payload: serde_json::from_str(&payload).map_err(|_| crate::StoreError::Corrupt("notifications.payload".into()))?,
                            created_at,
                        })
                    })
                    .collect()
            }

            async fn notifications_emitted(&self, ids: &[String], now: Millis) -> Result<()> {
                // Kept a while (a monthly notice must not repeat within its month), then forgotten.
                sqlx::query("DELETE FROM notifications WHERE emitted_at < $1").bind(now - crate::NOTIFICATIONS_KEPT_MS).execute(self.writer()).await?;
                for chunk in ids.chunks(1_000) {
                    let mut q = sqlx::QueryBuilder::<$db>::new("UPDATE notifications SET emitted_at = ");
                    q.push_bind(now).push(" WHERE id IN (");
                    let mut list = q.separated(", ");
                    for id in chunk {
                        list.push_bind(id.as_str());
                    }
                    q.push(")");
                    q.build().execute(self.writer()).await?;
                }
                Ok(())
            }

            async fn report_circuit(&self, id: &ConnectionId, report: &crate::CircuitReport, now: Millis) -> Result<Option<CircuitState>> {
                let mut tx = self.writer().begin().await?;
                let changed: Option<String> = match report {
                    crate::CircuitReport::Tripped { reason, cooldown_ms } => {
                        sqlx::query_scalar(
                            "UPDATE connections SET circuit_state = 'open', circuit_since = $1, circuit_reason = $2, circuit_retry_at = $1 + $3,
                                 circuit_cooldown_ms = $3, circuit_successes = 0
                             WHERE id = $4 AND circuit_state = 'closed' RETURNING circuit_state",
                        )
                        .bind(now)
                        .bind(reason)
                        .bind(*cooldown_ms)
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                    crate::CircuitReport::ProbeSucceeded { needed } => {
                        let state: Option<String> = sqlx::query_scalar(
                            "UPDATE connections SET circuit_successes = circuit_successes + 1,
                                 circuit_state = CASE WHEN circuit_successes + 1 >= $1 THEN 'closed' ELSE circuit_state END,
                                 circuit_since = CASE WHEN circuit_successes + 1 >= $1 THEN $2 ELSE circuit_since END,
                                 circuit_reason = CASE WHEN circuit_successes + 1 >= $1 THEN NULL ELSE circuit_reason END,
                                 circuit_cooldown_ms = CASE WHEN circuit_successes + 1 >= $1 THEN 0 ELSE circuit_cooldown_ms END
                             WHERE id = $3 AND circuit_state = 'half_open' RETURNING circuit_state",
                        )
                        .bind(i64::from(*needed))
                        .bind(now)
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                        state.filter(|s| s == "closed")
                    }
                    crate::CircuitReport::ProbeFailed { reason, base_ms, max_ms } => {
                        // Twice the last cooldown, within [base, max].
                        let next = "CASE WHEN circuit_cooldown_ms * 2 > $3 THEN $3 WHEN circuit_cooldown_ms * 2 < $2 THEN $2 ELSE circuit_cooldown_ms * 2 END";
                        sqlx::query_scalar(&format!(
                            "UPDATE connections SET circuit_state = 'open', circuit_since = $1, circuit_reason = $4, circuit_retry_at = $1 + {next},
                                 circuit_cooldown_ms = {next}, circuit_successes = 0
                             WHERE id = $5 AND circuit_state = 'half_open' RETURNING circuit_state"
                        ))
                        .bind(now)
                        .bind(*base_ms)
                        .bind(*max_ms)
                        .bind(reason)
                        .bind(id.as_str())
                        .fetch_optional(&mut *tx)
                        .await?
                    }
                };
                // Tripped open (not reopened by a probe): failing; closed: recovered.
                let kind = match (changed.as_deref(), report) {
                    (Some("open"), crate::CircuitReport::Tripped { .. }) => Some("connection.failing"),
                    (Some("closed"), _) => Some("connection.recovered"),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let row: (String, String, String, String) =
                        sqlx::query_as("SELECT id, workspace_id, name, kind FROM connections WHERE id = $1").bind(id.as_str()).fetch_one(&mut *tx).await?;
                    let reason = match report {
                        crate::CircuitReport::Tripped { reason, .. } => Some(reason.as_str()),
                        _ => None,
                    };
                    Self::add_notification(&mut tx, &Self::connection_notification(kind, &row, reason, now)).await?;
                }
                if changed.as_deref() == Some("closed") {
                    Self::queue_changed(&mut tx).await?;
                }
                tx.commit().await?;
                Ok(changed.as_deref().and_then(CircuitState::parse))
            }

            async fn cancel_delivery(&self, scope: &Scope, id: &DeliveryId, now: Millis) -> Result<Option<crate::CancelOutcome>> {
                let mut tx = self.writer().begin().await?;
                let current: Option<String> = sqlx::query_scalar(&format!(
                    "SELECT status FROM deliveries WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2){}",
                    Self::ROW_LOCK
                ))
                .bind(id.as_str())
                .bind(scope.workspace())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(current) = current else { return Ok(None) };
                let outcome = match DeliveryStatus::parse(&current) {
                    Some(DeliveryStatus::Pending | DeliveryStatus::Retrying) => {
                        let event: String = sqlx::query_scalar(
                            "UPDATE deliveries SET status = 'cancelled', cancelled_at = $1, next_attempt_at = NULL, updated_at = $1
                             WHERE id = $2 RETURNING event_id",
                        )
                        .bind(now)
                        .bind(id.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                        Self::refresh_event_statuses(&mut tx, &[event.as_str()]).await?;
                        crate::CancelOutcome::Cancelled
                    }
                    Some(DeliveryStatus::Delivering) => {
                        sqlx::query("UPDATE deliveries SET cancelled_at = $1 WHERE id = $2 AND cancelled_at IS NULL")
                            .bind(now)
                            .bind(id.as_str())
                            .execute(&mut *tx)
                            .await?;
                        crate::CancelOutcome::InFlight
                    }
                    Some(finished) => crate::CancelOutcome::Finished(finished),
                    None => return Err(crate::StoreError::Corrupt(format!("delivery {id} has status {current}"))),
                };
                tx.commit().await?;
                Ok(Some(outcome))
            }

            async fn cancel_matching(&self, ws: &WorkspaceId, f: &DeliveryFilter, now: Millis) -> Result<crate::CancelCount> {
                // In batches of REPLAY_BATCH by id, each its own transaction, as a bulk replay.
                let (mut after, mut count) = (String::new(), crate::CancelCount::default());
                loop {
                    let mut tx = self.writer().begin().await?;
                    // A waiting delivery is cancelled now; one in flight is marked, and its attempt's
                    // end cancels it (see RETURN_TO_QUEUE and each store's record).
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE deliveries SET status = CASE WHEN status = 'delivering' THEN status ELSE 'cancelled' END, \
                         next_attempt_at = CASE WHEN status = 'delivering' THEN next_attempt_at ELSE NULL END, cancelled_at = ",
                    );
                    q.push_bind(now).push(", updated_at = ").push_bind(now);
                    q.push(
                        " WHERE status IN ('pending', 'retrying', 'delivering') AND cancelled_at IS NULL AND id IN (\
                         SELECT id FROM deliveries WHERE status IN ('pending', 'retrying', 'delivering') AND cancelled_at IS NULL \
                         AND workspace_id = ",
                    )
                    .push_bind(ws.as_str());
                    Self::push_delivery_filter(&mut q, f);
                    q.push(" AND id > ").push_bind(after.clone());
                    q.push(" ORDER BY id LIMIT ").push_bind(crate::REPLAY_BATCH).push(") RETURNING id, event_id, status");
                    let moved: Vec<(String, String, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                    let events: Vec<&str> = moved
                        .iter()
                        .filter(|(_, _, s)| s == "cancelled")
                        .map(|(_, e, _)| e.as_str())
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    if !events.is_empty() {
                        Self::refresh_event_statuses(&mut tx, &events).await?;
                    }
                    tx.commit().await?;
                    for (_, _, status) in &moved {
                        if status == "cancelled" {
                            count.cancelled += 1;
                        } else {
                            count.in_flight += 1;
                        }
                    }
                    match moved.iter().map(|(id, _, _)| id).max() {
                        Some(last) if moved.len() as i64 == crate::REPLAY_BATCH => after = last.clone(),
                        _ => return Ok(count),
                    }
                    tokio::task::yield_now().await;
                }
            }
        }
    };
}

pub(crate) use impl_queue_store;
