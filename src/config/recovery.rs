//! Serde error recovery: every key serde rejects is reported, not only the first.
//!
//! serde stops at the first entry it rejects (an unknown key, a value of the wrong type). To
//! report them all, the rejected entry is reported at its position, removed from the parsed
//! TOML document, and the document is read again, until it deserializes or nothing can be
//! removed. A TOML syntax error cannot be recovered from and ends the reading.

use super::problems::{explain_serde_message, Problems};
use super::raw::RawConfig;

/// Deserializes the document, reporting every entry serde rejects rather than only the
/// first: the rejected entry is reported, removed, and the document read again.
pub fn deserialize_all(source: &str, problems: &mut Problems<'_>) -> Option<RawConfig> {
    use serde::Deserialize;
    let mut doc = match toml::de::DeTable::parse(source) {
        Ok(doc) => doc,
        Err(e) => {
            let mut message = e.message().trim().to_string();
            if let Some(key) = e.span().and_then(|span| source.get(span)) {
                if message == "duplicate key" && !key.contains('\n') {
                    message = format!("duplicate key `{key}`");
                }
            }
            problems.at(e.span(), message);
            return None;
        }
    };
    // Each round removes one entry, so this ends; the bound is a safety net.
    for _ in 0..1000 {
        match RawConfig::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(raw) => return Some(raw),
            Err(e) => {
                let removed = e
                    .span()
                    .and_then(|span| remove_entry_at(doc.get_mut(), span.start));
                let message = explain_serde_message(e.message());
                let message = match &removed {
                    // Serde names the unknown key itself; other errors only the value.
                    Some(key) if !message.starts_with("unknown key") => {
                        format!("`{key}`: {message}")
                    }
                    _ => message,
                };
                problems.at(e.span(), message);
                removed.as_ref()?;
            }
        }
    }
    None
}

/// Removes the innermost table entry whose key or value is at `offset`; returns its dotted
/// key (e.g. `server.listen`).
fn remove_entry_at(table: &mut toml::de::DeTable<'_>, offset: usize) -> Option<String> {
    let inside = |span: std::ops::Range<usize>| span.start <= offset && offset < span.end;
    let mut hit = None;
    for (key, value) in table.iter_mut() {
        if let Some(inner) = remove_nested(value.get_mut(), offset) {
            return Some(format!("{}.{inner}", key.get_ref()));
        }
        if hit.is_none() && (inside(key.span()) || inside(value.span())) {
            hit = Some(key.get_ref().to_string());
        }
    }
    let key = hit?;
    table.remove(key.as_str()).map(|_| key)
}

fn remove_nested(value: &mut toml::de::DeValue<'_>, offset: usize) -> Option<String> {
    match value {
        toml::de::DeValue::Table(t) => remove_entry_at(t, offset),
        toml::de::DeValue::Array(items) => items
            .iter_mut()
            .find_map(|item| remove_nested(item.get_mut(), offset)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_rejected_entry_is_reported_and_the_rest_is_read() {
        let source = "[server]\nlisen = \"x\"\nmax_body_bytes = \"big\"\nsecret = \"s\"\n";
        let mut problems = Problems::new(Path::new("t.toml"), source);
        let raw = deserialize_all(source, &mut problems).expect("read after recovery");
        assert_eq!(raw.server.secret.map(|s| s.into_inner()), Some("s".into()));
        let found: Vec<_> = problems
            .list
            .iter()
            .map(|p| (p.line, p.message.as_str()))
            .collect();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, Some(2));
        assert!(found[0].1.starts_with("unknown key `lisen`"), "{found:?}");
        assert_eq!(found[1].0, Some(3));
        assert!(
            found[1].1.starts_with("`server.max_body_bytes`: "),
            "{found:?}"
        );
    }

    #[test]
    fn a_syntax_error_ends_the_reading() {
        let source = "[server]\nlisten = \n";
        let mut problems = Problems::new(Path::new("t.toml"), source);
        assert!(deserialize_all(source, &mut problems).is_none());
        assert_eq!(problems.list.len(), 1);
    }
}
