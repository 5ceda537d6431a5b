//! Reading history (events, deliveries, attempts): one implementation for both stores, in the SQL
//! subset both speak. Each store supplies `reader()`.

macro_rules! impl_history_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::HistoryStore for $store {
            async fn get_event(&self, scope: &Scope, id: &EventId) -> Result<Option<Event>> {
                let row = sqlx::query("SELECT * FROM events WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2)")
                    .bind(id.as_str())
                    .bind(scope.workspace())
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(rows::event).transpose()
            }

            async fn list_events(&self, ws: &WorkspaceId, f: &EventFilter, page: &Page) -> Result<Vec<Event>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM events WHERE workspace_id = ");
                q.push_bind(ws.as_str());
                if let Some(v) = &f.event {
                    q.push(" AND event = ").push_bind(v.as_str());
                }
                if let Some(v) = f.status {
                    q.push(" AND status = ").push_bind(v.as_str());
                }
                if let Some(v) = &f.resource {
                    q.push(" AND resource = ").push_bind(v.as_str());
                }
                if let Some(v) = &f.resource_id {
                    q.push(" AND resource_id = ").push_bind(v.as_str());
                }
                if let Some(v) = f.since {
                    q.push(" AND received_at >= ").push_bind(v);
                }
                if let Some(v) = f.until {
                    q.push(" AND received_at < ").push_bind(v);
                }
                if let Some(v) = &page.before {
                    q.push(" AND id < ").push_bind(v.as_str());
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
                let rows = q.build().fetch_all(self.reader()).await?;
                rows.iter().map(rows::event).collect()
            }

            async fn event_deliveries(&self, event: &EventId) -> Result<Vec<Delivery>> {
                let rows = sqlx::query("SELECT * FROM deliveries WHERE event_id = $1 ORDER BY id")
                    .bind(event.as_str())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::delivery).collect()
            }

            async fn get_delivery(&self, scope: &Scope, id: &DeliveryId) -> Result<Option<Delivery>> {
                let row = sqlx::query("SELECT * FROM deliveries WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR workspace_id = $2)")
                    .bind(id.as_str())
                    .bind(scope.workspace())
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(rows::delivery).transpose()
            }

            async fn delivery_attempts(&self, id: &DeliveryId) -> Result<Vec<Attempt>> {
                let rows = sqlx::query("SELECT * FROM attempts WHERE delivery_id = $1 ORDER BY number")
                    .bind(id.as_str())
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::attempt).collect()
            }

            async fn list_deliveries(&self, ws: &WorkspaceId, f: &DeliveryFilter, page: &Page) -> Result<Vec<Delivery>> {
                let mut q = sqlx::QueryBuilder::<$db>::new("SELECT * FROM deliveries WHERE workspace_id = ");
                q.push_bind(ws.as_str());
                Self::push_delivery_filter(&mut q, f);
                if let Some(v) = &page.before {
                    q.push(" AND id < ").push_bind(v.as_str());
                }
                q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit));
                let rows = q.build().fetch_all(self.reader()).await?;
                rows.iter().map(rows::delivery).collect()
            }

            async fn window_counts(&self, ws: &WorkspaceId, since: Millis, resource: Option<&ResourceRef>) -> Result<crate::WindowCounts> {
                let (name, id) = (resource.map(|r| r.resource.as_str()), resource.map(|r| r.resource_id.as_str()));
                // Bounded: counting stops at COUNT_CAP, through the (workspace_id, id) indexes.
                let events: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE workspace_id = $1 AND id >= $2
                     AND (CAST($3 AS TEXT) IS NULL OR (resource = $3 AND resource_id = $4)) LIMIT $5) t",
                )
                .bind(ws.as_str())
                .bind(crate::id_floor(EventId::PREFIX, since))
                .bind(name)
                .bind(id)
                .bind(crate::COUNT_CAP as i64)
                .fetch_one(self.reader())
                .await?;
                let in_window = "FROM deliveries WHERE workspace_id = $1 AND id >= $2
                     AND (CAST($3 AS TEXT) IS NULL
                          OR EXISTS (SELECT 1 FROM events ev WHERE ev.id = deliveries.event_id AND ev.resource = $3 AND ev.resource_id = $4))";
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM (SELECT 1 {in_window} LIMIT $5) t"))
                    .bind(ws.as_str())
                    .bind(crate::id_floor(DeliveryId::PREFIX, since))
                    .bind(name)
                    .bind(id)
                    .bind(crate::COUNT_CAP as i64)
                    .fetch_one(self.reader())
                    .await?;
                // Where the latest deliveries stand: rows are read, so only STATUS_SAMPLE of them.
                let rows = sqlx::query(&format!(
                    "SELECT connection_id, status, COUNT(*) AS n FROM
                     (SELECT connection_id, status {in_window} ORDER BY id DESC LIMIT $5) t GROUP BY connection_id, status"
                ))
                .bind(ws.as_str())
                .bind(crate::id_floor(DeliveryId::PREFIX, since))
                .bind(name)
                .bind(id)
                .bind(crate::STATUS_SAMPLE as i64)
                .fetch_all(self.reader())
                .await?;
                let mut deliveries = Vec::with_capacity(rows.len());
                for row in &rows {
                    let status = row.text("status")?;
                    let status = DeliveryStatus::parse(&status).ok_or_else(|| crate::StoreError::Corrupt("deliveries.status".into()))?;
                    deliveries.push((ConnectionId::from_trusted(row.text("connection_id")?), status, row.int("n")?.max(0) as u64));
                }
                deliveries.sort_by(|a, b| (a.0.as_str(), a.1.as_str()).cmp(&(b.0.as_str(), b.1.as_str())));
                Ok(crate::WindowCounts { events: events.max(0) as u64, deliveries_total: total.max(0) as u64, deliveries })
            }
        }

        impl $store {
            /// Appends a delivery filter's conditions to a query (listing and bulk replay).
            pub(crate) fn push_delivery_filter(q: &mut sqlx::QueryBuilder<'_, $db>, f: &DeliveryFilter) {
                if let Some(v) = f.status {
                    q.push(" AND status = ").push_bind(v.as_str());
                }
                if let Some(v) = &f.connection_id {
                    q.push(" AND connection_id = ").push_bind(v.as_str().to_owned());
                }
                if let Some(v) = &f.rule_id {
                    q.push(" AND rule_id = ").push_bind(v.as_str().to_owned());
                }
                if let Some(r) = &f.resource {
                    q.push(" AND EXISTS (SELECT 1 FROM events evr WHERE evr.id = deliveries.event_id AND evr.resource = ")
                        .push_bind(r.resource.clone())
                        .push(" AND evr.resource_id = ")
                        .push_bind(r.resource_id.clone())
                        .push(")");
                }
                if let Some(v) = &f.event {
                    // Through the events' primary key, one look-up per delivery the other conditions kept.
                    q.push(" AND EXISTS (SELECT 1 FROM events ev WHERE ev.id = deliveries.event_id AND ev.event = ").push_bind(v.clone()).push(")");
                }
                if let Some(v) = f.since {
                    q.push(" AND created_at >= ").push_bind(v);
                }
                if let Some(v) = f.until {
                    q.push(" AND created_at < ").push_bind(v);
                }
                if let Some(v) = &f.event_id {
                    q.push(" AND event_id = ").push_bind(v.as_str().to_owned());
                }
            }
        }
    };
}

pub(crate) use impl_history_store;
