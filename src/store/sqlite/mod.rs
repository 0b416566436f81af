//! The SQLite backend: one file, the single source of truth for deliveries.
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
//!
//! The writer's queue is bounded: the receiver's and readiness' jobs fail with
//! [`StoreError::Busy`] when it is full, every other operation waits for room. The CLI opens the
//! same file with a writer of its own; WAL and the busy timeout let it work while `serve` runs.

mod access;
mod health;
mod lock;
mod migrations;
mod queries;

pub(super) use access::problem as access_problem;
pub(super) use lock::FileLock;

use super::row::{parse_all as parse, DeliveryRow, HeldRow, LiveRow};
use super::{
    Accepted, Delivery, DeliveryId, Filter, HeldPings, LiveMessage, NewDelivery, PingGuard, Purged,
    Queue, QueueDepth, Reschedule, StoreError,
};
use crate::domain::EventType;
use async_trait::async_trait;
use health::{is_write_failure, WriteHealth};
use rusqlite::Connection;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// Jobs waiting for the writer beyond this are refused (`StoreError::Busy`, a 503 to senders)
/// instead of queueing without bound.
const QUEUE_CAPACITY: usize = 4096;
/// Jobs run in one transaction at most.
const MAX_BATCH: usize = 512;

/// Why the writer could not commit a job: shared by every job of the transaction.
type SqlError = Arc<rusqlite::Error>;
type Completion = Box<dyn FnOnce(Result<(), SqlError>) + Send>;
type JobFn = Box<dyn FnOnce(&Connection) -> (bool, Completion) + Send>;
/// Where a job's result goes; taken once, by the completion or the abort.
type Reply<T> = Arc<Mutex<Option<oneshot::Sender<Result<T, StoreError>>>>>;

/// A unit of work for the writer: `run` does it inside the transaction and returns whether it
/// succeeded plus how to reply once the commit is known; `abort` replies when it cannot run.
struct Job {
    run: JobFn,
    abort: Box<dyn FnOnce(SqlError) + Send>,
    durability: Durability,
    /// Readiness' probe: its success alone does not prove the store takes events.
    probe: bool,
}

/// Whether a job's commit must reach the disk before its caller hears of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// fsync before replying (`synchronous = FULL`): what a 202 promises.
    Full,
    /// May wait for the next fsync: state that is safe to redo after a power cut.
    Relaxed,
}

/// Whether a job may wait for room in the writer's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// Refused with `Busy` at once: a sender can try again, a lane's update must not be lost.
    FailFast,
    Wait,
}

fn backend_error(op: &'static str, e: impl Into<SqlError>) -> StoreError {
    StoreError::Backend {
        op,
        source: e.into(),
    }
}

/// Handle to the writer thread.
pub(super) struct SqliteQueue {
    jobs: SyncSender<Job>,
    health: Arc<WriteHealth>,
}

impl SqliteQueue {
    /// Opens (creating and migrating) the file and starts its writer thread.
    pub(super) fn open(path: &Path) -> Result<SqliteQueue, StoreError> {
        let conn = migrations::open(path)?;
        let (tx, rx) = sync_channel(QUEUE_CAPACITY);
        let health = Arc::new(WriteHealth::default());
        let writer_health = health.clone();
        std::thread::Builder::new()
            .name("printbell-store".into())
            .spawn(move || writer(conn, rx, &writer_health))
            .map_err(|e| StoreError::Open {
                location: path.display().to_string(),
                source: Arc::new(e),
            })?;
        Ok(SqliteQueue { jobs: tx, health })
    }

    /// Runs `f` in the writer's next transaction and returns its result after the commit.
    /// `op` names the operation in errors.
    async fn run<T, F>(
        &self,
        op: &'static str,
        durability: Durability,
        patience: Patience,
        f: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + Clone + 'static,
    {
        loop {
            match self.run_once(op, durability, false, f.clone()).await {
                Err(StoreError::Busy) if patience == Patience::Wait => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                other => return other,
            }
        }
    }

    async fn run_once<T, F>(
        &self,
        op: &'static str,
        durability: Durability,
        probe: bool,
        f: F,
    ) -> Result<T, StoreError>
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
        let health = self.health.clone();
        let job = Job {
            run: Box::new(move |conn| match f(conn) {
                Ok(v) => (
                    true,
                    Box::new(move |commit: Result<(), SqlError>| {
                        send(&reply, commit.map(|_| v).map_err(|e| backend_error(op, e)))
                    }),
                ),
                Err(e) => {
                    if is_write_failure(&e) {
                        health.failed(super::now_ms(), op, &e);
                    }
                    (
                        false,
                        Box::new(move |_| send(&reply, Err(backend_error(op, e)))),
                    )
                }
            }),
            abort: Box::new(move |e: SqlError| send(&reply2, Err(backend_error(op, e)))),
            durability,
            probe,
        };
        self.jobs.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => StoreError::Busy,
            TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn accept(
        &self,
        event_id: &str,
        deliveries: Vec<NewDelivery>,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        let event_id = event_id.to_string();
        // Fails fast; one try, so the bodies move into the job without a copy.
        self.run_once("store the event", Durability::Full, false, move |c| {
            queries::accept(c, &event_id, &deliveries, now)
        })
        .await
    }

    async fn heads(&self, destination: &str, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let destination = destination.to_string();
        let rows = self
            .run(
                "read the queue",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::heads(c, &destination, limit),
            )
            .await?;
        parse(rows)
    }

    async fn mark_done(
        &self,
        id: DeliveryId,
        status: u16,
        message_id: Option<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "mark a delivery done",
            Durability::Relaxed,
            Patience::Wait,
            move |c| queries::mark_done(c, id, status, message_id.as_deref(), now),
        )
        .await
    }

    async fn mark_retry(
        &self,
        id: DeliveryId,
        next: Reschedule,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "schedule a retry",
            Durability::Full,
            Patience::Wait,
            move |c| queries::mark_retry(c, id, &next, now),
        )
        .await
    }

    async fn defer(&self, id: DeliveryId, next: Reschedule, now: i64) -> Result<(), StoreError> {
        self.run(
            "postpone a rate-limited delivery",
            Durability::Full,
            Patience::Wait,
            move |c| queries::defer(c, id, &next, now),
        )
        .await
    }

    async fn mark_dead(
        &self,
        id: DeliveryId,
        status: Option<u16>,
        error: String,
        counted: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "mark a delivery dead",
            Durability::Full,
            Patience::Wait,
            move |c| queries::mark_dead(c, id, status, &error, counted, now),
        )
        .await
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        self.run(
            "list the destinations with pending deliveries",
            Durability::Relaxed,
            Patience::Wait,
            queries::pending_destinations,
        )
        .await
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        self.run(
            "count the pending deliveries",
            Durability::Relaxed,
            Patience::FailFast,
            queries::queue_depths,
        )
        .await
    }

    async fn list(&self, filter: Filter) -> Result<Vec<Delivery>, StoreError> {
        let rows = self
            .run(
                "list deliveries",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::list(c, &filter),
            )
            .await?;
        parse(rows)
    }

    async fn retry(&self, id: DeliveryId, now: i64) -> Result<bool, StoreError> {
        self.run(
            "retry the delivery",
            Durability::Full,
            Patience::Wait,
            move |c| queries::retry(c, id, now),
        )
        .await
    }

    async fn retry_all_dead(&self, now: i64) -> Result<u64, StoreError> {
        self.run(
            "retry the dead deliveries",
            Durability::Full,
            Patience::Wait,
            move |c| queries::retry_all_dead(c, now),
        )
        .await
    }

    async fn purge(&self, before: i64, include_dead: bool, now: i64) -> Result<Purged, StoreError> {
        self.run(
            "purge old records",
            Durability::Full,
            Patience::Wait,
            move |c| queries::purge(c, before, include_dead, now),
        )
        .await
    }

    async fn readiness(&self, now: i64) -> Result<(), StoreError> {
        // The probe's one row can fit where an event does not (a full disk): a failed write
        // of real work counts first.
        if let Some(f) = self.health.current(now) {
            return Err(StoreError::WritesFailing {
                secs: (now - f.at).max(0) / 1000,
                error: f.error,
            });
        }
        self.run_once("record a health check", Durability::Full, true, move |c| {
            queries::touch(c, now)
        })
        .await
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let row = self
            .run(
                "read a delivery",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::delivery(c, id),
            )
            .await?;
        row.map(DeliveryRow::parse).transpose()
    }

    async fn live_message(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Option<LiveMessage>, StoreError> {
        let (destination, generation_id) = (destination.to_string(), generation_id.to_string());
        let row = self
            .run(
                "read a live message",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::live_message(c, &destination, &generation_id),
            )
            .await?;
        row.map(LiveRow::parse).transpose()
    }

    async fn waiting_updates(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let (destination, generation_id) = (destination.to_string(), generation_id.to_string());
        let rows = self
            .run(
                "read a generation's waiting updates",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::waiting_updates(c, &destination, &generation_id),
            )
            .await?;
        parse(rows)
    }

    async fn supersede(
        &self,
        ids: Vec<DeliveryId>,
        why: String,
        now: i64,
    ) -> Result<(), StoreError> {
        // A lost mark is planned and superseded again: no fsync needed.
        self.run(
            "mark updates superseded",
            Durability::Relaxed,
            Patience::Wait,
            move |c| queries::supersede(c, &ids, &why, now),
        )
        .await
    }

    async fn mark_shown(
        &self,
        id: DeliveryId,
        status: u16,
        message_ref: Option<String>,
        first_post: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.run(
            "record a live message",
            Durability::Full,
            Patience::Wait,
            move |c| queries::mark_shown(c, id, status, message_ref.as_deref(), first_post, now),
        )
        .await
    }

    async fn lease(
        &self,
        _destination: &str,
        _owner: &str,
        _ttl: Duration,
    ) -> Result<bool, StoreError> {
        // One `serve` per file: its lanes are the only senders (the CLI never sends).
        Ok(true)
    }

    async fn release(&self, _destination: &str, _owner: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn forget_message(
        &self,
        destination: &str,
        generation_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let (destination, generation_id) = (destination.to_string(), generation_id.to_string());
        self.run(
            "forget a deleted live message",
            Durability::Full,
            Patience::Wait,
            move |c| queries::forget_message(c, &destination, &generation_id, now),
        )
        .await
    }

    async fn ping_window(&self, destination: &str, key: &str) -> Result<Option<i64>, StoreError> {
        let (destination, key) = (destination.to_string(), key.to_string());
        self.run(
            "read a ping interval",
            Durability::Relaxed,
            Patience::Wait,
            move |c| queries::ping_window(c, &destination, &key),
        )
        .await
    }

    async fn open_ping_window(
        &self,
        destination: &str,
        key: &str,
        until: i64,
        every_ms: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        let (destination, key) = (destination.to_string(), key.to_string());
        self.run(
            "start a ping interval",
            Durability::Full,
            Patience::Wait,
            move |c| queries::open_ping_window(c, &destination, &key, until, every_ms, now),
        )
        .await
    }

    async fn hold_ping(
        &self,
        destination: &str,
        id: DeliveryId,
        event_type: EventType,
        guard: &PingGuard,
        now: i64,
    ) -> Result<(), StoreError> {
        let (destination, guard) = (destination.to_string(), guard.clone());
        self.run(
            "hold a ping back",
            Durability::Full,
            Patience::Wait,
            move |c| queries::hold_ping(c, &destination, id, event_type, &guard, now),
        )
        .await
    }

    async fn held_pings(&self, destination: &str) -> Result<Vec<HeldPings>, StoreError> {
        let destination = destination.to_string();
        let rows = self
            .run(
                "read the held-back pings",
                Durability::Relaxed,
                Patience::Wait,
                move |c| queries::held_pings(c, &destination),
            )
            .await?;
        rows.into_iter().map(HeldRow::parse).collect()
    }

    async fn queue_summary(
        &self,
        key: &str,
        summary: NewDelivery,
        until: i64,
        now: i64,
    ) -> Result<DeliveryId, StoreError> {
        let key = key.to_string();
        self.run(
            "store a ping summary",
            Durability::Full,
            Patience::Wait,
            move |c| queries::queue_summary(c, &key, &summary, until, now),
        )
        .await
    }
}

fn writer(conn: Connection, rx: Receiver<Job>, health: &WriteHealth) {
    // A failure of the transaction itself (not of one job) fails every job in it.
    let failed_all = |batch: Vec<Job>, what: &str, e: rusqlite::Error| {
        if is_write_failure(&e) {
            health.failed(super::now_ms(), what, &e);
        }
        let err = Arc::new(e);
        for job in batch {
            (job.abort)(err.clone());
        }
    };
    // As `migrations::open` left it.
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
                    failed_all(batch, "make the commit durable", e);
                    continue;
                }
                // Relaxed jobs may as well be committed durably.
                Err(_) => {}
            }
        }
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            failed_all(batch, "begin a transaction", e);
            continue;
        }
        let mut completions = Vec::with_capacity(batch.len());
        // Rows changed by jobs other than readiness' probe: a commit of those proves writes.
        let mut changed = 0;
        for job in batch {
            let savepoint = exec(&conn, "SAVEPOINT job");
            let before = conn.total_changes();
            let (ok, done) = (job.run)(&conn);
            if ok && !job.probe {
                changed += conn.total_changes() - before;
            }
            if savepoint.is_ok() {
                if !ok {
                    let _ = exec(&conn, "ROLLBACK TO job");
                }
                let _ = exec(&conn, "RELEASE job");
            }
            completions.push(done);
        }
        let result = exec(&conn, "COMMIT").map_err(Arc::new);
        match &result {
            Ok(()) if changed > 0 => health.succeeded(),
            Ok(()) => {}
            Err(e) => {
                if is_write_failure(e) {
                    health.failed(super::now_ms(), "commit", e);
                }
                let _ = exec(&conn, "ROLLBACK");
            }
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
mod tests;
