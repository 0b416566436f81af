//! `[[routes]]`: tags (lower-cased), `untagged`, event types, the destinations in `to`, and
//! mentions (their syntax here; whether a platform has them is in `platform.rs`).

use super::Validator;
use crate::config::problems::nearest;
use crate::config::raw::RawRoute;
use crate::config::{Destination, Mention, Route};
use crate::domain::EventType;
use std::collections::BTreeMap;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn route(
        &mut self,
        number: usize,
        r: &toml::Spanned<RawRoute>,
        destinations: &BTreeMap<String, Destination>,
        defined: &[&str],
    ) -> Option<Route> {
        let route_span = r.span();
        let r = r.get_ref();
        let label = format!("route {number}");
        let tags = r.tags.as_ref().map(|tags| {
            tags.iter()
                .filter_map(|t| self.expand(t, &format!("{label}.tags")))
                .map(|t| t.trim().to_lowercase())
                .collect::<Vec<_>>()
        });
        let untagged = r.untagged.unwrap_or(false);
        if untagged && tags.as_ref().is_some_and(|t| !t.is_empty()) {
            self.p.at(
                Some(route_span.clone()),
                format!("{label} has both `tags` and `untagged = true`, which can never both match; keep one"),
            );
        }
        let events = match &r.events {
            Some(list) => {
                if list.is_empty() {
                    self.p.at(
                        Some(route_span.clone()),
                        format!("{label} has an empty `events` list, so it never matches; remove the key to match every event type"),
                    );
                }
                list.iter()
                    .filter_map(|e| {
                        let t = self.expand(e, &format!("{label}.events"))?;
                        self.event_name(&t, e.span(), &label)
                    })
                    .collect()
            }
            None => EventType::ALL.to_vec(),
        };
        let no_destinations = Vec::new();
        let to_list = match &r.to {
            Some(to) => {
                if to.get_ref().is_empty() {
                    self.p
                        .at(Some(to.span()), format!("{label} has an empty `to` list"));
                }
                to.get_ref()
            }
            None => {
                self.p.at(
                    Some(route_span.clone()),
                    format!("{label} needs `to`, the destinations it sends to"),
                );
                &no_destinations
            }
        };
        let mut mention = Vec::new();
        for m in &r.mention {
            let Some(text) = self.expand(m, &format!("{label}.mention")) else {
                continue;
            };
            match Mention::parse(text.trim()) {
                Ok(parsed) => mention.push((parsed, m.span())),
                Err(why) => self.p.at(Some(m.span()), format!("{label}: {why}")),
            }
        }
        let mut to = Vec::new();
        for dest in to_list {
            let Some(name) = self.expand(dest, &format!("{label}.to")) else {
                continue;
            };
            let name = &name;
            match destinations.get(name) {
                Some(d) => {
                    for (m, span) in &mention {
                        if let Some(why) = m.problem_on(d.kind) {
                            self.p.at(
                                Some(span.clone()),
                                format!("{label}: mention `{m}` {why} (destination `{name}`)"),
                            );
                        }
                    }
                    to.push(name.clone());
                }
                // Defined but invalid: its own problems are already reported.
                None if defined.contains(&name.as_str()) => {}
                None => {
                    let hint = nearest(name, defined.iter().copied())
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default();
                    self.p.at(
                        Some(dest.span()),
                        format!(
                            "{label} sends to `{name}`, which is not a defined destination{hint}"
                        ),
                    );
                }
            }
        }
        let mention_interval = self.mention_interval(r, &label, mention.is_empty());
        let templates = self.templates(&r.templates, &format!("{label} templates"));
        Some(Route {
            number,
            name: r
                .name
                .as_ref()
                .and_then(|n| self.expand(n, &format!("{label}.name"))),
            tags,
            untagged,
            events,
            to,
            mention: mention.into_iter().map(|(m, _)| m).collect(),
            mention_interval,
            templates,
        })
    }

    /// `mention_interval`: a duration of at least a second, on a route that pings somebody.
    fn mention_interval(
        &mut self,
        r: &RawRoute,
        label: &str,
        no_mention: bool,
    ) -> Option<Duration> {
        let raw = r.mention_interval.as_ref()?;
        let key = format!("{label}.mention_interval");
        let before = self.p.list.len();
        let d = self.duration(&r.mention_interval, &key, Duration::ZERO);
        if self.p.list.len() > before {
            return None;
        }
        if d < Duration::from_secs(1) {
            self.p.at(
                Some(raw.span()),
                format!("`{key}` must be at least 1s (it is the shortest time between two pings)"),
            );
            return None;
        }
        if no_mention {
            self.p.at(
                Some(raw.span()),
                format!("{label} has `mention_interval` but no `mention`, so there is no ping to hold back; add `mention` or remove `mention_interval`"),
            );
            return None;
        }
        Some(d)
    }
}
