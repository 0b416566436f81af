//! A strict mock of Slack's Web API for bot tokens: `chat.postMessage` and `chat.update`,
//! answered the way Slack answers (reference/chat-platforms.md §5.2), for printbell's live
//! messages through a `token` + `channel` destination.
//!
//! * Same shape as [`crate::mock_chat`]: binds `127.0.0.1:0`, serves HTTP/1.1 with hyper on
//!   its **own thread with its own tokio runtime**, records every request (as a
//!   [`Received`], so [`describe_all`] prints them), stops when the last clone of the handle
//!   is dropped. [`MockSlackApi::api_url`] is what a destination's `api_url` takes; methods
//!   are `POST {api_url}/{method}`.
//! * It keeps a workspace: the tokens that work ([`MockSlackApi::TOKEN`] and
//!   [`MockSlackApi::add_token`]), the channels the bot is in ([`MockSlackApi::CHANNEL`] and
//!   [`MockSlackApi::add_channel`]) and every message posted, by channel + `ts` (unique and
//!   increasing, `"1700000000.000100"`-shaped). `chat.update` replaces a message's text and
//!   blocks (text without blocks drops the blocks, as on Slack); a thread reply
//!   (`thread_ts`, optionally `reply_broadcast`) is a message of its own under its parent.
//! * Answers are HTTP 200 `{"ok": true, "channel", "ts", "message"}` or HTTP 200
//!   `{"ok": false, "error": CODE}`; a rate limit is HTTP 429 with `Retry-After` (whole
//!   seconds) and `{"ok": false, "error": "ratelimited"}`.
//! * Order of checks for one request (the first that fails answers): HTTP method (405) →
//!   known API method (404 `unknown_method`) → JSON body (`invalid_json`; a content type
//!   other than `application/json` → `invalid_arguments`) → bearer token (missing or unknown
//!   → `invalid_auth`; revoked → `token_revoked`) → rate limit (429) → arguments (unknown
//!   keys and wrong types → `invalid_arguments`; `channel` not one of the bot's →
//!   `channel_not_found`, archived → `is_archived`; `text`/`blocks` with
//!   [`crate::validate::slack_problem_list`]: a block problem → `invalid_blocks`, no text →
//!   `no_text`, text too long → `msg_too_long`; `ts` of no message → `message_not_found`,
//!   another token's message → `cant_update_message`; `thread_ts` of no message →
//!   `thread_not_found`) → scripted reply → the normal answer. A request refused before the
//!   script does not consume a scripted reply; what was refused is kept in
//!   [`Received::problems`].
//! * Rate limits per method as on Slack, as token buckets: `chat.postMessage` per channel
//!   (default 1 a second, bursts of 4), `chat.update` per token (default 50 a minute, bursts
//!   of 6); [`MockSlackApi::set_limit`] changes them (tests tighten them), `None` turns one
//!   off. Every authenticated request counts, also one refused afterwards.

use crate::mock_chat::{describe_all, Received};
use crate::validate;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// `chat.postMessage`
pub const POST_MESSAGE: &str = "chat.postMessage";
/// `chat.update`
pub const UPDATE: &str = "chat.update";

/// What the mock answers to a call, when scripted ([`MockSlackApi::script`]).
#[derive(Clone, Debug)]
pub enum SlackReply {
    /// What Slack would answer: the message is posted / updated.
    Auto,
    /// HTTP 200 `{"ok": false, "error": CODE}`; nothing is posted or changed.
    Error(String),
    /// HTTP 429, `Retry-After: N`, `{"ok": false, "error": "ratelimited"}`.
    RateLimited { retry_after_secs: u64 },
    /// That status with that body (`application/json` if it starts with `{`).
    Status(u16, String),
    /// The inner reply after the delay (nothing if the client leaves meanwhile).
    Delay(Duration, Box<SlackReply>),
    /// Never answer; the client times out.
    Hang,
}

impl SlackReply {
    /// Shorthand for `SlackReply::Error(code.into())`.
    pub fn error(code: &str) -> SlackReply {
        SlackReply::Error(code.to_string())
    }
    /// Shorthand for `SlackReply::Delay(d, Box::new(r))`.
    pub fn delay(d: Duration, r: SlackReply) -> SlackReply {
        SlackReply::Delay(d, Box::new(r))
    }
}

/// A rate limit as a token bucket: `burst` calls at once, then one more every `per`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub per: Duration,
    pub burst: u32,
}

impl Limit {
    /// One call every `per` on average, `burst` at once (at least 1).
    pub fn new(per: Duration, burst: u32) -> Limit {
        Limit {
            per,
            burst: burst.max(1),
        }
    }
}

/// A message in the mock's workspace, as it is now.
#[derive(Clone, Debug, PartialEq)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
    pub text: String,
    /// `Value::Null` when it has none (e.g. updated with text only).
    pub blocks: Value,
    /// The parent's ts for a thread reply.
    pub thread_ts: Option<String>,
    pub reply_broadcast: bool,
    /// The token that posted it (only it may update it).
    pub token: String,
    /// How many `chat.update` calls changed it.
    pub edits: u32,
    /// Deleted with [`MockSlackApi::delete_message`].
    pub deleted: bool,
}

impl SlackMessage {
    /// The `image_url`s of its image blocks, in order.
    pub fn image_urls(&self) -> Vec<String> {
        self.blocks
            .as_array()
            .map(|b| {
                b.iter()
                    .filter(|b| b["type"] == "image")
                    .filter_map(|b| b["image_url"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn to_json(&self) -> Value {
        let mut m = json!({
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B0MOCKBOT01",
            "user": "U0MOCKBOT01",
            "text": self.text,
            "ts": self.ts,
            "team": "T0MOCKTEAM1",
        });
        if !self.blocks.is_null() {
            m["blocks"] = self.blocks.clone();
        }
        if let Some(t) = &self.thread_ts {
            m["thread_ts"] = json!(t);
        }
        if self.edits > 0 {
            m["edited"] = json!({"user": "U0MOCKBOT01", "ts": self.ts});
        }
        m
    }
}

struct Bucket {
    limit: Limit,
    /// Tokens left at `at`.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: Limit, now: Instant) -> Bucket {
        Bucket {
            limit,
            tokens: limit.burst as f64,
            at: now,
        }
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let per = self.limit.per.as_secs_f64().max(1e-9);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed / per).min(self.limit.burst as f64);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) * per))
        }
    }
}

struct State {
    log: Vec<Received>,
    tokens: HashSet<String>,
    revoked: HashSet<String>,
    channels: HashSet<String>,
    archived: HashSet<String>,
    /// By (channel, ts).
    messages: HashMap<(String, String), SlackMessage>,
    /// Every ts issued, in order.
    order: Vec<(String, String)>,
    scripts: HashMap<String, VecDeque<SlackReply>>,
    limits: HashMap<String, Option<Limit>>,
    buckets: HashMap<String, Bucket>,
    ts_base: u64,
    seq: u64,
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
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

/// Handle to a running mock Web API. Cheap to clone; the server stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct MockSlackApi {
    shared: Arc<Shared>,
    _guard: Arc<Guard>,
    base: String,
}

impl MockSlackApi {
    /// The bot token the workspace starts with.
    pub const TOKEN: &'static str = "xoxb-1000000001-2000000002-mockbottoken0001";
    /// The channel the bot is a member of from the start.
    pub const CHANNEL: &'static str = "C0MOCKCHAN1";

    /// Starts the server on 127.0.0.1 with a free port.
    pub async fn start() -> MockSlackApi {
        Self::start_blocking()
    }

    /// Same as [`MockSlackApi::start`], usable from synchronous tests.
    pub fn start_blocking() -> MockSlackApi {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("mock_slack_api: bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("mock_slack_api: set_nonblocking");
        let port = listener.local_addr().unwrap().port();
        let ts_base = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let mut limits = HashMap::new();
        limits.insert(
            POST_MESSAGE.to_string(),
            Some(Limit::new(Duration::from_secs(1), 4)),
        );
        limits.insert(
            UPDATE.to_string(),
            Some(Limit::new(Duration::from_millis(1200), 6)),
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                log: Vec::new(),
                tokens: HashSet::from([Self::TOKEN.to_string()]),
                revoked: HashSet::new(),
                channels: HashSet::from([Self::CHANNEL.to_string()]),
                archived: HashSet::new(),
                messages: HashMap::new(),
                order: Vec::new(),
                scripts: HashMap::new(),
                limits,
                buckets: HashMap::new(),
                ts_base,
                seq: 99,
            }),
        });
        let (tx, rx) = watch::channel(false);
        let server_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("mock-slack-api-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("mock_slack_api: runtime");
                rt.block_on(accept_loop(listener, server_shared, rx));
                rt.shutdown_background();
            })
            .expect("mock_slack_api: spawn thread");
        MockSlackApi {
            shared,
            _guard: Arc::new(Guard { shutdown: tx }),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base(&self) -> String {
        self.base.clone()
    }

    /// `http://127.0.0.1:PORT/api`, a destination's `api_url`.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    /// `http://127.0.0.1:PORT/api/{method}`
    pub fn method_url(&self, method: &str) -> String {
        format!("{}/api/{method}", self.base)
    }

    /// Another bot token that works.
    pub fn add_token(&self, token: &str) {
        let mut st = self.shared.lock();
        st.revoked.remove(token);
        st.tokens.insert(token.to_string());
    }

    /// Revokes a token: its calls answer `token_revoked` from now on.
    pub fn revoke_token(&self, token: &str) {
        let mut st = self.shared.lock();
        st.tokens.remove(token);
        st.revoked.insert(token.to_string());
    }

    /// Another channel the bot is a member of.
    pub fn add_channel(&self, channel: &str) {
        self.shared.lock().channels.insert(channel.to_string());
    }

    /// Archives a channel: posts and updates in it answer `is_archived`.
    pub fn archive_channel(&self, channel: &str) {
        self.shared.lock().archived.insert(channel.to_string());
    }

    /// Queues replies for the next calls of `method` that pass every check (see the module
    /// docs); appended to anything queued.
    pub fn script(&self, method: &str, replies: Vec<SlackReply>) {
        self.shared
            .lock()
            .scripts
            .entry(method.to_string())
            .or_default()
            .extend(replies);
    }

    /// The rate limit of `method` from now on (`None`: unlimited); its buckets start full.
    pub fn set_limit(&self, method: &str, limit: Option<Limit>) {
        let mut st = self.shared.lock();
        st.limits.insert(method.to_string(), limit);
        st.buckets
            .retain(|k, _| !k.starts_with(&format!("{method} ")));
    }

    /// Deletes a message as a user would in the channel: `chat.update` of it answers
    /// `message_not_found` from now on. False if there was no such message.
    pub fn delete_message(&self, channel: &str, ts: &str) -> bool {
        let mut st = self.shared.lock();
        match st.messages.get_mut(&(channel.to_string(), ts.to_string())) {
            Some(m) if !m.deleted => {
                m.deleted = true;
                true
            }
            _ => false,
        }
    }

    /// A message as it is now (also when deleted: see [`SlackMessage::deleted`]).
    pub fn message(&self, channel: &str, ts: &str) -> Option<SlackMessage> {
        self.shared
            .lock()
            .messages
            .get(&(channel.to_string(), ts.to_string()))
            .cloned()
    }

    /// Every message of `channel` (thread replies included), oldest first.
    pub fn messages(&self, channel: &str) -> Vec<SlackMessage> {
        let st = self.shared.lock();
        st.order
            .iter()
            .filter(|(c, _)| c == channel)
            .filter_map(|k| st.messages.get(k).cloned())
            .collect()
    }

    /// Everything received, in arrival order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().log.clone()
    }

    /// Every call of `method` (any answer), in arrival order.
    pub fn calls(&self, method: &str) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| method_of(r) == Some(method))
            .collect()
    }

    /// Calls of `method` that Slack took (`"ok": true`), in arrival order.
    pub fn ok_calls(&self, method: &str) -> Vec<Received> {
        self.calls(method).into_iter().filter(is_ok).collect()
    }

    /// `chat.postMessage` calls that posted a message to a channel (not a thread reply).
    pub fn posts(&self) -> Vec<Received> {
        self.ok_calls(POST_MESSAGE)
            .into_iter()
            .filter(|r| !is_reply(r))
            .collect()
    }

    /// `chat.update` calls that changed a message.
    pub fn updates(&self) -> Vec<Received> {
        self.ok_calls(UPDATE)
    }

    /// `chat.postMessage` calls that posted a thread reply.
    pub fn replies(&self) -> Vec<Received> {
        self.ok_calls(POST_MESSAGE)
            .into_iter()
            .filter(is_reply)
            .collect()
    }

    /// Forgets every recorded request (messages, scripts and limits stay).
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Polls `check` over the full log until it returns `Some`; panics after `timeout` with
    /// `what` and everything received.
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
                let log = self.requests();
                panic!(
                    "mock_slack_api: timed out after {timeout:?} waiting for {what}; received {} request(s):\n{}",
                    log.len(),
                    describe_all(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until at least `n` calls of `method` were taken (`"ok": true`); returns them.
    pub async fn wait_for_ok(&self, method: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(&format!("{n} ok {method} call(s)"), timeout, |log| {
            let v: Vec<Received> = log
                .iter()
                .filter(|r| method_of(r) == Some(method) && is_ok(r))
                .cloned()
                .collect();
            (v.len() >= n).then_some(v)
        })
        .await
    }

    /// Waits until at least `n` calls of `method` arrived, whatever the answer.
    pub async fn wait_for(&self, method: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(&format!("{n} {method} call(s)"), timeout, |log| {
            let v: Vec<Received> = log
                .iter()
                .filter(|r| method_of(r) == Some(method))
                .cloned()
                .collect();
            (v.len() >= n).then_some(v)
        })
        .await
    }

    /// Asserts that no request at all arrives beyond the `already` ones during `quiet`
    /// (sleeps for `quiet`).
    pub async fn assert_quiet(&self, already: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        let got = self.requests();
        if got.len() > already {
            panic!(
                "mock_slack_api: expected no more than {already} request(s), got {}:\n{}",
                got.len(),
                describe_all(&got)
            );
        }
    }
}

/// The Web API method a request called (`chat.postMessage`), from its path.
pub fn method_of(r: &Received) -> Option<&str> {
    r.path.strip_prefix("/api/")
}

/// True if Slack took the call: HTTP 200 and `"ok": true`.
pub fn is_ok(r: &Received) -> bool {
    r.status == 200
        && serde_json::from_str::<Value>(&r.response_body)
            .ok()
            .and_then(|v| v.get("ok").and_then(Value::as_bool))
            == Some(true)
}

/// The `error` code of an `"ok": false` answer.
pub fn error_of(r: &Received) -> Option<String> {
    serde_json::from_str::<Value>(&r.response_body)
        .ok()?
        .get("error")?
        .as_str()
        .map(str::to_string)
}

fn is_reply(r: &Received) -> bool {
    r.json
        .as_ref()
        .is_some_and(|j| j.get("thread_ts").is_some_and(|t| !t.is_null()))
}

// ---------------------------------------------------------------------------------------------
// HTTP server
// ---------------------------------------------------------------------------------------------

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let listener =
        tokio::net::TcpListener::from_std(listener).expect("mock_slack_api: tokio listener");
    loop {
        tokio::select! {
            r = listener.accept() => {
                if let Ok((stream, _)) = r {
                    let _ = stream.set_nodelay(true);
                    let shared = shared.clone();
                    let mut shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(shared.clone(), req));
                        let conn = http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service);
                        tokio::select! {
                            _ = conn => {}
                            _ = shutdown.changed() => {}
                        }
                    });
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

enum Action {
    Respond(Response),
    Hang,
}

/// Marks a request `client_gone` if its handler is dropped before it answered.
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
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 8 * 1024 * 1024).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) => return Ok(to_hyper(text(400, &format!("bad request: {e}")))),
    };
    let mut headers: HashMap<String, String> = HashMap::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).trim().to_string();
        headers
            .entry(k.as_str().to_string())
            .and_modify(|e| {
                e.push_str(", ");
                e.push_str(&v);
            })
            .or_insert(v);
    }
    let received = Received {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        route: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        json: serde_json::from_slice(&body).ok(),
        body,
        at: Instant::now(),
        status: 0,
        answered_at: None,
        client_gone: false,
        problems: Vec::new(),
        response_body: String::new(),
        response_headers: Vec::new(),
    };
    let (idx, delay, action) = decide(&shared, received);
    let mut gone = GoneGuard {
        shared: shared.clone(),
        idx,
        armed: true,
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match action {
        Action::Hang => std::future::pending().await,
        Action::Respond(resp) => {
            gone.armed = false;
            if !delay.is_zero() {
                let mut st = shared.lock();
                st.log[idx].status = resp.status;
                st.log[idx].answered_at = Some(Instant::now());
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
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::from_static(b"mock error"))))
}

fn text(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
        body: body.as_bytes().to_vec(),
    }
}

fn json_response(status: u16, body: &Value) -> Response {
    Response {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: body.to_string().into_bytes(),
    }
}

fn slack_error(code: &str) -> Response {
    json_response(200, &json!({"ok": false, "error": code}))
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let mut r = json_response(429, &json!({"ok": false, "error": "ratelimited"}));
    r.headers
        .push(("retry-after".into(), retry_after_secs.to_string()));
    r
}

// ---------------------------------------------------------------------------------------------
// Request → answer
// ---------------------------------------------------------------------------------------------

/// Arguments each method takes (Slack's method reference pages); anything else is refused,
/// stricter than Slack, which ignores what it does not know.
const POST_ARGS: &[&str] = &[
    "channel",
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "reply_broadcast",
    "unfurl_links",
    "unfurl_media",
    "mrkdwn",
    "parse",
    "link_names",
    "metadata",
    "username",
    "icon_emoji",
    "icon_url",
    "markdown_text",
];
const UPDATE_ARGS: &[&str] = &[
    "channel",
    "ts",
    "text",
    "blocks",
    "attachments",
    "parse",
    "link_names",
    "metadata",
    "reply_broadcast",
    "file_ids",
    "markdown_text",
];

/// Why a request is refused before any scripted reply: the answer and the problems.
struct Refusal(Response, Vec<String>);

fn refuse(code: &str, problem: impl Into<String>) -> Refusal {
    Refusal(slack_error(code), vec![problem.into()])
}

fn decide(shared: &Shared, received: Received) -> (usize, Duration, Action) {
    let now = received.at;
    let mut st = shared.lock();
    let idx = st.log.len();
    st.log.push(received.clone());
    let (delay, action, problems) = match check(&mut st, &received, now) {
        Err(Refusal(r, problems)) => (Duration::ZERO, Action::Respond(r), problems),
        Ok(call) => {
            let reply = st
                .scripts
                .get_mut(call.method)
                .and_then(VecDeque::pop_front)
                .unwrap_or(SlackReply::Auto);
            let (d, a) = resolve(&mut st, reply, &call);
            (d, a, Vec::new())
        }
    };
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
    (idx, delay, action)
}

/// A call that passed every check.
struct Call<'a> {
    method: &'static str,
    token: String,
    args: &'a Map<String, Value>,
}

fn check<'a>(st: &mut State, r: &'a Received, now: Instant) -> Result<Call<'a>, Refusal> {
    if r.method != "POST" {
        return Err(Refusal(
            text(405, "method_not_allowed"),
            vec![format!("{} instead of POST", r.method)],
        ));
    }
    let method = match method_of(r) {
        Some(POST_MESSAGE) => POST_MESSAGE,
        Some(UPDATE) => UPDATE,
        other => {
            return Err(Refusal(
                json_response(404, &json!({"ok": false, "error": "unknown_method"})),
                vec![format!("unknown method {other:?}")],
            ))
        }
    };
    let ct = r.header("content-type").unwrap_or("").to_ascii_lowercase();
    if ct.split(';').next().unwrap_or("").trim() != "application/json" {
        return Err(refuse(
            "invalid_arguments",
            format!("content-type: expected application/json; charset=utf-8, got {ct:?}"),
        ));
    }
    let Some(Value::Object(args)) = &r.json else {
        return Err(refuse("invalid_json", "body is not a JSON object"));
    };

    let token = r
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if st.revoked.contains(token) {
        return Err(refuse("token_revoked", "the token was revoked"));
    }
    if !st.tokens.contains(token) {
        return Err(refuse(
            "invalid_auth",
            if token.is_empty() {
                "no `Authorization: Bearer` token".to_string()
            } else {
                "unknown token".to_string()
            },
        ));
    }

    // Rate limit: chat.postMessage per channel, chat.update per token.
    let channel = args.get("channel").and_then(Value::as_str).unwrap_or("");
    if let Some(Some(limit)) = st.limits.get(method).copied() {
        let key = match method {
            POST_MESSAGE => format!("{method} {channel}"),
            _ => format!("{method} {token}"),
        };
        let bucket = st
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::new(limit, now));
        if let Err(wait) = bucket.take(now) {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            return Err(Refusal(
                rate_limited(secs),
                vec![format!(
                    "{method} over its rate limit; next call in {wait:?}"
                )],
            ));
        }
    }

    // Arguments.
    let allowed = if method == POST_MESSAGE {
        POST_ARGS
    } else {
        UPDATE_ARGS
    };
    let mut problems: Vec<String> = args
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("/{k}: unknown argument of {method}"))
        .collect();
    for key in ["unfurl_links", "unfurl_media", "reply_broadcast", "mrkdwn"] {
        if args.get(key).is_some_and(|v| !v.is_boolean()) {
            problems.push(format!("/{key}: expected a boolean"));
        }
    }
    for key in ["channel", "ts", "thread_ts", "text"] {
        if args.get(key).is_some_and(|v| !v.is_string()) {
            problems.push(format!("/{key}: expected a string"));
        }
    }
    if !problems.is_empty() {
        return Err(Refusal(slack_error("invalid_arguments"), problems));
    }
    if !st.channels.contains(channel) {
        return Err(refuse(
            "channel_not_found",
            format!("the bot is in no channel {channel:?}"),
        ));
    }
    if st.archived.contains(channel) {
        return Err(refuse("is_archived", format!("{channel} is archived")));
    }

    // Text and blocks, as the incoming-webhook validator sees them.
    let mut content = Map::new();
    for key in ["text", "blocks"] {
        if let Some(v) = args.get(key) {
            content.insert(key.into(), v.clone());
        }
    }
    let list = validate::slack_problem_list(&Value::Object(content));
    let block_problems: Vec<String> = list
        .iter()
        .filter(|p| p.pointer.starts_with("/blocks"))
        .map(|p| p.to_string())
        .collect();
    if !block_problems.is_empty() {
        return Err(Refusal(slack_error("invalid_blocks"), block_problems));
    }
    if let Some(p) = list.iter().find(|p| p.pointer == "/text") {
        let code = if p.message.contains("limit") {
            "msg_too_long"
        } else {
            "no_text"
        };
        return Err(refuse(code, p.to_string()));
    }

    let key = |ts: &str| (channel.to_string(), ts.to_string());
    if method == UPDATE {
        let ts = args.get("ts").and_then(Value::as_str).unwrap_or("");
        match st.messages.get(&key(ts)) {
            None => {
                return Err(refuse(
                    "message_not_found",
                    format!("no message {ts} in {channel}"),
                ))
            }
            Some(m) if m.deleted => {
                return Err(refuse(
                    "message_not_found",
                    format!("message {ts} in {channel} was deleted"),
                ))
            }
            Some(m) if m.token != token => {
                return Err(refuse(
                    "cant_update_message",
                    format!("message {ts} was posted with another token"),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(parent) = args.get("thread_ts").and_then(Value::as_str) {
        if st.messages.get(&key(parent)).is_none_or(|m| m.deleted) {
            return Err(refuse(
                "thread_not_found",
                format!("no message {parent} in {channel} to reply to"),
            ));
        }
    }
    Ok(Call {
        method,
        token: token.to_string(),
        args,
    })
}

fn resolve(st: &mut State, reply: SlackReply, call: &Call) -> (Duration, Action) {
    match reply {
        SlackReply::Delay(d, inner) => {
            let (d2, a) = resolve(st, *inner, call);
            (d + d2, a)
        }
        SlackReply::Hang => (Duration::ZERO, Action::Hang),
        SlackReply::Error(code) => (Duration::ZERO, Action::Respond(slack_error(&code))),
        SlackReply::RateLimited { retry_after_secs } => (
            Duration::ZERO,
            Action::Respond(rate_limited(retry_after_secs)),
        ),
        SlackReply::Status(status, body) => {
            let r = if body.trim_start().starts_with('{') {
                Response {
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: body.into_bytes(),
                }
            } else {
                text(status, &body)
            };
            (Duration::ZERO, Action::Respond(r))
        }
        SlackReply::Auto => (Duration::ZERO, Action::Respond(auto(st, call))),
    }
}

fn auto(st: &mut State, call: &Call) -> Response {
    let args = call.args;
    let channel = args["channel"].as_str().unwrap_or_default().to_string();
    let text_arg = args.get("text").and_then(Value::as_str).map(str::to_string);
    let blocks = args.get("blocks").cloned().unwrap_or(Value::Null);
    if call.method == UPDATE {
        let ts = args["ts"].as_str().unwrap_or_default().to_string();
        let m = st
            .messages
            .get_mut(&(channel.clone(), ts.clone()))
            .expect("checked");
        if let Some(t) = text_arg {
            m.text = t;
        }
        // As on Slack: an update without blocks drops the old ones.
        m.blocks = blocks;
        m.edits += 1;
        let message = m.to_json();
        return json_response(
            200,
            &json!({"ok": true, "channel": channel, "ts": ts, "text": m.text, "message": message}),
        );
    }
    st.seq += 1;
    let ts = format!(
        "{}.{:06}",
        st.ts_base + st.seq / 1_000_000,
        st.seq % 1_000_000
    );
    let thread_ts = args
        .get("thread_ts")
        .and_then(Value::as_str)
        .map(str::to_string);
    let m = SlackMessage {
        channel: channel.clone(),
        ts: ts.clone(),
        text: text_arg.unwrap_or_default(),
        blocks,
        reply_broadcast: thread_ts.is_some()
            && args.get("reply_broadcast").and_then(Value::as_bool) == Some(true),
        thread_ts,
        token: call.token.clone(),
        edits: 0,
        deleted: false,
    };
    let message = m.to_json();
    st.messages.insert((channel.clone(), ts.clone()), m);
    st.order.push((channel.clone(), ts.clone()));
    json_response(
        200,
        &json!({"ok": true, "channel": channel, "ts": ts, "message": message}),
    )
}
