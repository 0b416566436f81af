//! The durable queue between the receiver and the delivery lanes, behind one trait.
//!
//! [`Queue`] is every operation the service and the CLI do on the store, with typed arguments
//! and results; [`Store`] is a cheap-to-clone handle to the backend that [`open`] chose from
//! the config at run time. One folder per backend: `sqlite/` (a file, one writer thread with
//! group commit) is the only one today.
//!
//! What every backend promises:
//! - `accept` stores an event id and all of its deliveries in one transaction, durably, before
//!   it returns; a known event id stores nothing ([`Accepted::Duplicate`]).
//! - The receiver's and readiness' writes ([`Queue::accept`], [`Queue::readiness`]) fail fast
//!   with [`StoreError::Busy`] when the backend has no room (a 503 to senders). Every other
//!   operation waits for room instead: a lane must not drop a state update.
//! - Only what was acknowledged to someone must survive a power cut: "done" marks and reads may
//!   skip the fsync (a lost mark is a resend), everything else is durable when it returns.
//! - Rows come back parsed: a value the binary does not know is an error naming the row, never a
//!   silently wrong [`Delivery`].
//!
//! Times are Unix milliseconds ([`now_ms`]), passed in by the caller.

mod sqlite;

use crate::domain::{EventType, Kind};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// How long an event id is remembered, so a redelivered event is answered `duplicate`.
pub const DEDUPE_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A delivery's id: the order in which deliveries were stored (a lane sends its destination's
/// in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(pub i64);

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a delivery stands. A new state is a variant here, its name in `as_str`, and a
/// migration of each backend that stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    /// Waiting in its lane (for its turn, its due time or the platform's limits).
    Pending,
    /// Given up on: `printbell deliveries retry` sends it again.
    Dead,
    /// Posted and answered 2xx.
    Done,
}

impl DeliveryState {
    /// In the order `deliveries list --state` names them.
    pub const ALL: [DeliveryState; 3] = [
        DeliveryState::Pending,
        DeliveryState::Dead,
        DeliveryState::Done,
    ];

    /// The stored and command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Dead => "dead",
            DeliveryState::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryState> {
        DeliveryState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery to be stored: one rendered message for one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Only known event types are routed, so only they have deliveries.
    pub event_type: EventType,
    pub generation_id: String,
    pub destination: String,
    pub kind: Kind,
    /// The final body, posted byte for byte.
    pub body: String,
}

/// A stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: String,
    pub event_type: EventType,
    pub generation_id: String,
    pub destination: String,
    pub kind: Kind,
    pub body: String,
    pub state: DeliveryState,
    /// Attempts on the wire in the current series (rate limits do not count).
    pub attempts: u32,
    pub received_at: i64,
    /// When the current series of attempts started, `None` before its first attempt
    /// (`deliveries retry` resets it); `max_age` counts from here, so time spent queued behind
    /// another delivery does not count.
    pub started_at: Option<i64>,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    /// The platform's last HTTP status, if an answer came.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Discord's message id (from `?wait=true`) once posted.
    pub message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// New event: the ids of its stored deliveries, in the order given.
    New(Vec<DeliveryId>),
    /// The event id was seen before (within the dedupe window); nothing was stored.
    Duplicate,
}

/// A pending delivery's next try: after a failed attempt ([`Queue::mark_retry`]) or a rate
/// limit ([`Queue::defer`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reschedule {
    /// The platform's status, if it answered.
    pub status: Option<u16>,
    /// What went wrong, or why it waits.
    pub error: String,
    /// When the series of attempts began (kept from the first attempt).
    pub started_at: i64,
    pub next_attempt_at: i64,
}

/// One destination's backlog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub destination: String,
    pub pending: u64,
    /// The oldest pending delivery's `received_at`.
    pub oldest_received_at: i64,
}

/// Which deliveries [`Queue::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub state: Option<DeliveryState>,
    pub destination: Option<String>,
    pub limit: usize,
}

/// What [`Queue::purge`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub deliveries: u64,
    pub events: u64,
}

/// A backend's own error, kept as the source of a [`StoreError`].
pub type BackendError = Arc<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No room right now; the operation was not done.
    #[error("the store is busy; try again shortly")]
    Busy,
    #[error("the store is closed")]
    Closed,
    #[error("cannot open the store {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: BackendError,
    },
    #[error(
        "cannot open the store {location}: its schema version is {found}, newer than the {known} \
         this printbell knows; run the printbell that wrote it, or a newer one"
    )]
    TooNew {
        location: String,
        found: i64,
        known: i64,
    },
    /// An operation failed in the backend. `op` says which, as a verb phrase.
    #[error("the store could not {op}: {source}")]
    Backend {
        op: &'static str,
        #[source]
        source: BackendError,
    },
    /// A stored value this binary does not know (e.g. written by a newer version).
    #[error(
        "delivery {id} in the store has {column} {value:?}, which this printbell does not know"
    )]
    BadRow {
        id: DeliveryId,
        column: &'static str,
        value: String,
    },
}

/// Every operation on the store. Dyn-compatible, so the backend is chosen at run time.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores `event_id` and one pending delivery per entry of `deliveries` in one durable
    /// transaction, or reports a duplicate and stores nothing. Fails fast with
    /// [`StoreError::Busy`].
    async fn accept(
        &self,
        event_id: &str,
        deliveries: Vec<NewDelivery>,
        now: i64,
    ) -> Result<Accepted, StoreError>;

    /// The oldest pending deliveries of `destination`, at most `limit`, oldest first: the head
    /// of its lane and what queues behind it, due or not.
    async fn heads(&self, destination: &str, limit: usize) -> Result<Vec<Delivery>, StoreError>;

    /// Records a 2xx; may return before the fsync (a lost mark means a resend).
    async fn mark_done(
        &self,
        id: DeliveryId,
        status: u16,
        message_id: Option<String>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Records a failed attempt (counted) of a pending delivery and when to try again.
    async fn mark_retry(
        &self,
        id: DeliveryId,
        next: Reschedule,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Postpones a pending delivery without counting an attempt (rate limited).
    async fn defer(&self, id: DeliveryId, next: Reschedule, now: i64) -> Result<(), StoreError>;

    /// Gives up on a delivery. `counted`: whether this was an attempt on the wire (false for a
    /// delivery that could not be sent at all, e.g. its destination was removed).
    async fn mark_dead(
        &self,
        id: DeliveryId,
        status: Option<u16>,
        error: String,
        counted: bool,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Destinations that have pending deliveries.
    async fn pending_destinations(&self) -> Result<Vec<String>, StoreError>;

    /// Per destination with pending deliveries: how many, and the oldest. Fails fast with
    /// [`StoreError::Busy`] (for a metrics scrape).
    async fn queue_depths(&self) -> Result<Vec<QueueDepth>, StoreError>;

    /// Deliveries matching `filter`, newest first.
    async fn list(&self, filter: Filter) -> Result<Vec<Delivery>, StoreError>;

    /// Puts a delivery (dead or done) back in its lane as a fresh series of attempts. Returns
    /// whether a delivery with that id exists.
    async fn retry(&self, id: DeliveryId, now: i64) -> Result<bool, StoreError>;

    /// [`Queue::retry`] for every dead delivery; returns how many.
    async fn retry_all_dead(&self, now: i64) -> Result<u64, StoreError>;

    /// Deletes done (and, with `include_dead`, dead) deliveries last updated before `before`,
    /// and event ids first seen before it and outside the dedupe window. Pending deliveries
    /// are never purged.
    async fn purge(&self, before: i64, include_dead: bool, now: i64) -> Result<Purged, StoreError>;

    /// A durable write that proves the store takes writes (`/readyz`). Fails fast with
    /// [`StoreError::Busy`].
    async fn readiness(&self, now: i64) -> Result<(), StoreError>;
}

/// Which backend holds the queue, and where: what `store.path` of the config (or
/// `deliveries --store`) names. Another backend is another variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file, created if missing.
    Sqlite { path: PathBuf },
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite { path } => write!(f, "{}", path.display()),
        }
    }
}

/// Opens the store `backend` names (creating and migrating it as needed) and starts what it
/// runs. Blocks while SQLite opens and migrates, which happens once, at start.
pub async fn open(backend: &Backend) -> Result<Store, StoreError> {
    let queue: Arc<dyn Queue> = match backend {
        Backend::Sqlite { path } => Arc::new(sqlite::SqliteQueue::open(path)?),
    };
    Ok(Store {
        queue,
        backend: Arc::new(backend.clone()),
    })
}

/// Handle to the open store; cheap to clone. Derefs to [`Queue`].
#[derive(Clone)]
pub struct Store {
    queue: Arc<dyn Queue>,
    backend: Arc<Backend>,
}

impl Store {
    /// What was opened (for logs).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }
}

impl std::ops::Deref for Store {
    type Target = dyn Queue;
    fn deref(&self) -> &Self::Target {
        &*self.queue
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}
