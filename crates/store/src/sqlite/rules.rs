//! Rules: which events go to which connection, and how.

use super::{bump_config_version, SqliteStore};
use crate::rows;
use crate::{Page, Result, RuleStore, Scope};
use async_trait::async_trait;
use switchyard_core::ids::*;
use switchyard_core::model::*;

#[async_trait]
impl RuleStore for SqliteStore {
    async fn create_rule(&self, r: &Rule) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO rules (id, workspace_id, name, event, connection_id, action, action_config, conditions, active, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&mut *tx)
        .await?;
        bump_config_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_rule(&self, scope: &Scope, id: &RuleId) -> Result<Option<Rule>> {
        let row = sqlx::query("SELECT * FROM rules WHERE id = ?1 AND deleted_at IS NULL AND (?2 IS NULL OR workspace_id = ?2)")
            .bind(id.as_str())
            .bind(scope.workspace())
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(rows::rule).transpose()
    }

    async fn get_rule_for_delivery(&self, id: &RuleId) -> Result<Option<Rule>> {
        let row = sqlx::query("SELECT * FROM rules WHERE id = ?").bind(id.as_str()).fetch_optional(&self.reader).await?;
        row.as_ref().map(rows::rule).transpose()
    }

    async fn list_rules(&self, ws: &WorkspaceId, page: &Page) -> Result<Vec<Rule>> {
        let rows = sqlx::query(
            "SELECT * FROM rules WHERE workspace_id = ?1 AND deleted_at IS NULL AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(ws.as_str())
        .bind(page.before.as_deref())
        .bind(page.limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(rows::rule).collect()
    }

    async fn active_rules(&self, ws: &WorkspaceId) -> Result<Vec<Rule>> {
        let rows = sqlx::query("SELECT * FROM rules WHERE workspace_id = ? AND active = 1 AND deleted_at IS NULL ORDER BY id")
            .bind(ws.as_str())
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(rows::rule).collect()
    }

    async fn update_rule(&self, r: &Rule) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE rules SET name = ?, event = ?, connection_id = ?, action = ?, action_config = ?, conditions = ?, active = ?, updated_at = ?
             WHERE id = ? AND workspace_id = ? AND deleted_at IS NULL",
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
        .execute(&mut *tx)
        .await?;
        bump_config_version(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_rule(&self, scope: &Scope, id: &RuleId) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "UPDATE rules SET deleted_at = ?1, active = 0 WHERE id = ?2 AND deleted_at IS NULL AND (?3 IS NULL OR workspace_id = ?3)",
        )
        .bind(switchyard_core::now_millis())
        .bind(id.as_str())
        .bind(scope.workspace())
        .execute(&mut *tx)
        .await?;
        bump_config_version(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
