//! Platform adapters: everything printbell knows about one chat platform lives in its module.
//!
//! | module | platform |
//! |---|---|
//! | [`slack`] | Slack incoming webhooks: Block Kit body, `&<>` escaping, ~1 message/s pacing |
//! | [`discord`] | Discord webhooks: embeds, `allowed_mentions`, `?wait=true`, bucket headers |
//! | [`console`] | stdout, for trying things out |
//!
//! A platform answers the questions the generic layers ask ([`Platform`]): how template output
//! is escaped and the body is built (render), how a stored body is sent and what the answer
//! means (delivery), and how sending is paced. [`of`] is the one place that maps a
//! [`Kind`] to its adapter; adding a platform means one module and one arm there.
//!
//! Platforms know nothing about the store, the lanes' scheduling or the HTTP receiver: they
//! turn a message into a body and a body into an [`Answer`].

pub mod console;
pub mod discord;
pub mod http;
pub mod slack;

pub use crate::domain::Kind;

use crate::config::{Destination, Mention};
use crate::render::templates::Escape;
use crate::render::Message;
use async_trait::async_trait;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The adapter of a platform kind. The only `match` on [`Kind`] that decides behaviour.
pub fn of(kind: Kind) -> &'static dyn Platform {
    match kind {
        Kind::Slack => &slack::Slack,
        Kind::Discord => &discord::Discord,
        Kind::Console => &console::Console,
    }
}

/// How a destination of a kind is reached, as the config must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A webhook `url` (or `url_file`).
    Webhook,
    /// A webhook `url`, or a bot `token` (or `token_file`) and `channel`.
    WebhookOrBot,
    /// Nothing to configure (console).
    Nowhere,
}

/// What a platform must provide.
#[async_trait]
pub trait Platform: Send + Sync {
    /// Config: how a destination is reached.
    fn reach(&self) -> Reach;

    /// Config: whether a destination of this kind may set the optional key `key`
    /// (`username`, `thread_id`, `token`, …).
    fn takes_key(&self, key: &str) -> bool;

    /// Config: the platform's rule for the value of an optional key it takes.
    fn check_key(&self, _key: &str, _value: &str) -> Result<(), &'static str> {
        Ok(())
    }

    /// Config: the platform's rules for a webhook URL already known to be http(s) with a host
    /// (e.g. Discord's legacy hosts become `discord.com`).
    fn webhook_url(&self, url: reqwest::Url) -> Result<reqwest::Url, String> {
        Ok(url)
    }

    /// Config: why a mention cannot work on this platform, if it cannot.
    fn mention_problem(&self, mention: &Mention) -> Option<String>;

    /// How template output is escaped for this platform.
    fn escape(&self) -> Escape;

    /// The final body for a message: escaped, images attached, every limit respected.
    fn body(&self, msg: &Message<'_>) -> Value;

    /// The body of the short separate message that pages the route's mentions when a failure
    /// edits a live message (an edit notifies nobody); `None` when there is no one to ping.
    fn ping_body(&self, msg: &Message<'_>) -> Option<Value>;

    /// The body of a short message of printbell's own, not of an event (the summary of the
    /// pings `mention_interval` held back): the mentions, then `text`, already escaped for
    /// this platform.
    fn notice_body(&self, dest: &Destination, mention: &[Mention], text: &str) -> Value;

    /// Whether the destination can edit its messages (`mode = "live"` is possible).
    fn can_edit(&self, dest: &Destination) -> bool;

    /// A link to a page that draws `body` as the platform would, without posting it (`preview
    /// --links`). It holds only the body: never a webhook URL or token.
    fn share_link(&self, _body: &Value) -> Option<String> {
        None
    }

    /// A posted message's id as a person reads it.
    fn describe_message(&self, id: &str) -> String {
        format!("message id {id}")
    }

    /// A made-up id of a posted message, to show what an edit would send.
    fn example_message_id(&self) -> &'static str {
        "1234567890123456789"
    }

    /// The JSON body `action` would send for a stored body (what `preview` shows); the same
    /// function builds the request [`Platform::send`] sends.
    fn wire_body(
        &self,
        _dest: &Destination,
        _action: &Action<'_>,
        stored: &str,
    ) -> Result<Value, String> {
        serde_json::from_str(stored).map_err(|e| format!("stored body is not JSON: {e}"))
    }

    /// Does `action` once with a stored body and says what the answer means. The adapter
    /// builds the request from the stored body (an edit drops what an edit cannot change).
    async fn send(
        &self,
        http: &reqwest::Client,
        dest: &Destination,
        action: &Action<'_>,
        body: &str,
    ) -> Answer;

    /// The key under which destinations share one pacer (the same webhook, however many
    /// destinations or threads post to it).
    fn pacing_key(&self, dest: &Destination) -> String;

    /// A new pacer for the webhook of `dest`; `gates` holds limits wider than one webhook.
    fn pacer(&self, dest: &Destination, gates: &Gates) -> Arc<dyn Pacer>;
}

/// What a send does with a stored body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// A new message: every event in `each` mode, a generation's first event in `live` mode.
    Post,
    /// A live message posted anew because the old one was deleted.
    Repost,
    /// Edit the posted message `message` (its id as [`Outcome::Done`] gave it).
    Edit { message: &'a str },
    /// A short separate message that pings, tied to the live message `message`.
    Ping { message: &'a str },
}

impl Action<'_> {
    /// For `printbell_messages_total{action}` and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Post => "posted",
            Action::Repost => "reposted",
            Action::Edit { .. } => "edited",
            Action::Ping { .. } => "pinged",
        }
    }
}

/// What one send came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The platform took the message; `message_id` when it says which message it stored.
    Done {
        status: u16,
        message_id: Option<String>,
    },
    /// Network error, timeout or 5xx: try again with backoff. `status`: `None` when no HTTP
    /// answer came at all.
    Retry { status: Option<u16>, error: String },
    /// 429: wait `wait`, not counted as a failed attempt. `global`: the limit holds every
    /// webhook of the host (Discord's global limit).
    RateLimited {
        status: u16,
        wait: Duration,
        global: bool,
    },
    /// The platform refused this message or webhook for good. `status`: `None` when the
    /// refusal is ours (e.g. a stored body that is not JSON).
    Permanent { status: Option<u16>, error: String },
    /// The message to edit no longer exists (deleted in the channel): post it anew.
    Gone { status: u16, error: String },
}

/// An outcome plus what the answer said about the webhook's rate-limit bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub outcome: Outcome,
    pub bucket: Option<Bucket>,
}

impl Answer {
    pub fn of(outcome: Outcome) -> Answer {
        Answer {
            outcome,
            bucket: None,
        }
    }
}

/// A webhook's rate-limit bucket as the last answer described it (Discord's X-RateLimit-*).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub remaining: Option<u32>,
    pub reset_after: Option<Duration>,
}

/// Client-side pacing of one webhook, shared by every lane posting to it, so a healthy run
/// never meets a 429.
#[async_trait]
pub trait Pacer: Send + Sync {
    /// The right to send now, held until the answer is recorded; or how long the limits hold
    /// sending back. Waiting for a permit another lane holds happens here.
    async fn acquire(&self, action: &Action<'_>) -> Result<Box<dyn Permit>, Duration>;
}

/// The right to send one message; told what the answer said about the limits.
pub trait Permit: Send {
    fn record(&mut self, answer: &Answer);
}

/// A permit for platforms whose limits an answer does not change.
pub struct Free;

impl Permit for Free {
    fn record(&mut self, _answer: &Answer) {}
}

/// Limits wider than one webhook (Discord's global limit per host): until when each is closed.
#[derive(Default)]
pub struct Gates(Mutex<HashMap<String, Arc<Gate>>>);

/// One such limit: closed until the instant it holds.
#[derive(Default)]
pub struct Gate(Mutex<Option<Instant>>);

impl Gates {
    pub fn get(&self, key: &str) -> Arc<Gate> {
        match self.0.lock() {
            Ok(mut g) => g.entry(key.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }
}

impl Gate {
    /// How long the gate is still closed.
    pub fn wait(&self) -> Option<Duration> {
        let now = Instant::now();
        let until = *self.0.lock().ok()?;
        until.filter(|t| *t > now).map(|t| t - now)
    }

    pub fn close_until(&self, until: Instant) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(until);
        }
    }
}

/// Every webhook's pacer, shared by the lanes.
#[derive(Default)]
pub struct Pacers {
    by_key: Mutex<HashMap<String, Arc<dyn Pacer>>>,
    gates: Gates,
}

impl Pacers {
    /// The pacer of the destination's webhook, created on first use.
    pub fn get(&self, dest: &Destination) -> Arc<dyn Pacer> {
        let platform = of(dest.kind);
        let key = format!("{} {}", dest.kind, platform.pacing_key(dest));
        match self.by_key.lock() {
            Ok(mut map) => map
                .entry(key)
                .or_insert_with(|| platform.pacer(dest, &self.gates))
                .clone(),
            Err(_) => platform.pacer(dest, &self.gates),
        }
    }
}

/// The webhook URL without query or fragment: Discord's `thread_id` and `wait` do not make
/// another webhook.
fn url_key(dest: &Destination) -> String {
    dest.url
        .as_ref()
        .map(|u| {
            let mut u = u.clone();
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        })
        .unwrap_or_default()
}
