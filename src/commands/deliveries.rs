//! `printbell deliveries list|retry|purge`: inspect and replay the durable queue. Opens the
//! store as `serve` does (SQLite: WAL mode, its own writer; PostgreSQL: its own connections),
//! also while `serve` is running: its lanes poll the store and pick up retried deliveries
//! within a second.

use super::{CommandResult, Failure};
use crate::render::text::truncate;
use crate::store::{self, now_ms, Backend, DeliveryId, DeliveryState, Filter, Store, StoreError};
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
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for d in rows {
        let next = if d.state == DeliveryState::Pending {
            time(d.next_attempt_at)
        } else {
            "-".into()
        };
        let error = match (d.last_status, &d.last_error) {
            (Some(s), Some(e)) => format!("{s} {e}"),
            (None, Some(e)) => e.clone(),
            (Some(s), None) => s.to_string(),
            (None, None) => String::new(),
        };
        table.push(vec![
            d.id.to_string(),
            d.destination,
            d.event_type.to_string(),
            truncate(&d.generation_id, 24),
            d.state.to_string(),
            d.attempts.to_string(),
            next,
            truncate(&error.replace('\n', " "), 80),
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

pub async fn retry(
    store: &Backend,
    id: Option<i64>,
    all_dead: bool,
    out: &mut dyn Write,
) -> CommandResult {
    let store = open(store).await?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    match (id.map(DeliveryId), all_dead) {
        (Some(id), false) => {
            if store.retry(id, now_ms()).await.map_err(failed)? {
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
