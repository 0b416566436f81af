//! The validated config: what the rest of printbell reads once `notifier.toml` has been
//! checked.
//!
//! Every value here is final: `${VAR}` expanded, defaults filled in, URLs normalised. The types
//! are re-exported from [`crate::config`], so they are named `config::Config`,
//! `config::Destination`, and so on.

pub use crate::domain::Mode;
use crate::domain::{EventType, Kind};
use crate::store::Backend;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
pub const DEFAULT_WEBHOOK_PATH: &str = "/webhooks/all-images";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct Config {
    pub file: PathBuf,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub delivery: DeliveryConfig,
    pub destinations: BTreeMap<String, Destination>,
    pub routes: Vec<Route>,
    /// Global overrides, by event type.
    pub templates: BTreeMap<EventType, TemplateSource>,
    /// `[links] generation`: the template of the URL a message's title links to, with the
    /// line it starts on.
    pub link: Option<(String, usize)>,
    /// Warnings that do not stop the service (shown by `check` and logged at start).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub webhook_path: String,
    pub secret: Option<String>,
    pub max_body_bytes: u64,
    pub metrics_listen: Option<String>,
    /// From a request's first byte to the answer; slower connections are closed.
    pub request_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A SQLite file (`store.path`) or a PostgreSQL database (`store.url`,
    /// `PRINTBELL_STORE_URL`); shown redacted.
    pub backend: Backend,
    /// How long done deliveries and seen event ids are kept.
    pub retention: Duration,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_age: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            timeout: Duration::from_secs(10),
            max_attempts: 12,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

#[derive(Clone)]
pub struct Destination {
    pub name: String,
    pub kind: Kind,
    /// The webhook URL (a secret: never log it; use [`redact_url`]). `None` for console.
    pub url: Option<Url>,
    pub username: Option<String>,
    pub avatar_url: Option<String>,
    pub thread_id: Option<String>,
    /// One message per generation, edited (`live`), or one per event (`each`).
    pub mode: Mode,
    /// Slack's Web API with a bot token (instead of an incoming webhook `url`).
    pub slack_api: Option<SlackApi>,
}

/// Where and as whom a Slack destination posts through the Web API.
#[derive(Clone)]
pub struct SlackApi {
    /// Ends with `/`, so method names join onto it.
    pub base: Url,
    /// A secret, like a webhook URL: never log it.
    pub token: String,
    pub channel: String,
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Destination")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("mode", &self.mode)
            .field("url", &self.url.as_ref().map(redact_url))
            .field("slack_api", &self.slack_api)
            .finish()
    }
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlackApi")
            .field("base", &redact_url(&self.base))
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl Destination {
    /// Where it posts, safe to print: the redacted webhook URL, or the Web API and channel.
    pub fn shown_address(&self) -> String {
        match (&self.url, &self.slack_api) {
            (Some(url), _) => redact_url(url),
            (None, Some(api)) => format!("{} channel {}", redact_url(&api.base), api.channel),
            (None, None) => "stdout".into(),
        }
    }
}

/// Who a route pings. Built only from config, never from event data.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Mention {
    User(String),
    Role(String),
    Group(String),
    Here,
    Channel,
    Everyone,
}

impl Mention {
    /// A mention as written in `mention = [...]`: `user:ID`, `role:ID`, `group:ID`, `here`,
    /// `channel` or `everyone`. Whether the platform has it is [`Mention::problem_on`].
    pub fn parse(s: &str) -> Result<Mention, String> {
        let id_ok = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        let (kind, id) = match s.split_once(':') {
            Some((k, id)) => (k, Some(id)),
            None => (s, None),
        };
        match (kind, id) {
            ("here", None) => Ok(Mention::Here),
            ("channel", None) => Ok(Mention::Channel),
            ("everyone", None) => Ok(Mention::Everyone),
            ("user" | "role" | "group", Some(id)) if id_ok(id) => Ok(match kind {
                "user" => Mention::User(id.to_string()),
                "role" => Mention::Role(id.to_string()),
                _ => Mention::Group(id.to_string()),
            }),
            ("user" | "role" | "group", _) => Err(format!(
                "mention `{s}` needs an id of letters and digits, like `{kind}:123456789012345678`"
            )),
            _ => Err(format!(
                "unknown mention `{s}`; expected user:ID, role:ID, group:ID, here, channel or everyone"
            )),
        }
    }
}

/// A mention as it is written in the file (what [`Mention::parse`] reads).
impl std::fmt::Display for Mention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mention::User(id) => write!(f, "user:{id}"),
            Mention::Role(id) => write!(f, "role:{id}"),
            Mention::Group(id) => write!(f, "group:{id}"),
            Mention::Here => f.write_str("here"),
            Mention::Channel => f.write_str("channel"),
            Mention::Everyone => f.write_str("everyone"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the file, from 1; used in messages ("route 2").
    pub number: usize,
    pub name: Option<String>,
    /// Lower-cased; `None` = any tags.
    pub tags: Option<Vec<String>>,
    pub untagged: bool,
    pub events: Vec<EventType>,
    pub to: Vec<String>,
    pub mention: Vec<Mention>,
    /// At most one ping per destination within this long (alert storms); `None`: every
    /// matching event pings.
    pub mention_interval: Option<Duration>,
    pub templates: BTreeMap<EventType, TemplateSource>,
}

impl Route {
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("route {} ({n})", self.number),
            None => format!("route {}", self.number),
        }
    }
}

/// Template text for one event type, with the config line each field starts on.
#[derive(Debug, Clone, Default)]
pub struct TemplateSource {
    pub title: Option<(String, usize)>,
    pub text: Option<(String, usize)>,
}

/// Shows scheme and host only: the path of a webhook URL is its token.
pub fn redact_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("?");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}/…", url.scheme()),
        None => format!("{}://{host}/…", url.scheme()),
    }
}
