//! Routing: which destinations get a message for an event.
//!
//! Invariant: at most one message per destination per event, however many routes match.
//! The first matching route (file order) that names a destination supplies its template;
//! the `mention` lists of every matching route naming it are merged, in order, without repeats.
//! The merged mentions are held back per `mention_interval` only if every route that brought
//! some has one (the shortest wins): a route without it asked for every event to ping.

use crate::config::{Config, Mention, Route};
use crate::event::Event;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub destination: String,
    /// Index into `Config::routes` of the route whose template is used.
    pub route: usize,
    pub mention: Vec<Mention>,
    /// At most one ping within this long at this destination (`Route::mention_interval`).
    pub mention_interval: Option<Duration>,
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
    // Per target: the `mention_interval` of each route that brought mentions to it.
    let mut intervals: Vec<Vec<Option<Duration>>> = Vec::new();
    for (index, route) in config.routes.iter().enumerate() {
        if refusal(route, event, &tags).is_some() {
            continue;
        }
        for dest in &route.to {
            let at = match targets.iter().position(|t| t.destination == *dest) {
                Some(at) => {
                    let existing = &mut targets[at];
                    for m in &route.mention {
                        if !existing.mention.contains(m) {
                            existing.mention.push(m.clone());
                        }
                    }
                    at
                }
                None => {
                    targets.push(Target {
                        destination: dest.clone(),
                        route: index,
                        mention: route.mention.clone(),
                        mention_interval: None,
                    });
                    intervals.push(Vec::new());
                    targets.len() - 1
                }
            };
            if !route.mention.is_empty() {
                intervals[at].push(route.mention_interval);
            }
        }
    }
    for (t, list) in targets.iter_mut().zip(intervals) {
        // One route without an interval (`None`) makes it `None`: every event pings.
        let all: Option<Vec<Duration>> = list.into_iter().collect();
        t.mention_interval = all.and_then(|all| all.into_iter().min());
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

[[routes]]
tags = ["storm"]
to = ["c"]
mention = ["here"]
mention_interval = "5m"

[[routes]]
tags = ["storm", "calm"]
to = ["c"]
mention = ["user:2"]
mention_interval = "1m"

[[routes]]
tags = ["calm"]
to = ["c"]
mention = ["user:3"]
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

    #[test]
    fn the_shortest_interval_holds_back_merged_mentions_unless_a_route_has_none() {
        let c = config();
        let to_c = |tags| {
            let all = route(&c, &event("print.created", tags));
            all.into_iter()
                .find(|t| t.destination == "c")
                .expect("routed to c")
        };
        let storm = to_c(json!(["storm"]));
        assert_eq!(
            storm.mention,
            vec![Mention::Here, Mention::User("2".into())]
        );
        assert_eq!(storm.mention_interval, Some(Duration::from_secs(60)));
        // `user:3` comes from a route without an interval: every event pings.
        assert_eq!(to_c(json!(["calm"])).mention_interval, None);
        // Route 2 pings `a` and `b` with no interval.
        let failed = route(&c, &event("print.failed", json!([])));
        assert!(failed.iter().all(|t| t.mention_interval.is_none()));
    }
}
