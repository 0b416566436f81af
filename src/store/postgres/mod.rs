//! The PostgreSQL backend: one database that several printbell processes (replicas) share.
//!
//! A pool of connections (deadpool) serves every operation; no transaction stays open longer
//! than its statements, so none spans an HTTP call. The receiver's events go through one
//! batcher task per process: every `accept` waiting at that moment is stored in one
//! transaction (group commit, as SQLite's writer does), and each caller hears of its event only
//! after the commit. Across replicas, [`queries::accept`] keeps delivery ids in commit order
//! (an advisory lock), and the events' primary key decides duplicates.
//!
//! Durability is the server's: a commit returns once PostgreSQL has it on disk (with the
//! default `synchronous_commit = on`), which is what the 202 promises.
//!
//! Failing fast ([`StoreError::Busy`]) is for the receiver and readiness, as with SQLite: the
//! batcher's queue is bounded, and their wait for a pooled connection is short. Every other
//! operation waits longer. Any operation that gets no answer within [`OP_TIMEOUT`] fails, so a
//! lost database pauses the lanes (they retry) and answers senders 503 instead of hanging.
//! When the database is back, new connections are made as needed.

mod migrations;
mod queries;
mod tls;
mod url;

pub use url::PostgresUrl;

use super::row::{parse_all, DeliveryRow, HeldRow, LiveRow};
use super::{
    Accepted, Delivery, DeliveryId, Filter, HeldPings, LiveMessage, NewDelivery, PingGuard, Purged,
    Queue, QueueDepth, Reschedule, StoreError,
};
use crate::domain::EventType;
use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, Timeouts,
};
use queries::{DoneMark, NewEvent};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub(super) type PgError = tokio_postgres::Error;

/// Connections per process. Sizing: a replica uses at most this many; PostgreSQL's default
/// `max_connections` (100) leaves room for several replicas and the CLI.
const POOL_SIZE: usize = 8;
/// Events waiting for the batcher beyond this are refused (`Busy`, a 503 to senders).
const QUEUE_CAPACITY: usize = 4096;
/// Events stored in one transaction at most.
const MAX_BATCH: usize = 256;
/// How long the receiver and readiness wait for a free connection before `Busy`.
const FAIL_FAST_WAIT: Duration = Duration::from_secs(2);
/// How long any operation may take, connection included.
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// A new connection, or the check of a returned one, that takes longer fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn open_error(location: &str, source: super::BackendError) -> StoreError {
    StoreError::Open {
        location: location.to_string(),
        source,
    }
}

/// A driver error as a [`StoreError`]'s source. The driver's own `Display` stops at the kind
/// ("db error", "error connecting to server"); this one goes on with its causes (the server's
/// message, the OS error), so a log line says what happened. `source` is the driver's error.
#[derive(Debug)]
pub(super) struct PgFailure(pub PgError);

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = std::error::Error::source(&self.0);
        while let Some(c) = cause {
            write!(f, ": {c}")?;
            cause = c.source();
        }
        Ok(())
    }
}

impl std::error::Error for PgFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

pub(super) fn pg(e: PgError) -> super::BackendError {
    Arc::new(PgFailure(e))
}

fn backend_error(op: &'static str, e: PgError) -> StoreError {
    StoreError::Backend { op, source: pg(e) }
}

/// The database gave no answer in time.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the database within {} s", .0.as_secs())]
struct NoAnswer(Duration);

/// Runs one operation's statements, bounded by [`OP_TIMEOUT`].
async fn timed<T>(
    op: &'static str,
    work: impl Future<Output = Result<T, PgError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, work).await {
        Ok(r) => r.map_err(|e| backend_error(op, e)),
        Err(_) => Err(StoreError::Backend {
            op,
            source: Arc::new(NoAnswer(OP_TIMEOUT)),
        }),
    }
}

/// Whether an operation may wait for a free connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Patience {
    /// The receiver's and readiness' operations: `Busy` soon, the sender tries again.
    FailFast,
    /// A lane's or the CLI's: waits (bounded by [`OP_TIMEOUT`]).
    Wait,
}

/// A pooled connection for `op`.
async fn client(pool: &Pool, op: &'static str, patience: Patience) -> Result<Object, StoreError> {
    let timeouts = Timeouts {
        wait: Some(match patience {
            Patience::FailFast => FAIL_FAST_WAIT,
            Patience::Wait => OP_TIMEOUT,
        }),
        create: Some(CONNECT_TIMEOUT),
        recycle: Some(CONNECT_TIMEOUT),
    };
    pool.timeout_get(&timeouts).await.map_err(|e| match e {
        // Every connection is in use: no room, as SQLite's full queue.
        PoolError::Timeout(deadpool_postgres::TimeoutType::Wait) => StoreError::Busy,
        PoolError::Closed => StoreError::Closed,
        PoolError::Backend(e) => backend_error(op, e),
        other => StoreError::Backend {
            op,
            source: Arc::new(other),
        },
    })
}

/// An event waiting for the batcher, and where its answer goes.
struct AcceptJob {
    event: NewEvent,
    reply: oneshot::Sender<Result<Accepted, StoreError>>,
}

/// Handle to the pool and the accept batcher; the batcher ends when this is dropped.
pub(super) struct PostgresQueue {
    pool: Pool,
    accepts: mpsc::Sender<AcceptJob>,
    marks: mpsc::Sender<MarkJob>,
}

impl PostgresQueue {
    /// Connects, brings the schema up to date and starts the accept batcher.
    pub(super) async fn open(url: &PostgresUrl) -> Result<PostgresQueue, StoreError> {
        let location = url.redacted();
        let tls = tls::connector().map_err(|e| open_error(&location, Arc::new(e)))?;
        let manager = Manager::from_config(
            url.config(),
            tls,
            ManagerConfig {
                // A connection the server closed (a restart) is noticed here and replaced; one
                // that died silently fails its next statement, which the caller retries.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| open_error(&location, Arc::new(e)))?;
        let mut first = client(&pool, "connect", Patience::Wait)
            .await
            .map_err(|e| match e {
                StoreError::Backend { source, .. } => open_error(&location, source),
                other => other,
            })?;
        migrations::migrate(&mut first, migrations::MIGRATIONS, &location).await?;
        drop(first);
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(accept_batches(pool.clone(), rx));
        let (marks, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(mark_batches(pool.clone(), rx));
        Ok(PostgresQueue {
            pool,
            accepts: tx,
            marks,
        })
    }

    async fn client(&self, op: &'static str, patience: Patience) -> Result<Object, StoreError> {
        client(&self.pool, op, patience).await
    }
}

/// The batcher: stores every event waiting at that moment in one transaction.
async fn accept_batches(pool: Pool, mut jobs: mpsc::Receiver<AcceptJob>) {
    let mut batch: Vec<AcceptJob> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) =
            batch.drain(..).map(|j| (j.event, j.reply)).unzip();
        let answers = store_events(&pool, &events).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// A "done" mark waiting for the mark batcher, and where its answer goes.
type MarkJob = (DoneMark, oneshot::Sender<Result<(), StoreError>>);

/// The mark batcher: every lane's "done" marks waiting at that moment in one statement. A
/// lane waits for its marks before it reads its queue again, so batching changes no order.
async fn mark_batches(pool: Pool, mut jobs: mpsc::Receiver<MarkJob>) {
    const OP: &str = "mark a delivery done";
    let mut batch: Vec<MarkJob> = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (marks, replies): (Vec<DoneMark>, Vec<_>) = batch.drain(..).unzip();
        let result = match client(&pool, OP, Patience::Wait).await {
            Ok(mut c) => timed(OP, queries::marks_done(&mut c, &marks)).await,
            Err(e) => Err(e),
        };
        // A failed batch fails every mark in it; each lane tries its own again.
        for reply in replies {
            let _ = reply.send(result.clone());
        }
    }
}

/// Stores a batch; one answer per event. A batch that fails as a whole is stored again event
/// by event, so one bad event (or a lost race) fails only itself.
async fn store_events(pool: &Pool, events: &[NewEvent]) -> Vec<Result<Accepted, StoreError>> {
    const OP: &str = "store the event";
    let mut c = match client(pool, OP, Patience::FailFast).await {
        Ok(c) => c,
        Err(e) => return vec![Err(e); events.len()],
    };
    match timed(OP, queries::accept(&mut c, events)).await {
        Ok(answers) => answers.into_iter().map(Ok).collect(),
        Err(e) if events.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::debug!(events = events.len(), error = %e, "storing a batch of events failed; storing them one by one");
            let mut answers = Vec::with_capacity(events.len());
            for event in events {
                let one = timed(OP, queries::accept(&mut c, std::slice::from_ref(event))).await;
                answers.push(one.map(|mut a| a.remove(0)));
            }
            answers
        }
    }
}

#[async_trait]
impl Queue for PostgresQueue {
    async fn accept(
        &self,
        event_id: &str,
        deliveries: Vec<NewDelivery>,
        now: i64,
    ) -> Result<Accepted, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = AcceptJob {
            event: NewEvent {
                event_id: event_id.to_string(),
                deliveries,
                received_at: now,
            },
            reply,
        };
        self.accepts.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => StoreError::Busy,
            mpsc::error::TrySendError::Closed(_) => StoreError::Closed,
        })?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn heads(&self, destination: &str, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        const OP: &str = "read the queue";
        let c = self.client(OP, Patience::Wait).await?;
        parse_all(timed(OP, queries::heads(&c, destination, limit)).await?)
    }

    async fn mark_done(
        &self,
        id: DeliveryId,
        status: u16,
        message_id: Option<String>,
        now: i64,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        let mark = DoneMark {
            id,
            status,
            message_id,
            now,
        };
        self.marks
            .send((mark, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn mark_retry(
        &self,
        id: DeliveryId,
        next: Reschedule,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "schedule a retry";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::mark_retry(&c, id, &next, now)).await
    }

    async fn defer(&self, id: DeliveryId, next: Reschedule, now: i64) -> Result<(), StoreError> {
        const OP: &str = "postpone a rate-limited delivery";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::defer(&c, id, &next, now)).await
    }

    async fn mark_dead(
        &self,
        id: DeliveryId,
        status: Option<u16>,
        error: String,
        counted: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "mark a delivery dead";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::mark_dead(&c, id, status, &error, counted, now)).await
    }

    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError> {
        const OP: &str = "list the destinations with pending deliveries";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::pending_destinations(&c)).await
    }

    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        const OP: &str = "count the pending deliveries";
        let c = self.client(OP, Patience::FailFast).await?;
        timed(OP, queries::queue_depths(&c)).await
    }

    async fn list(&self, filter: Filter) -> Result<Vec<Delivery>, StoreError> {
        const OP: &str = "list deliveries";
        let c = self.client(OP, Patience::Wait).await?;
        parse_all(timed(OP, queries::list(&c, &filter)).await?)
    }

    async fn retry(&self, id: DeliveryId, now: i64) -> Result<bool, StoreError> {
        const OP: &str = "retry the delivery";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::retry(&c, id, now)).await
    }

    async fn retry_all_dead(&self, now: i64) -> Result<u64, StoreError> {
        const OP: &str = "retry the dead deliveries";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::retry_all_dead(&c, now)).await
    }

    async fn purge(&self, before: i64, include_dead: bool, now: i64) -> Result<Purged, StoreError> {
        const OP: &str = "purge old records";
        let mut c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::purge(&mut c, before, include_dead, now)).await
    }

    async fn readiness(&self, now: i64) -> Result<(), StoreError> {
        const OP: &str = "record a health check";
        let c = self.client(OP, Patience::FailFast).await?;
        timed(OP, queries::touch(&c, now)).await
    }

    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        const OP: &str = "read a delivery";
        let c = self.client(OP, Patience::Wait).await?;
        let row = timed(OP, queries::delivery(&c, id)).await?;
        row.map(DeliveryRow::parse).transpose()
    }

    async fn live_message(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Option<LiveMessage>, StoreError> {
        const OP: &str = "read a live message";
        let c = self.client(OP, Patience::Wait).await?;
        let row = timed(OP, queries::live_message(&c, destination, generation_id)).await?;
        row.map(LiveRow::parse).transpose()
    }

    async fn waiting_updates(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        const OP: &str = "read a generation's waiting updates";
        let c = self.client(OP, Patience::Wait).await?;
        parse_all(timed(OP, queries::waiting_updates(&c, destination, generation_id)).await?)
    }

    async fn supersede(
        &self,
        ids: Vec<DeliveryId>,
        why: String,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "mark updates superseded";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::supersede(&c, &ids, &why, now)).await
    }

    async fn mark_shown(
        &self,
        id: DeliveryId,
        status: u16,
        message_ref: Option<String>,
        first_post: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "record a live message";
        let mut c = self.client(OP, Patience::Wait).await?;
        timed(
            OP,
            queries::mark_shown(&mut c, id, status, message_ref.as_deref(), first_post, now),
        )
        .await
    }

    async fn lease(
        &self,
        destination: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        const OP: &str = "take a destination's lease";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::lease(&c, destination, owner, ttl)).await
    }

    async fn release(&self, destination: &str, owner: &str) -> Result<(), StoreError> {
        const OP: &str = "release a destination's lease";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::release(&c, destination, owner)).await
    }

    async fn forget_message(
        &self,
        destination: &str,
        generation_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "forget a deleted live message";
        let c = self.client(OP, Patience::Wait).await?;
        timed(
            OP,
            queries::forget_message(&c, destination, generation_id, now),
        )
        .await
    }

    async fn ping_window(&self, destination: &str, key: &str) -> Result<Option<i64>, StoreError> {
        const OP: &str = "read a ping interval";
        let c = self.client(OP, Patience::Wait).await?;
        timed(OP, queries::ping_window(&c, destination, key)).await
    }

    async fn open_ping_window(
        &self,
        destination: &str,
        key: &str,
        until: i64,
        every_ms: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        const OP: &str = "start a ping interval";
        let c = self.client(OP, Patience::Wait).await?;
        timed(
            OP,
            queries::open_ping_window(&c, destination, key, until, every_ms, now),
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
        const OP: &str = "hold a ping back";
        let c = self.client(OP, Patience::Wait).await?;
        timed(
            OP,
            queries::hold_ping(&c, destination, id, event_type, guard, now),
        )
        .await
    }

    async fn held_pings(&self, destination: &str) -> Result<Vec<HeldPings>, StoreError> {
        const OP: &str = "read the held-back pings";
        let c = self.client(OP, Patience::Wait).await?;
        let rows = timed(OP, queries::held_pings(&c, destination)).await?;
        rows.into_iter().map(HeldRow::parse).collect()
    }

    async fn queue_summary(
        &self,
        key: &str,
        summary: NewDelivery,
        until: i64,
        now: i64,
    ) -> Result<DeliveryId, StoreError> {
        const OP: &str = "store a ping summary";
        let mut c = self.client(OP, Patience::Wait).await?;
        timed(
            OP,
            queries::queue_summary(&mut c, key, &summary, until, now),
        )
        .await
    }
}
