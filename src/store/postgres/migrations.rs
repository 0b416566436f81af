//! The PostgreSQL schema and its versions.
//!
//! `schema_version` (one row) holds the number of [`MIGRATIONS`] applied. Every start runs the
//! missing ones in order, in one transaction with the version update, under a transaction
//! advisory lock: replicas that start together take turns, the first migrates and the others
//! find the schema up to date. A database of a newer version than this binary knows is
//! refused. To change the schema, add an entry at the end; never edit one that has shipped.
//!
//! The tables are SQLite's (see `sqlite/migrations.rs`), in PostgreSQL's types: times are
//! `BIGINT` Unix milliseconds, names are `TEXT`, and the lane's indexes cover only pending
//! deliveries (done ones pile up until the retention purges them).

use super::super::StoreError;
use super::{open_error, pg, PgError, PgFailure};
use deadpool_postgres::Object;
use std::sync::Arc;

/// One schema change.
pub(super) struct Migration {
    /// What it changes, for errors.
    pub what: &'static str,
    /// Statements run in the migration's transaction.
    pub sql: &'static str,
}

/// Every schema change, in order: entry `n` (from 1) brings a database from version `n - 1`
/// to `n`.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "events, deliveries, live_messages and health tables",
        sql: SCHEMA_1,
    },
    Migration {
        what: "leases: one sending replica per destination",
        sql: LEASES_2,
    },
    Migration {
        what: "mention_interval: the summary role, each delivery's ping guard, ping_windows and held_pings",
        sql: PINGS_3,
    },
];

/// The advisory lock key migrations hold (any constant; advisory locks are per database).
const MIGRATION_LOCK: i64 = 0x7072_696e_7462_0001;

/// The schema of SQLite's version 2, which the backend started from. `slot`: as SQLite's, the
/// id of a live delivery's generation's first delivery to the destination, so the generation
/// keeps the lane place of its first event.
const SCHEMA_1: &str = "
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL
);
CREATE INDEX events_received ON events (received_at);
CREATE TABLE deliveries (
    id BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    message_id TEXT,
    mode TEXT NOT NULL DEFAULT 'each' CHECK (mode IN ('each', 'live')),
    role TEXT NOT NULL DEFAULT 'message' CHECK (role IN ('message', 'ping')),
    quiet_body TEXT,
    images_done BIGINT NOT NULL DEFAULT 0,
    ping_for BIGINT,
    slot BIGINT
);
CREATE INDEX deliveries_lane ON deliveries (destination, (COALESCE(slot, id)), id)
    WHERE state = 'pending';
CREATE INDEX deliveries_generation ON deliveries (destination, generation_id, id)
    WHERE state = 'pending';
CREATE INDEX deliveries_state ON deliveries (state, updated_at);
CREATE TABLE live_messages (
    destination TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    message_ref TEXT,
    shown_type TEXT NOT NULL,
    shown_images BIGINT NOT NULL,
    first_post BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (destination, generation_id)
);
CREATE INDEX live_messages_updated ON live_messages (updated_at);
CREATE TABLE health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at BIGINT);
";

/// One row per destination that a replica sends, or sent: who holds it and until when (the
/// database's clock). An expired row is anybody's; a replica that stops deletes its own.
const LEASES_2: &str = "
CREATE TABLE leases (
    destination TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
";

/// `mention_interval` (alert storms), as SQLite's version 3: a delivery's ping guard (who it
/// pings, the interval in ms, how a summary names its generation), the `summary` role, and
/// the intervals and held-back pings per destination and key.
const PINGS_3: &str = "
ALTER TABLE deliveries ADD COLUMN ping_key TEXT;
ALTER TABLE deliveries ADD COLUMN ping_every BIGINT;
ALTER TABLE deliveries ADD COLUMN label TEXT;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_role_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_role_check
    CHECK (role IN ('message', 'ping', 'summary'));
CREATE TABLE ping_windows (
    destination TEXT NOT NULL,
    ping_key TEXT NOT NULL,
    open_until BIGINT NOT NULL,
    every_ms BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (destination, ping_key)
);
CREATE TABLE held_pings (
    delivery_id BIGINT PRIMARY KEY,
    destination TEXT NOT NULL,
    ping_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    label TEXT NOT NULL,
    held_at BIGINT NOT NULL
);
CREATE INDEX held_pings_key ON held_pings (destination, ping_key, delivery_id);
";

/// A migration that failed; the database stays at the version before it.
#[derive(Debug, thiserror::Error)]
#[error("migration {version} ({what}) failed: {source}")]
struct MigrationFailed {
    version: usize,
    what: &'static str,
    #[source]
    source: PgFailure,
}

/// Brings the database up to date (see the module docs). `location` is the redacted URL.
pub(super) async fn migrate(
    client: &mut Object,
    migrations: &[Migration],
    location: &str,
) -> Result<(), StoreError> {
    let pg = |e: PgError| open_error(location, pg(e));
    let tx = client.transaction().await.map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg)?;
    // Asked first, so an existing table is not "created" again (a NOTICE in the log).
    let exists: bool = tx
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg)?;
    if !exists {
        tx.batch_execute(
            "CREATE TABLE schema_version (id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL);
             INSERT INTO schema_version (id, version) VALUES (1, 0);",
        )
        .await
        .map_err(pg)?;
    }
    let found: i64 = tx
        .query_one("SELECT version FROM schema_version WHERE id = 1", &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(pg)?;
    let known = migrations.len() as i64;
    if found > known || found < 0 {
        return Err(StoreError::TooNew {
            location: location.to_string(),
            found,
            known,
        });
    }
    for (i, m) in migrations.iter().enumerate().skip(found as usize) {
        let version = i + 1;
        let failed = |source| {
            open_error(
                location,
                Arc::new(MigrationFailed {
                    version,
                    what: m.what,
                    source: PgFailure(source),
                }),
            )
        };
        tx.batch_execute(m.sql).await.map_err(failed)?;
        tx.execute(
            "UPDATE schema_version SET version = $1 WHERE id = 1",
            &[&(version as i64)],
        )
        .await
        .map_err(failed)?;
    }
    tx.commit().await.map_err(pg)
}
