//! The durable queue: an embedded SQLite database, the single source of truth for deliveries.
//!
//! One writer thread owns the connection. Callers send it jobs; it runs every job waiting at
//! that moment inside one transaction and replies only after the commit (group commit), so a
//! burst of events costs one fsync, and nothing is acknowledged before it is on disk.
//! A job that fails is rolled back alone (savepoint); a failed commit fails every job in it.
//!
//! Only what was acknowledged to someone must survive a power cut. A transaction holding only
//! [`Durability::Relaxed`] jobs (a lane's "done" marks and reads) commits without the fsync
//! (`synchronous = NORMAL`): a process crash still loses nothing (WAL), a power cut can lose the
//! last marks, so those messages are sent again (at least once). The next durable commit's
//! fsync covers them anyway. Events are always committed with `synchronous = FULL`.

pub mod schema;

pub use schema::{now_ms, Accepted, Delivery, NewDelivery, State};

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// Jobs waiting for the writer beyond this are refused (`StoreError::Busy`, a 503 to senders)
/// instead of queueing without bound.
const QUEUE_CAPACITY: usize = 4096;
/// Jobs run in one transaction at most.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the store is busy; try again shortly")]
    Busy,
    #[error("the store is closed")]
    Closed,
    #[error("store error: {0}")]
    Sql(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sql(e.to_string())
    }
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;
type JobFn = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
/// Where a job's result goes; taken once, by the completion or the abort.
type Reply<T> = Arc<Mutex<Option<oneshot::Sender<Result<T, StoreError>>>>>;

/// A unit of work for the writer: `run` does it inside the transaction and returns whether it
/// succeeded plus how to reply once the commit is known; `abort` replies when it cannot run.
struct Job {
    run: JobFn,
    abort: Completion,
    durability: Durability,
}

/// Whether a job's commit must reach the disk before its caller hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before replying (`synchronous = FULL`): what a 202 promises.
    Full,
    /// May wait for the next fsync: state that is safe to redo after a power cut.
    Relaxed,
}

/// Handle to the writer thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: SyncSender<Job>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens the store file and starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = schema::open(path).map_err(|e| {
            StoreError::Sql(format!("cannot open the store {}: {e}", path.display()))
        })?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        std::thread::Builder::new()
            .name("printbell-store".into())
            .spawn(move || writer(conn, rx))
            .map_err(|e| StoreError::Sql(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            jobs: tx,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's next transaction and returns its result after the commit
    /// reached the disk.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.run_with(Durability::Full, f).await
    }

    /// Runs `f` in the writer's next transaction and returns its result after the commit.
    pub async fn run_with<T, F>(&self, durability: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let reply = Arc::new(Mutex::new(Some(tx)));
        let send = |reply: &Reply<T>, r| {
            if let Some(tx) = reply.lock().ok().and_then(|mut g| g.take()) {
                let _ = tx.send(r);
            }
        };
        let reply2 = reply.clone();
        let job = Job {
            run: Box::new(move |conn| match f(conn) {
                Ok(v) => (
                    true,
                    Box::new(move |commit: Result<(), StoreError>| send(&reply, commit.map(|_| v))),
                ),
                Err(e) => (
                    false,
                    Box::new(move |_| send(&reply, Err(StoreError::from(e)))),
                ),
            }),
            abort: Box::new(move |r: Result<(), StoreError>| {
                send(&reply2, r.and(Err(StoreError::Closed)))
            }),
            durability,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like [`Store::run`], but waits for room instead of failing when the writer is busy;
    /// for the delivery workers, which must not drop state updates.
    pub async fn run_patiently<T, F>(&self, durability: Durability, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + Clone + 'static,
    {
        loop {
            match self.run_with(durability, f.clone()).await {
                Err(StoreError::Busy) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    pub async fn accept(
        &self,
        event_id: String,
        deliveries: Vec<NewDelivery>,
    ) -> Result<Accepted, StoreError> {
        self.run(move |c| schema::accept(c, &event_id, &deliveries, now_ms()))
            .await
    }
}

fn writer(conn: Connection, rx: Receiver<Job>) {
    // As `schema::open` left it.
    let mut synchronous = Durability::Full;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let wanted = if batch.iter().any(|j| j.durability == Durability::Full) {
            Durability::Full
        } else {
            Durability::Relaxed
        };
        if wanted != synchronous {
            let level = match wanted {
                Durability::Full => "FULL",
                Durability::Relaxed => "NORMAL",
            };
            match conn.pragma_update(None, "synchronous", level) {
                Ok(()) => synchronous = wanted,
                // Committing durable jobs without the fsync would break the 202's promise.
                Err(e) if wanted == Durability::Full => {
                    let err = StoreError::from(e);
                    for job in batch {
                        (job.abort)(Err(err.clone()));
                    }
                    continue;
                }
                // Relaxed jobs may as well be committed durably.
                Err(_) => {}
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let err = StoreError::from(e);
            for job in batch {
                (job.abort)(Err(err.clone()));
            }
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        for job in batch {
            let savepoint = exec(&conn, "SAVEPOINT job");
            let (ok, done) = (job.run)(&conn);
            if savepoint.is_ok() {
                if !ok {
                    let _ = exec(&conn, "ROLLBACK TO job");
                }
                let _ = exec(&conn, "RELEASE job");
            }
            completions.push(done);
        }
        let result = exec(&conn, "COMMIT").map_err(StoreError::from);
        if result.is_err() {
            let _ = exec(&conn, "ROLLBACK");
        }
        for done in completions {
            done(result.clone());
        }
    }
}

/// Runs one statement from the connection's statement cache: the writer runs the same few
/// transaction statements thousands of times a second, and `execute_batch` would parse them
/// every time.
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(c: &Connection) -> rusqlite::Result<i64> {
        c.pragma_query_value(None, "synchronous", |r| r.get(0))
    }

    #[tokio::test]
    async fn only_relaxed_transactions_skip_the_fsync() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("s.db")).expect("open");
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        assert_eq!(store.run(synchronous).await.expect("run"), FULL);
        let relaxed = store.run_with(Durability::Relaxed, synchronous).await;
        assert_eq!(relaxed.expect("run"), NORMAL);
        // Back to FULL as soon as a job needs it.
        assert_eq!(store.run(synchronous).await.expect("run"), FULL);
    }
}
