//! Routing: which destinations get a message for an event.
//!
//! Invariant: at most one message per destination per event, however many routes match.
//! The first matching route (file order) that names a destination supplies its template;
//! the `mention` lists of every matching route naming it are merged, in order, without repeats.

use crate::config::{Config, Mention, Route};
use crate::event::Event;

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub destination: String,
    /// Index into `Config::routes` of the route whose template is used.
    pub route: usize,
    pub mention: Vec<Mention>,
}

fn tags_of(event: &Event) -> Vec<String> {
    event
        .generation
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .collect()
}

/// Why `route` does not take `event` (whose tags, lower-cased, are `tags`), or `None` when it
/// does.
fn refusal(route: &Route, event: &Event, tags: &[String]) -> Option<String> {
    if !event.event_type.is_some_and(|t| route.events.contains(&t)) {
        let listed: Vec<&str> = route.events.iter().map(|e| e.as_str()).collect();
        return Some(format!(
            "event type {} is not in its events [{}]",
            event.type_name,
            listed.join(", ")
        ));
    }
    if route.untagged && !tags.is_empty() {
        return Some(format!(
            "it takes untagged generations only, and this one has tags [{}]",
            tags.join(", ")
        ));
    }
    match &route.tags {
        Some(wanted) if !wanted.is_empty() && !wanted.iter().any(|w| tags.contains(w)) => {
            Some(format!(
                "no tag in common: it wants any of [{}], the generation has [{}]",
                wanted.join(", "),
                tags.join(", ")
            ))
        }
        _ => None,
    }
}

/// For `preview`: each route that does not take the event, and why.
pub fn explain_misses(config: &Config, event: &Event) -> Vec<(String, String)> {
    let tags = tags_of(event);
    config
        .routes
        .iter()
        .filter_map(|r| refusal(r, event, &tags).map(|why| (r.label(), why)))
        .collect()
}

/// The destinations an event goes to, in the order they first appear in matching routes.
pub fn route(config: &Config, event: &Event) -> Vec<Target> {
    let tags = tags_of(event);
    let mut targets: Vec<Target> = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        if refusal(route, event, &tags).is_some() {
            continue;
        }
        for dest in &route.to {
            match targets.iter_mut().find(|t| t.destination == *dest) {
                Some(existing) => {
                    for m in &route.mention {
                        if !existing.mention.contains(m) {
                            existing.mention.push(m.clone());
                        }
                    }
                }
                None => targets.push(Target {
                    destination: dest.clone(),
                    route: index,
                    mention: route.mention.clone(),
                }),
            }
        }
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::from_value;
    use serde_json::json;
    use std::path::Path;

    fn config() -> Config {
        let toml = r#"
[destinations.a]
kind = "console"
[destinations.b]
kind = "console"
[destinations.c]
kind = "console"

[[routes]]
tags = ["Marketing"]
events = ["print.completed"]
to = ["a"]
mention = ["here"]

[[routes]]
events = ["print.failed", "print.completed"]
to = ["a", "b"]
mention = ["user:1", "here"]

[[routes]]
untagged = true
to = ["c"]
"#;
        crate::config::parse(Path::new("t.toml"), toml, &|_| None).expect("valid config")
    }

    fn event(ty: &str, tags: serde_json::Value) -> Event {
        from_value(&json!({"id": "e", "type": ty, "data": {"id": "g", "tags": tags}}))
            .expect("valid event")
    }

    fn names(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.destination.as_str()).collect()
    }

    #[test]
    fn tags_match_case_insensitively_and_once_per_destination() {
        let c = config();
        let t = route(&c, &event("print.completed", json!(["MARKETING"])));
        assert_eq!(names(&t), ["a", "b"]);
        assert_eq!(t[0].route, 0, "first matching route supplies the template");
        assert_eq!(t[0].mention, vec![Mention::Here, Mention::User("1".into())]);
    }

    #[test]
    fn event_filter_and_untagged() {
        let c = config();
        assert_eq!(
            names(&route(&c, &event("print.created", json!(["x"])))),
            Vec::<&str>::new()
        );
        assert_eq!(
            names(&route(&c, &event("print.created", json!(null)))),
            ["c"]
        );
        assert_eq!(
            names(&route(&c, &event("print.failed", json!([])))),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(&route(&c, &event("print.unknown", json!([])))),
            Vec::<&str>::new()
        );
    }
}
