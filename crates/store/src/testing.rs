//! Support for test suites that run against either store.
//!
//! `SWITCHYARD_TEST_STORE` picks the store: `sqlite` (default) or `postgres`. With PostgreSQL,
//! every call creates a fresh database on the server `SWITCHYARD_TEST_POSTGRES_URL` names
//! (default `postgres://postgres@127.0.0.1:5432/test`), so tests never share state. When that
//! server cannot be reached the test fails and says how to point it at one; it never skips.

use sqlx::Connection;
use std::path::Path;

pub const STORE_VAR: &str = "SWITCHYARD_TEST_STORE";
pub const POSTGRES_VAR: &str = "SWITCHYARD_TEST_POSTGRES_URL";
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Databases made for tests carry this prefix, so a cleanup can find them.
pub const DATABASE_PREFIX: &str = "sy_test_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestStore {
    Sqlite,
    Postgres,
}

/// The store this test run is for.
pub fn selected() -> TestStore {
    match std::env::var(STORE_VAR).as_deref() {
        Ok("postgres") => TestStore::Postgres,
        Ok("sqlite") | Err(_) => TestStore::Sqlite,
        Ok(other) => panic!("{STORE_VAR}={other:?}: expected sqlite or postgres"),
    }
}

/// A database URL for one test: a file in `dir` for SQLite, a new database for PostgreSQL.
pub async fn database_url(dir: &Path) -> String {
    match selected() {
        TestStore::Sqlite => format!("sqlite://{}/switchyard.db", dir.display()),
        TestStore::Postgres => fresh_postgres_database().await,
    }
}

/// Creates an empty PostgreSQL database on the test server and returns its URL.
pub async fn fresh_postgres_database() -> String {
    let base = std::env::var(POSTGRES_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES.to_owned());
    fresh_database_on(&base).await
}

/// Creates an empty database on the server `base` names and returns its URL.
pub async fn fresh_database_on(base: &str) -> String {
    let mut conn = match sqlx::PgConnection::connect(base).await {
        Ok(c) => c,
        Err(e) => panic!(
            "these tests need PostgreSQL and could not reach it at {base} ({e}). Start a server, or set \
             {POSTGRES_VAR}=postgres://USER@HOST:PORT/DB to one where USER may CREATE DATABASE."
        ),
    };
    let name = format!("{DATABASE_PREFIX}{}", ulid::Ulid::new().to_string().to_lowercase());
    sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut conn).await.expect("CREATE DATABASE for a test");
    let mut url = url_with_database(base, &name);
    url.push_str(if url.contains('?') { "&" } else { "?" });
    url.push_str("sslmode=disable");
    url
}

fn url_with_database(base: &str, name: &str) -> String {
    let (head, query) = base.split_once('?').map(|(h, q)| (h, Some(q))).unwrap_or((base, None));
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = head[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(head.len());
    let mut url = format!("{}/{name}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// A pending event of type `e` with an empty payload, received at 0: the smallest event a test
/// can queue or claim.
pub fn event(workspace: &switchyard_core::ids::WorkspaceId) -> switchyard_core::model::Event {
    switchyard_core::model::Event {
        id: switchyard_core::ids::EventId::generate(),
        workspace_id: workspace.clone(),
        event: "e".into(),
        resource: None,
        resource_id: None,
        payload: "{}".into(),
        occurred_at: None,
        received_at: 0,
        status: switchyard_core::model::EventStatus::Pending,
        test: false,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_name_is_swapped_and_options_kept() {
        assert_eq!(super::url_with_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(super::url_with_database("postgres://u@h/test?a=b", "x"), "postgres://u@h/x?a=b");
        assert_eq!(super::url_with_database("postgres://u@h", "x"), "postgres://u@h/x");
    }
}
