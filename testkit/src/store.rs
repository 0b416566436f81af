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

/// Every delivery in the store file at `path`, oldest first (through the store's own API, as
/// the CLI reads it).
pub fn deliveries(path: &Path) -> Vec<Delivery> {
    deliveries_in(&Backend::Sqlite {
        path: path.to_path_buf(),
    })
}

/// Every delivery in the store `backend` names (SQLite or PostgreSQL), oldest first.
pub fn deliveries_in(backend: &Backend) -> Vec<Delivery> {
    let backend = backend.clone();
    block_on(async move {
        let store = pstore::open(&backend).await.expect("open store");
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

/// Opens the store `backend` names and closes it again: the error, if it cannot be opened.
pub async fn try_open(backend: &Backend) -> Result<(), String> {
    pstore::open(backend)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
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

/// Every [`pstore::Queue`] operation once, on the store `backend` names, with what each must
/// do asserted: the same checks for every backend. `exclusive_leases`: whether the backend
/// shares its store between processes (a lease held by one owner is refused to another).
pub async fn check_every_operation(backend: &Backend, exclusive_leases: bool) {
    use printbell::domain::Mode;
    use pstore::{DeliveryState, LiveMessage, Reschedule, Role};
    let s = pstore::open(backend).await.expect("open");
    let t = now_ms();
    let live = pstore::NewDelivery {
        event_type: EventType::Failed,
        generation_id: "g1".into(),
        destination: "d".into(),
        kind: Kind::Discord,
        mode: Mode::Live,
        role: Role::Message,
        body: r#"{"content":"<@1> failed"}"#.into(),
        quiet_body: Some(r#"{"content":"failed"}"#.into()),
        images_done: 2,
        guard: None,
    };
    let ping = pstore::NewDelivery {
        role: Role::Ping,
        body: r#"{"content":"<@1>"}"#.into(),
        quiet_body: None,
        ..live.clone()
    };
    let each = pstore::NewDelivery::each(EventType::Created, "g2", "e", Kind::Slack, "{}".into());
    let Ok(Accepted::New(ids)) = s.accept("ev-1", vec![live, ping, each], t).await else {
        panic!("a new event is accepted");
    };
    assert_eq!(ids.len(), 3);
    assert!(
        ids[0] < ids[1] && ids[1] < ids[2],
        "ids in the order given: {ids:?}"
    );
    assert_eq!(
        s.accept("ev-1", vec![], t).await.expect("accept"),
        Accepted::Duplicate
    );
    assert_eq!(
        s.accept("ev-empty", vec![], t).await.expect("accept"),
        Accepted::New(vec![])
    );

    let heads = s.heads("d", 10).await.expect("heads");
    assert_eq!(heads.iter().map(|d| d.id).collect::<Vec<_>>(), ids[..2]);
    let (m, p) = (&heads[0], &heads[1]);
    assert_eq!(m.state, DeliveryState::Pending);
    assert_eq!(
        (m.mode, m.role, m.images_done),
        (Mode::Live, Role::Message, 2)
    );
    assert_eq!(m.quiet_body.as_deref(), Some(r#"{"content":"failed"}"#));
    assert_eq!((m.attempts, m.started_at, m.next_attempt_at), (0, None, t));
    assert_eq!((p.role, p.ping_for), (Role::Ping, Some(ids[0])));
    let mut dests = s.pending_destinations().await.expect("destinations");
    dests.sort();
    assert_eq!(dests, ["d", "e"]);
    let depths = s.queue_depths().await.expect("depths");
    let d = depths.iter().find(|q| q.destination == "d").expect("d");
    assert_eq!((d.pending, d.oldest_received_at), (2, t));

    // A live message: none yet; the waiting updates are the messages, not the ping.
    assert_eq!(s.live_message("d", "g1").await.expect("live"), None);
    let waiting = s.waiting_updates("d", "g1").await.expect("waiting");
    assert_eq!(waiting.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[0]]);
    s.mark_shown(ids[0], 200, Some("m-1".into()), true, t + 1)
        .await
        .expect("shown");
    let shown = LiveMessage {
        message_ref: Some("m-1".into()),
        shown: EventType::Failed.rank(2),
        first_post: ids[0],
    };
    assert_eq!(s.live_message("d", "g1").await.expect("live"), Some(shown));
    let row = s.delivery(ids[0]).await.expect("read").expect("row");
    assert_eq!(row.state, DeliveryState::Done);
    assert_eq!((row.attempts, row.last_status), (1, Some(200)));
    assert_eq!(row.message_id.as_deref(), Some("m-1"));
    s.forget_message("d", "g1", t + 2).await.expect("forget");
    let forgotten = s.live_message("d", "g1").await.expect("live").expect("row");
    assert_eq!(forgotten.message_ref, None);
    assert_eq!(forgotten.first_post, ids[0]);
    s.supersede(vec![ids[1]], "not needed".into(), t + 3)
        .await
        .expect("supersede");
    let row = s.delivery(ids[1]).await.expect("read").expect("row");
    assert_eq!(row.state, DeliveryState::Superseded);
    assert_eq!(row.last_error.as_deref(), Some("not needed"));
    assert_eq!(s.delivery(DeliveryId(i64::MAX)).await.expect("read"), None);

    // Retry, rate limit, dead, retried from the CLI, done.
    let next = |status, at| Reschedule {
        status: Some(status),
        error: format!("status {status}"),
        started_at: t,
        next_attempt_at: at,
    };
    s.mark_retry(ids[2], next(502, t + 1000), t + 4)
        .await
        .expect("retry");
    s.defer(ids[2], next(429, t + 2000), t + 5)
        .await
        .expect("defer");
    let row = s.delivery(ids[2]).await.expect("read").expect("row");
    assert_eq!((row.attempts, row.last_status), (1, Some(429)), "{row:?}");
    assert_eq!((row.started_at, row.next_attempt_at), (Some(t), t + 2000));
    s.mark_dead(ids[2], Some(404), "gone".into(), true, t + 6)
        .await
        .expect("dead");
    let filter = Filter {
        state: Some(DeliveryState::Dead),
        destination: None,
        limit: 10,
    };
    let dead = s.list(filter).await.expect("list");
    assert_eq!(dead.iter().map(|d| d.id).collect::<Vec<_>>(), [ids[2]]);
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(s.retry_all_dead(t + 7).await.expect("retry all"), 1);
    let row = s.delivery(ids[2]).await.expect("read").expect("row");
    assert_eq!(
        (row.state, row.attempts, row.started_at),
        (DeliveryState::Pending, 0, None)
    );
    s.mark_done(ids[2], 200, None, t + 8).await.expect("done");
    assert!(s.retry(ids[2], t + 9).await.expect("retry"));
    assert!(!s.retry(DeliveryId(i64::MAX), t).await.expect("retry"));
    s.mark_done(ids[2], 200, None, t + 10).await.expect("done");
    let all = Filter {
        state: None,
        destination: Some("e".into()),
        limit: 10,
    };
    assert_eq!(s.list(all).await.expect("list").len(), 1);
    s.readiness(t).await.expect("readiness");

    // A live generation keeps the lane place of its first delivery (an `each` one does not).
    let lane = |g: &str, t: EventType, images: u64, mode: Mode| pstore::NewDelivery {
        mode,
        images_done: images,
        ..pstore::NewDelivery::each(t, g, "slots", Kind::Discord, "{}".into())
    };
    let order = [
        lane("g1", EventType::Created, 0, Mode::Live),
        lane("g2", EventType::Created, 0, Mode::Live),
        lane("g1", EventType::Completed, 4, Mode::Live),
        lane("g3", EventType::Created, 0, Mode::Each),
    ];
    let mut slot_ids = Vec::new();
    for (i, d) in order.into_iter().enumerate() {
        let id = format!("slot-{i}");
        let Accepted::New(ids) = s.accept(&id, vec![d], t).await.expect("accept") else {
            panic!("new");
        };
        slot_ids.push(ids[0]);
    }
    let heads = s.heads("slots", 10).await.expect("heads");
    let want = [slot_ids[0], slot_ids[2], slot_ids[1], slot_ids[3]];
    assert_eq!(heads.iter().map(|d| d.id).collect::<Vec<_>>(), want);
    s.supersede(vec![slot_ids[0]], "test".into(), t)
        .await
        .expect("supersede");
    let heads = s.heads("slots", 10).await.expect("heads");
    assert_eq!(heads.iter().map(|d| d.id).collect::<Vec<_>>(), want[1..]);
    for id in &slot_ids[1..] {
        s.mark_done(*id, 200, None, t).await.expect("done");
    }

    // 3 more events, 4 more done deliveries.
    check_ping_operations(&s, t).await;

    // Done deliveries go; superseded and event ids inside the dedupe window stay.
    let purged = s.purge(t + 100, true, t + 100).await.expect("purge");
    assert_eq!((purged.deliveries, purged.events), (2 + 3 + 4, 0));
    assert_eq!(
        s.accept("ev-1", vec![], t).await.expect("accept"),
        Accepted::Duplicate
    );
    let week = pstore::DEDUPE_WINDOW_MS;
    let purged = s
        .purge(t + week + 100, true, t + week + 100)
        .await
        .expect("purge");
    assert_eq!(purged.events, 2 + 4 + 3);

    check_concurrent_marks(&s, t).await;

    // Leases.
    let ttl = Duration::from_secs(30);
    assert!(s.lease("d", "a", ttl).await.expect("lease"));
    assert!(s.lease("d", "a", ttl).await.expect("renew"));
    assert_eq!(
        s.lease("d", "b", ttl).await.expect("lease"),
        !exclusive_leases,
        "another owner's unexpired lease"
    );
    assert!(s.lease("other", "b", ttl).await.expect("lease"));
    s.release("d", "b")
        .await
        .expect("release of a lease not held");
    assert_eq!(
        s.lease("d", "b", ttl).await.expect("lease"),
        !exclusive_leases
    );
    s.release("d", "a").await.expect("release");
    assert!(s.lease("d", "b", ttl).await.expect("lease after release"));
    if exclusive_leases {
        assert!(s
            .lease("e", "a", Duration::from_millis(300))
            .await
            .expect("lease"));
        assert!(!s.lease("e", "b", ttl).await.expect("lease"));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(s
            .lease("e", "b", ttl)
            .await
            .expect("an expired lease is anybody's"));
    }
    for d in ["d", "e", "other"] {
        s.release(d, "b").await.expect("release");
    }
}

/// Many "done" marks at once, as lanes send them (PostgreSQL stores those waiting together in
/// one statement): each delivery gets its own status and message id, and nothing else moves.
async fn check_concurrent_marks(s: &pstore::Store, t: i64) {
    let n = 24;
    let deliveries = (0..n)
        .map(|i| {
            pstore::NewDelivery::each(
                EventType::Progress,
                &format!("gm{i}"),
                "marks",
                Kind::Discord,
                format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    let Ok(Accepted::New(ids)) = s.accept("ev-marks", deliveries, t).await else {
        panic!("a new event is accepted");
    };
    let marks = ids.iter().enumerate().map(|(i, id)| {
        let (s, id) = (s.clone(), *id);
        // Every other one without a message id (Slack webhooks answer none).
        let message = (i % 2 == 0).then(|| format!("msg-{i}"));
        tokio::spawn(async move { s.mark_done(id, 200 + i as u16, message, t + i as i64).await })
    });
    let marks: Vec<_> = marks.collect();
    for m in marks {
        m.await.expect("mark task").expect("mark done");
    }
    for (i, id) in ids.iter().enumerate() {
        let d = s.delivery(*id).await.expect("read").expect("stored");
        assert_eq!(
            (
                d.state.as_str(),
                d.last_status,
                d.message_id.clone(),
                d.attempts
            ),
            (
                "done",
                Some(200 + i as u16),
                (i % 2 == 0).then(|| format!("msg-{i}")),
                1
            ),
            "delivery {i}"
        );
        assert_eq!(d.updated_at, t + i as i64, "delivery {i}");
        assert_eq!(d.body, format!("{{\"n\":{i}}}"));
    }
    assert!(s.heads("marks", 100).await.expect("heads").is_empty());
    // Gone again, so the checks can run twice on one store.
    let later = t + pstore::DEDUPE_WINDOW_MS + 200;
    let purged = s.purge(later, true, later).await.expect("purge");
    assert_eq!((purged.deliveries, purged.events), (n, 1));
}

/// `mention_interval`'s operations: guards stored with deliveries, intervals, held-back pings
/// (recorded once however often), and the summary that takes the head of the lane.
async fn check_ping_operations(s: &pstore::Store, t: i64) {
    use pstore::{PingGuard, Role};
    let guard = |label: &str| PingGuard {
        key: "role:1 user:2".into(),
        every_ms: 4_000,
        label: label.into(),
    };
    let guarded = |g: &str| pstore::NewDelivery {
        quiet_body: Some("{}".into()),
        guard: Some(guard(&format!("name of {g}"))),
        ..pstore::NewDelivery::each(EventType::Failed, g, "pings", Kind::Discord, "{}".into())
    };
    let mut ids = Vec::new();
    for g in ["p1", "p2", "p3"] {
        let Accepted::New(new) = s
            .accept(&format!("ping-{g}"), vec![guarded(g)], t)
            .await
            .expect("accept")
        else {
            panic!("new");
        };
        ids.push(new[0]);
    }
    let heads = s.heads("pings", 10).await.expect("heads");
    assert_eq!(heads[0].guard, Some(guard("name of p1")));
    assert_eq!(
        s.ping_window("pings", "role:1 user:2")
            .await
            .expect("window"),
        None
    );
    s.open_ping_window("pings", "role:1 user:2", t + 4_000, 4_000, t)
        .await
        .expect("open");
    assert_eq!(
        s.ping_window("pings", "role:1 user:2")
            .await
            .expect("window"),
        Some(t + 4_000)
    );
    assert_eq!(s.ping_window("pings", "here").await.expect("window"), None);
    assert!(s.held_pings("pings").await.expect("held").is_empty());
    for id in [ids[1], ids[2], ids[1]] {
        let g = if id == ids[1] {
            "name of p2"
        } else {
            "name of p3"
        };
        s.hold_ping("pings", id, EventType::Failed, &guard(g), t + 1)
            .await
            .expect("hold");
    }
    let held = s.held_pings("pings").await.expect("held");
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(
        (held[0].count, held[0].until, held[0].every_ms),
        (2, t + 4_000, 4_000)
    );
    assert_eq!(held[0].labels, ["name of p2", "name of p3"]);
    assert_eq!(held[0].event_type, EventType::Failed);

    let summary = pstore::NewDelivery {
        role: Role::Summary,
        ..pstore::NewDelivery::each(
            EventType::Failed,
            "",
            "pings",
            Kind::Discord,
            "{\"s\":1}".into(),
        )
    };
    let id = s
        .queue_summary("role:1 user:2", summary, t + 9_000, t + 5_000)
        .await
        .expect("summary");
    let heads = s.heads("pings", 10).await.expect("heads");
    assert_eq!(heads[0].id, id, "the summary goes first");
    assert_eq!(
        (heads[0].role, heads[0].body.as_str()),
        (Role::Summary, "{\"s\":1}")
    );
    assert!(s.held_pings("pings").await.expect("held").is_empty());
    assert_eq!(
        s.ping_window("pings", "role:1 user:2")
            .await
            .expect("window"),
        Some(t + 9_000),
        "the next interval starts from the summary"
    );
    for d in heads {
        s.mark_done(d.id, 200, None, t).await.expect("done");
    }
}
