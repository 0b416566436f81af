//! SQL for the durable queue. Plain functions on a connection, so the writer thread of the
//! running service and the `printbell deliveries` commands use exactly the same statements.

use rusqlite::{params, Connection, Row};

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
pub fn open(path: &std::path::Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Room for every statement the writer repeats, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// How long an event id is remembered, so a redelivered event is answered `duplicate`.
pub const DEDUPE_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Done,
    Dead,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Done => "done",
            State::Dead => "dead",
        }
    }
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "pending" => Some(State::Pending),
            "done" => Some(State::Done),
            "dead" => Some(State::Dead),
            _ => None,
        }
    }
}

/// A delivery to be stored: one rendered message for one destination.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub event_type: String,
    pub generation_id: String,
    pub destination: String,
    pub kind: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub generation_id: String,
    pub destination: String,
    pub kind: String,
    pub body: String,
    pub state: String,
    pub attempts: u32,
    pub received_at: i64,
    /// When the current series of attempts started, 0 before its first attempt (`deliveries
    /// retry` resets it); `max_age` counts from here, so time spent queued behind another
    /// delivery does not count.
    pub started_at: i64,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
}

const COLUMNS: &str = "id, event_id, event_type, generation_id, destination, kind, body, state, \
     attempts, received_at, started_at, next_attempt_at, updated_at, last_status, last_error, message_id";

fn row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        generation_id: r.get(3)?,
        destination: r.get(4)?,
        kind: r.get(5)?,
        body: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        received_at: r.get(9)?,
        started_at: r.get(10)?,
        next_attempt_at: r.get(11)?,
        updated_at: r.get(12)?,
        last_status: r.get(13)?,
        last_error: r.get(14)?,
        message_id: r.get(15)?,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New event: the ids of its stored deliveries.
    New(Vec<i64>),
    /// The event id was seen before (within the retention period); nothing was stored.
    Duplicate,
}

/// Records an event id and its deliveries, or reports a duplicate.
pub fn accept(
    conn: &Connection,
    event_id: &str,
    deliveries: &[NewDelivery],
    now: i64,
) -> rusqlite::Result<Accepted> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO events (id, received_at) VALUES (?1, ?2)")?
        .execute(params![event_id, now])?;
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state, \
         attempts, received_at, started_at, next_attempt_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, 0, ?7, ?7)",
    )?;
    let mut ids = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        stmt.execute(params![
            event_id,
            d.event_type,
            d.generation_id,
            d.destination,
            d.kind,
            d.body,
            now
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(Accepted::New(ids))
}

/// The oldest pending deliveries of a destination, at most `limit`, oldest first: the head of
/// its lane and what queues behind it, due or not.
pub fn heads(
    conn: &Connection,
    destination: &str,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE destination = ?1 AND state = 'pending' ORDER BY id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![destination, limit as i64], row)?;
    rows.collect()
}

pub fn mark_done(
    conn: &Connection,
    id: i64,
    status: u16,
    message_id: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_status = ?2, \
         last_error = NULL, message_id = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, status, message_id, now])?;
    Ok(())
}

/// A failed attempt that will be tried again at `next_at`; `started`: when the series of
/// attempts began.
#[allow(clippy::too_many_arguments)]
pub fn mark_retry(
    conn: &Connection,
    id: i64,
    status: Option<u16>,
    error: &str,
    started: i64,
    next_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3, \
         next_attempt_at = ?4, updated_at = ?5, started_at = ?6 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, status, error, next_at, now, started])?;
    Ok(())
}

/// Postpones a delivery without counting an attempt (rate limited).
#[allow(clippy::too_many_arguments)]
pub fn defer(
    conn: &Connection,
    id: i64,
    status: u16,
    note: &str,
    started: i64,
    next_at: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET last_status = ?2, last_error = ?3, next_attempt_at = ?4, updated_at = ?5, \
         started_at = ?6 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![id, status, note, next_at, now, started])?;
    Ok(())
}

/// `counted`: whether this was an attempt on the wire (false for a delivery that could not be
/// sent at all, e.g. its destination was removed from the config).
pub fn mark_dead(
    conn: &Connection,
    id: i64,
    status: Option<u16>,
    error: &str,
    counted: bool,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'dead', attempts = attempts + ?5, last_status = ?2, \
         last_error = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id, status, error, now, counted as i64])?;
    Ok(())
}

/// Destinations that have pending deliveries.
pub fn pending_destinations(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Per destination: pending count and the oldest pending `received_at`.
pub fn queue_depths(conn: &Connection) -> rusqlite::Result<Vec<(String, i64, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT destination, COUNT(*), MIN(received_at) FROM deliveries WHERE state = 'pending' GROUP BY destination",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    rows.collect()
}

pub fn list(
    conn: &Connection,
    state: Option<State>,
    destination: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<Delivery>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR destination = ?2) \
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![state.map(State::as_str), destination, limit as i64],
        row,
    )?;
    rows.collect()
}

/// Puts a dead (or done) delivery back in its lane as a fresh series of attempts.
/// Returns whether a delivery with that id existed.
pub fn retry(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, next_attempt_at = ?2, \
         updated_at = ?2 WHERE id = ?1",
        params![id, now],
    )?;
    Ok(n > 0)
}

pub fn retry_all_dead(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, next_attempt_at = ?1, \
         updated_at = ?1 WHERE state = 'dead'",
        params![now],
    )
}

/// Deletes done (and, with `include_dead`, dead) deliveries last updated before `before`, and
/// event ids first seen before it. Pending deliveries are never purged.
/// Returns (deliveries, events) deleted.
pub fn purge(
    conn: &Connection,
    before: i64,
    include_dead: bool,
) -> rusqlite::Result<(usize, usize)> {
    let d = conn.execute(
        "DELETE FROM deliveries WHERE (state = 'done' OR (?2 AND state = 'dead')) AND updated_at < ?1",
        params![before, include_dead],
    )?;
    // Event ids are what makes a redelivered webhook a duplicate: they are kept for the whole
    // window SPEC promises, however short the retention or `--older-than`.
    let events_before = before.min(now_ms() - DEDUPE_WINDOW_MS);
    let e = conn.execute(
        "DELETE FROM events WHERE received_at < ?1",
        params![events_before],
    )?;
    Ok((d, e))
}

/// Proves the store accepts writes (readiness).
pub fn touch(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO health (id, checked_at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET checked_at = ?1")?
        .execute(params![now])?;
    Ok(())
}
