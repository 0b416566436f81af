//! `printbell deliveries list|retry|purge`: inspect and replay the durable queue. Works on the
//! store file directly (WAL mode), also while `serve` is running: its lanes poll the store and
//! pick up retried deliveries within a second.

use super::{CommandResult, Failure};
use crate::render::text::truncate;
use crate::store::{now_ms, schema, State};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

fn open(store: &Path) -> Result<rusqlite::Connection, Failure> {
    if !store.exists() {
        return Err(Failure::invalid(format!(
            "the store {} does not exist (has `printbell serve` run with this config?)",
            store.display()
        )));
    }
    schema::open(store)
        .map_err(|e| Failure::runtime(format!("cannot open the store {}: {e}", store.display())))
}

fn sql(e: rusqlite::Error) -> Failure {
    Failure::runtime(format!("store error: {e}"))
}

fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn list(
    store: &Path,
    state: Option<&str>,
    destination: Option<&str>,
    limit: usize,
    out: &mut dyn Write,
) -> CommandResult {
    let state = match state {
        Some(s) => Some(State::parse(s).ok_or_else(|| {
            Failure::invalid(format!("--state {s}: expected pending, dead or done"))
        })?),
        None => None,
    };
    let conn = open(store)?;
    let rows = schema::list(&conn, state, destination, limit).map_err(sql)?;
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
        let next = if d.state == "pending" {
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
            d.event_type,
            truncate(&d.generation_id, 24),
            d.state,
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

pub fn retry(store: &Path, id: Option<i64>, all_dead: bool, out: &mut dyn Write) -> CommandResult {
    let conn = open(store)?;
    let io = |e: std::io::Error| Failure::runtime(format!("cannot write output: {e}"));
    match (id, all_dead) {
        (Some(id), false) => {
            if schema::retry(&conn, id, now_ms()).map_err(sql)? {
                writeln!(out, "delivery {id} is pending again").map_err(io)?;
                Ok(())
            } else {
                Err(Failure::invalid(format!("no delivery with id {id}")))
            }
        }
        (None, true) => {
            let n = schema::retry_all_dead(&conn, now_ms()).map_err(sql)?;
            writeln!(out, "{n} dead deliveries are pending again").map_err(io)?;
            Ok(())
        }
        _ => Err(Failure::invalid("give a delivery ID or --all-dead")),
    }
}

pub fn purge(store: &Path, older_than: &str, out: &mut dyn Write) -> CommandResult {
    let age = humantime::parse_duration(older_than.trim()).map_err(|e| {
        Failure::invalid(format!(
            "--older-than {older_than}: not a duration ({e}); write e.g. 7d or 12h"
        ))
    })?;
    let conn = open(store)?;
    let before = now_ms() - age.as_millis() as i64;
    let (d, e) = schema::purge(&conn, before, true).map_err(sql)?;
    writeln!(
        out,
        "purged {d} done/dead deliveries older than {older_than} and {e} event ids older than \
         the 7-day duplicate window"
    )
    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
    Ok(())
}
