//! Every SQL statement of the PostgreSQL backend: plain async functions on a pooled client
//! (statements prepared once per connection, from its cache) or on a transaction.
//!
//! The storage conventions are every backend's (`store::row`). Columns are read with
//! `try_get`, so a column of an unexpected type is an error, not a panic.

use super::super::row::{DeliveryRow, HeldRow, LiveRow, DELIVERY_COLUMNS};
use super::super::{
    Accepted, DeliveryId, DeliveryState, Filter, NewDelivery, PingGuard, Purged, QueueDepth,
    Reschedule, Role, DEDUPE_WINDOW_MS, SUMMARY_NAMES,
};
use super::PgError;
use crate::domain::{EventType, Mode};
use deadpool_postgres::{GenericClient, Object};
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio_postgres::Row;

/// The transaction advisory lock every `accept` holds while it takes delivery ids and
/// commits (see [`accept`]).
const ACCEPT_LOCK: i64 = 0x7072_696e_7462_0002;

fn delivery_row(r: &Row) -> Result<DeliveryRow, PgError> {
    Ok(DeliveryRow {
        id: r.try_get(0)?,
        event_id: r.try_get(1)?,
        event_type: r.try_get(2)?,
        generation_id: r.try_get(3)?,
        destination: r.try_get(4)?,
        kind: r.try_get(5)?,
        body: r.try_get(6)?,
        state: r.try_get(7)?,
        attempts: i64::from(r.try_get::<_, i32>(8)?),
        received_at: r.try_get(9)?,
        started_at: r.try_get(10)?,
        next_attempt_at: r.try_get(11)?,
        updated_at: r.try_get(12)?,
        last_status: r.try_get::<_, Option<i32>>(13)?.map(i64::from),
        last_error: r.try_get(14)?,
        message_id: r.try_get(15)?,
        mode: r.try_get(16)?,
        role: r.try_get(17)?,
        quiet_body: r.try_get(18)?,
        images_done: r.try_get(19)?,
        ping_for: r.try_get(20)?,
        ping_key: r.try_get(21)?,
        ping_every: r.try_get(22)?,
        label: r.try_get(23)?,
    })
}

fn delivery_rows(rows: Vec<Row>) -> Result<Vec<DeliveryRow>, PgError> {
    rows.iter().map(delivery_row).collect()
}

/// One event to store: its id, its deliveries and when it arrived.
pub(super) struct NewEvent {
    pub event_id: String,
    pub deliveries: Vec<NewDelivery>,
    pub received_at: i64,
}

/// Stores `events` in one transaction; for each, in order, whether it was new (and its
/// delivery ids) or a duplicate, including a repeat of an earlier one of `events`.
///
/// Delivery ids are taken from the sequence while the transaction holds [`ACCEPT_LOCK`], and
/// the lock is released by the commit: so ids are in commit order across every replica, and
/// a lane that has read id N never sees a smaller id appear later (which would be sent out of
/// order). Duplicates across replicas are decided by the events' primary key: a concurrent
/// insert of the same id waits for the other transaction, then does nothing if it committed.
pub(super) async fn accept(
    client: &mut Object,
    events: &[NewEvent],
) -> Result<Vec<Accepted>, PgError> {
    let tx = client.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    tx.execute(&lock, &[&ACCEPT_LOCK]).await?;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let times: Vec<i64> = events.iter().map(|e| e.received_at).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO events (id, received_at) SELECT * FROM unnest($1::text[], $2::bigint[]) \
             ON CONFLICT (id) DO NOTHING RETURNING id",
        )
        .await?;
    let mut new: HashSet<String> = tx
        .query(&insert, &[&ids, &times])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    // The first of `events` with a new id is new; any other is a duplicate.
    let is_new: Vec<bool> = events.iter().map(|e| new.remove(&e.event_id)).collect();
    let count: usize = events
        .iter()
        .zip(&is_new)
        .filter(|(_, n)| **n)
        .map(|(e, _)| e.deliveries.len())
        .sum();
    let mut taken: Vec<i64> = Vec::new();
    if count > 0 {
        let next = tx
            .prepare_cached(
                "SELECT nextval(pg_get_serial_sequence('deliveries', 'id')) \
                 FROM generate_series(1, $1::bigint)",
            )
            .await?;
        taken = tx
            .query(&next, &[&(count as i64)])
            .await?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        taken.sort_unstable();
    }
    // Live deliveries keep the lane place of their generation's first delivery (see
    // `heads`): the first id of each (destination, generation) of the batch, stored before or
    // earlier in the batch.
    let mut first: HashMap<(String, String), i64> = HashMap::new();
    if count > 0 {
        let (dests, gens): (Vec<&str>, Vec<&str>) = events
            .iter()
            .zip(&is_new)
            .filter(|(_, n)| **n)
            .flat_map(|(e, _)| &e.deliveries)
            .filter(|d| d.mode == Mode::Live)
            .map(|d| (d.destination.as_str(), d.generation_id.as_str()))
            .unzip();
        if !dests.is_empty() {
            let stmt = tx
                .prepare_cached(
                    "SELECT d.destination, d.generation_id, MIN(d.id) FROM deliveries d \
                     JOIN unnest($1::text[], $2::text[]) AS u(destination, generation_id) \
                     USING (destination, generation_id) GROUP BY 1, 2",
                )
                .await?;
            for r in tx.query(&stmt, &[&dests, &gens]).await? {
                first.insert((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?);
            }
        }
    }
    let mut taken = taken.into_iter();
    let mut rows = Columns::default();
    let mut answers = Vec::with_capacity(events.len());
    for (e, new) in events.iter().zip(is_new) {
        if !new {
            answers.push(Accepted::Duplicate);
            continue;
        }
        let mut stored = Vec::with_capacity(e.deliveries.len());
        // The message delivery a ping belongs to: the one stored just before it.
        let mut last_message: Option<i64> = None;
        for d in &e.deliveries {
            let Some(id) = taken.next() else {
                unreachable!("one id was taken per delivery");
            };
            let ping_for = match d.role {
                Role::Message => {
                    last_message = Some(id);
                    None
                }
                Role::Ping => last_message,
                Role::Summary => None,
            };
            let key = (d.destination.clone(), d.generation_id.clone());
            let slot = match d.mode {
                Mode::Live => first.get(&key).copied(),
                Mode::Each => None,
            };
            first.entry(key).or_insert(id);
            rows.push(id, e, d, ping_for, slot);
            stored.push(DeliveryId(id));
        }
        answers.push(Accepted::New(stored));
    }
    if count > 0 {
        let insert = tx
            .prepare_cached(
                "INSERT INTO deliveries (id, event_id, event_type, generation_id, destination, kind, \
                 body, state, attempts, received_at, started_at, next_attempt_at, updated_at, mode, \
                 role, quiet_body, images_done, ping_for, slot, ping_key, ping_every, label) \
                 SELECT id, event_id, event_type, generation_id, destination, kind, body, 'pending', \
                 0, received_at, 0, received_at, received_at, mode, role, quiet_body, images_done, \
                 ping_for, slot, ping_key, ping_every, label FROM unnest($1::bigint[], $2::text[], \
                 $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bigint[], \
                 $9::text[], $10::text[], $11::text[], $12::bigint[], $13::bigint[], $14::bigint[], \
                 $15::text[], $16::bigint[], $17::text[]) AS u(id, event_id, \
                 event_type, generation_id, destination, kind, body, received_at, mode, role, \
                 quiet_body, images_done, ping_for, slot, ping_key, ping_every, label)",
            )
            .await?;
        let c = &rows;
        tx.execute(
            &insert,
            &[
                &c.id,
                &c.event_id,
                &c.event_type,
                &c.generation_id,
                &c.destination,
                &c.kind,
                &c.body,
                &c.received_at,
                &c.mode,
                &c.role,
                &c.quiet_body,
                &c.images_done,
                &c.ping_for,
                &c.slot,
                &c.ping_key,
                &c.ping_every,
                &c.label,
            ],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(answers)
}

/// The new deliveries of a batch, column by column (one array parameter each).
#[derive(Default)]
struct Columns<'a> {
    id: Vec<i64>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'static str>,
    generation_id: Vec<&'a str>,
    destination: Vec<&'a str>,
    kind: Vec<&'static str>,
    body: Vec<&'a str>,
    received_at: Vec<i64>,
    mode: Vec<&'static str>,
    role: Vec<&'static str>,
    quiet_body: Vec<Option<&'a str>>,
    images_done: Vec<i64>,
    ping_for: Vec<Option<i64>>,
    slot: Vec<Option<i64>>,
    ping_key: Vec<Option<&'a str>>,
    ping_every: Vec<Option<i64>>,
    label: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn push(
        &mut self,
        id: i64,
        e: &'a NewEvent,
        d: &'a NewDelivery,
        ping_for: Option<i64>,
        slot: Option<i64>,
    ) {
        self.id.push(id);
        self.event_id.push(&e.event_id);
        self.event_type.push(d.event_type.as_str());
        self.generation_id.push(&d.generation_id);
        self.destination.push(&d.destination);
        self.kind.push(d.kind.as_str());
        self.body.push(&d.body);
        self.received_at.push(e.received_at);
        self.mode.push(d.mode.as_str());
        self.role.push(d.role.as_str());
        self.quiet_body.push(d.quiet_body.as_deref());
        self.images_done
            .push(i64::try_from(d.images_done).unwrap_or(i64::MAX));
        self.ping_for.push(ping_for);
        self.slot.push(slot);
        let guard = d.guard.as_ref();
        self.ping_key.push(guard.map(|g| g.key.as_str()));
        self.ping_every.push(guard.map(|g| g.every_ms));
        self.label.push(guard.map(|g| g.label.as_str()));
    }
}

/// The oldest pending deliveries of a destination, at most `limit`, in lane order: a live
/// delivery takes the place of its generation's first (`slot`), as in SQLite.
pub(super) async fn heads(
    c: &Object,
    destination: &str,
    limit: usize,
) -> Result<Vec<DeliveryRow>, PgError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE destination = $1 AND state = 'pending' \
             ORDER BY COALESCE(slot, id), id LIMIT $2"
        ))
        .await?;
    delivery_rows(c.query(&stmt, &[&destination, &(limit as i64)]).await?)
}

pub(super) async fn mark_done(
    c: &impl GenericClient,
    id: DeliveryId,
    status: u16,
    message_id: Option<&str>,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_status = $2, \
             last_error = NULL, message_id = $3, updated_at = $4 WHERE id = $1",
        )
        .await?;
    c.execute(&stmt, &[&id.0, &i32::from(status), &message_id, &now])
        .await?;
    Ok(())
}

/// A successful post to record: [`marks_done`] stores many in one statement.
pub(super) struct DoneMark {
    pub id: DeliveryId,
    pub status: u16,
    pub message_id: Option<String>,
    pub now: i64,
}

/// [`mark_done`] for every one of `marks`, in one statement and one transaction: lanes post
/// thousands of messages a second, and a statement, a commit and a round trip each was most
/// of the database's work (BENCHMARKS.md). The commit is durable like any other, so a crash
/// of the database server keeps SPEC §5's bound on messages sent twice.
pub(super) async fn marks_done(c: &mut Object, marks: &[DoneMark]) -> Result<(), PgError> {
    let ids: Vec<i64> = marks.iter().map(|m| m.id.0).collect();
    let statuses: Vec<i32> = marks.iter().map(|m| i32::from(m.status)).collect();
    let message_ids: Vec<Option<&str>> = marks.iter().map(|m| m.message_id.as_deref()).collect();
    let times: Vec<i64> = marks.iter().map(|m| m.now).collect();
    // A `Transaction` rolls back if this future is dropped halfway (a timeout), so the pooled
    // connection is never handed on inside a transaction. A custom plan for each batch: a
    // plan cached while the table was small scans the whole table for every batch once it
    // has grown (seen on fresh databases, with thousands of rows before the first analyze).
    let tx = c.transaction().await?;
    let stmt = tx
        .prepare_cached(
            "UPDATE deliveries d SET state = 'done', attempts = d.attempts + 1, \
             last_status = u.status, last_error = NULL, message_id = u.message_id, \
             updated_at = u.at FROM unnest($1::bigint[], $2::int[], $3::text[], $4::bigint[]) \
             AS u(id, status, message_id, at) WHERE d.id = u.id",
        )
        .await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
        [&ids, &statuses, &message_ids, &times];
    // Issued together, both go out in one round trip (tokio-postgres pipelines them).
    let (custom, marked) = tokio::join!(
        tx.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan"),
        tx.execute(&stmt, &params)
    );
    custom?;
    marked?;
    tx.commit().await
}

/// A failed attempt that will be tried again at `next.next_attempt_at`.
pub(super) async fn mark_retry(
    c: &Object,
    id: DeliveryId,
    next: &Reschedule,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3, \
             next_attempt_at = $4, updated_at = $5, started_at = $6 WHERE id = $1 AND state = 'pending'",
        )
        .await?;
    let status = next.status.map(i32::from);
    c.execute(
        &stmt,
        &[
            &id.0,
            &status,
            &next.error,
            &next.next_attempt_at,
            &now,
            &next.started_at,
        ],
    )
    .await?;
    Ok(())
}

/// Postpones a delivery without counting an attempt (rate limited).
pub(super) async fn defer(
    c: &Object,
    id: DeliveryId,
    next: &Reschedule,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET last_status = $2, last_error = $3, next_attempt_at = $4, \
             updated_at = $5, started_at = $6 WHERE id = $1 AND state = 'pending'",
        )
        .await?;
    let status = next.status.map(i32::from);
    c.execute(
        &stmt,
        &[
            &id.0,
            &status,
            &next.error,
            &next.next_attempt_at,
            &now,
            &next.started_at,
        ],
    )
    .await?;
    Ok(())
}

/// `counted`: whether this was an attempt on the wire.
pub(super) async fn mark_dead(
    c: &Object,
    id: DeliveryId,
    status: Option<u16>,
    error: &str,
    counted: bool,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET state = 'dead', attempts = attempts + $5, last_status = $2, \
             last_error = $3, updated_at = $4 WHERE id = $1",
        )
        .await?;
    let status = status.map(i32::from);
    c.execute(&stmt, &[&id.0, &status, &error, &now, &i32::from(counted)])
        .await?;
    Ok(())
}

/// Destinations that have pending deliveries.
pub(super) async fn pending_destinations(c: &Object) -> Result<Vec<String>, PgError> {
    let stmt = c
        .prepare_cached("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")
        .await?;
    c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect()
}

/// Per destination: pending count and the oldest pending `received_at`.
pub(super) async fn queue_depths(c: &Object) -> Result<Vec<QueueDepth>, PgError> {
    let stmt = c
        .prepare_cached(
            "SELECT destination, COUNT(*), MIN(received_at) FROM deliveries WHERE state = 'pending' \
             GROUP BY destination",
        )
        .await?;
    c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(QueueDepth {
                destination: r.try_get(0)?,
                pending: r.try_get::<_, i64>(1)?.max(0) as u64,
                oldest_received_at: r.try_get(2)?,
            })
        })
        .collect()
}

/// Newest first.
pub(super) async fn list(c: &Object, filter: &Filter) -> Result<Vec<DeliveryRow>, PgError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE ($1::text IS NULL OR state = $1) \
             AND ($2::text IS NULL OR destination = $2) ORDER BY id DESC LIMIT $3"
        ))
        .await?;
    let state = filter.state.map(DeliveryState::as_str);
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    delivery_rows(
        c.query(&stmt, &[&state, &filter.destination, &limit])
            .await?,
    )
}

/// Puts a dead (or done) delivery back in its lane as a fresh series of attempts.
/// Returns whether a delivery with that id existed.
pub(super) async fn retry(c: &Object, id: DeliveryId, now: i64) -> Result<bool, PgError> {
    let n = c
        .execute(
            "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, \
             next_attempt_at = $2, updated_at = $2 WHERE id = $1",
            &[&id.0, &now],
        )
        .await?;
    Ok(n > 0)
}

pub(super) async fn retry_all_dead(c: &Object, now: i64) -> Result<u64, PgError> {
    c.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, \
         next_attempt_at = $1, updated_at = $1 WHERE state = 'dead'",
        &[&now],
    )
    .await
}

/// Deletes done (and, with `include_dead`, dead) deliveries last updated before `before`, and
/// event ids first seen before it and outside the dedupe window, in one transaction.
pub(super) async fn purge(
    c: &mut Object,
    before: i64,
    include_dead: bool,
    now: i64,
) -> Result<Purged, PgError> {
    let tx = c.transaction().await?;
    let d = tx
        .execute(
            "DELETE FROM deliveries WHERE (state = 'done' OR ($2 AND state = 'dead')) \
             AND updated_at < $1",
            &[&before, &include_dead],
        )
        .await?;
    // Event ids make a redelivered webhook a duplicate: kept for the whole window SPEC
    // promises, however short the retention or `--older-than`.
    let events_before = before.min(now - DEDUPE_WINDOW_MS);
    let e = tx
        .execute(
            "DELETE FROM events WHERE received_at < $1",
            &[&events_before],
        )
        .await?;
    // A live message whose generation is quiet for the whole retention is done with.
    tx.execute(
        "DELETE FROM live_messages WHERE updated_at < $1",
        &[&before],
    )
    .await?;
    // An interval that ended long ago with nothing held back has nothing left to say.
    tx.execute(
        "DELETE FROM ping_windows w WHERE open_until < $1 AND NOT EXISTS (SELECT 1 FROM held_pings h \
         WHERE h.destination = w.destination AND h.ping_key = w.ping_key)",
        &[&before],
    )
    .await?;
    tx.commit().await?;
    Ok(Purged {
        deliveries: d,
        events: e,
    })
}

/// Proves the database takes writes (readiness).
pub(super) async fn touch(c: &Object, now: i64) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO health (id, checked_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET checked_at = EXCLUDED.checked_at",
        )
        .await?;
    c.execute(&stmt, &[&now]).await?;
    Ok(())
}

pub(super) async fn delivery(c: &Object, id: DeliveryId) -> Result<Option<DeliveryRow>, PgError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"
        ))
        .await?;
    c.query_opt(&stmt, &[&id.0])
        .await?
        .as_ref()
        .map(delivery_row)
        .transpose()
}

pub(super) async fn live_message(
    c: &Object,
    destination: &str,
    generation_id: &str,
) -> Result<Option<LiveRow>, PgError> {
    let stmt = c
        .prepare_cached(
            "SELECT message_ref, shown_type, shown_images, first_post FROM live_messages \
             WHERE destination = $1 AND generation_id = $2",
        )
        .await?;
    let Some(r) = c.query_opt(&stmt, &[&destination, &generation_id]).await? else {
        return Ok(None);
    };
    Ok(Some(LiveRow {
        message_ref: r.try_get(0)?,
        shown_type: r.try_get(1)?,
        shown_images: r.try_get(2)?,
        first_post: r.try_get(3)?,
    }))
}

pub(super) async fn waiting_updates(
    c: &Object,
    destination: &str,
    generation_id: &str,
) -> Result<Vec<DeliveryRow>, PgError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE destination = $1 AND generation_id = $2 \
             AND state = 'pending' AND role = 'message' ORDER BY id"
        ))
        .await?;
    delivery_rows(c.query(&stmt, &[&destination, &generation_id]).await?)
}

pub(super) async fn supersede(
    c: &Object,
    ids: &[DeliveryId],
    why: &str,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE deliveries SET state = 'superseded', last_error = $2, updated_at = $3 \
             WHERE id = ANY($1) AND state = 'pending'",
        )
        .await?;
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    c.execute(&stmt, &[&ids, &why, &now]).await?;
    Ok(())
}

/// Marks a live update done and records what its generation's message now shows, in one
/// transaction.
pub(super) async fn mark_shown(
    c: &mut Object,
    id: DeliveryId,
    status: u16,
    message_ref: Option<&str>,
    first_post: bool,
    now: i64,
) -> Result<(), PgError> {
    let tx = c.transaction().await?;
    mark_done(&tx, id, status, message_ref, now).await?;
    let stmt = tx
        .prepare_cached(
            "INSERT INTO live_messages (destination, generation_id, message_ref, shown_type, \
             shown_images, first_post, updated_at) \
             SELECT destination, generation_id, $2, event_type, images_done, id, $3 \
             FROM deliveries WHERE id = $1 \
             ON CONFLICT (destination, generation_id) DO UPDATE SET \
             message_ref = EXCLUDED.message_ref, shown_type = EXCLUDED.shown_type, \
             shown_images = EXCLUDED.shown_images, \
             first_post = CASE WHEN $4 THEN EXCLUDED.first_post ELSE live_messages.first_post END, \
             updated_at = EXCLUDED.updated_at",
        )
        .await?;
    tx.execute(&stmt, &[&id.0, &message_ref, &now, &first_post])
        .await?;
    tx.commit().await
}

pub(super) async fn forget_message(
    c: &Object,
    destination: &str,
    generation_id: &str,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "UPDATE live_messages SET message_ref = NULL, updated_at = $3 \
             WHERE destination = $1 AND generation_id = $2",
        )
        .await?;
    c.execute(&stmt, &[&destination, &generation_id, &now])
        .await?;
    Ok(())
}

/// Takes or renews `owner`'s lease on `destination` until `ttl` from now by the database's
/// clock; an unexpired lease of another owner is left alone. Whether `owner` holds it now.
pub(super) async fn lease(
    c: &Object,
    destination: &str,
    owner: &str,
    ttl: Duration,
) -> Result<bool, PgError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO leases (destination, owner, expires_at) \
             VALUES ($1, $2, clock_timestamp() + make_interval(secs => $3)) \
             ON CONFLICT (destination) DO UPDATE SET owner = EXCLUDED.owner, \
             expires_at = EXCLUDED.expires_at \
             WHERE leases.owner = EXCLUDED.owner OR leases.expires_at <= clock_timestamp() \
             RETURNING owner",
        )
        .await?;
    let granted = c
        .query_opt(&stmt, &[&destination, &owner, &ttl.as_secs_f64()])
        .await?;
    Ok(granted.is_some())
}

pub(super) async fn release(c: &Object, destination: &str, owner: &str) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached("DELETE FROM leases WHERE destination = $1 AND owner = $2")
        .await?;
    c.execute(&stmt, &[&destination, &owner]).await?;
    Ok(())
}

pub(super) async fn ping_window(
    c: &Object,
    destination: &str,
    key: &str,
) -> Result<Option<i64>, PgError> {
    let stmt = c
        .prepare_cached(
            "SELECT open_until FROM ping_windows WHERE destination = $1 AND ping_key = $2",
        )
        .await?;
    c.query_opt(&stmt, &[&destination, &key])
        .await?
        .map(|r| r.try_get(0))
        .transpose()
}

pub(super) async fn open_ping_window(
    c: &Object,
    destination: &str,
    key: &str,
    until: i64,
    every_ms: i64,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO ping_windows (destination, ping_key, open_until, every_ms, updated_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (destination, ping_key) DO UPDATE SET \
             open_until = EXCLUDED.open_until, every_ms = EXCLUDED.every_ms, \
             updated_at = EXCLUDED.updated_at",
        )
        .await?;
    c.execute(&stmt, &[&destination, &key, &until, &every_ms, &now])
        .await?;
    Ok(())
}

pub(super) async fn hold_ping(
    c: &Object,
    destination: &str,
    id: DeliveryId,
    event_type: EventType,
    guard: &PingGuard,
    now: i64,
) -> Result<(), PgError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO held_pings (delivery_id, destination, ping_key, event_type, label, held_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id) DO NOTHING",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &id.0,
            &destination,
            &guard.key,
            &event_type.as_str(),
            &guard.label,
            &now,
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn held_pings(c: &Object, destination: &str) -> Result<Vec<HeldRow>, PgError> {
    let stmt = c
        .prepare_cached(
            "SELECT w.ping_key, w.open_until, w.every_ms, COUNT(*), MIN(h.delivery_id), \
             (array_agg(h.label ORDER BY h.delivery_id))[1:$2], \
             (array_agg(h.event_type ORDER BY h.delivery_id))[1] \
             FROM ping_windows w JOIN held_pings h \
             ON h.destination = w.destination AND h.ping_key = w.ping_key \
             WHERE w.destination = $1 GROUP BY w.ping_key, w.open_until, w.every_ms",
        )
        .await?;
    let rows = c
        .query(&stmt, &[&destination, &(SUMMARY_NAMES as i32)])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(HeldRow {
                key: r.try_get(0)?,
                until: r.try_get(1)?,
                every_ms: r.try_get(2)?,
                count: r.try_get(3)?,
                first: r.try_get(4)?,
                labels: r.try_get(5)?,
                event_type: r.try_get(6)?,
            })
        })
        .collect()
}

/// Stores a summary at the head of its lane (slot 0 sorts before every delivery), forgets the
/// pings it covers and starts the next interval, in one transaction. Its id is taken under
/// the accept lock like every delivery id (ids stay in commit order).
pub(super) async fn queue_summary(
    c: &mut Object,
    key: &str,
    summary: &NewDelivery,
    until: i64,
    now: i64,
) -> Result<DeliveryId, PgError> {
    let tx = c.transaction().await?;
    let lock = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1)")
        .await?;
    tx.execute(&lock, &[&ACCEPT_LOCK]).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, \
             state, attempts, received_at, started_at, next_attempt_at, updated_at, mode, role, \
             slot, ping_key) VALUES ($1, $2, '', $3, $4, $5, 'pending', 0, $6, 0, $6, $6, 'each', \
             'summary', 0, $7) RETURNING id",
        )
        .await?;
    let row = tx
        .query_one(
            &insert,
            &[
                &format!("summary-{now}"),
                &summary.event_type.as_str(),
                &summary.destination,
                &summary.kind.as_str(),
                &summary.body,
                &now,
                &key,
            ],
        )
        .await?;
    let id: i64 = row.try_get(0)?;
    tx.execute(
        "DELETE FROM held_pings WHERE destination = $1 AND ping_key = $2",
        &[&summary.destination, &key],
    )
    .await?;
    tx.execute(
        "UPDATE ping_windows SET open_until = $3, updated_at = $4 \
         WHERE destination = $1 AND ping_key = $2",
        &[&summary.destination, &key, &until, &now],
    )
    .await?;
    tx.commit().await?;
    Ok(DeliveryId(id))
}
