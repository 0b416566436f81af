//! Every SQL statement of the SQLite backend: plain functions on a connection, run by the
//! writer thread (of `serve` and of the CLI alike). Repeated statements use the connection's
//! statement cache.
//!
//! Storage conventions (shared with every backend, see `store::row`): states, event types and
//! kinds are stored as their names; `started_at` is 0 before the first attempt of a series (the
//! column is `NOT NULL` since migration 1).

use super::super::row::{DeliveryRow as Row, HeldRow, LiveRow, DELIVERY_COLUMNS as COLUMNS};
use super::super::{
    Accepted, DeliveryId, DeliveryState, Filter, NewDelivery, PingGuard, Purged, QueueDepth,
    Reschedule, Role, DEDUPE_WINDOW_MS, SUMMARY_NAMES,
};
use crate::domain::EventType;
use rusqlite::{params, Connection};

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        event_id: r.get(1)?,
        event_type: r.get(2)?,
        generation_id: r.get(3)?,
        destination: r.get(4)?,
        kind: r.get(5)?,
        body: r.get(6)?,
        state: r.get(7)?,
        attempts: r.get(8)?,
        received_at: r.get(9)?,
        started_at: r.get(10)?,
        next_attempt_at: r.get(11)?,
        updated_at: r.get(12)?,
        last_status: r.get(13)?,
        last_error: r.get(14)?,
        message_id: r.get(15)?,
        mode: r.get(16)?,
        role: r.get(17)?,
        quiet_body: r.get(18)?,
        images_done: r.get(19)?,
        ping_for: r.get(20)?,
        ping_key: r.get(21)?,
        ping_every: r.get(22)?,
        label: r.get(23)?,
    })
}

/// Records an event id and its deliveries, or reports a duplicate.
pub(super) fn accept(
    conn: &Connection,
    event_id: &str,
    deliveries: &[NewDelivery],
    now: i64,
) -> rusqlite::Result<Accepted> {
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO events (id, received_at) VALUES (?1, ?2)")?
        .execute(params![event_id, now])?;
    if inserted == 0 {
        return Ok(Accepted::Duplicate);
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state, \
         attempts, received_at, started_at, next_attempt_at, updated_at, mode, role, quiet_body, \
         images_done, ping_for, slot, ping_key, ping_every, label) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, 0, ?7, ?7, ?8, ?9, ?10, ?11, ?12, \
         CASE WHEN ?8 = 'live' THEN (SELECT MIN(id) FROM deliveries WHERE destination = ?4 AND generation_id = ?3) END, \
         ?13, ?14, ?15)",
    )?;
    let mut ids = Vec::with_capacity(deliveries.len());
    // The message delivery a ping belongs to: the one stored just before it.
    let mut last_message: Option<i64> = None;
    for d in deliveries {
        let ping_for = match d.role {
            Role::Message | Role::Summary => None,
            Role::Ping => last_message,
        };
        stmt.execute(params![
            event_id,
            d.event_type.as_str(),
            d.generation_id,
            d.destination,
            d.kind.as_str(),
            d.body,
            now,
            d.mode.as_str(),
            d.role.as_str(),
            d.quiet_body,
            d.images_done as i64,
            ping_for,
            d.guard.as_ref().map(|g| &g.key),
            d.guard.as_ref().map(|g| g.every_ms),
            d.guard.as_ref().map(|g| &g.label),
        ])?;
        let id = conn.last_insert_rowid();
        if d.role == Role::Message {
            last_message = Some(id);
        }
        ids.push(DeliveryId(id));
    }
    Ok(Accepted::New(ids))
}

/// The oldest pending deliveries of a destination, at most `limit`, oldest first.
pub(super) fn heads(
    conn: &Connection,
    destination: &str,
    limit: usize,
) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE destination = ?1 AND state = 'pending' \
         ORDER BY COALESCE(slot, id), id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![destination, limit as i64], row)?;
    rows.collect()
}

pub(super) fn mark_done(
    conn: &Connection,
    id: DeliveryId,
    status: u16,
    message_id: Option<&str>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'done', attempts = attempts + 1, last_status = ?2, \
         last_error = NULL, message_id = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id.0, status, message_id, now])?;
    Ok(())
}

/// A failed attempt that will be tried again at `next.next_attempt_at`.
pub(super) fn mark_retry(
    conn: &Connection,
    id: DeliveryId,
    next: &Reschedule,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3, \
         next_attempt_at = ?4, updated_at = ?5, started_at = ?6 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![
        id.0,
        next.status,
        next.error,
        next.next_attempt_at,
        now,
        next.started_at
    ])?;
    Ok(())
}

/// Postpones a delivery without counting an attempt (rate limited).
pub(super) fn defer(
    conn: &Connection,
    id: DeliveryId,
    next: &Reschedule,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET last_status = ?2, last_error = ?3, next_attempt_at = ?4, updated_at = ?5, \
         started_at = ?6 WHERE id = ?1 AND state = 'pending'",
    )?
    .execute(params![
        id.0,
        next.status,
        next.error,
        next.next_attempt_at,
        now,
        next.started_at
    ])?;
    Ok(())
}

/// `counted`: whether this was an attempt on the wire.
pub(super) fn mark_dead(
    conn: &Connection,
    id: DeliveryId,
    status: Option<u16>,
    error: &str,
    counted: bool,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE deliveries SET state = 'dead', attempts = attempts + ?5, last_status = ?2, \
         last_error = ?3, updated_at = ?4 WHERE id = ?1",
    )?
    .execute(params![id.0, status, error, now, counted as i64])?;
    Ok(())
}

/// Destinations that have pending deliveries.
pub(super) fn pending_destinations(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare_cached("SELECT DISTINCT destination FROM deliveries WHERE state = 'pending'")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    rows.collect()
}

/// Per destination: pending count and the oldest pending `received_at`.
pub(super) fn queue_depths(conn: &Connection) -> rusqlite::Result<Vec<QueueDepth>> {
    let mut stmt = conn.prepare_cached(
        "SELECT destination, COUNT(*), MIN(received_at) FROM deliveries WHERE state = 'pending' GROUP BY destination",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(QueueDepth {
            destination: r.get(0)?,
            pending: r.get(1)?,
            oldest_received_at: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Newest first.
pub(super) fn list(conn: &Connection, filter: &Filter) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR destination = ?2) \
         ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(
        params![
            filter.state.map(DeliveryState::as_str),
            filter.destination,
            filter.limit as i64
        ],
        row,
    )?;
    rows.collect()
}

/// Puts a dead (or done) delivery back in its lane as a fresh series of attempts.
/// Returns whether a delivery with that id existed.
pub(super) fn retry(conn: &Connection, id: DeliveryId, now: i64) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, next_attempt_at = ?2, \
         updated_at = ?2 WHERE id = ?1",
        params![id.0, now],
    )?;
    Ok(n > 0)
}

pub(super) fn retry_all_dead(conn: &Connection, now: i64) -> rusqlite::Result<u64> {
    let n = conn.execute(
        "UPDATE deliveries SET state = 'pending', attempts = 0, started_at = 0, next_attempt_at = ?1, \
         updated_at = ?1 WHERE state = 'dead'",
        params![now],
    )?;
    Ok(n as u64)
}

/// Deletes done (and, with `include_dead`, dead) deliveries last updated before `before`, and
/// event ids first seen before it and outside the dedupe window.
pub(super) fn purge(
    conn: &Connection,
    before: i64,
    include_dead: bool,
    now: i64,
) -> rusqlite::Result<Purged> {
    let d = conn.execute(
        "DELETE FROM deliveries WHERE (state = 'done' OR (?2 AND state = 'dead')) AND updated_at < ?1",
        params![before, include_dead],
    )?;
    // Event ids are what makes a redelivered webhook a duplicate: they are kept for the whole
    // window SPEC promises, however short the retention or `--older-than`.
    let events_before = before.min(now - DEDUPE_WINDOW_MS);
    let e = conn.execute(
        "DELETE FROM events WHERE received_at < ?1",
        params![events_before],
    )?;
    // A live message whose generation is quiet for the whole retention is done with.
    conn.execute(
        "DELETE FROM live_messages WHERE updated_at < ?1",
        params![before],
    )?;
    // An interval that ended long ago with nothing held back has nothing left to say.
    conn.execute(
        "DELETE FROM ping_windows WHERE open_until < ?1 AND NOT EXISTS (SELECT 1 FROM held_pings h \
         WHERE h.destination = ping_windows.destination AND h.ping_key = ping_windows.ping_key)",
        params![before],
    )?;
    Ok(Purged {
        deliveries: d as u64,
        events: e as u64,
    })
}

/// Proves the store accepts writes (readiness).
pub(super) fn touch(conn: &Connection, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO health (id, checked_at) VALUES (1, ?1) ON CONFLICT(id) DO UPDATE SET checked_at = ?1")?
        .execute(params![now])?;
    Ok(())
}

pub(super) fn delivery(conn: &Connection, id: DeliveryId) -> rusqlite::Result<Option<Row>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM deliveries WHERE id = ?1"))?;
    let mut rows = stmt.query_map(params![id.0], row)?;
    rows.next().transpose()
}

pub(super) fn live_message(
    conn: &Connection,
    destination: &str,
    generation_id: &str,
) -> rusqlite::Result<Option<LiveRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_ref, shown_type, shown_images, first_post FROM live_messages \
         WHERE destination = ?1 AND generation_id = ?2",
    )?;
    let mut rows = stmt.query_map(params![destination, generation_id], |r| {
        Ok(LiveRow {
            message_ref: r.get(0)?,
            shown_type: r.get(1)?,
            shown_images: r.get(2)?,
            first_post: r.get(3)?,
        })
    })?;
    rows.next().transpose()
}

pub(super) fn waiting_updates(
    conn: &Connection,
    destination: &str,
    generation_id: &str,
) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM deliveries WHERE destination = ?1 AND generation_id = ?2 \
         AND state = 'pending' AND role = 'message' ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![destination, generation_id], row)?;
    rows.collect()
}

pub(super) fn supersede(
    conn: &Connection,
    ids: &[DeliveryId],
    why: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "UPDATE deliveries SET state = 'superseded', last_error = ?2, updated_at = ?3 \
         WHERE id = ?1 AND state = 'pending'",
    )?;
    for id in ids {
        stmt.execute(params![id.0, why, now])?;
    }
    Ok(())
}

/// Marks a live update done and records what its generation's message now shows.
pub(super) fn mark_shown(
    conn: &Connection,
    id: DeliveryId,
    status: u16,
    message_ref: Option<&str>,
    first_post: bool,
    now: i64,
) -> rusqlite::Result<()> {
    mark_done(conn, id, status, message_ref, now)?;
    conn.prepare_cached(
        "INSERT INTO live_messages (destination, generation_id, message_ref, shown_type, shown_images, \
         first_post, updated_at) \
         SELECT destination, generation_id, ?2, event_type, images_done, id, ?3 FROM deliveries WHERE id = ?1 \
         ON CONFLICT (destination, generation_id) DO UPDATE SET message_ref = excluded.message_ref, \
         shown_type = excluded.shown_type, shown_images = excluded.shown_images, \
         first_post = CASE WHEN ?4 THEN excluded.first_post ELSE live_messages.first_post END, \
         updated_at = excluded.updated_at",
    )?
    .execute(params![id.0, message_ref, now, first_post])?;
    Ok(())
}

pub(super) fn forget_message(
    conn: &Connection,
    destination: &str,
    generation_id: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE live_messages SET message_ref = NULL, updated_at = ?3 \
         WHERE destination = ?1 AND generation_id = ?2",
    )?
    .execute(params![destination, generation_id, now])?;
    Ok(())
}

pub(super) fn ping_window(
    conn: &Connection,
    destination: &str,
    key: &str,
) -> rusqlite::Result<Option<i64>> {
    let mut stmt = conn.prepare_cached(
        "SELECT open_until FROM ping_windows WHERE destination = ?1 AND ping_key = ?2",
    )?;
    let mut rows = stmt.query_map(params![destination, key], |r| r.get(0))?;
    rows.next().transpose()
}

pub(super) fn open_ping_window(
    conn: &Connection,
    destination: &str,
    key: &str,
    until: i64,
    every_ms: i64,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO ping_windows (destination, ping_key, open_until, every_ms, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (destination, ping_key) DO UPDATE SET \
         open_until = excluded.open_until, every_ms = excluded.every_ms, updated_at = excluded.updated_at",
    )?
    .execute(params![destination, key, until, every_ms, now])?;
    Ok(())
}

pub(super) fn hold_ping(
    conn: &Connection,
    destination: &str,
    id: DeliveryId,
    event_type: EventType,
    guard: &PingGuard,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO held_pings (delivery_id, destination, ping_key, event_type, label, held_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id.0,
        destination,
        guard.key,
        event_type.as_str(),
        guard.label,
        now
    ])?;
    Ok(())
}

pub(super) fn held_pings(conn: &Connection, destination: &str) -> rusqlite::Result<Vec<HeldRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.ping_key, w.open_until, w.every_ms, COUNT(*), MIN(h.delivery_id) \
         FROM ping_windows w JOIN held_pings h ON h.destination = w.destination AND h.ping_key = w.ping_key \
         WHERE w.destination = ?1 GROUP BY w.ping_key, w.open_until, w.every_ms",
    )?;
    let keys = stmt
        .query_map(params![destination], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?
        .collect::<rusqlite::Result<Vec<(String, i64, i64, i64, i64)>>>()?;
    let mut labels = conn.prepare_cached(
        "SELECT label, event_type FROM held_pings WHERE destination = ?1 AND ping_key = ?2 \
         ORDER BY delivery_id LIMIT ?3",
    )?;
    let mut out = Vec::with_capacity(keys.len());
    for (key, until, every_ms, count, first) in keys {
        let rows = labels
            .query_map(params![destination, key, SUMMARY_NAMES as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let event_type = rows.first().map(|r| r.1.clone()).unwrap_or_default();
        out.push(HeldRow {
            key,
            until,
            every_ms,
            count,
            labels: rows.into_iter().map(|r| r.0).collect(),
            first,
            event_type,
        });
    }
    Ok(out)
}

/// Stores a summary at the head of its lane (slot 0 sorts before every delivery), forgets the
/// pings it covers and starts the next interval.
pub(super) fn queue_summary(
    conn: &Connection,
    key: &str,
    summary: &NewDelivery,
    until: i64,
    now: i64,
) -> rusqlite::Result<DeliveryId> {
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, event_type, generation_id, destination, kind, body, state, \
         attempts, received_at, started_at, next_attempt_at, updated_at, mode, role, slot, ping_key) \
         VALUES (?1, ?2, '', ?3, ?4, ?5, 'pending', 0, ?6, 0, ?6, ?6, 'each', 'summary', 0, ?7)",
    )?
    .execute(params![
        format!("summary-{now}"),
        summary.event_type.as_str(),
        summary.destination,
        summary.kind.as_str(),
        summary.body,
        now,
        key
    ])?;
    let id = conn.last_insert_rowid();
    conn.prepare_cached("DELETE FROM held_pings WHERE destination = ?1 AND ping_key = ?2")?
        .execute(params![summary.destination, key])?;
    conn.prepare_cached(
        "UPDATE ping_windows SET open_until = ?3, updated_at = ?4 WHERE destination = ?1 AND ping_key = ?2",
    )?
    .execute(params![summary.destination, key, until, now])?;
    Ok(DeliveryId(id))
}
