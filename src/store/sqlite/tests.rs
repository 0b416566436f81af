use super::*;
use crate::store::{self, Backend};

fn synchronous(c: &Connection) -> rusqlite::Result<i64> {
    c.pragma_query_value(None, "synchronous", |r| r.get(0))
}

#[tokio::test]
async fn only_relaxed_transactions_skip_the_fsync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteQueue::open(&dir.path().join("s.db")).expect("open");
    const NORMAL: i64 = 1;
    const FULL: i64 = 2;
    let full = store.run_once("test", Durability::Full, synchronous).await;
    assert_eq!(full.expect("run"), FULL);
    let relaxed = store
        .run_once("test", Durability::Relaxed, synchronous)
        .await;
    assert_eq!(relaxed.expect("run"), NORMAL);
    // Back to FULL as soon as a job needs it.
    let full = store.run_once("test", Durability::Full, synchronous).await;
    assert_eq!(full.expect("run"), FULL);
}

/// The schema as printbell creates it, with rows written by hand.
const UNVERSIONED_SCHEMA: &str = "
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

const T: i64 = 1_700_000_000_000;

/// A store holding one event with a pending (never tried), a
/// dead (404, tried twice) and a done (Discord message id) delivery.
fn unversioned_store(path: &Path) {
    let conn = Connection::open(path).expect("open");
    conn.pragma_update(None, "journal_mode", "WAL")
        .expect("wal");
    conn.execute_batch(UNVERSIONED_SCHEMA).expect("schema");
    conn.execute_batch(&format!(
        "INSERT INTO events (id, received_at) VALUES ('evt_old', {T});
         INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state,
             attempts, received_at, started_at, next_attempt_at, updated_at)
         VALUES ('evt_old', 'print.created', 'gen1', 'team', 'slack', '{{\"text\":\"a\"}}', 'pending',
             0, {T}, 0, {T}, {T});
         INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state,
             attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error)
         VALUES ('evt_old', 'print.failed', 'gen1', 'oncall', 'discord', '{{}}', 'dead',
             2, {T}, {T}, {T}, {T}, 404, 'Unknown Webhook');
         INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state,
             attempts, received_at, started_at, next_attempt_at, updated_at, last_status, message_id)
         VALUES ('evt_old', 'print.completed', 'gen1', 'oncall', 'discord', '{{}}', 'done',
             1, {T}, {T}, {T}, {T}, 200, '1234');"
    ))
    .expect("rows");
}

fn all() -> store::Filter {
    store::Filter {
        state: None,
        destination: None,
        limit: 100,
    }
}

#[tokio::test]
async fn a_row_this_binary_cannot_read_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("printbell.db");
    unversioned_store(&path);
    Connection::open(&path)
        .expect("open")
        .execute("UPDATE deliveries SET kind = 'telegram' WHERE id = 2", [])
        .expect("update");
    let store = store::open(&Backend::Sqlite { path }).await.expect("open");
    let err = store.list(all()).await.expect_err("unreadable");
    assert_eq!(
        err.to_string(),
        "delivery 2 in the store has kind \"telegram\", which this printbell does not know"
    );
    // Other destinations' lanes are not affected.
    assert_eq!(store.heads("team", 64).await.expect("heads").len(), 1);
}

#[tokio::test]
async fn backend_errors_keep_their_source_and_name_the_operation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("printbell.db");
    let store = store::open(&Backend::Sqlite { path: path.clone() })
        .await
        .expect("open");
    Connection::open(&path)
        .expect("open")
        .execute_batch("DROP TABLE health")
        .expect("drop");
    let err = store.readiness(T).await.expect_err("no table");
    assert!(
        err.to_string()
            .starts_with("the store could not record a health check: "),
        "{err}"
    );
    let source = std::error::Error::source(&err).expect("source");
    assert!(source.to_string().contains("health"), "{source}");
}
