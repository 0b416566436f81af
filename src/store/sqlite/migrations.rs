//! Opening the file and bringing its schema up to date.
//!
//! `PRAGMA user_version` is the schema version: the number of [`MIGRATIONS`] applied. Opening
//! runs the missing ones in order, in one transaction with the version update, so a store is
//! never half-migrated. A store of a newer version than this binary knows is refused.
//!
//! Version 0 is also what printbell wrote before versioning: its tables are migration 1's,
//! which creates them only if they are missing, so such a store is recognised as it is.
//!
//! To change the schema, add an entry at the end; never edit one that has shipped. SQLite
//! cannot alter a constraint (e.g. the `state` CHECK): such a migration rebuilds the table
//! (create the new one, copy the rows, drop the old, rename the new, recreate the indexes).

use super::super::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;
use std::sync::Arc;

/// One schema change.
pub(super) struct Migration {
    /// What it changes, for errors.
    pub what: &'static str,
    /// Statements run in the migration's transaction.
    pub sql: &'static str,
}

/// Every schema change, in order: entry `n` (from 1) brings a store from version `n - 1` to `n`.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
        what: "events, deliveries and health tables",
        sql: SCHEMA_1,
    },
    Migration {
        what: "live messages: delivery mode, role and rank, the superseded state, live_messages",
        sql: LIVE_2,
    },
    Migration {
        what: "mention_interval: the summary role, each delivery's ping guard, ping_windows and held_pings",
        sql: PINGS_3,
    },
];

/// The first schema, as printbell created it before versioning. `generation_id` lets a later
/// feature collapse pending updates of one generation; `message_id` (Discord's, from
/// `?wait=true`) lets it edit a posted message.
const SCHEMA_1: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    message_id TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries(destination, state, id);
CREATE INDEX IF NOT EXISTS deliveries_state ON deliveries(state, updated_at);
CREATE TABLE IF NOT EXISTS health (id INTEGER PRIMARY KEY CHECK (id = 1), checked_at INTEGER);
";

/// Live messages (one message per generation, edited): each delivery records its mode (`each`
/// or `live`), its role (the message, or the separate ping of a failure), the body without
/// mentions that edits use, the images done (its rank with the event type), and its slot: the
/// id of its generation's first delivery to the destination, so a generation keeps the place
/// of its first event in the lane whatever update of it is sent. `superseded`
/// is a new state, so the table is rebuilt (SQLite cannot alter a CHECK). `live_messages`
/// holds the posted message of each generation per destination and what it shows.
const LIVE_2: &str = "
CREATE TABLE deliveries_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    message_id TEXT,
    mode TEXT NOT NULL DEFAULT 'each' CHECK (mode IN ('each', 'live')),
    role TEXT NOT NULL DEFAULT 'message' CHECK (role IN ('message', 'ping')),
    quiet_body TEXT,
    images_done INTEGER NOT NULL DEFAULT 0,
    ping_for INTEGER,
    slot INTEGER
);
INSERT INTO deliveries_v2 (id, event_id, event_type, generation_id, destination, kind, body, state,
    attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error, message_id)
SELECT id, event_id, event_type, generation_id, destination, kind, body, state,
    attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error, message_id
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v2 RENAME TO deliveries;
CREATE INDEX deliveries_lane ON deliveries(destination, state, COALESCE(slot, id), id);
CREATE INDEX deliveries_state ON deliveries(state, updated_at);
CREATE INDEX deliveries_generation ON deliveries(destination, generation_id, state);
CREATE TABLE live_messages (
    destination TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    message_ref TEXT,
    shown_type TEXT NOT NULL,
    shown_images INTEGER NOT NULL,
    first_post INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (destination, generation_id)
) WITHOUT ROWID;
CREATE INDEX live_messages_updated ON live_messages(updated_at);
";

/// `mention_interval` (alert storms): a delivery carrying mentions under an interval records
/// who it pings (`ping_key`), the interval (`ping_every`, ms) and how a summary names its
/// generation (`label`); `summary` is a new role, so the table is rebuilt. `ping_windows`: per
/// destination and key, until when pings are held back; `held_pings`: the deliveries that went
/// out without their ping, until a summary names them.
const PINGS_3: &str = "
CREATE TABLE deliveries_v3 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    generation_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'dead', 'superseded')),
    attempts INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    message_id TEXT,
    mode TEXT NOT NULL DEFAULT 'each' CHECK (mode IN ('each', 'live')),
    role TEXT NOT NULL DEFAULT 'message' CHECK (role IN ('message', 'ping', 'summary')),
    quiet_body TEXT,
    images_done INTEGER NOT NULL DEFAULT 0,
    ping_for INTEGER,
    slot INTEGER,
    ping_key TEXT,
    ping_every INTEGER,
    label TEXT
);
INSERT INTO deliveries_v3 (id, event_id, event_type, generation_id, destination, kind, body, state,
    attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error,
    message_id, mode, role, quiet_body, images_done, ping_for, slot)
SELECT id, event_id, event_type, generation_id, destination, kind, body, state,
    attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error,
    message_id, mode, role, quiet_body, images_done, ping_for, slot
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries;
CREATE INDEX deliveries_lane ON deliveries(destination, state, COALESCE(slot, id), id);
CREATE INDEX deliveries_state ON deliveries(state, updated_at);
CREATE INDEX deliveries_generation ON deliveries(destination, generation_id, state);
CREATE TABLE ping_windows (
    destination TEXT NOT NULL,
    ping_key TEXT NOT NULL,
    open_until INTEGER NOT NULL,
    every_ms INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (destination, ping_key)
) WITHOUT ROWID;
CREATE TABLE held_pings (
    delivery_id INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    ping_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    label TEXT NOT NULL,
    held_at INTEGER NOT NULL
);
CREATE INDEX held_pings_key ON held_pings(destination, ping_key, delivery_id);
";

/// A migration that failed; the store stays at the version before it.
#[derive(Debug, thiserror::Error)]
#[error("migration {version} ({what}) failed: {source}")]
struct MigrationFailed {
    version: usize,
    what: &'static str,
    #[source]
    source: rusqlite::Error,
}

/// Opens (creating if needed) a store file with the settings every user of it needs, and
/// migrates it.
///
/// WAL lets the CLI read while the service writes; `synchronous = FULL` makes each commit
/// reach the disk before the 202 is sent, so an acknowledged event survives a power cut, not
/// only a crash. Group commit in the writer thread pays for the fsync.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let location = path.display().to_string();
    let failed = |e: Arc<dyn std::error::Error + Send + Sync>| StoreError::Open {
        location: location.clone(),
        source: e,
    };
    // SQLite's own words ("unable to open database file") say neither which file nor why.
    let sql = |e: rusqlite::Error| match super::access::problem(path) {
        Some(why) => failed(Arc::new(Unwritable(why))),
        None => failed(Arc::new(e)),
    };
    let mut conn = Connection::open(path).map_err(sql)?;
    // A file it may not write, SQLite opens read-only without a word: every event would fail.
    if conn.is_readonly(rusqlite::MAIN_DB).map_err(sql)? {
        let why = super::access::problem(path)
            .unwrap_or_else(|| "SQLite could open it only for reading".into());
        return Err(failed(Arc::new(Unwritable(why))));
    }
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    // Room for every statement the writer repeats, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    match migrate(&mut conn, MIGRATIONS) {
        Ok(()) => Ok(conn),
        Err(Refused::TooNew { found, known }) => Err(StoreError::TooNew {
            location,
            found,
            known,
        }),
        Err(Refused::Sql(e)) => Err(sql(e)),
        Err(Refused::Failed(e)) => Err(failed(Arc::new(e))),
    }
}

/// Why a store cannot be written, as [`super::access::problem`] found it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Unwritable(pub String);

#[derive(Debug)]
enum Refused {
    TooNew { found: i64, known: i64 },
    Sql(rusqlite::Error),
    Failed(MigrationFailed),
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        Refused::Sql(e)
    }
}

fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Applies the migrations `conn` lacks. An up-to-date store is only read (no write lock), so
/// the CLI opens it while `serve` writes.
fn migrate(conn: &mut Connection, migrations: &[Migration]) -> Result<(), Refused> {
    let known = migrations.len() as i64;
    let check = |found: i64| {
        if found > known || found < 0 {
            Err(Refused::TooNew { found, known })
        } else {
            Ok(found)
        }
    };
    if check(version(conn)?)? == known {
        return Ok(());
    }
    // Another process may migrate at the same time: the version counts as read inside the
    // write lock.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = check(version(&tx)?)?;
    for (i, m) in migrations.iter().enumerate().skip(found as usize) {
        let version = i + 1;
        let failed = |source| {
            Refused::Failed(MigrationFailed {
                version,
                what: m.what,
                source,
            })
        };
        tx.execute_batch(m.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(failed)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub fn version_of(conn: &Connection) -> i64 {
        version(conn).expect("user_version")
    }

    #[test]
    fn a_failed_migration_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut conn = Connection::open(dir.path().join("s.db")).expect("open");
        let broken = [
            Migration {
                what: "first",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                what: "second",
                sql: "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);",
            },
        ];
        migrate(&mut conn, &broken[..1]).expect("first");
        let err = match migrate(&mut conn, &broken) {
            Err(Refused::Failed(e)) => e.to_string(),
            other => panic!("expected a failed migration, got {other:?}"),
        };
        assert!(err.starts_with("migration 2 (second) failed: "), "{err}");
        assert_eq!(version_of(&conn), 1);
        let tables: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'b'",
                [],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(
            tables, 0,
            "the failed migration's first statement is undone"
        );
    }
}
