//! Routing: which destinations get a message for an event.
//!
//! Invariant: at most one message per destination per event, however many routes match.
//! The first matching route (file order) that names a destination supplies its template;
//! the `mention` lists of every matching route naming it are merged, in order, without repeats.

use crate::config::{Config, Mention};
use crate::event::Event;

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub destination: String,
    /// Index into `Config::routes` of the route whose template is used.
    pub route: usize,
    pub mention: Vec<Mention>,
}

/// The destinations an event goes to, in the order they first appear in matching routes.
pub fn route(config: &Config, event: &Event) -> Vec<Target> {
    let tags: Vec<String> = event
        .generation
        .tags
        .iter()
        .map(|t| t.trim().to_lowercase())
        .collect();
    let mut targets: Vec<Target> = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        if !event.event_type.is_some_and(|t| route.events.contains(&t)) {
            continue;
        }
        if route.untagged && !tags.is_empty() {
            continue;
        }
        if let Some(wanted) = &route.tags {
            if !wanted.is_empty() && !wanted.iter().any(|w| tags.contains(w)) {
                continue;
            }
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
