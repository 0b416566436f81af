//! `[templates."EVENT"]` and a route's templates: the title and text per event type, with
//! the line each starts on (so template errors point into the config file); event type names.

use super::Validator;
use crate::config::problems::nearest;
use crate::config::raw::{RawLinks, RawTemplate, SString};
use crate::config::TemplateSource;
use crate::domain::EventType;
use std::collections::BTreeMap;

impl Validator<'_> {
    pub(super) fn templates(
        &mut self,
        raw: &BTreeMap<toml::Spanned<String>, RawTemplate>,
        where_: &str,
    ) -> BTreeMap<EventType, TemplateSource> {
        let mut out = BTreeMap::new();
        for (ty, t) in raw {
            let Some(ty) = self.event_type(ty, where_) else {
                continue;
            };
            let mut field = |s: &Option<SString>, name: &str| {
                s.as_ref().and_then(|s| {
                    let line = self.p.first_line_of_string(s.span());
                    self.expand(s, &format!("{where_}.\"{ty}\".{name}"))
                        .map(|v| (v, line))
                })
            };
            let src = TemplateSource {
                title: field(&t.title, "title"),
                text: field(&t.text, "text"),
            };
            out.insert(ty, src);
        }
        out
    }

    /// `[links] generation`, expanded, with its line (compiled with the other templates).
    pub(super) fn link(&mut self, raw: &RawLinks) -> Option<(String, usize)> {
        let s = raw.generation.as_ref()?;
        let line = self.p.first_line_of_string(s.span());
        self.expand(s, "links.generation").map(|v| (v, line))
    }

    fn event_type(&mut self, s: &SString, what: &str) -> Option<EventType> {
        self.event_name(s.get_ref(), s.span(), what)
    }

    /// The event type named `t`, or a problem at `span` suggesting the nearest name.
    pub(super) fn event_name(
        &mut self,
        t: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> Option<EventType> {
        if let Some(ty) = EventType::parse(t) {
            return Some(ty);
        }
        let names = EventType::names();
        let hint = match nearest(t, names) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => format!("; expected one of: {}", names.join(", ")),
        };
        self.p.at(
            Some(span),
            format!("{what}: unknown event type `{t}`{hint}"),
        );
        None
    }
}
