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
        }

        impl $store {
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
