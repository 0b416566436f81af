//! Every direct access the tests and the benchmark make to printbell's store file, behind a
//! few functions: reading the deliveries, seeding a queue for the CLI tests, holding the
//! write lock as another process would, and the benchmark's durability check.
//!
//! printbell's store API (`printbell::store`) is named only here, so when it changes only
//! this file has to follow.

use printbell::store::schema;
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// One stored delivery, as printbell defines it.
pub use printbell::store::Delivery;

/// Wall-clock milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn open(path: &Path) -> Connection {
    schema::open(path).expect("open store")
}

/// Every delivery in the store at `path`, oldest first (read through a separate connection,
/// as the CLI does).
pub fn deliveries(path: &Path) -> Vec<Delivery> {
    let conn = open(path);
    let mut all = schema::list(&conn, None, None, 100_000).expect("list");
    all.reverse();
    all
}

/// How many event ids the store remembers (for duplicate detection).
pub fn event_count(path: &Path) -> i64 {
    open(path)
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

/// A delivery to seed with [`Seeder::accept`].
pub struct NewDelivery {
    pub event_type: String,
    pub generation_id: String,
    pub destination: String,
    pub kind: String,
    pub body: String,
}

/// Writes a queue directly into a store file, as if the service had received the events.
pub struct Seeder {
    conn: Connection,
}

impl Seeder {
    /// Opens (and creates, if needed) the store at `path`.
    pub fn open(path: &Path) -> Seeder {
        Seeder { conn: open(path) }
    }

    /// Stores event `event_id` with `deliveries` (pending), received at `at` (Unix ms).
    /// Returns their ids, or None if the event id is already stored (nothing is stored).
    pub fn accept(&self, event_id: &str, deliveries: &[NewDelivery], at: i64) -> Option<Vec<i64>> {
        let rows: Vec<schema::NewDelivery> = deliveries
            .iter()
            .map(|d| schema::NewDelivery {
                event_type: d.event_type.clone(),
                generation_id: d.generation_id.clone(),
                destination: d.destination.clone(),
                kind: d.kind.clone(),
                body: d.body.clone(),
            })
            .collect();
        match schema::accept(&self.conn, event_id, &rows, at).expect("accept") {
            schema::Accepted::New(ids) => Some(ids),
            schema::Accepted::Duplicate => None,
        }
    }

    /// Marks delivery `id` dead at `at` after a counted attempt.
    pub fn mark_dead(&self, id: i64, status: Option<u16>, error: &str, at: i64) {
        schema::mark_dead(&self.conn, id, status, error, true, at).expect("dead");
    }

    /// Marks delivery `id` done at `at`.
    pub fn mark_done(&self, id: i64, status: u16, at: i64) {
        schema::mark_done(&self.conn, id, status, None, at).expect("done");
    }
}

/// The store's write lock, held through another connection (as another process would) until
/// [`WriteLock::release`] or drop: printbell's writes wait, then fail with "busy".
pub struct WriteLock {
    conn: Option<Connection>,
}

impl WriteLock {
    /// Takes the lock (waiting up to the busy timeout if printbell is writing right now).
    pub fn take(path: &Path) -> WriteLock {
        let conn = open(path);
        conn.execute_batch("BEGIN EXCLUSIVE; UPDATE deliveries SET updated_at = updated_at;")
            .expect("lock");
        WriteLock { conn: Some(conn) }
    }

    /// Ends the transaction (it changed nothing), so printbell can write again.
    pub fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            conn.execute_batch("COMMIT").expect("unlock");
        }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
}

/// What a store holds after a crash, for the benchmark's durability check.
pub struct Stored {
    /// Every stored event id.
    pub events: HashSet<String>,
    /// The number of deliveries per event id.
    pub deliveries: HashMap<String, i64>,
}

/// Reads the event ids and the deliveries per event of the store at `path` (plain
/// connection, no schema set-up: the file is read as the crashed process left it).
pub fn stored(path: &Path) -> Stored {
    let conn = Connection::open(path).expect("open the store");
    let mut stmt = conn
        .prepare("SELECT event_id, COUNT(*) FROM deliveries GROUP BY event_id")
        .expect("query");
    let deliveries: HashMap<String, i64> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("rows")
        .filter_map(Result::ok)
        .collect();
    let mut stmt = conn.prepare("SELECT id FROM events").expect("query");
    let events: HashSet<String> = stmt
        .query_map([], |r| r.get(0))
        .expect("rows")
        .filter_map(Result::ok)
        .collect();
    Stored { events, deliveries }
}
