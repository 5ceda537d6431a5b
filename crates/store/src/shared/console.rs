//! Members, console sessions, sign-ins in progress, node heartbeats and the queue's state: one
//! implementation for both stores. Each store supplies `writer()` and `reader()`.

macro_rules! impl_console_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl crate::ConsoleStore for $store {
            async fn member_signed_in(&self, m: &crate::SignedIn, now: Millis) -> Result<Option<Member>> {
                let mut tx = self.writer().begin().await?;
                let existing = sqlx::query("SELECT * FROM members WHERE email = $1").bind(&m.email).fetch_optional(&mut *tx).await?;
                let member = match existing.as_ref().map(rows::member).transpose()? {
                    Some(found) if found.removed_at.is_some() => return Ok(None),
                    Some(found) => {
                        sqlx::query("UPDATE members SET name = $1, role = $2, subject = $3, last_sign_in_at = $4 WHERE id = $5")
                            .bind(&m.name)
                            .bind(m.role.as_str())
                            .bind(&m.subject)
                            .bind(now)
                            .bind(found.id.as_str())
                            .execute(&mut *tx)
                            .await?;
                        Member { name: m.name.clone(), role: m.role, subject: m.subject.clone(), last_sign_in_at: Some(now), ..found }
                    }
                    None => {
                        let member = Member {
                            id: MemberId::generate(),
                            email: m.email.clone(),
                            name: m.name.clone(),
                            role: m.role,
                            subject: m.subject.clone(),
                            created_at: now,
                            last_sign_in_at: Some(now),
                            removed_at: None,
                        };
                        sqlx::query(
                            "INSERT INTO members (id, email, name, role, subject, created_at, last_sign_in_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(member.id.as_str())
                        .bind(&member.email)
                        .bind(&member.name)
                        .bind(member.role.as_str())
                        .bind(&member.subject)
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        member
                    }
                };
                tx.commit().await?;
                Ok(Some(member))
            }

            async fn list_members(&self, page: &Page) -> Result<Vec<Member>> {
                let rows = sqlx::query("SELECT * FROM members WHERE (CAST($1 AS TEXT) IS NULL OR id < $1) ORDER BY id DESC LIMIT $2")
                    .bind(page.before.as_deref())
                    .bind(i64::from(page.limit))
                    .fetch_all(self.reader())
                    .await?;
                rows.iter().map(rows::member).collect()
            }

            async fn get_member(&self, id: &MemberId) -> Result<Option<Member>> {
                let row = sqlx::query("SELECT * FROM members WHERE id = $1").bind(id.as_str()).fetch_optional(self.reader()).await?;
                row.as_ref().map(rows::member).transpose()
            }

            async fn set_member_removed(&self, id: &MemberId, removed_at: Option<Millis>) -> Result<bool> {
                let mut tx = self.writer().begin().await?;
                let done = sqlx::query("UPDATE members SET removed_at = $1 WHERE id = $2").bind(removed_at).bind(id.as_str()).execute(&mut *tx).await?;
                if removed_at.is_some() {
                    sqlx::query("DELETE FROM console_sessions WHERE member_id = $1").bind(id.as_str()).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(done.rows_affected() > 0)
            }

            async fn create_console_session(&self, s: &ConsoleSession, token_hash: &str) -> Result<()> {
                sqlx::query(
                    "INSERT INTO console_sessions (id, token_hash, member_id, api_key_id, role, label, client_addr, user_agent, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(s.id.as_str())
                .bind(token_hash)
                .bind(s.member_id.as_ref().map(|m| m.as_str()))
                .bind(s.api_key_id.as_ref().map(|k| k.as_str()))
                .bind(s.role.as_str())
                .bind(&s.label)
                .bind(&s.client_addr)
                .bind(&s.user_agent)
                .bind(s.created_at)
                .bind(s.expires_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn find_console_session(&self, token_hash: &str, now: Millis) -> Result<Option<ConsoleSession>> {
                let row = sqlx::query("SELECT * FROM console_sessions WHERE token_hash = $1 AND expires_at > $2")
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(self.reader())
                    .await?;
                row.as_ref().map(rows::console_session).transpose()
            }

            async fn list_console_sessions(&self, now: Millis, page: &Page) -> Result<Vec<ConsoleSession>> {
                let rows = sqlx::query(
                    "SELECT * FROM console_sessions WHERE expires_at > $1 AND (CAST($2 AS TEXT) IS NULL OR id < $2) ORDER BY id DESC LIMIT $3",
                )
                .bind(now)
                .bind(page.before.as_deref())
                .bind(i64::from(page.limit))
                .fetch_all(self.reader())
                .await?;
                rows.iter().map(rows::console_session).collect()
            }

            async fn end_console_sessions(&self, end: &crate::EndSessions) -> Result<u64> {
                let (column, value) = match end {
                    crate::EndSessions::One(id) => ("id", id.as_str()),
                    crate::EndSessions::Member(id) => ("member_id", id.as_str()),
                    crate::EndSessions::ApiKey(id) => ("api_key_id", id.as_str()),
                    crate::EndSessions::ExpiredBefore(at) => {
                        let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1").bind(*at).execute(self.writer()).await?;
                        return Ok(done.rows_affected());
                    }
                    crate::EndSessions::ConfiguredKey => {
                        let done = sqlx::query("DELETE FROM console_sessions WHERE member_id IS NULL AND api_key_id IS NULL")
                            .execute(self.writer())
                            .await?;
                        return Ok(done.rows_affected());
                    }
                };
                let done =
                    sqlx::query(&format!("DELETE FROM console_sessions WHERE {column} = $1")).bind(value).execute(self.writer()).await?;
                Ok(done.rows_affected())
            }

            async fn create_sign_in_state(&self, state_hash: &str, nonce: &str, verifier_sealed: &str, id: &str, expires_at: Millis) -> Result<()> {
                sqlx::query("INSERT INTO sign_in_states (state_hash, nonce, code_verifier_sealed, id, expires_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(state_hash)
                    .bind(nonce)
                    .bind(verifier_sealed)
                    .bind(id)
                    .bind(expires_at)
                    .execute(self.writer())
                    .await?;
                Ok(())
            }

            async fn take_sign_in_state(&self, state_hash: &str, now: Millis) -> Result<Option<(String, String, String)>> {
                let mut tx = self.writer().begin().await?;
                let row = sqlx::query("SELECT * FROM sign_in_states WHERE state_hash = $1").bind(state_hash).fetch_optional(&mut *tx).await?;
                sqlx::query("DELETE FROM sign_in_states WHERE state_hash = $1 OR expires_at <= $2")
                    .bind(state_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                match row {
                    Some(row) if row.int("expires_at")? > now => {
                        Ok(Some((row.text("nonce")?, row.text("code_verifier_sealed")?, row.text("id")?)))
                    }
                    _ => Ok(None),
                }
            }

            async fn heartbeat(&self, node: &NodeInfo) -> Result<()> {
                sqlx::query(
                    "INSERT INTO nodes (id, role, version, hostname, started_at, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
                )
                .bind(&node.id)
                .bind(&node.role)
                .bind(&node.version)
                .bind(&node.hostname)
                .bind(node.started_at)
                .bind(node.heartbeat_at)
                .execute(self.writer())
                .await?;
                Ok(())
            }

            async fn list_nodes(&self, since: Millis) -> Result<Vec<NodeInfo>> {
                sqlx::query("DELETE FROM nodes WHERE heartbeat_at < $1").bind(since).execute(self.writer()).await?;
                let rows = sqlx::query("SELECT * FROM nodes ORDER BY started_at").fetch_all(self.reader()).await?;
                rows.iter().map(rows::node).collect()
            }

            async fn queue_state(&self, cap: u64) -> Result<crate::QueueState> {
                let mut state = crate::QueueState::default();
                for status in ["pending", "retrying", "delivering", "dead"] {
                    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM (SELECT 1 FROM deliveries WHERE status = $1 LIMIT $2) AS capped")
                        .bind(status)
                        .bind(cap as i64)
                        .fetch_one(self.reader())
                        .await?;
                    state.by_status.push((status, n as u64));
                }
                state.oldest_due_at = sqlx::query_scalar(
                    "SELECT MIN(next_attempt_at) FROM deliveries WHERE status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL",
                )
                .fetch_one(self.reader())
                .await?;
                Ok(state)
            }
        }
    };
}

pub(crate) use impl_console_store;
