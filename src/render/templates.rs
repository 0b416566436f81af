//! Message templates (minijinja): built-in defaults, global and per-route overrides, compiled
//! once at config load.
//!
//! Escaping is done by the template engine, not by the template author: every `{{ value }}` is
//! escaped for the platform the message is rendered for (Slack entities, Discord markdown),
//! while the template's own literal text — the operator's trusted markup — is left as written.
//! Each template is therefore compiled once per platform, with the platform in its name.

use super::text::{escape_discord, escape_slack, quote_lines};
use crate::config::{Config, Problem, TemplateSource};
use crate::domain::EventType;
use crate::event::Event;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, State};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// Key of the default template used for event types that are not one of the five.
const UNKNOWN_TYPE: &str = "unknown";
/// The name of `[links] generation`; `.url` makes every value in it percent-encoded.
const LINK_TEMPLATE: &str = "links/generation.url";
/// The longest link a message carries (Discord's embed `url`).
pub const LINK_MAX: usize = 2048;

/// Everything but the unreserved characters of RFC 3986: a value cannot end a path segment,
/// start a query or fragment, or carry a host or credentials.
const URL_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// How template output is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    Slack,
    Discord,
    Plain,
}

impl Escape {
    /// `text` (from event data) escaped for this flavour, as template output is.
    pub fn apply(self, text: &str) -> String {
        match self {
            Escape::Slack => escape_slack(text),
            Escape::Discord => escape_discord(text),
            Escape::Plain => text.to_string(),
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Escape::Slack => "slack",
            Escape::Discord => "discord",
            Escape::Plain => "plain",
        }
    }
    const ALL: [Escape; 3] = [Escape::Slack, Escape::Discord, Escape::Plain];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Title,
    Text,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Text => "text",
        }
    }
}

/// Who asked for the generation and its useful parameters, when the event says: a line like
/// "Requested by design-team · aspect ratio 16:9" (nothing when it says neither).
macro_rules! details {
    () => {
        "{% set m = generation.metadata %}{% set p = generation.params %}\
         {% set who = m.requestedBy or m.requested_by or m.requester or m.user or m.author %}\
         {% set ratio = p.aspectRatio or p.aspect_ratio or p.ratio %}\
         {% if who or ratio %}\n{{ ('Requested by ' ~ who) if who }}{{ ' · ' if who and ratio }}\
         {{ ('aspect ratio ' ~ ratio) if ratio }}{% endif %}"
    };
}

/// The built-in template for each event type: (title, text).
pub fn default_template(event_type: Option<EventType>) -> (&'static str, &'static str) {
    match event_type {
        Some(EventType::Created) => (
            concat!("New generation: ", "{{ generation.name or generation.id }}"),
            concat!("{{ generation.prompt | quote }}\nQueued: {{ progress.total }} image{{ '' if progress.total == 1 else 's' }} requested.", details!()),
        ),
        Some(EventType::Active) => (
            concat!("Generating: ", "{{ generation.name or generation.id }}"),
            concat!("{{ generation.prompt | quote }}\nStarted: {{ progress.total }} image{{ '' if progress.total == 1 else 's' }} on the way.", details!()),
        ),
        Some(EventType::Progress) => (
            concat!("{{ generation.name or generation.id }}", ": image {{ progress.done }} of {{ progress.total }} ready"),
            "{{ progress.done }} of {{ progress.total }} images done.",
        ),
        Some(EventType::Failed) => (
            concat!("Generation failed: ", "{{ generation.name or generation.id }}"),
            concat!(
                "{{ generation.prompt | quote }}\n",
                "{% set m = generation.metadata %}",
                "{% set reason = m.reason or m.error or m.errorMessage or m.error_message or m.failureReason or m.failure_reason or m.message %}",
                "{% if reason %}Reason: {{ reason }}{% else %}all-images.ai gave no reason{% endif %}",
                " (status {{ generation.status_name or 'unknown' }}{{ ', ' ~ generation.status if generation.status is not none }}).",
                " No images were delivered{{ ' after ' ~ progress.done ~ ' of ' ~ progress.total if progress.done > 0 }}.",
                details!()
            ),
        ),
        Some(EventType::Completed) => (
            concat!("{{ generation.name or generation.id }}", " is ready ({{ images | length }} image{{ '' if images | length == 1 else 's' }})"),
            concat!("{{ generation.prompt | quote }}", details!()),
        ),
        None => (
            "{{ event.type }}: {{ generation.name or generation.id }}",
            "{{ generation.prompt | quote }}",
        ),
    }
}

/// Where a template comes from, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    Route(usize),
    Global,
    Default,
}

impl Scope {
    fn key(self) -> String {
        match self {
            Scope::Route(i) => format!("route{i}"),
            Scope::Global => "global".into(),
            Scope::Default => "default".into(),
        }
    }
}

fn template_name(scope: Scope, event_type: &str, field: Field, escape: Escape) -> String {
    format!(
        "{}/{event_type}/{}.{}",
        scope.key(),
        field.name(),
        escape.suffix()
    )
}

/// All templates of a config, compiled for every platform.
pub struct Templates {
    env: Environment<'static>,
    present: HashSet<(Scope, String, Field)>,
    /// Whether `[links] generation` is set.
    link: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("count", &self.present.len())
            .finish()
    }
}

fn new_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|name| match name.rsplit('.').next() {
        Some("slack") => AutoEscape::Custom("slack"),
        Some("discord") => AutoEscape::Custom("discord"),
        Some("url") => AutoEscape::Custom("url"),
        _ => AutoEscape::None,
    });
    env.set_formatter(|out, state, value| {
        if value.is_none() || value.is_undefined() {
            return Ok(());
        }
        let text = value.to_string();
        let escaped = if value.is_safe() {
            text
        } else {
            escape_for(state, &text)
        };
        out.write_str(&escaped)
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "could not write"))
    });
    // `safe` would let event text through unescaped (and so ping or forge links): not offered.
    env.remove_filter("safe");
    env.add_filter("quote", |state: &State, value: Value| -> Value {
        if value.is_none() || value.is_undefined() {
            return Value::from_safe_string(String::new());
        }
        let text = if value.is_safe() {
            value.to_string()
        } else {
            escape_for(state, &value.to_string())
        };
        Value::from_safe_string(quote_lines(&text))
    });
    env
}

fn escape_for(state: &State, text: &str) -> String {
    match state.auto_escape() {
        AutoEscape::Custom("slack") => escape_slack(text),
        AutoEscape::Custom("discord") => escape_discord(text),
        AutoEscape::Custom("url") => {
            percent_encoding::utf8_percent_encode(text, URL_VALUE).to_string()
        }
        _ => text.to_string(),
    }
}

impl Templates {
    /// Compiles the built-in defaults and every template of `config`; a syntax error becomes a
    /// config problem naming the template and its line in the config file.
    pub fn compile(config: &Config) -> Result<Templates, Vec<Problem>> {
        let mut t = Templates {
            env: new_env(),
            present: HashSet::new(),
            link: false,
        };
        let mut problems = Vec::new();
        for known in EventType::ALL.map(Some).into_iter().chain([None]) {
            let (title, text) = default_template(known);
            let ty = known.map_or(UNKNOWN_TYPE, EventType::as_str);
            for (field, src) in [(Field::Title, title), (Field::Text, text)] {
                if let Err(e) = t.add(Scope::Default, ty, field, src) {
                    // A broken built-in is a bug, but report it rather than panic.
                    problems.push(problem(config, "built-in", ty, field, 0, &e));
                }
            }
        }
        let mut add_all = |scope: Scope, map: &BTreeMap<EventType, TemplateSource>, label: &str| {
            for (ty, src) in map {
                let ty = ty.as_str();
                for (field, value) in [(Field::Title, &src.title), (Field::Text, &src.text)] {
                    if let Some((text, line)) = value {
                        let tried = t
                            .add(scope, ty, field, text)
                            .and_then(|()| t.try_on_sample(scope, ty, field));
                        if let Err(e) = tried {
                            problems.push(problem(config, label, ty, field, *line, &e));
                        }
                    }
                }
            }
        };
        add_all(Scope::Global, &config.templates, "templates");
        for (i, route) in config.routes.iter().enumerate() {
            let label = format!("{} templates", route.label());
            add_all(Scope::Route(i), &route.templates, &label);
        }
        if let Some((src, line)) = &config.link {
            if let Err(p) = t.add_link(config, src, *line) {
                problems.push(p);
            }
        }
        if problems.is_empty() {
            Ok(t)
        } else {
            Err(problems)
        }
    }

    /// Compiles `[links] generation` and renders it for every built-in sample: a template that
    /// does not compile, fails, or gives no http(s) URL for a sample is a config problem.
    fn add_link(&mut self, config: &Config, src: &str, line: usize) -> Result<(), Problem> {
        let at = |tmpl_line: usize, message: String| Problem {
            file: config.file.clone(),
            line: (line > 0).then(|| line + tmpl_line - 1),
            column: None,
            message,
            unset_secret_of: None,
        };
        let failed = |e: &minijinja::Error, what: &str| {
            at(
                e.line().unwrap_or(1),
                format!(
                    "links.generation: template error{what} at line {} of the template: {}",
                    e.line().unwrap_or(1),
                    e.detail().unwrap_or(&e.kind().to_string())
                ),
            )
        };
        self.env
            .add_template_owned(LINK_TEMPLATE, src.to_string())
            .map_err(|e| failed(&e, ""))?;
        self.link = true;
        for ty in EventType::ALL {
            let Some(sample) = crate::samples::by_name(ty.as_str()) else {
                continue;
            };
            let Ok(event) = crate::event::parse(sample.as_bytes()) else {
                continue;
            };
            match self.link(&context(&event)) {
                Ok(_) => {}
                Err(LinkError::Render(e)) => {
                    return Err(failed(&e, &format!(" (sample {})", ty.as_str())))
                }
                Err(LinkError::Invalid { url, why }) => {
                    return Err(at(
                        1,
                        format!(
                            "links.generation: for the sample {} it gives `{url}`, which {why}; \
                             the template's own text must hold the scheme and host (values are \
                             percent-encoded)",
                            ty.as_str()
                        ),
                    ))
                }
            }
        }
        Ok(())
    }

    /// The link of a message (`[links] generation`) for an event's template variables:
    /// `Ok(None)` when none is set or it renders empty.
    pub fn link(&self, ctx: &Value) -> Result<Option<String>, LinkError> {
        if !self.link {
            return Ok(None);
        }
        let text = self
            .env
            .get_template(LINK_TEMPLATE)
            .and_then(|t| t.render(ctx))
            .map_err(LinkError::Render)?;
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        checked_link(text).map(Some)
    }

    fn add(
        &mut self,
        scope: Scope,
        ty: &str,
        field: Field,
        src: &str,
    ) -> Result<(), minijinja::Error> {
        for escape in Escape::ALL {
            self.env
                .add_template_owned(template_name(scope, ty, field, escape), src.to_string())?;
        }
        self.present.insert((scope, ty.to_string(), field));
        Ok(())
    }

    /// Renders a freshly added template against the built-in sample of its event type, for
    /// every platform, so a template that cannot render (an unknown filter such as `safe`, a
    /// type error) is a config error now rather than a fallback at run time.
    fn try_on_sample(&self, scope: Scope, ty: &str, field: Field) -> Result<(), minijinja::Error> {
        let Some(sample) = crate::samples::by_name(ty) else {
            return Ok(());
        };
        let Ok(event) = crate::event::parse(sample.as_bytes()) else {
            return Ok(());
        };
        let ctx = context(&event);
        for escape in Escape::ALL {
            self.env
                .get_template(&template_name(scope, ty, field, escape))?
                .render(&ctx)?;
        }
        Ok(())
    }

    fn pick(&self, route: Option<usize>, ty: &str, field: Field) -> Scope {
        let has = |s: Scope| self.present.contains(&(s, ty.to_string(), field));
        match route {
            Some(i) if has(Scope::Route(i)) => Scope::Route(i),
            _ if has(Scope::Global) => Scope::Global,
            _ => Scope::Default,
        }
    }

    /// Renders one field for an event; a runtime error in a custom template falls back to the
    /// built-in default (and is reported so the caller can log it).
    /// `ctx`: [`context`] of `event`, built once for all its fields and destinations.
    pub fn render(
        &self,
        route: Option<usize>,
        event: &Event,
        ctx: &Value,
        field: Field,
        escape: Escape,
    ) -> (String, Option<String>) {
        let ty = event.event_type.map_or(UNKNOWN_TYPE, EventType::as_str);
        let scope = self.pick(route, ty, field);
        let attempt = |scope: Scope| -> Result<String, minijinja::Error> {
            let tmpl = self
                .env
                .get_template(&template_name(scope, ty, field, escape))?;
            tmpl.render(ctx)
        };
        match attempt(scope) {
            Ok(s) => (s.trim().to_string(), None),
            Err(e) => {
                let why = format!(
                    "template {} for {ty} failed ({e}); used the built-in one",
                    field.name()
                );
                let fallback = attempt(Scope::Default).unwrap_or_default();
                (fallback.trim().to_string(), Some(why))
            }
        }
    }
}

/// Why a message carries no link.
#[derive(Debug)]
pub enum LinkError {
    /// The template failed while rendering.
    Render(minijinja::Error),
    /// It rendered, but not to a link a message may carry.
    Invalid { url: String, why: &'static str },
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Render(e) => write!(f, "links.generation failed ({e})"),
            LinkError::Invalid { url, why } => {
                write!(f, "links.generation gave `{url}`, which {why}")
            }
        }
    }
}

/// An http(s) URL with a host, at most [`LINK_MAX`] characters, normalised; values can carry no
/// `/`, `?` or `#` (percent-encoded), and a value of only dots (a `..` segment) is refused,
/// so event data cannot move the link elsewhere on its host.
fn checked_link(text: &str) -> Result<String, LinkError> {
    let invalid = |why| LinkError::Invalid {
        url: text.chars().take(200).collect(),
        why,
    };
    let url = url::Url::parse(text).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("is not an http(s) URL with a host"));
    }
    let path = text
        .split_once("://")
        .map_or(text, |(_, rest)| rest)
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let dots = path.split('/').skip(1).any(|seg| {
        let seg = seg.to_ascii_lowercase().replace("%2e", ".");
        !seg.is_empty() && seg.chars().all(|c| c == '.')
    });
    if dots {
        return Err(invalid("has a `.` or `..` path segment"));
    }
    let out = String::from(url);
    if out.chars().count() > LINK_MAX {
        return Err(invalid("is longer than 2048 characters"));
    }
    Ok(out)
}

fn problem(
    config: &Config,
    label: &str,
    ty: &str,
    field: Field,
    line: usize,
    e: &minijinja::Error,
) -> Problem {
    let tmpl_line = e.line().unwrap_or(1);
    Problem {
        file: config.file.clone(),
        line: (line > 0).then(|| line + tmpl_line - 1),
        column: None,
        message: format!(
            "{label}.\"{ty}\".{}: template error at line {tmpl_line} of the template: {}",
            field.name(),
            e.detail().unwrap_or(&e.kind().to_string())
        ),
        unset_secret_of: None,
    }
}

#[derive(Serialize)]
struct Ctx<'a> {
    event: EventCtx<'a>,
    generation: GenerationCtx<'a>,
    images: Vec<ImageCtx<'a>>,
    progress: ProgressCtx,
}

#[derive(Serialize)]
struct EventCtx<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    event_type: &'a str,
    created: Option<serde_json::Value>,
    api_version: Option<serde_json::Value>,
}

#[derive(Serialize)]
struct GenerationCtx<'a> {
    id: &'a str,
    name: Option<&'a str>,
    prompt: Option<&'a str>,
    status: Option<i64>,
    status_name: Option<&'static str>,
    params: &'a BTreeMap<String, serde_json::Value>,
    tags: &'a [String],
    metadata: &'a serde_json::Map<String, serde_json::Value>,
    created_at: Option<&'a str>,
    nb_images: Option<u64>,
}

#[derive(Serialize)]
struct ImageCtx<'a> {
    id: Option<&'a str>,
    url: Option<&'a str>,
    title: Option<&'a str>,
}

#[derive(Serialize)]
struct ProgressCtx {
    done: u64,
    total: u64,
}

/// Whole numbers as integers, so `{{ event.created }}` shows 1796030102, not 1796030102.0.
fn number(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        serde_json::Value::from(n as i64)
    } else {
        serde_json::Value::from(n)
    }
}

/// The template variables of an event (SPEC §2).
pub fn context(event: &Event) -> Value {
    let g = &event.generation;
    let (done, total) = g.progress();
    Value::from_serialize(Ctx {
        event: EventCtx {
            id: &event.id,
            event_type: &event.type_name,
            created: event.created.map(number),
            api_version: event.api_version.map(number),
        },
        generation: GenerationCtx {
            id: &g.id,
            name: g.name.as_deref().filter(|n| !n.trim().is_empty()),
            prompt: g.prompt.as_deref(),
            status: g.status,
            status_name: g.status_name(),
            params: &g.params,
            tags: &g.tags,
            metadata: &g.metadata,
            created_at: g.created_at.as_deref(),
            nb_images: g.nb_images,
        },
        images: g
            .images
            .iter()
            .map(|i| ImageCtx {
                id: i.id.as_deref(),
                url: i.url.as_deref(),
                title: i.title.as_deref(),
            })
            .collect(),
        progress: ProgressCtx { done, total },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_be_http_with_a_host_short_and_without_dot_segments() {
        assert_eq!(
            checked_link("https://gen.test/g/abc?x=1").ok().as_deref(),
            Some("https://gen.test/g/abc?x=1")
        );
        for bad in [
            "ftp://gen.test/g",
            "https://",
            "gen.test/g",
            "https://gen.test/g/..",
            "https://gen.test/g/%2E%2e/admin",
            "https://gen.test/./g",
        ] {
            assert!(checked_link(bad).is_err(), "{bad}");
        }
        let long = format!("https://gen.test/{}", "a".repeat(LINK_MAX));
        assert!(checked_link(&long).is_err());
        assert!(
            checked_link("https://gen.test/g/a..b").is_ok(),
            "dots inside a segment"
        );
    }

    #[test]
    fn values_in_a_link_are_percent_encoded_and_literal_text_is_not() {
        let mut env = new_env();
        env.add_template("l.url", "https://gen.test/g/{{ id }}?q={{ q }}")
            .expect("compiles");
        let out = env
            .get_template("l.url")
            .and_then(|t| t.render(minijinja::context! { id => "a/b?c#d e", q => "x&y=z" }))
            .expect("renders");
        assert_eq!(out, "https://gen.test/g/a%2Fb%3Fc%23d%20e?q=x%26y%3Dz");
    }
}
