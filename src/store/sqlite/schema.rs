//! Opening the file with the settings every user of it needs, and its schema.

use super::super::StoreError;
use rusqlite::Connection;
use std::path::Path;
use std::sync::Arc;

/// The schema. `generation_id` lets a later feature collapse pending updates of one
/// generation; `message_id` (Discord's, from `?wait=true`) lets it edit a posted message.
const SCHEMA: &str = "
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

/// Opens (creating if needed) a store file with the settings every user of it needs.
///
/// WAL lets the CLI read while the service writes; `synchronous = FULL` makes each commit
/// reach the disk before the 202 is sent, so an acknowledged event survives a power cut, not
/// only a crash. Group commit in the writer thread pays for the fsync.
pub(super) fn open(path: &Path) -> Result<Connection, StoreError> {
    let sql = |e: rusqlite::Error| StoreError::Open {
        location: path.display().to_string(),
        source: Arc::new(e),
    };
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    // Room for every statement the writer repeats, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.execute_batch(SCHEMA).map_err(sql)?;
    Ok(conn)
}
