//! The durable queue between the receiver and the delivery lanes, behind one trait.
//!
//! [`Queue`] is every operation the service and the CLI do on the store, with typed arguments
//! and results; [`Store`] is a cheap-to-clone handle to the backend that [`open`] chose from
//! the config at run time. One folder per backend: `sqlite/` (a file, one writer thread with
//! group commit, one process) and `postgres/` (a database that several replicas share, a
//! connection pool, batched accepts).
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
//! - [`Queue::lease`] grants a destination to one owner at a time among the processes that
//!   share the store, until its time-to-live passes by the store's clock; a store only one
//!   process sends from grants it always.
//!
//! Times are Unix milliseconds ([`now_ms`]), passed in by the caller.

mod postgres;
mod row;
mod sqlite;

pub use postgres::PostgresUrl;

use crate::domain::{EventType, Kind, Mode, Rank};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    /// A live-message update that will never be sent: a newer one of the same generation
    /// was sent instead, or the message already shows a later state.
    Superseded,
}

impl DeliveryState {
    /// In the order `deliveries list --state` names them.
    pub const ALL: [DeliveryState; 4] = [
        DeliveryState::Pending,
        DeliveryState::Dead,
        DeliveryState::Done,
        DeliveryState::Superseded,
    ];

    /// The stored and command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Dead => "dead",
            DeliveryState::Done => "done",
            DeliveryState::Superseded => "superseded",
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

/// What a delivery is to its generation's story.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The message for the event (posted, or in live mode an edit of the generation's message).
    Message,
    /// Live mode: the separate short message that pages a failure's mentions, sent only when
    /// the failure edited a message that already existed.
    Ping,
    /// `mention_interval`: the message that pings once for the pings held back in an
    /// interval, naming their generations. Belongs to no event.
    Summary,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Message => "message",
            Role::Ping => "ping",
            Role::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Message, Role::Ping, Role::Summary]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// What a delivery that carries a route's mentions under a `mention_interval` needs, so the
/// lane can hold its ping back and name it in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingGuard {
    /// Who is pinged, as the config writes it (`role:1 user:2`): pings of the same people at
    /// one destination share one interval.
    pub key: String,
    /// The interval, in milliseconds.
    pub every_ms: i64,
    /// How a summary names the generation: its name, else its id.
    pub label: String,
}

/// The pings held back at one destination for one key, waiting for their summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPings {
    pub key: String,
    /// When the interval ends: the summary is due then.
    pub until: i64,
    /// The interval, in milliseconds (the next one starts from the summary).
    pub every_ms: i64,
    pub count: u64,
    /// The labels of the first [`SUMMARY_NAMES`] held back, oldest first.
    pub labels: Vec<String>,
    /// The event type of the first held back (the summary's, in `deliveries list`).
    pub event_type: EventType,
}

/// How many held-back generations a summary names; the rest are "and N more".
pub const SUMMARY_NAMES: usize = 10;

/// A delivery to be stored: one rendered message for one destination.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    /// Only known event types are routed, so only they have deliveries.
    pub event_type: EventType,
    pub generation_id: String,
    pub destination: String,
    pub kind: Kind,
    pub mode: Mode,
    /// A [`Role::Ping`] belongs to the [`Role::Message`] stored just before it.
    pub role: Role,
    /// The final body, posted byte for byte.
    pub body: String,
    /// Live mode: the body without mentions, for edits and re-posts.
    pub quiet_body: Option<String>,
    /// Images done when the event was sent: with the type, the state's rank.
    pub images_done: u64,
    /// Set when `body` carries mentions that `mention_interval` may hold back (then
    /// `quiet_body` is the body without them).
    pub guard: Option<PingGuard>,
}

impl NewDelivery {
    /// A message for `each` mode: posted as it is, one per event.
    pub fn each(
        event_type: EventType,
        generation_id: &str,
        destination: &str,
        kind: Kind,
        body: String,
    ) -> NewDelivery {
        NewDelivery {
            event_type,
            generation_id: generation_id.to_string(),
            destination: destination.to_string(),
            kind,
            mode: Mode::Each,
            role: Role::Message,
            body,
            quiet_body: None,
            images_done: 0,
            guard: None,
        }
    }
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
    /// The platform's message id once posted (Discord's from `?wait=true`, Slack's
    /// channel and ts).
    pub message_id: Option<String>,
    pub mode: Mode,
    pub role: Role,
    pub quiet_body: Option<String>,
    pub images_done: u64,
    /// For a [`Role::Ping`]: the failure's message delivery.
    pub ping_for: Option<DeliveryId>,
    pub guard: Option<PingGuard>,
}

impl Delivery {
    /// Where the state this delivery shows stands in its generation's story.
    pub fn rank(&self) -> Rank {
        self.event_type.rank(self.images_done)
    }
}

/// The live message of one generation at one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveMessage {
    /// The platform's id of the message; `None` once it was found deleted (the next update is
    /// posted anew, without mentions).
    pub message_ref: Option<String>,
    /// The state it shows.
    pub shown: Rank,
    /// The delivery whose post carried the route's mentions.
    pub first_post: DeliveryId,
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
    /// A write of real work failed lately and none succeeded since (readiness).
    #[error("a write failed {secs} s ago and none succeeded since: {error}")]
    WritesFailing { secs: i64, error: String },
    #[error("cannot open the store {location}: {source}")]
    Open {
        location: String,
        #[source]
        source: BackendError,
    },
    /// Another `serve` holds the store's lock (SQLite: one `serve` per file).
    #[error(
        "the store {location} is in use by another printbell serve ({holder}); stop that one \
         first, or give this one another store.path"
    )]
    InUse { location: String, holder: String },
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

    /// One delivery by id.
    async fn delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError>;

    /// The live message of `generation_id` at `destination`, if one was posted.
    async fn live_message(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Option<LiveMessage>, StoreError>;

    /// The pending updates ([`Role::Message`]) of one generation's live message, oldest first.
    async fn waiting_updates(
        &self,
        destination: &str,
        generation_id: &str,
    ) -> Result<Vec<Delivery>, StoreError>;

    /// Marks pending deliveries superseded (never to be sent), with why.
    async fn supersede(
        &self,
        ids: Vec<DeliveryId>,
        why: String,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Records a 2xx of a live update durably: the delivery is done and its generation's live
    /// message is `message_ref`, showing this delivery's state. `first_post`: this post carried
    /// the route's mentions. Committed before any edit of the message is sent.
    async fn mark_shown(
        &self,
        id: DeliveryId,
        status: u16,
        message_ref: Option<String>,
        first_post: bool,
        now: i64,
    ) -> Result<(), StoreError>;

    /// The generation's live message was deleted on the platform: the next update posts anew.
    async fn forget_message(
        &self,
        destination: &str,
        generation_id: &str,
        now: i64,
    ) -> Result<(), StoreError>;

    /// One sender per destination among the processes that share the store: takes or renews
    /// `owner`'s lease on `destination` for `ttl`, unless another owner holds an unexpired one.
    /// Expiry is judged by the store's own clock, so the processes' clocks need not agree.
    /// Returns whether `owner` holds the lease now. A store that only one process sends from
    /// (SQLite: one `serve` per file) always grants it.
    async fn lease(
        &self,
        destination: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives up `owner`'s lease on `destination`, if it holds it, so another process can take
    /// the destination over at once instead of after the expiry.
    async fn release(&self, destination: &str, owner: &str) -> Result<(), StoreError>;

    /// `mention_interval`: until when pings of `key` at `destination` are held back, if an
    /// interval was opened.
    async fn ping_window(&self, destination: &str, key: &str) -> Result<Option<i64>, StoreError>;

    /// A ping of `key` went out at `destination`: pings are held back until `until`.
    async fn open_ping_window(
        &self,
        destination: &str,
        key: &str,
        until: i64,
        every_ms: i64,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Records, durably, that delivery `id` goes out without its ping (`guard.key` at
    /// `destination`), for the summary. Recording the same delivery again changes nothing.
    async fn hold_ping(
        &self,
        destination: &str,
        id: DeliveryId,
        event_type: EventType,
        guard: &PingGuard,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Every key of `destination` with pings held back, due or not.
    async fn held_pings(&self, destination: &str) -> Result<Vec<HeldPings>, StoreError>;

    /// In one durable transaction: stores `summary` (a [`Role::Summary`]) at the head of its
    /// lane, forgets the held-back pings of `key` it covers, and holds pings back until
    /// `until` (the next interval starts from the summary).
    async fn queue_summary(
        &self,
        key: &str,
        summary: NewDelivery,
        until: i64,
        now: i64,
    ) -> Result<DeliveryId, StoreError>;
}

/// Which backend holds the queue, and where: what `store.path` / `store.url` of the config (or
/// `deliveries --store`) names. Another backend is another variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file, created if missing; one `serve` process at a time.
    Sqlite { path: PathBuf },
    /// A PostgreSQL database, whose schema is created if missing; any number of processes.
    Postgres { url: PostgresUrl },
}

/// Shows where the store is, never a password (a PostgreSQL URL is redacted).
impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite { path } => write!(f, "{}", path.display()),
            Backend::Postgres { url } => write!(f, "{url}"),
        }
    }
}

/// Opens the store `backend` names (creating and migrating it as needed) and starts what it
/// runs. SQLite blocks while it opens and migrates, which happens once, at start.
pub async fn open(backend: &Backend) -> Result<Store, StoreError> {
    let queue: Arc<dyn Queue> = match backend {
        Backend::Sqlite { path } => Arc::new(sqlite::SqliteQueue::open(path)?),
        Backend::Postgres { url } => Arc::new(postgres::PostgresQueue::open(url).await?),
    };
    Ok(Store {
        queue,
        backend: Arc::new(backend.clone()),
    })
}

/// Why the store cannot be opened for writing, when the file system already says so (a
/// missing or unwritable directory, a read-only file), without opening or creating anything:
/// for `printbell check`. `None` for PostgreSQL, which only a connection can tell.
pub fn open_problem(backend: &Backend) -> Option<String> {
    match backend {
        Backend::Sqlite { path } => sqlite::access_problem(path)
            .map(|why| format!("cannot open the store {}: {why}", path.display())),
        Backend::Postgres { .. } => None,
    }
}

/// Held by `serve` for as long as it runs: the store is its own (SQLite) or shared by design
/// (PostgreSQL, nothing to hold). Dropping it lets another `serve` start on the store.
#[derive(Debug)]
pub struct ServeLock {
    _held: Option<sqlite::FileLock>,
}

/// Takes the lock that makes `serve` the only one on its store, or says who holds it
/// ([`StoreError::InUse`]). Only `serve` takes it: the CLI works on the store while `serve`
/// runs. Released when the returned value is dropped, and by the OS when the process dies.
pub fn lock_for_serve(backend: &Backend) -> Result<ServeLock, StoreError> {
    let held = match backend {
        Backend::Sqlite { path } => Some(sqlite::FileLock::acquire(path)?),
        Backend::Postgres { .. } => None,
    };
    Ok(ServeLock { _held: held })
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
