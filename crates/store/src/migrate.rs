//! A small migration runner: numbered SQL files compiled into the binary, applied in order, each in
//! its own transaction, recorded in `schema_migrations`. Applied migrations are never edited; a
//! change is a new file.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[Migration { version: 1, name: "initial", sql: include_str!("../migrations/sqlite/0001_initial.sql") }];
