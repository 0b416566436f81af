//! A scriptable mock of Slack incoming webhooks and Discord execute-webhook endpoints, for
//! tests that need a chat platform that answers like the real one, or badly on purpose.
//!
//! * Binds `127.0.0.1:0` and serves HTTP/1.1 with hyper (keep-alive, Content-Length or
//!   chunked bodies, pipelining, any number of concurrent connections). [`Reply::Hang`] is a
//!   handler that never answers (hyper drops it when the client closes the connection, which
//!   is recorded as [`Received::client_gone`]); [`Reply::Reset`] drops the connection with
//!   `SO_LINGER 0`, so the client sees a TCP RST and no answer.
//! * The server runs on its **own thread with its own tokio runtime**, so it keeps answering
//!   even if the test's runtime is current-thread and blocked (e.g. waiting on a child
//!   process). It stops when the last clone of the [`MockChat`] handle is dropped.
//! * A path containing `/api/webhooks/` (or `/api/v<N>/webhooks/`) is a Discord webhook;
//!   every other path is a Slack webhook.
//! * Strict mode (default on) validates every POST body with [`crate::validate`] and answers
//!   400 the way the platform would (Slack `invalid_payload`/`invalid_blocks`/`no_text`,
//!   Discord 50035/50006/50109). The problems are kept in [`Received::problems`].
//!   A PATCH of `…/messages/{id}` is checked against the edit schema
//!   (`IncomingWebhookUpdateRequestPartial`: no `username`, `avatar_url`, `tts`,
//!   `thread_name`; the execute limits), also answered 400 50035.
//! * Discord messages posted with `?wait=true` are kept: GET / PATCH / DELETE
//!   `…/messages/{id}` work on them, within the thread they were posted in (`?thread_id=`
//!   must name it, as on Discord; otherwise, or once deleted, 404 code 10008 Unknown
//!   Message). [`MockChat::message`] shows a message as edited so far, with the
//!   `mentions` / `mention_roles` / `mention_everyone` its content and `allowed_mentions`
//!   make; [`MockChat::delete_message`] deletes one as a user would in the channel.
//! * Rate limits are opt-in ([`MockChat::enforce_discord_limits`]): a Discord webhook's
//!   bucket covers its execute path and every `…/messages/{id}` path (execute, edit, get
//!   and delete share one budget per webhook, as on Discord).
//! * Order of decisions for one request: method (405) → rate-limit bucket (429) → strict
//!   validation (400) → scripted reply → default reply → [`Reply::Auto`].
//!   A request rejected by 405/429/400 does **not** consume a scripted reply.

use crate::validate;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

/// What the mock answers to one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Slack path → 200 text/plain `ok`. Discord execute → 204, or with `?wait=true` (also
    /// `1`/`True`) 200 + a message object with a unique snowflake `id`. Discord
    /// `…/messages/{id}` paths: GET/PATCH → 200 message, DELETE → 204 (404 code 10008 for ids
    /// the mock did not issue).
    Auto,
    /// That status with that body (`application/json` if the body starts with `{`, else
    /// `text/plain`).
    Status(u16, String),
    /// Full control over the response.
    Custom {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// 429, `Retry-After: N`, body `rate_limited`.
    SlackRateLimited { retry_after_secs: u64 },
    /// 429 with Discord's JSON body, `Retry-After` (ceil), `X-RateLimit-Scope` (`global` or
    /// `user`), `X-RateLimit-Global: true` when global; non-global also carries bucket headers
    /// with `Remaining: 0` and `Reset-After = retry_after`.
    DiscordRateLimited { retry_after: f64, global: bool },
    /// 404 `{"message": "Unknown Webhook", "code": 10015}`.
    DiscordUnknownWebhook,
    /// Answer with the inner reply after the delay. If the client closes the connection
    /// during the delay, nothing is answered (`status` stays 0, `client_gone` = true).
    Delay(Duration, Box<Reply>),
    /// Never answer; the connection is held until the client gives up (`client_gone` = true).
    Hang,
    /// Close the connection with a TCP RST without writing anything.
    Reset,
}

impl Reply {
    /// Shorthand for `Reply::Delay(d, Box::new(r))`.
    pub fn delay(d: Duration, r: Reply) -> Reply {
        Reply::Delay(d, Box::new(r))
    }
    /// Shorthand for a JSON reply.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply::Status(status, body.to_string())
    }
}

/// One request as the mock saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// Path without the query string, exactly as requested.
    pub path: String,
    /// `path` normalised for matching: `/api/vN/webhooks/` → `/api/webhooks/`, no trailing
    /// `/`. Every path-keyed method of [`MockChat`] compares this form on both sides.
    pub route: String,
    pub query: Option<String>,
    /// Lower-cased header names; repeated headers joined with ", ".
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// The body parsed as JSON, if it parses.
    pub json: Option<Value>,
    /// When the complete request had been read.
    pub at: Instant,
    /// Status the mock answered; 0 = no HTTP response (Hang, Reset, client left during a
    /// Delay) or not answered *yet* (Delay still running).
    pub status: u16,
    /// When the response was written (None for status 0).
    pub answered_at: Option<Instant>,
    /// The client closed the connection before getting an answer (Hang / Delay).
    pub client_gone: bool,
    /// Strict-mode problems (empty when valid or strict mode is off).
    pub problems: Vec<String>,
    /// Body of the answer the mock sent (or will send, for a running Delay).
    pub response_body: String,
    /// Headers of that answer (lower-cased names), e.g. `retry-after`, `x-ratelimit-*`.
    pub response_headers: Vec<(String, String)>,
}

impl Received {
    /// True if this request went to `path` (compared in normalised form, see `route`).
    pub fn matches(&self, path: &str) -> bool {
        self.route == canon(path)
    }
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
    /// A header of the mock's answer.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.response_headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Value of a query parameter (not percent-decoded).
    pub fn query_param(&self, key: &str) -> Option<String> {
        query_param(self.query.as_deref(), key)
    }
    fn describe(&self) -> String {
        let mut s = format!(
            "{} {}{} -> {}{}",
            self.method,
            self.path,
            self.query
                .as_deref()
                .map(|q| format!("?{q}"))
                .unwrap_or_default(),
            if self.status == 0 {
                "no answer".to_string()
            } else if self.response_body.is_empty() || self.is_ok() {
                self.status.to_string()
            } else {
                let rb: String = self.response_body.chars().take(200).collect();
                format!("{} {rb}", self.status)
            },
            if self.client_gone {
                " (client gone)"
            } else {
                ""
            },
        );
        if !self.problems.is_empty() {
            let _ = write!(s, "\n      problems: {}", self.problems.join("; "));
        }
        let body = self.text();
        let short: String = body.chars().take(300).collect();
        let _ = write!(
            s,
            "\n      body: {short}{}",
            if body.chars().count() > 300 {
                "…"
            } else {
                ""
            }
        );
        s
    }
}

/// Formats a list of requests for panic messages.
pub fn describe_all(reqs: &[Received]) -> String {
    if reqs.is_empty() {
        return "  (nothing)".into();
    }
    reqs.iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "  #{i} +{:?} {}",
                r.at.duration_since(reqs[0].at),
                r.describe()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn query_param(q: Option<&str>, key: &str) -> Option<String> {
    q?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == key).then(|| v.to_string())
    })
}

/// Normalised path used as the key for scripts, defaults, limits and matching:
/// `/api/v10/webhooks/1/t/` and `/api/webhooks/1/t` are the same webhook.
pub fn canon(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    let mut out = path.to_string();
    if let Some(i) = path.find("/api/v") {
        let after = &path[i + 6..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with("/webhooks/") {
            out = format!("{}/api{}", &path[..i], &after[digits..]);
        }
    }
    while out.len() > 1 && out.ends_with('/') {
        out.pop();
    }
    out
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Flavor {
    Slack,
    Discord,
}

struct Bucket {
    flavor: Flavor,
    limit: u32,
    window: Duration,
    start: Option<Instant>,
    used: u32,
    id: String,
}

enum BucketOutcome {
    Allowed {
        remaining: u32,
        reset_after: Duration,
    },
    Limited {
        retry_after: Duration,
    },
}

impl Bucket {
    fn take(&mut self, now: Instant) -> BucketOutcome {
        match self.start {
            Some(s) if now < s + self.window => {}
            _ => {
                self.start = Some(now);
                self.used = 0;
            }
        }
        let end = self.start.unwrap() + self.window;
        let left = end.saturating_duration_since(now);
        if self.used < self.limit {
            self.used += 1;
            BucketOutcome::Allowed {
                remaining: self.limit - self.used,
                reset_after: left,
            }
        } else {
            BucketOutcome::Limited { retry_after: left }
        }
    }
}

/// Seconds rounded *up* to the millisecond, so a client that waits exactly this long is
/// never early.
fn secs_ceil_ms(d: Duration) -> f64 {
    (d.as_nanos().div_ceil(1_000_000) as f64) / 1000.0
}

fn ratelimit_headers(
    limit: u32,
    remaining: u32,
    reset_after: Duration,
    bucket: &str,
) -> Vec<(String, String)> {
    let ra = secs_ceil_ms(reset_after);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    vec![
        ("x-ratelimit-limit".into(), limit.to_string()),
        ("x-ratelimit-remaining".into(), remaining.to_string()),
        ("x-ratelimit-reset".into(), format!("{:.3}", now + ra)),
        ("x-ratelimit-reset-after".into(), format!("{ra:.3}")),
        ("x-ratelimit-bucket".into(), bucket.to_string()),
    ]
}

struct State {
    log: Vec<Received>,
    scripts: HashMap<String, VecDeque<Reply>>,
    defaults: HashMap<String, Reply>,
    buckets: HashMap<String, Bucket>,
    strict: bool,
    seq: u64,
    /// Discord messages created with wait=true, keyed by their `…/messages/{id}` path.
    messages: HashMap<String, Value>,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not make every later call panic too.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Guard {
    shutdown: watch::Sender<bool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Handle to a running mock server. Cheap to clone; the server stops when the last clone is
/// dropped.
#[derive(Clone)]
pub struct MockChat {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
    base: String,
}

impl MockChat {
    /// Starts the server on 127.0.0.1 with a free port.
    pub async fn start() -> MockChat {
        Self::start_blocking()
    }

    /// Same as [`MockChat::start`], usable from synchronous tests.
    pub fn start_blocking() -> MockChat {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("mock_chat: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("mock_chat: set_nonblocking");
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                log: Vec::new(),
                scripts: HashMap::new(),
                defaults: HashMap::new(),
                buckets: HashMap::new(),
                strict: true,
                seq: 0,
                messages: HashMap::new(),
            }),
        });
        let (tx, rx) = watch::channel(false);
        let server_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("mock-chat-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("mock_chat: runtime");
                rt.block_on(accept_loop(listener, server_shared, rx));
                rt.shutdown_background();
            })
            .expect("mock_chat: spawn thread");
        MockChat {
            shared,
            _guard: Arc::new(Guard { shutdown: tx }),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// `base() + path`, e.g. `url("/services/T1/B1/XYZ")` or `url("/api/webhooks/1/tok")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Queues replies for `path` (path only, no query); used in order, then the default.
    /// Appends to anything already queued.
    pub fn script(&self, path: &str, replies: Vec<Reply>) {
        self.shared
            .lock()
            .scripts
            .entry(canon(path))
            .or_default()
            .extend(replies);
    }

    /// Reply used for `path` once its script is exhausted (instead of [`Reply::Auto`]).
    pub fn set_default(&self, path: &str, reply: Reply) {
        self.shared.lock().defaults.insert(canon(path), reply);
    }

    /// Strict validation on/off (default on).
    pub fn set_strict(&self, strict: bool) {
        self.shared.lock().strict = strict;
    }

    /// Discord-style fixed-window bucket on `path`: `limit` requests per `window`, the window
    /// starting at the first request after the previous window ended. Every response on the
    /// path carries `X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket`; a request over
    /// the limit gets 429 with `retry_after` = time left in the window (rounded up to ms).
    /// Every request counts, including ones that then fail validation or hit a script.
    /// On a Discord webhook path the bucket also holds its `…/messages/{id}` paths: posts,
    /// edits, gets and deletes of one webhook share it.
    pub fn enforce_discord_limits(&self, path: &str, limit: u32, window: Duration) {
        self.add_bucket(path, limit, window, Flavor::Discord);
    }

    /// Slack-style limit on `path`: over `limit` per `window` → 429 `rate_limited` with
    /// `Retry-After` = ceil(seconds left in the window). No X-RateLimit headers.
    pub fn enforce_slack_limits(&self, path: &str, limit: u32, window: Duration) {
        self.add_bucket(path, limit, window, Flavor::Slack);
    }

    fn add_bucket(&self, path: &str, limit: u32, window: Duration, flavor: Flavor) {
        let mut h: u64 = 0xcbf29ce484222325;
        for b in path.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
        self.shared.lock().buckets.insert(
            canon(path),
            Bucket {
                flavor,
                limit,
                window,
                start: None,
                used: 0,
                id: format!("{h:016x}"),
            },
        );
    }

    /// Everything received, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().log.clone()
    }

    /// Requests whose path (without query) equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Received> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.matches(path))
            .cloned()
            .collect()
    }

    /// Requests on `path` answered 2xx, in arrival order.
    pub fn ok_requests_to(&self, path: &str) -> Vec<Received> {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.matches(path) && r.is_ok())
            .cloned()
            .collect()
    }

    /// JSON bodies of the 2xx-answered requests on `path`.
    pub fn delivered_json(&self, path: &str) -> Vec<Value> {
        self.ok_requests_to(path)
            .into_iter()
            .filter_map(|r| r.json)
            .collect()
    }

    /// How many 429s the mock answered on `path` (scripted or enforced).
    pub fn count_429(&self, path: &str) -> usize {
        self.count_status(path, 429)
    }

    /// How many responses with `status` the mock answered on `path`.
    pub fn count_status(&self, path: &str, status: u16) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.matches(path) && r.status == status)
            .count()
    }

    /// Forgets all received requests (scripts, defaults and buckets stay).
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// The Discord message `message_id` posted (with `?wait=true`) to the webhook `webhook`,
    /// as it is now: after every edit, with its `embeds` as Discord stores them (`type`
    /// "rich") and `edited_timestamp` set once edited. None if never posted or deleted.
    pub fn message(&self, webhook: &str, message_id: &str) -> Option<Value> {
        let key = format!("{}/messages/{message_id}", canon(webhook));
        self.shared.lock().messages.get(&key).cloned()
    }

    /// Every message of the webhook `webhook` that exists now (not deleted), oldest first.
    pub fn messages(&self, webhook: &str) -> Vec<Value> {
        let prefix = format!("{}/messages/", canon(webhook));
        let mut list: Vec<Value> = self
            .shared
            .lock()
            .messages
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, m)| m.clone())
            .collect();
        list.sort_by_key(|m| m["id"].as_str().and_then(|id| id.parse::<u64>().ok()));
        list
    }

    /// Deletes a message as a user (or a moderator) would in the channel: later GET / PATCH /
    /// DELETE of it answer 404 code 10008 Unknown Message. False if there was no such message.
    pub fn delete_message(&self, webhook: &str, message_id: &str) -> bool {
        let key = format!("{}/messages/{message_id}", canon(webhook));
        self.shared.lock().messages.remove(&key).is_some()
    }

    /// Waits until at least `n` requests (any status, answered or not) arrived on `path`;
    /// returns all requests on `path`. Panics on timeout listing everything received.
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(&format!("{n} request(s) on {path}"), timeout, |log| {
            let v: Vec<Received> = log.iter().filter(|r| r.matches(path)).cloned().collect();
            (v.len() >= n).then_some(v)
        })
        .await
    }

    /// Waits until at least `n` requests on `path` were answered 2xx (successful deliveries);
    /// returns those 2xx requests. Panics on timeout listing everything received.
    pub async fn wait_for_ok(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(
            &format!("{n} 2xx-answered request(s) on {path}"),
            timeout,
            |log| {
                let v: Vec<Received> = log
                    .iter()
                    .filter(|r| r.matches(path) && r.is_ok())
                    .cloned()
                    .collect();
                (v.len() >= n).then_some(v)
            },
        )
        .await
    }

    /// Waits until at least `n` requests arrived in total (any path, any status).
    pub async fn wait_for_any(&self, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(&format!("{n} request(s) in total"), timeout, |log| {
            (log.len() >= n).then(|| log.to_vec())
        })
        .await
    }

    /// Generic wait: polls `check` over the full log until it returns `Some`.
    /// Panics after `timeout` with `what` and everything received.
    pub async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check(&self.shared.lock().log) {
                return t;
            }
            if Instant::now() >= deadline {
                self.timeout_panic(what, timeout);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Blocking version of [`MockChat::wait_until`] for synchronous tests.
    pub fn wait_until_blocking<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&[Received]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(t) = check(&self.shared.lock().log) {
                return t;
            }
            if Instant::now() >= deadline {
                self.timeout_panic(what, timeout);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Blocking version of [`MockChat::wait_for_ok`].
    pub fn wait_for_ok_blocking(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until_blocking(
            &format!("{n} 2xx-answered request(s) on {path}"),
            timeout,
            |log| {
                let v: Vec<Received> = log
                    .iter()
                    .filter(|r| r.matches(path) && r.is_ok())
                    .cloned()
                    .collect();
                (v.len() >= n).then_some(v)
            },
        )
    }

    /// Blocking version of [`MockChat::wait_for`].
    pub fn wait_for_blocking(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until_blocking(&format!("{n} request(s) on {path}"), timeout, |log| {
            let v: Vec<Received> = log.iter().filter(|r| r.matches(path)).cloned().collect();
            (v.len() >= n).then_some(v)
        })
    }

    /// Asserts that no request at all arrives on `path` beyond the `already` ones during
    /// `quiet` (sleeps for `quiet`).
    pub async fn assert_quiet(&self, path: &str, already: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        let got = self.requests_to(path);
        if got.len() > already {
            panic!(
                "mock_chat: expected no more than {already} request(s) on {path}, got {}:\n{}",
                got.len(),
                describe_all(&got)
            );
        }
    }

    #[track_caller]
    fn timeout_panic(&self, what: &str, timeout: Duration) -> ! {
        let log = self.requests();
        panic!(
            "mock_chat: timed out after {timeout:?} waiting for {what}; received {} request(s):\n{}",
            log.len(),
            describe_all(&log)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP server (hyper, HTTP/1.1)
// ---------------------------------------------------------------------------------------------

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("mock_chat: tokio listener");
    loop {
        tokio::select! {
            r = listener.accept() => {
                if let Ok((stream, _)) = r {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_conn(stream, shared.clone(), shutdown.clone()));
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// One request as read off the wire, before it is logged.
struct RawRequest {
    method: String,
    path: String,
    query: Option<String>,
    /// Lower-cased names, in arrival order; repeated headers appear repeatedly.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

enum Action {
    Respond(Response),
    Hang,
    Reset,
}

struct Planned {
    idx: usize,
    delay: Duration,
    action: Action,
}

const MAX_BODY: usize = 32 * 1024 * 1024;

/// How a handler asks its connection to be dropped with an RST ([`Reply::Reset`]).
#[derive(Default)]
struct ResetSwitch {
    armed: AtomicBool,
    notify: Notify,
}

impl ResetSwitch {
    fn trigger(&self) {
        self.armed.store(true, Ordering::SeqCst);
        // notify_one keeps a permit if the connection task is not waiting yet.
        self.notify.notify_one();
    }
}

/// The accepted socket, owned by hyper. When a handler has tripped the [`ResetSwitch`], the
/// socket gets `SO_LINGER 0` as it is dropped, so close() sends an RST instead of a FIN.
struct Socket {
    stream: TcpStream,
    reset: Arc<ResetSwitch>,
}

impl Drop for Socket {
    #[allow(deprecated)] // set_linger is deprecated for blocking closes; linger 0 never blocks
    fn drop(&mut self) {
        if self.reset.armed.load(Ordering::SeqCst) {
            let _ = self.stream.set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// One connection: hyper's HTTP/1.1 server (keep-alive, Content-Length or chunked bodies,
/// `Expect: 100-continue`, pipelining). It ends when the client closes it, when a handler
/// asks for a reset (the connection and its socket are dropped here, see [`Socket`]), or when
/// the mock shuts down.
async fn serve_conn(stream: TcpStream, shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let reset = Arc::new(ResetSwitch::default());
    let io = TokioIo::new(Socket {
        stream,
        reset: reset.clone(),
    });
    let handler_reset = reset.clone();
    let service = service_fn(move |req| handle(shared.clone(), handler_reset.clone(), req));
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::select! {
        _ = conn => {}
        _ = reset.notify.notified() => {}
        _ = shutdown.changed() => {}
    }
}

/// Marks a request `client_gone` if its handler is dropped before it answered: hyper drops
/// the handler when it sees the client close the connection (Hang, Delay).
struct GoneGuard {
    shared: Arc<Shared>,
    idx: usize,
    armed: bool,
}

impl Drop for GoneGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Some(r) = self.shared.lock().log.get_mut(self.idx) {
                r.client_gone = true;
            }
        }
    }
}

async fn handle(
    shared: Arc<Shared>,
    reset: Arc<ResetSwitch>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => {
            return Ok(to_hyper(text_response(400, &format!("bad request: {e}"))));
        }
    };
    let mut headers = Vec::with_capacity(parts.headers.len());
    for (k, v) in &parts.headers {
        headers.push((
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).trim().to_string(),
        ));
    }
    let raw = RawRequest {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body,
    };
    let plan = decide(&shared, raw);
    let mut gone = GoneGuard {
        shared: shared.clone(),
        idx: plan.idx,
        armed: true,
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    match plan.action {
        Action::Hang => std::future::pending().await,
        Action::Reset => {
            gone.armed = false;
            reset.trigger();
            std::future::pending().await
        }
        Action::Respond(resp) => {
            gone.armed = false;
            if !plan.delay.is_zero() {
                let mut st = shared.lock();
                st.log[plan.idx].status = resp.status;
                st.log[plan.idx].answered_at = Some(Instant::now());
            }
            Ok(to_hyper(resp))
        }
    }
}

fn to_hyper(resp: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    builder
        .body(Full::new(Bytes::from(resp.body)))
        .unwrap_or_else(|e| {
            let mut r = hyper::Response::new(Full::new(Bytes::from(format!(
                "mock_chat: cannot send the scripted reply: {e}"
            ))));
            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            r
        })
}

// ---------------------------------------------------------------------------------------------
// Request → reply decision
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum PathKind {
    Slack,
    /// `/api[/vN]/webhooks/{id}/{token}`
    DiscordExecute {
        webhook_id: String,
    },
    /// `/api[/vN]/webhooks/{id}/{token}/messages/{message_id}`
    DiscordMessage {
        webhook_id: String,
    },
    /// any other path under `/api[/vN]/webhooks/`
    DiscordOther,
}

/// Returns the part after `/webhooks/` if `path` is a Discord webhook path.
fn discord_rest(path: &str) -> Option<&str> {
    let i = path.find("/api/")?;
    let after = &path[i + 5..];
    if let Some(rest) = after.strip_prefix("webhooks/") {
        return Some(rest);
    }
    let (ver, rest) = after.split_once('/')?;
    if ver.len() >= 2 && ver.starts_with('v') && ver[1..].bytes().all(|b| b.is_ascii_digit()) {
        return rest.strip_prefix("webhooks/");
    }
    None
}

fn classify(path: &str) -> PathKind {
    let Some(rest) = discord_rest(path) else {
        return PathKind::Slack;
    };
    let segs: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segs.as_slice() {
        [id, token] if !id.is_empty() && !token.is_empty() => PathKind::DiscordExecute {
            webhook_id: id.to_string(),
        },
        [id, _token, "messages", _msg] => PathKind::DiscordMessage {
            webhook_id: id.to_string(),
        },
        _ => PathKind::DiscordOther,
    }
}

/// The rate-limit bucket a request counts against: a Discord message path shares its
/// webhook's bucket.
fn bucket_key(kind: &PathKind, route: &str) -> String {
    match (kind, route.rfind("/messages/")) {
        (PathKind::DiscordMessage { .. }, Some(i)) => route[..i].to_string(),
        _ => route.to_string(),
    }
}

/// The channel a Discord request addresses: its `thread_id`, else the webhook's channel.
fn discord_channel(query: Option<&str>) -> String {
    query_param(query, "thread_id").unwrap_or_else(|| DISCORD_CHANNEL_ID.into())
}

/// The channel id of the mock's Discord webhooks (a message in a thread has the thread's id).
pub const DISCORD_CHANNEL_ID: &str = "1100000000000000001";

/// Sets a message's `mentions` / `mention_roles` / `mention_everyone` from the body that
/// posted or edited its content.
fn set_mentions(msg: &mut Value, body: &Value) {
    let p = validate::discord_pings(body);
    msg["mentions"] = Value::Array(
        p.users
            .iter()
            .map(|id| json!({"id": id, "username": format!("user{id}"), "discriminator": "0"}))
            .collect(),
    );
    msg["mention_roles"] = json!(p.roles);
    msg["mention_everyone"] = json!(p.everyone);
}

/// Embeds as Discord stores them: a webhook's embeds are always `rich`.
fn rich(embeds: &Value) -> Value {
    let list = embeds.as_array().cloned().unwrap_or_default();
    Value::Array(
        list.into_iter()
            .map(|mut e| {
                if let Some(o) = e.as_object_mut() {
                    o.insert("type".into(), json!("rich"));
                }
                e
            })
            .collect(),
    )
}

fn is_true(v: Option<String>) -> bool {
    matches!(v.as_deref(), Some("true" | "True" | "1"))
}

fn text_response(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// Nested Discord error object from JSON-pointer problems:
/// `{"embeds": {"0": {"title": {"_errors": [{"code": ..., "message": ...}]}}}}`.
fn discord_errors(problems: &[validate::Problem]) -> Value {
    let mut root = json!({});
    for p in problems {
        let mut node = &mut root;
        for seg in p.pointer.split('/').skip(1) {
            let seg = seg.replace("~1", "/").replace("~0", "~");
            node = node
                .as_object_mut()
                .unwrap()
                .entry(seg)
                .or_insert_with(|| json!({}));
        }
        let errs = node
            .as_object_mut()
            .unwrap()
            .entry("_errors")
            .or_insert_with(|| json!([]));
        errs.as_array_mut()
            .unwrap()
            .push(json!({"code": "MOCK_VALIDATION_FAILED", "message": p.message}));
    }
    root
}

fn snowflake(seq: u64) -> String {
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    (((ms.saturating_sub(DISCORD_EPOCH_MS)) << 22) | (seq & 0x3F_FFFF)).to_string()
}

/// Strict validation: `Some(400 response)` when the body is rejected (problems appended).
fn strict_check(
    kind: &PathKind,
    method: &str,
    req: &RawRequest,
    json: &Option<Value>,
    problems: &mut Vec<String>,
) -> Option<Response> {
    let ct = req
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.to_ascii_lowercase());
    let ct_ok = ct
        .as_deref()
        .is_some_and(|c| c.split(';').next().unwrap_or("").trim() == "application/json");
    let ct_problem = format!(
        "content-type: expected application/json, got {}",
        ct.as_deref()
            .map(|c| format!("{c:?}"))
            .unwrap_or_else(|| "none".into())
    );
    match kind {
        PathKind::Slack => {
            if !ct_ok {
                problems.push(ct_problem);
                return Some(text_response(400, "invalid_payload"));
            }
            let Some(body) = json else {
                problems.push("body is not valid JSON".into());
                return Some(text_response(400, "invalid_payload"));
            };
            let list = validate::slack_problem_list(body);
            if list.is_empty() {
                return None;
            }
            problems.extend(list.iter().map(|p| p.to_string()));
            let code = if !body.is_object() {
                "invalid_payload"
            } else if list.iter().any(|p| p.pointer.starts_with("/blocks")) {
                "invalid_blocks"
            } else if body
                .get("text")
                .and_then(Value::as_str)
                .is_none_or(|t| t.trim().is_empty())
            {
                "no_text"
            } else {
                "invalid_payload"
            };
            Some(text_response(400, code))
        }
        PathKind::DiscordExecute { .. } | PathKind::DiscordMessage { .. } => {
            let edit = matches!(kind, PathKind::DiscordMessage { .. });
            if edit && method != "PATCH" {
                return None;
            }
            if !ct_ok {
                problems.push(ct_problem.clone());
                return Some(json_response(
                    400,
                    &json!({"code": 50035, "message": "Invalid Form Body", "errors": {"_errors": [{"code": "CONTENT_TYPE_INVALID", "message": ct_problem}]}}),
                ));
            }
            let Some(body) = json else {
                problems.push("body is not valid JSON".into());
                return Some(json_response(
                    400,
                    &json!({"code": 50109, "message": "The request body contains invalid JSON."}),
                ));
            };
            let list = if edit {
                validate::discord_edit_problem_list(body)
            } else {
                validate::discord_problem_list(body)
            };
            if list.is_empty() {
                return None;
            }
            problems.extend(list.iter().map(|p| p.to_string()));
            if list.len() == 1 && list[0].message == validate::DISCORD_EMPTY_MESSAGE {
                return Some(json_response(
                    400,
                    &json!({"code": 50006, "message": "Cannot send an empty message"}),
                ));
            }
            Some(json_response(
                400,
                &json!({"code": 50035, "message": "Invalid Form Body", "errors": discord_errors(&list)}),
            ))
        }
        PathKind::DiscordOther => None,
    }
}

struct Ctx<'a> {
    kind: &'a PathKind,
    method: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    json: &'a Option<Value>,
}

/// Turns a reply into (total delay, action). May create/update stored Discord messages.
fn resolve(st: &mut State, reply: Reply, ctx: &Ctx) -> (Duration, Action) {
    match reply {
        Reply::Delay(d, inner) => {
            let (d2, a) = resolve(st, *inner, ctx);
            (d + d2, a)
        }
        Reply::Hang => (Duration::ZERO, Action::Hang),
        Reply::Reset => (Duration::ZERO, Action::Reset),
        Reply::Status(code, body) => {
            let r = if body.trim_start().starts_with('{') {
                Response {
                    status: code,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.into_bytes(),
                }
            } else {
                text_response(code, &body)
            };
            (Duration::ZERO, Action::Respond(r))
        }
        Reply::Custom {
            status,
            headers,
            body,
        } => (
            Duration::ZERO,
            Action::Respond(Response {
                status,
                headers: headers
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect(),
                body: body.into_bytes(),
            }),
        ),
        Reply::SlackRateLimited { retry_after_secs } => {
            let mut r = text_response(429, "rate_limited");
            r.headers
                .push(("retry-after".into(), retry_after_secs.to_string()));
            (Duration::ZERO, Action::Respond(r))
        }
        Reply::DiscordRateLimited {
            retry_after,
            global,
        } => {
            let mut r = json_response(
                429,
                &json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": global, "code": 0}),
            );
            r.headers.push((
                "retry-after".into(),
                (retry_after.max(0.0).ceil() as u64).to_string(),
            ));
            r.headers.push((
                "x-ratelimit-scope".into(),
                if global { "global" } else { "user" }.into(),
            ));
            if global {
                r.headers.push(("x-ratelimit-global".into(), "true".into()));
            } else {
                let (limit, bucket) = st
                    .buckets
                    .get(&bucket_key(ctx.kind, ctx.path))
                    .map(|b| (b.limit, b.id.clone()))
                    .unwrap_or((5, "mockscriptedbucket".into()));
                r.headers.extend(ratelimit_headers(
                    limit,
                    0,
                    Duration::from_secs_f64(retry_after.max(0.0)),
                    &bucket,
                ));
            }
            (Duration::ZERO, Action::Respond(r))
        }
        Reply::DiscordUnknownWebhook => (
            Duration::ZERO,
            Action::Respond(json_response(
                404,
                &json!({"message": "Unknown Webhook", "code": 10015}),
            )),
        ),
        Reply::Auto => (Duration::ZERO, Action::Respond(auto(st, ctx))),
    }
}

fn auto(st: &mut State, ctx: &Ctx) -> Response {
    match ctx.kind {
        PathKind::Slack => text_response(200, "ok"),
        PathKind::DiscordOther => {
            json_response(404, &json!({"message": "404: Not Found", "code": 0}))
        }
        PathKind::DiscordExecute { webhook_id } => {
            if !is_true(query_param(ctx.query, "wait")) {
                return Response {
                    status: 204,
                    headers: vec![],
                    body: vec![],
                };
            }
            st.seq += 1;
            let id = snowflake(st.seq);
            let body = ctx.json.clone().unwrap_or(json!({}));
            let channel_id = discord_channel(ctx.query);
            let embeds = rich(body.get("embeds").unwrap_or(&Value::Null));
            let mut msg = json!({
                "id": id,
                "type": 0,
                "content": body.get("content").and_then(Value::as_str).unwrap_or(""),
                "channel_id": channel_id,
                "author": {
                    "id": webhook_id,
                    "username": body.get("username").and_then(Value::as_str).unwrap_or("Mock Webhook"),
                    "avatar": null,
                    "discriminator": "0000",
                    "bot": true
                },
                "attachments": [],
                "embeds": embeds,
                "mentions": [],
                "mention_roles": [],
                "pinned": false,
                "mention_everyone": false,
                "tts": body.get("tts").and_then(Value::as_bool).unwrap_or(false),
                "timestamp": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "edited_timestamp": null,
                "flags": body.get("flags").and_then(Value::as_u64).unwrap_or(0),
                "components": [],
                "webhook_id": webhook_id,
            });
            set_mentions(&mut msg, &body);
            st.messages.insert(
                format!("{}/messages/{}", ctx.path.trim_end_matches('/'), id),
                msg.clone(),
            );
            json_response(200, &msg)
        }
        PathKind::DiscordMessage { .. } => {
            let unknown =
                || json_response(404, &json!({"message": "Unknown Message", "code": 10008}));
            // Discord looks for the message in the channel, or in the thread `thread_id` names.
            let here = discord_channel(ctx.query);
            if st
                .messages
                .get(ctx.path)
                .is_some_and(|m| m["channel_id"].as_str() != Some(here.as_str()))
            {
                return unknown();
            }
            match ctx.method {
                "GET" => st
                    .messages
                    .get(ctx.path)
                    .map(|m| json_response(200, m))
                    .unwrap_or_else(unknown),
                "DELETE" => match st.messages.remove(ctx.path) {
                    Some(_) => Response {
                        status: 204,
                        headers: vec![],
                        body: vec![],
                    },
                    None => unknown(),
                },
                _ => {
                    let Some(m) = st.messages.get_mut(ctx.path) else {
                        return unknown();
                    };
                    if let Some(Value::Object(patch)) = ctx.json {
                        if patch.contains_key("content") {
                            // Discord parses the mentions of edited content again, with the
                            // edit's allowed_mentions (highlighted, but nobody is notified).
                            set_mentions(m, ctx.json.as_ref().unwrap_or(&Value::Null));
                        }
                        for k in ["content", "embeds", "flags", "components", "attachments"] {
                            if let Some(v) = patch.get(k) {
                                m[k] = match (v.is_null(), k) {
                                    (false, "embeds") => rich(v),
                                    (false, _) => v.clone(),
                                    (true, "content") => json!(""),
                                    (true, "flags") => json!(0),
                                    (true, _) => json!([]),
                                };
                            }
                        }
                    }
                    m["edited_timestamp"] =
                        json!(humantime::format_rfc3339_millis(SystemTime::now()).to_string());
                    json_response(200, m)
                }
            }
        }
    }
}

fn decide(shared: &Shared, req: RawRequest) -> Planned {
    let now = Instant::now();
    let path = req.path.clone();
    let query = req.query.clone();
    let mut headers: HashMap<String, String> = HashMap::new();
    for (k, v) in &req.headers {
        headers
            .entry(k.clone())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(v);
            })
            .or_insert_with(|| v.clone());
    }
    let json: Option<Value> = serde_json::from_slice(&req.body).ok();
    let kind = classify(&path);
    let route = canon(&path);
    let method = req.method.to_ascii_uppercase();

    let mut st = shared.lock();
    let idx = st.log.len();
    st.log.push(Received {
        method: req.method.clone(),
        path: path.clone(),
        route: route.clone(),
        query: query.clone(),
        headers,
        body: req.body.clone(),
        json: json.clone(),
        at: now,
        status: 0,
        answered_at: None,
        client_gone: false,
        problems: Vec::new(),
        response_body: String::new(),
        response_headers: Vec::new(),
    });

    // 1. method
    let method_ok = match kind {
        PathKind::DiscordMessage { .. } => matches!(method.as_str(), "GET" | "PATCH" | "DELETE"),
        _ => method == "POST",
    };

    // 2. rate-limit bucket (every request counts)
    let mut rl_headers = Vec::new();
    let mut limited: Option<Response> = None;
    if let Some(b) = st.buckets.get_mut(&bucket_key(&kind, &route)) {
        let (flavor, limit, id) = (b.flavor, b.limit, b.id.clone());
        match b.take(now) {
            BucketOutcome::Allowed {
                remaining,
                reset_after,
            } => {
                if flavor == Flavor::Discord {
                    rl_headers = ratelimit_headers(limit, remaining, reset_after, &id);
                }
            }
            BucketOutcome::Limited { retry_after } => {
                let secs = secs_ceil_ms(retry_after);
                let mut r = match flavor {
                    Flavor::Discord => {
                        rl_headers = ratelimit_headers(limit, 0, retry_after, &id);
                        let mut r = json_response(
                            429,
                            &json!({"message": "You are being rate limited.", "retry_after": secs, "global": false, "code": 0}),
                        );
                        r.headers.push(("x-ratelimit-scope".into(), "user".into()));
                        r
                    }
                    Flavor::Slack => text_response(429, "rate_limited"),
                };
                r.headers.push((
                    "retry-after".into(),
                    (secs.ceil() as u64).max(1).to_string(),
                ));
                limited = Some(r);
            }
        }
    }

    let mut problems = Vec::new();
    let (delay, mut action) = if !method_ok {
        let r = match kind {
            PathKind::Slack => text_response(405, "method_not_allowed"),
            _ => json_response(
                405,
                &json!({"message": "405: Method Not Allowed", "code": 0}),
            ),
        };
        (Duration::ZERO, Action::Respond(r))
    } else if let Some(r) = limited {
        (Duration::ZERO, Action::Respond(r))
    } else if let Some(r) = st
        .strict
        .then(|| strict_check(&kind, &method, &req, &json, &mut problems))
        .flatten()
    {
        (Duration::ZERO, Action::Respond(r))
    } else {
        let reply = st
            .scripts
            .get_mut(&route)
            .and_then(VecDeque::pop_front)
            .or_else(|| st.defaults.get(&route).cloned())
            .unwrap_or(Reply::Auto);
        let ctx = Ctx {
            kind: &kind,
            method: &method,
            path: &route,
            query: query.as_deref(),
            json: &json,
        };
        resolve(&mut st, reply, &ctx)
    };

    if let Action::Respond(r) = &mut action {
        // Bucket headers on every response of an enforced path, unless the reply set its own.
        if !r
            .headers
            .iter()
            .any(|(k, _)| k.starts_with("x-ratelimit-limit"))
        {
            r.headers.extend(rl_headers);
        }
    }
    let entry = &mut st.log[idx];
    entry.problems = problems;
    if let Action::Respond(r) = &action {
        entry.response_body = String::from_utf8_lossy(&r.body).into_owned();
        entry.response_headers = r.headers.clone();
        if delay.is_zero() {
            entry.status = r.status;
            entry.answered_at = Some(Instant::now());
        }
    }
    Planned { idx, delay, action }
}
