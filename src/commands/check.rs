//! `printbell check`: validate the config and say what it sets up. Webhook URLs are shown
//! redacted (scheme and host only).

use super::{CommandResult, Failure};
use crate::loaded::Loaded;
use std::io::Write;
use std::path::Path;

pub fn run(path: &Path, out: &mut dyn Write) -> CommandResult {
    let loaded = Loaded::from_file(path).map_err(|e| {
        let n = e.problems.len();
        Failure::invalid(format!(
            "{e}\n{} is invalid: {n} problem{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        ))
    })?;
    let c = &loaded.config;
    // A store serve could not open is a problem of this config, found before serve meets it.
    if let Some(why) = crate::store::open_problem(&c.store.backend) {
        return Err(Failure::invalid(format!(
            "{}: store: {why}\n{} is invalid: 1 problem",
            path.display(),
            path.display()
        )));
    }
    let w = |out: &mut dyn Write, s: String| {
        writeln!(out, "{s}").map_err(|e| Failure::runtime(format!("cannot write output: {e}")))
    };
    w(out, format!("{} is valid.", path.display()))?;
    w(
        out,
        format!(
            "listening on {}, webhook path {}, secret {}; store {}",
            c.server.listen,
            c.server.webhook_path,
            if c.server.secret.is_some() {
                "set"
            } else {
                "not set"
            },
            c.store.backend
        ),
    )?;
    w(out, format!("{} destination(s):", c.destinations.len()))?;
    for d in c.destinations.values() {
        w(
            out,
            format!(
                "  {} ({}, {}) → {}",
                d.name,
                d.kind,
                d.mode,
                d.shown_address()
            ),
        )?;
    }
    w(out, format!("{} route(s):", c.routes.len()))?;
    for r in &c.routes {
        let tags = match (&r.tags, r.untagged) {
            (_, true) => "untagged generations".to_string(),
            (Some(t), _) if !t.is_empty() => format!("tags any of [{}]", t.join(", ")),
            _ => "any tags".to_string(),
        };
        w(
            out,
            format!(
                "  {}: {tags}, events [{}] → {}",
                r.label(),
                r.events
                    .iter()
                    .map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.to.join(", ")
            ),
        )?;
    }
    for warning in &c.warnings {
        w(out, format!("warning: {warning}"))?;
    }
    Ok(())
}
