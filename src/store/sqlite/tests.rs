use super::migrations::tests::version_of;
use super::*;
use crate::domain::{EventType, Kind};
use crate::store::{self, Backend, DeliveryState};

fn synchronous(c: &Connection) -> rusqlite::Result<i64> {
    c.pragma_query_value(None, "synchronous", |r| r.get(0))
}

#[tokio::test]
async fn only_relaxed_transactions_skip_the_fsync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteQueue::open(&dir.path().join("s.db")).expect("open");
    const NORMAL: i64 = 1;
    const FULL: i64 = 2;
    let full = store
        .run_once("test", Durability::Full, false, synchronous)
        .await;
    assert_eq!(full.expect("run"), FULL);
    let relaxed = store
        .run_once("test", Durability::Relaxed, false, synchronous)
        .await;
    assert_eq!(relaxed.expect("run"), NORMAL);
    // Back to FULL as soon as a job needs it.
    let full = store
        .run_once("test", Durability::Full, false, synchronous)
        .await;
    assert_eq!(full.expect("run"), FULL);
}

/// The schema exactly as printbell created it before the store had versions.
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

/// A store as the unversioned printbell left it: one event with a pending (never tried), a
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
async fn a_store_written_before_versions_is_migrated_and_carries_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("printbell.db");
    unversioned_store(&path);
    assert_eq!(version_of(&Connection::open(&path).expect("open")), 0);

    let store = store::open(&Backend::Sqlite { path: path.clone() })
        .await
        .expect("open the old store");
    assert_eq!(
        version_of(&Connection::open(&path).expect("open")),
        migrations::MIGRATIONS.len() as i64
    );

    let rows = store.list(all()).await.expect("list");
    let by_state = |s| rows.iter().find(|d| d.state == s).expect("row").clone();
    assert_eq!(rows.len(), 3);
    let pending = by_state(DeliveryState::Pending);
    assert_eq!(pending.id, DeliveryId(1));
    assert_eq!(pending.event_type, EventType::Created);
    assert_eq!(pending.kind, Kind::Slack);
    assert_eq!(pending.started_at, None, "0 meant not started");
    assert_eq!(pending.last_status, None);
    let dead = by_state(DeliveryState::Dead);
    assert_eq!(
        (dead.attempts, dead.started_at, dead.last_status),
        (2, Some(T), Some(404))
    );
    assert_eq!(dead.last_error.as_deref(), Some("Unknown Webhook"));
    let done = by_state(DeliveryState::Done);
    assert_eq!(
        (done.kind, done.message_id.as_deref()),
        (Kind::Discord, Some("1234"))
    );

    // The old event id still makes a redelivery a duplicate.
    let again = store
        .accept("evt_old", vec![], T + 1)
        .await
        .expect("accept");
    assert_eq!(again, Accepted::Duplicate);

    // The pending one is its lane's head and is delivered.
    let heads = store.heads("team", 64).await.expect("heads");
    assert_eq!(heads, vec![pending.clone()]);
    store
        .mark_done(pending.id, 200, None, T + 2)
        .await
        .expect("done");
    assert!(store.heads("team", 64).await.expect("heads").is_empty());

    // The dead one is retried as a fresh series.
    assert!(store.retry(dead.id, T + 3).await.expect("retry"));
    let heads = store.heads("oncall", 64).await.expect("heads");
    assert_eq!(heads.len(), 1);
    let retried = &heads[0];
    assert_eq!(retried.id, dead.id);
    assert_eq!(
        (
            retried.attempts,
            retried.started_at,
            retried.next_attempt_at
        ),
        (0, None, T + 3)
    );

    let rows = store.list(all()).await.expect("list");
    let states: Vec<(DeliveryId, DeliveryState)> = rows.iter().map(|d| (d.id, d.state)).collect();
    assert_eq!(
        states,
        [
            (DeliveryId(3), DeliveryState::Done),
            (DeliveryId(2), DeliveryState::Pending),
            (DeliveryId(1), DeliveryState::Done),
        ]
    );
    // New deliveries continue the ids.
    let new = store
        .accept(
            "evt_new",
            vec![NewDelivery::each(
                EventType::Progress,
                "gen2",
                "team",
                Kind::Slack,
                "{}".into(),
            )],
            T + 4,
        )
        .await
        .expect("accept");
    assert_eq!(new, Accepted::New(vec![DeliveryId(4)]));
}

#[tokio::test]
async fn opening_twice_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("printbell.db");
    let backend = Backend::Sqlite { path: path.clone() };
    let first = store::open(&backend).await.expect("create");
    let ids = first
        .accept(
            "evt",
            vec![NewDelivery::each(
                EventType::Completed,
                "gen",
                "team",
                Kind::Console,
                "{}".into(),
            )],
            T,
        )
        .await
        .expect("accept");
    // While the first is open, as `deliveries list` next to `serve`.
    let second = store::open(&backend).await.expect("open again");
    drop(first);
    let third = store::open(&backend).await.expect("open a third time");
    for s in [&second, &third] {
        let rows = s.list(all()).await.expect("list");
        assert_eq!(
            Accepted::New(rows.iter().map(|d| d.id).collect()),
            ids,
            "{rows:?}"
        );
    }
    assert_eq!(
        version_of(&Connection::open(&path).expect("open")),
        migrations::MIGRATIONS.len() as i64
    );
}

#[tokio::test]
async fn a_store_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("printbell.db");
    unversioned_store(&path);
    let newer = migrations::MIGRATIONS.len() as i64 + 1;
    Connection::open(&path)
        .expect("open")
        .pragma_update(None, "user_version", newer)
        .expect("version");
    let err = store::open(&Backend::Sqlite { path: path.clone() })
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::TooNew { found, .. } if found == newer),
        "{err:?}"
    );
    assert!(
        msg.starts_with(&format!("cannot open the store {}: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains(&format!("schema version is {newer}")), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
    // Nothing was touched.
    assert_eq!(version_of(&Connection::open(&path).expect("open")), newer);
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

fn live(event_type: EventType, generation: &str, images: u64) -> NewDelivery {
    NewDelivery {
        mode: crate::domain::Mode::Live,
        images_done: images,
        ..NewDelivery::each(event_type, generation, "d", Kind::Discord, "{}".into())
    }
}

#[tokio::test]
async fn a_generation_keeps_the_place_of_its_first_event_in_the_lane() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteQueue::open(&dir.path().join("s.db")).expect("open");
    for (i, d) in [
        live(EventType::Created, "g1", 0),
        live(EventType::Created, "g2", 0),
        live(EventType::Completed, "g1", 4),
        NewDelivery::each(EventType::Created, "g3", "d", Kind::Discord, "{}".into()),
    ]
    .into_iter()
    .enumerate()
    {
        store
            .accept(&format!("e{i}"), vec![d], T + i as i64)
            .await
            .expect("accept");
    }
    let order = |heads: Vec<Delivery>| heads.iter().map(|d| d.id.0).collect::<Vec<_>>();
    assert_eq!(
        order(store.heads("d", 10).await.expect("heads")),
        [1, 3, 2, 4]
    );
    // With g1's first update superseded, its newest still goes before g2.
    store
        .supersede(vec![DeliveryId(1)], "test".into(), T + 9)
        .await
        .expect("supersede");
    assert_eq!(order(store.heads("d", 10).await.expect("heads")), [3, 2, 4]);
    let waiting = store.waiting_updates("d", "g1").await.expect("waiting");
    assert_eq!(order(waiting), [3]);
}

#[tokio::test]
async fn a_shown_update_is_the_generation_s_live_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteQueue::open(&dir.path().join("s.db")).expect("open");
    store
        .accept("e1", vec![live(EventType::Created, "g1", 0)], T)
        .await
        .expect("accept");
    store
        .accept("e2", vec![live(EventType::Progress, "g1", 2)], T + 1)
        .await
        .expect("accept");
    assert_eq!(store.live_message("d", "g1").await.expect("read"), None);
    store
        .mark_shown(DeliveryId(1), 200, Some("m1".into()), true, T + 2)
        .await
        .expect("shown");
    store
        .mark_shown(DeliveryId(2), 200, Some("m1".into()), false, T + 3)
        .await
        .expect("shown");
    let live = store
        .live_message("d", "g1")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(live.message_ref.as_deref(), Some("m1"));
    assert_eq!(live.shown, EventType::Progress.rank(2));
    assert_eq!(
        live.first_post,
        DeliveryId(1),
        "the first post stays the one that pinged"
    );
    store
        .forget_message("d", "g1", T + 4)
        .await
        .expect("forget");
    let gone = store
        .live_message("d", "g1")
        .await
        .expect("read")
        .expect("row");
    assert_eq!(gone.message_ref, None);
    assert_eq!(gone.shown, EventType::Progress.rank(2));
}
