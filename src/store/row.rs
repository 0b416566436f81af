//! Rows as every backend stores them, and their one parse into the store API's types.
//!
//! A backend reads its columns into these plain shapes (names as text, times as Unix ms,
//! `started_at` 0 before the first attempt); [`DeliveryRow::parse`] and [`LiveRow::parse`]
//! turn them into [`Delivery`] and [`LiveMessage`], so a value this binary does not know is
//! the same error, naming the row, whichever backend holds it.

use super::{
    Delivery, DeliveryId, DeliveryState, HeldPings, LiveMessage, PingGuard, Role, StoreError,
};
use crate::domain::{EventType, Kind, Mode};

/// A `deliveries` row as stored.
#[derive(Debug)]
pub(super) struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub event_type: String,
    pub generation_id: String,
    pub destination: String,
    pub kind: String,
    pub body: String,
    pub state: String,
    pub attempts: i64,
    pub received_at: i64,
    pub started_at: i64,
    pub next_attempt_at: i64,
    pub updated_at: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub mode: String,
    pub role: String,
    pub quiet_body: Option<String>,
    pub images_done: i64,
    pub ping_for: Option<i64>,
    pub ping_key: Option<String>,
    pub ping_every: Option<i64>,
    pub label: Option<String>,
}

/// The columns of [`DeliveryRow`], in its field order, for `SELECT`s.
pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, event_type, generation_id, destination, \
     kind, body, state, attempts, received_at, started_at, next_attempt_at, updated_at, \
     last_status, last_error, message_id, mode, role, quiet_body, images_done, ping_for, \
     ping_key, ping_every, label";

impl DeliveryRow {
    /// The row in the store API's types; a value this binary does not know is an error naming
    /// the row.
    pub(super) fn parse(self) -> Result<Delivery, StoreError> {
        let id = DeliveryId(self.id);
        let bad = |column: &'static str, value: String| StoreError::BadRow { id, column, value };
        let event_type = EventType::parse(&self.event_type)
            .ok_or_else(|| bad("event type", self.event_type.clone()))?;
        let kind = Kind::parse(&self.kind).ok_or_else(|| bad("kind", self.kind.clone()))?;
        let state =
            DeliveryState::parse(&self.state).ok_or_else(|| bad("state", self.state.clone()))?;
        let mode = Mode::parse(&self.mode).ok_or_else(|| bad("mode", self.mode.clone()))?;
        let role = Role::parse(&self.role).ok_or_else(|| bad("role", self.role.clone()))?;
        let attempts =
            u32::try_from(self.attempts).map_err(|_| bad("attempts", self.attempts.to_string()))?;
        let images_done = u64::try_from(self.images_done)
            .map_err(|_| bad("images done", self.images_done.to_string()))?;
        let last_status = self
            .last_status
            .map(|s| u16::try_from(s).map_err(|_| bad("last status", s.to_string())))
            .transpose()?;
        Ok(Delivery {
            id,
            event_id: self.event_id,
            event_type,
            generation_id: self.generation_id,
            destination: self.destination,
            kind,
            body: self.body,
            state,
            attempts,
            received_at: self.received_at,
            started_at: (self.started_at != 0).then_some(self.started_at),
            next_attempt_at: self.next_attempt_at,
            updated_at: self.updated_at,
            last_status,
            last_error: self.last_error,
            message_id: self.message_id,
            mode,
            role,
            quiet_body: self.quiet_body,
            images_done,
            ping_for: self.ping_for.map(DeliveryId),
            guard: match (self.ping_key, self.ping_every) {
                (Some(key), Some(every_ms)) => Some(PingGuard {
                    key,
                    every_ms,
                    label: self.label.unwrap_or_default(),
                }),
                _ => None,
            },
        })
    }
}

/// Rows as read, parsed.
pub(super) fn parse_all(rows: Vec<DeliveryRow>) -> Result<Vec<Delivery>, StoreError> {
    rows.into_iter().map(DeliveryRow::parse).collect()
}

/// A `live_messages` row as stored.
#[derive(Debug)]
pub(super) struct LiveRow {
    pub message_ref: Option<String>,
    pub shown_type: String,
    pub shown_images: i64,
    pub first_post: i64,
}

impl LiveRow {
    pub(super) fn parse(self) -> Result<LiveMessage, StoreError> {
        let first_post = DeliveryId(self.first_post);
        let shown_type = EventType::parse(&self.shown_type).ok_or(StoreError::BadRow {
            id: first_post,
            column: "live message type",
            value: self.shown_type.clone(),
        })?;
        Ok(LiveMessage {
            message_ref: self.message_ref,
            shown: shown_type.rank(self.shown_images.max(0) as u64),
            first_post,
        })
    }
}

/// One key's held-back pings as stored: its `ping_windows` row and its `held_pings` rows.
#[derive(Debug)]
pub(super) struct HeldRow {
    pub key: String,
    pub until: i64,
    pub every_ms: i64,
    pub count: i64,
    pub labels: Vec<String>,
    pub first: i64,
    pub event_type: String,
}

impl HeldRow {
    pub(super) fn parse(self) -> Result<HeldPings, StoreError> {
        let event_type = EventType::parse(&self.event_type).ok_or(StoreError::BadRow {
            id: DeliveryId(self.first),
            column: "held ping's event type",
            value: self.event_type.clone(),
        })?;
        Ok(HeldPings {
            key: self.key,
            until: self.until,
            every_ms: self.every_ms,
            count: self.count.max(0) as u64,
            labels: self.labels,
            event_type,
        })
    }
}
