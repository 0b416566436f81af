//! Rendering: turns an event routed to a destination into the exact body that will be posted.
//!
//! Templates produce a title and a text, escaped for the platform; the platform modules build
//! the Slack / Discord / console body around them, attach images and enforce every limit, so
//! what leaves this module is final and is stored as is.

pub mod summary;
pub mod templates;
pub mod text;

use crate::config::{Config, Destination, Kind, Mention, Mode, Problem};
use crate::domain::EventType;
use crate::event::{Event, Image};
use crate::platform;
use crate::routing::Target;
use serde_json::Value;
use templates::{Field, Templates};

/// A message ready to be stored and posted.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub destination: String,
    pub kind: Kind,
    pub mode: Mode,
    /// The message as posted, with the route's mentions.
    pub body: Value,
    /// Live mode: the same message without mentions, for edits and re-posts (an edit pings
    /// nobody, and a re-posted message must not page anyone again).
    pub quiet_body: Option<Value>,
    /// Live mode, `print.failed` with mentions: the short separate message that pages them
    /// when the failure edits a message that already exists.
    pub ping_body: Option<Value>,
    /// Set when the mentions in `body` (and `ping_body`) fall under a `mention_interval`: the
    /// lane may send `quiet_body` instead, and the summary names the generation later.
    pub holdable: Option<Holdable>,
    /// Template problems met while rendering (a custom template failed and the default was used).
    pub warnings: Vec<String>,
}

/// Mentions that `mention_interval` may hold back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdable {
    /// Who is pinged, as the config writes it (`role:1 user:2`): pings of the same people at
    /// one destination share one interval.
    pub key: String,
    pub every: std::time::Duration,
}

impl Holdable {
    fn of(target: &Target) -> Option<Holdable> {
        let every = target.mention_interval?;
        if target.mention.is_empty() {
            return None;
        }
        let key: Vec<String> = target.mention.iter().map(|m| m.to_string()).collect();
        Some(Holdable {
            key: key.join(" "),
            every,
        })
    }
}

/// What the platform renderers build a body from.
pub struct Message<'a> {
    pub event: &'a Event,
    pub destination: &'a Destination,
    /// Escaped for the platform.
    pub title: String,
    /// Escaped for the platform.
    pub text: String,
    pub mention: &'a [Mention],
    /// Where the title links to (`[links] generation`): a checked http(s) URL, not escaped.
    pub link: Option<String>,
}

impl Message<'_> {
    /// The images to attach: every image of the event, except on `print.progress` in `each`
    /// mode where only the newest one is shown, so a progress message does not repeat earlier
    /// images (a live message shows every image finished so far).
    pub fn images(&self) -> Vec<&Image> {
        let all = &self.event.generation.images;
        if self.event.event_type == Some(EventType::Progress) && self.destination.mode == Mode::Each
        {
            all.last().into_iter().collect()
        } else {
            all.iter().collect()
        }
    }
}

/// Renders messages for one config.
#[derive(Debug)]
pub struct Renderer {
    templates: Templates,
}

impl Renderer {
    pub fn new(config: &Config) -> Result<Renderer, Vec<Problem>> {
        Ok(Renderer {
            templates: Templates::compile(config)?,
        })
    }

    /// Renders the body for one routed destination. `None` when the destination is unknown.
    pub fn render(&self, config: &Config, target: &Target, event: &Event) -> Option<Rendered> {
        self.render_with(config, target, event, &templates::context(event))
    }

    /// Renders the bodies for every routed destination of an event (the template variables
    /// are built once, not per destination and field).
    pub fn render_all(&self, config: &Config, targets: &[Target], event: &Event) -> Vec<Rendered> {
        let ctx = templates::context(event);
        targets
            .iter()
            .filter_map(|t| self.render_with(config, t, event, &ctx))
            .collect()
    }

    fn render_with(
        &self,
        config: &Config,
        target: &Target,
        event: &Event,
        ctx: &minijinja::Value,
    ) -> Option<Rendered> {
        let destination = config.destinations.get(&target.destination)?;
        let platform = platform::of(destination.kind);
        let escape = platform.escape();
        let mut warnings = Vec::new();
        let mut field = |f: Field| {
            let (out, warning) = self
                .templates
                .render(Some(target.route), event, ctx, f, escape);
            warnings.extend(warning);
            out
        };
        let title = field(Field::Title);
        let text = field(Field::Text);
        let link = match self.templates.link(ctx) {
            Ok(link) => link,
            Err(e) => {
                warnings.push(format!("{e}; the message links nowhere"));
                None
            }
        };
        let msg = Message {
            event,
            destination,
            title,
            text,
            mention: &target.mention,
            link,
        };
        let body = platform.body(&msg);
        let holdable = Holdable::of(target);
        let (quiet_body, ping_body) = match destination.mode {
            Mode::Each if holdable.is_some() => {
                let quiet = Message {
                    mention: &[],
                    ..msg
                };
                (Some(platform.body(&quiet)), None)
            }
            Mode::Each => (None, None),
            Mode::Live => {
                let ping = (event.event_type == Some(EventType::Failed))
                    .then(|| platform.ping_body(&msg))
                    .flatten();
                let quiet = Message {
                    mention: &[],
                    link: msg.link.clone(),
                    ..msg
                };
                (Some(platform.body(&quiet)), ping)
            }
        };
        Some(Rendered {
            destination: destination.name.clone(),
            kind: destination.kind,
            mode: destination.mode,
            body,
            quiet_body,
            ping_body,
            holdable,
            warnings,
        })
    }
}

/// `http`/`https` URLs, normalised (spaces and other unsafe characters percent-encoded), of
/// at most `max` characters; anything else is never attached.
pub fn attachable_url(url: Option<&str>, max: usize) -> Option<String> {
    let url = url::Url::parse(url?.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return None;
    }
    let text = String::from(url);
    (text.len() <= max).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use serde_json::json;

    fn text_for(event: serde_json::Value) -> String {
        let config = parse(
            std::path::Path::new("t.toml"),
            "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n",
            &|_| None,
        )
        .expect("config");
        let renderer = Renderer::new(&config).expect("templates");
        let event = crate::event::from_value(&event).expect("event");
        let targets = crate::routing::route(&config, &event);
        let r = renderer
            .render(&config, &targets[0], &event)
            .expect("rendered");
        r.body["text"].as_str().expect("text").to_string()
    }

    fn failed(meta: serde_json::Value) -> serde_json::Value {
        json!({"id": "e", "type": "print.failed", "data": {"id": "g", "status": 4, "metaData": meta}})
    }

    #[test]
    fn a_failure_says_its_reason_or_that_there_was_none() {
        let with = text_for(failed(
            json!({"reason": "NSFW filter", "requestedBy": "ana"}),
        ));
        assert!(
            with.contains("Reason: NSFW filter (status Error, 4)."),
            "{with}"
        );
        assert!(with.contains("Requested by ana"), "{with}");
        let without = text_for(failed(json!({})));
        assert!(
            without.contains("all-images.ai gave no reason (status Error, 4)."),
            "{without}"
        );
        assert!(!without.contains("Requested by"), "{without}");
    }

    #[test]
    fn who_asked_and_the_aspect_ratio_are_shown_when_the_event_has_them() {
        let event = json!({"id": "e", "type": "print.created", "data": {
            "id": "g", "nbImages": 2,
            "params": [{"name": "aspectRatio", "value": "1:1"}],
            "metaData": {"requestedBy": "design-team"}}});
        let text = text_for(event);
        assert!(
            text.ends_with("Requested by design-team · aspect ratio 1:1"),
            "{text}"
        );
    }
}
