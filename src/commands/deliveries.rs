//! `printbell deliveries list|retry|purge`: inspect and replay the durable queue. Opens the
//! store as `serve` does (SQLite: WAL mode, its own writer; PostgreSQL: its own connections),
//! also while `serve` is running: its lanes poll the store and pick up retried deliveries
//! within a second.

use super::{CommandResult, Failure};
use crate::render::text::truncate;
use crate::store::{
    self, now_ms, Backend, Delivery, DeliveryId, DeliveryState, Filter, Store, StoreError,
};
use std::io::Write;
use std::time::{Duration, UNIX_EPOCH};

/// Opens an existing store; a SQLite file that is not there is a mistake in the command, not
/// an empty queue. (A PostgreSQL database without the schema gets it, and is empty.)
async fn open(backend: &Backend) -> Result<Store, Failure> {
    if let Backend::Sqlite { path } = backend {
        if !path.exists() {
            return Err(Failure::invalid(format!(
                "the store {} does not exist (has `printbell serve` run with this config?)",
                path.display()
            )));
        }
    }
    store::open(backend).await.map_err(failed)
}

fn failed(e: StoreError) -> Failure {
    Failure::runtime(e.to_string())
}

fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn list(
    store: &Backend,
    state: Option<&str>,
    destination: Option<&str>,
    limit: usize,
    json: bool,
    out: &mut dyn Write,
) -> CommandResult {
    let state =
        match state {
            Some(s) => Some(DeliveryState::parse(s).ok_or_else(|| {
                Failure::invalid(format!("--state {s}: expected {}", state_names()))
            })?),
            None => None,
        };
    let filter = Filter {
        state,
        destination: destination.map(str::to_string),
        limit,
    };
    let rows = open(store).await?.list(filter).await.map_err(failed)?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    if json {
        let all: Vec<serde_json::Value> = rows.iter().map(as_json).collect();
        let text =
            serde_json::to_string_pretty(&all).map_err(|e| Failure::runtime(e.to_string()))?;
        writeln!(out, "{text}").map_err(io)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(out, "no deliveries").map_err(io)?;
        return Ok(());
    }
    let header = [
        "ID",
        "DESTINATION",
        "EVENT",
        "GENERATION",
        "STATE",
        "ATTEMPTS",
        "NEXT ATTEMPT",
        "LAST ERROR",
        "EVENT ID",
        "RECEIVED",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for d in rows {
        let next = if d.state == DeliveryState::Pending {
            time(d.next_attempt_at)
        } else {
            "-".into()
        };
        let error = last_error(&d);
        table.push(vec![
            d.id.to_string(),
            d.destination,
            d.event_type.to_string(),
            truncate(&d.generation_id, 24),
            d.state.to_string(),
            d.attempts.to_string(),
            next,
            truncate(&error.replace('\n', " "), 80),
            d.event_id,
            time(d.received_at),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(io)?;
    }
    Ok(())
}

/// The last status and error as one text; a success status alone is no error.
fn last_error(d: &Delivery) -> String {
    match (d.last_status, &d.last_error) {
        (Some(s), Some(e)) => format!("{s} {e}"),
        (None, Some(e)) => e.clone(),
        (Some(s), None) if !(200..300).contains(&s) => s.to_string(),
        _ => String::new(),
    }
}

fn as_json(d: &Delivery) -> serde_json::Value {
    serde_json::json!({
        "id": d.id.0,
        "destination": d.destination,
        "event_id": d.event_id,
        "event_type": d.event_type.as_str(),
        "generation_id": d.generation_id,
        "kind": d.kind.as_str(),
        "mode": d.mode.as_str(),
        "role": d.role.as_str(),
        "state": d.state.as_str(),
        "attempts": d.attempts,
        "received_at": time(d.received_at),
        "next_attempt_at": (d.state == DeliveryState::Pending).then(|| time(d.next_attempt_at)),
        "last_status": d.last_status,
        "last_error": d.last_error,
        "message_id": d.message_id,
    })
}

/// `deliveries show ID`: everything stored about one delivery, its body included.
pub async fn show(store: &Backend, id: i64, out: &mut dyn Write) -> CommandResult {
    let d = open(store)
        .await?
        .delivery(DeliveryId(id))
        .await
        .map_err(failed)?
        .ok_or_else(|| Failure::invalid(format!("no delivery with id {id}")))?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    let pretty = |body: &str| {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| body.to_string())
    };
    let error = last_error(&d);
    let lines = [
        format!(
            "delivery {} to {} ({}, {} mode, {})",
            d.id,
            d.destination,
            d.kind,
            d.mode,
            d.role.as_str()
        ),
        format!(
            "event {} ({}), generation {}",
            d.event_id, d.event_type, d.generation_id
        ),
        format!("received {}", time(d.received_at)),
        format!("state {}, {} attempt(s)", d.state, d.attempts),
        match (d.state, d.started_at) {
            (DeliveryState::Pending, _) => format!("next attempt {}", time(d.next_attempt_at)),
            (_, Some(t)) => format!(
                "first attempt {}, last change {}",
                time(t),
                time(d.updated_at)
            ),
            (_, None) => format!("last change {}", time(d.updated_at)),
        },
        format!(
            "last error: {}",
            if error.is_empty() { "none" } else { &error }
        ),
        format!("message id: {}", d.message_id.as_deref().unwrap_or("none")),
    ];
    for l in lines {
        writeln!(out, "{l}").map_err(io)?;
    }
    writeln!(out, "body:\n{}", pretty(&d.body)).map_err(io)?;
    if let Some(quiet) = &d.quiet_body {
        writeln!(out, "body of edits (without mentions):\n{}", pretty(quiet)).map_err(io)?;
    }
    Ok(())
}

pub async fn retry(
    store: &Backend,
    id: Option<i64>,
    all_dead: bool,
    force: bool,
    out: &mut dyn Write,
) -> CommandResult {
    let store = open(store).await?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    match (id.map(DeliveryId), all_dead) {
        (Some(id), false) => {
            let found = store.delivery(id).await.map_err(failed)?;
            if let (Some(d), false) = (&found, force) {
                if d.state == DeliveryState::Done {
                    return Err(Failure::invalid(format!(
                        "delivery {id} was already delivered to {} (done); `deliveries retry {id} --force` posts it again",
                        d.destination
                    )));
                }
            }
            if found.is_some() && store.retry(id, now_ms()).await.map_err(failed)? {
                writeln!(out, "delivery {id} is pending again").map_err(io)?;
                Ok(())
            } else {
                Err(Failure::invalid(format!("no delivery with id {id}")))
            }
        }
        (None, true) => {
            let n = store.retry_all_dead(now_ms()).await.map_err(failed)?;
            writeln!(out, "{n} dead deliveries are pending again").map_err(io)?;
            Ok(())
        }
        _ => Err(Failure::invalid("give a delivery ID or --all-dead")),
    }
}

pub async fn purge(store: &Backend, older_than: &str, out: &mut dyn Write) -> CommandResult {
    let age = humantime::parse_duration(older_than.trim()).map_err(|e| {
        Failure::invalid(format!(
            "--older-than {older_than}: not a duration ({e}); write e.g. 7d or 12h"
        ))
    })?;
    let store = open(store).await?;
    let now = now_ms();
    let before = now - age.as_millis() as i64;
    let purged = store.purge(before, true, now).await.map_err(failed)?;
    writeln!(
        out,
        "purged {} done/dead deliveries older than {older_than} and {} event ids older than \
         the 7-day duplicate window",
        purged.deliveries, purged.events
    )
    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
    Ok(())
}

/// "pending, dead or done": every state, for the `--state` hint.
fn state_names() -> String {
    let names: Vec<&str> = DeliveryState::ALL.iter().map(|s| s.as_str()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}
