//! Schema migrations, kept in `migrations/` and applied on start: each once, in order, in one
//! transaction with its version recorded, so collectors starting together apply it once.
use tokio_postgres::Client;

use crate::PgError;

/// (version, name, SQL), oldest first. A new migration is a new file and a new line here.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "log", include_str!("../migrations/0001_log.sql")),
    (
        2,
        "export_cursors",
        include_str!("../migrations/0002_export_cursors.sql"),
    ),
    (3, "pruned", include_str!("../migrations/0003_pruned.sql")),
    (
        4,
        "outcomes",
        include_str!("../migrations/0004_outcomes.sql"),
    ),
    (
        5,
        "batch_ids",
        include_str!("../migrations/0005_batch_ids.sql"),
    ),
];

/// Applies what the database lacks; refuses a database from a newer collector.
pub(crate) async fn migrate(client: &mut Client) -> Result<(), PgError> {
    let create = "CREATE TABLE IF NOT EXISTS schema_migrations (
        version INT PRIMARY KEY,
        name TEXT NOT NULL,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    // Two collectors creating it at the same instant: one of them fails; the table exists.
    if !exists && client.batch_execute(create).await.is_err() {
        client.batch_execute(create).await?;
    }
    let tx = client.transaction().await?;
    // PostgreSQL-only: the others serialize migrations their own way.
    tx.batch_execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
        .await?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(&found) = applied.iter().max()
        && found > known
    {
        return Err(PgError::SchemaTooNew { found, known });
    }
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tracing::info!(version, name, "applying schema migration");
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
