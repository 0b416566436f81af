//! Every direct access the tests and the benchmark make to printbell's store file, behind a
//! few functions: reading the deliveries, seeding a queue for the CLI tests, holding the
//! write lock as another process would, and the benchmark's durability check.
//!
//! printbell's store API (`printbell::store`) is named only here, so when it changes only
//! this file has to follow.

use printbell::domain::{EventType, Kind};
use printbell::store::{self as pstore, Accepted, Backend, DeliveryId, Filter, Store};
use rusqlite::Connection;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// One stored delivery, with plain values (state and kind as their names), so tests compare
/// against what `deliveries list` shows.
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
    pub next_attempt_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub mode: String,
    pub role: String,
}

impl From<pstore::Delivery> for Delivery {
    fn from(d: pstore::Delivery) -> Delivery {
        Delivery {
            id: d.id.0,
            event_id: d.event_id,
            event_type: d.event_type.as_str().to_string(),
            generation_id: d.generation_id,
            destination: d.destination,
            kind: d.kind.as_str().to_string(),
            body: d.body,
            state: d.state.as_str().to_string(),
            attempts: d.attempts,
            received_at: d.received_at,
            next_attempt_at: d.next_attempt_at,
            last_status: d.last_status.map(i64::from),
            last_error: d.last_error,
            message_id: d.message_id,
            mode: d.mode.as_str().to_string(),
            role: d.role.as_str().to_string(),
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, the store's time unit.
pub fn now_ms() -> i64 {
    pstore::now_ms()
}

/// Runs a store call to completion from sync code, also inside an async test (on a thread of
/// its own, with its own runtime).
fn block_on<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("store thread")
}

async fn open(path: &Path) -> Store {
    let backend = Backend::Sqlite {
        path: path.to_path_buf(),
    };
    pstore::open(&backend).await.expect("open store")
}

/// Every delivery in the store at `path`, oldest first (through the store's own API, as the
/// CLI reads it).
pub fn deliveries(path: &Path) -> Vec<Delivery> {
    let path = path.to_path_buf();
    block_on(async move {
        let store = open(&path).await;
        let filter = Filter {
            state: None,
            destination: None,
            limit: 100_000,
        };
        let mut all: Vec<Delivery> = store
            .list(filter)
            .await
            .expect("list")
            .into_iter()
            .map(Delivery::from)
            .collect();
        all.reverse();
        all
    })
}

/// A plain connection to the store file, with the busy timeout printbell uses.
fn connect(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("open store");
    conn.busy_timeout(Duration::from_secs(5))
        .expect("busy timeout");
    conn
}

/// How many event ids the store remembers (for duplicate detection).
pub fn event_count(path: &Path) -> i64 {
    connect(path)
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .expect("count")
}

/// A delivery to seed with [`Seeder::accept`] (an `each`-mode message).
pub struct NewDelivery {
    pub event_type: String,
    pub generation_id: String,
    pub destination: String,
    pub kind: String,
    pub body: String,
}

/// Writes a queue into a store file through printbell's store API, as if the service had
/// received the events.
pub struct Seeder {
    path: std::path::PathBuf,
}

impl Seeder {
    /// Opens (and creates, if needed) the store at `path`.
    pub fn open(path: &Path) -> Seeder {
        let p = path.to_path_buf();
        block_on(async move {
            open(&p).await;
        });
        Seeder {
            path: path.to_path_buf(),
        }
    }

    fn with<T: Send + 'static, F>(&self, f: impl FnOnce(Store) -> F + Send + 'static) -> T
    where
        F: Future<Output = T> + Send,
    {
        let path = self.path.clone();
        block_on(async move { f(open(&path).await).await })
    }

    /// Stores event `event_id` with `deliveries` (pending), received at `at` (Unix ms).
    /// Returns their ids, or None if the event id is already stored (nothing is stored).
    pub fn accept(&self, event_id: &str, deliveries: &[NewDelivery], at: i64) -> Option<Vec<i64>> {
        let rows: Vec<pstore::NewDelivery> = deliveries
            .iter()
            .map(|d| {
                pstore::NewDelivery::each(
                    EventType::parse(&d.event_type).expect("event type"),
                    &d.generation_id,
                    &d.destination,
                    Kind::parse(&d.kind).expect("kind"),
                    d.body.clone(),
                )
            })
            .collect();
        let event_id = event_id.to_string();
        let accepted = self.with(move |s| async move { s.accept(&event_id, rows, at).await });
        match accepted.expect("accept") {
            Accepted::New(ids) => Some(ids.into_iter().map(|i| i.0).collect()),
            Accepted::Duplicate => None,
        }
    }

    /// Marks delivery `id` dead at `at` after a counted attempt.
    pub fn mark_dead(&self, id: i64, status: Option<u16>, error: &str, at: i64) {
        let error = error.to_string();
        self.with(
            move |s| async move { s.mark_dead(DeliveryId(id), status, error, true, at).await },
        )
        .expect("dead");
    }

    /// Marks delivery `id` done at `at`.
    pub fn mark_done(&self, id: i64, status: u16, at: i64) {
        self.with(move |s| async move { s.mark_done(DeliveryId(id), status, None, at).await })
            .expect("done");
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
        let conn = connect(path);
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
