//! A small migration runner: numbered SQL files compiled into the binary, applied in order, each in
//! its own transaction, recorded in `schema_migrations`. Applied migrations are never edited; a
//! change is a new file.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const SQLITE: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/sqlite/0001_initial.sql") },
    Migration { version: 2, name: "connector_limits", sql: include_str!("../migrations/sqlite/0002_connector_limits.sql") },
    Migration { version: 3, name: "oauth", sql: include_str!("../migrations/sqlite/0003_oauth.sql") },
    Migration { version: 4, name: "lease_recoveries", sql: include_str!("../migrations/sqlite/0004_lease_recoveries.sql") },
    Migration { version: 5, name: "embed", sql: include_str!("../migrations/sqlite/0005_embed.sql") },
    Migration { version: 6, name: "operators", sql: include_str!("../migrations/sqlite/0006_operators.sql") },
    Migration { version: 7, name: "console", sql: include_str!("../migrations/sqlite/0007_console.sql") },
    Migration { version: 8, name: "limits", sql: include_str!("../migrations/sqlite/0008_limits.sql") },
    Migration { version: 9, name: "rates", sql: include_str!("../migrations/sqlite/0009_rates.sql") },
    Migration { version: 10, name: "cancel", sql: include_str!("../migrations/sqlite/0010_cancel.sql") },
    Migration { version: 11, name: "pause", sql: include_str!("../migrations/sqlite/0011_pause.sql") },
    Migration { version: 12, name: "circuit", sql: include_str!("../migrations/sqlite/0012_circuit.sql") },
    Migration { version: 13, name: "notifications", sql: include_str!("../migrations/sqlite/0013_notifications.sql") },
    Migration { version: 14, name: "labels", sql: include_str!("../migrations/sqlite/0014_labels.sql") },
    Migration { version: 15, name: "secrets", sql: include_str!("../migrations/sqlite/0015_secrets.sql") },
    Migration { version: 16, name: "blueprints", sql: include_str!("../migrations/sqlite/0016_blueprints.sql") },
    Migration { version: 17, name: "blueprint_resources", sql: include_str!("../migrations/sqlite/0017_blueprint_resources.sql") },
];

pub const POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "initial", sql: include_str!("../migrations/postgres/0001_initial.sql") },
    Migration { version: 2, name: "queue_vacuum", sql: include_str!("../migrations/postgres/0002_queue_vacuum.sql") },
    Migration { version: 3, name: "connector_limits", sql: include_str!("../migrations/postgres/0003_connector_limits.sql") },
    Migration { version: 4, name: "oauth", sql: include_str!("../migrations/postgres/0004_oauth.sql") },
    Migration { version: 5, name: "in_flight_counter", sql: include_str!("../migrations/postgres/0005_in_flight_counter.sql") },
    Migration { version: 6, name: "id_collation", sql: include_str!("../migrations/postgres/0006_id_collation.sql") },
    Migration { version: 7, name: "lease_recoveries", sql: include_str!("../migrations/postgres/0007_lease_recoveries.sql") },
    Migration { version: 8, name: "embed", sql: include_str!("../migrations/postgres/0008_embed.sql") },
    Migration { version: 9, name: "operators", sql: include_str!("../migrations/postgres/0009_operators.sql") },
    Migration { version: 10, name: "console", sql: include_str!("../migrations/postgres/0010_console.sql") },
    Migration { version: 11, name: "limits", sql: include_str!("../migrations/postgres/0011_limits.sql") },
    Migration { version: 12, name: "rates", sql: include_str!("../migrations/postgres/0012_rates.sql") },
    Migration { version: 13, name: "cancel", sql: include_str!("../migrations/postgres/0013_cancel.sql") },
    Migration { version: 14, name: "pause", sql: include_str!("../migrations/postgres/0014_pause.sql") },
    Migration { version: 15, name: "circuit", sql: include_str!("../migrations/postgres/0015_circuit.sql") },
    Migration { version: 16, name: "notifications", sql: include_str!("../migrations/postgres/0016_notifications.sql") },
    Migration { version: 17, name: "freed_slots", sql: include_str!("../migrations/postgres/0017_freed_slots.sql") },
    Migration { version: 18, name: "labels", sql: include_str!("../migrations/postgres/0018_labels.sql") },
    Migration { version: 19, name: "secrets", sql: include_str!("../migrations/postgres/0019_secrets.sql") },
    Migration { version: 20, name: "blueprints", sql: include_str!("../migrations/postgres/0020_blueprints.sql") },
    Migration { version: 21, name: "blueprint_resources", sql: include_str!("../migrations/postgres/0021_blueprint_resources.sql") },
];

/// The statements of a migration script: whole-line `--` comments dropped, split on `;`
/// (statements hold no semicolons of their own).
pub fn statements(script: &str) -> Vec<String> {
    let code: String = script.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
    code.split(';').filter(|s| !s.trim().is_empty()).map(str::to_owned).collect()
}
