//! `cargo bench --bench burst`: burst freshness of live messages (issue 12). BENCHMARKS.md,
//! "Burst freshness (live messages)", explains the figures; this is how they are made.
//!
//! A burst of `generations` × 7 events (created, active, progress with 1, 2, 3 and 4 images,
//! completed) is posted to printbell, interleaved across generations (every generation's
//! created, then every generation's active, …), by a few keep-alive clients each sending the
//! next event as soon as the previous one is answered. printbell (the release binary, as a
//! child process via `testkit::ChildService`) has one destination, a mock chat server of
//! `testkit::mock_chat` on loopback that enforces the platform's rate limit:
//!
//! | scenario | destination | mock's limit |
//! |---|---|---|
//! | Discord live | Discord webhook, default mode (live) | 5 requests / 2 s per webhook, execute and edits in one bucket, `X-RateLimit-*` on every answer, 429 + `retry_after` over it |
//! | Discord each | the same with `mode = "each"` | the same |
//! | Slack live | Slack Web API (`token`, `channel`, `api_url`), default mode (live) | see [`slack`] |
//!
//! Measured per scenario, from the moment the first event is sent:
//! - live: until every generation's message, as the mock stores it, shows the final state
//!   (completed, 4 images). The time is the answer to the first request that put the final
//!   state of the last generation on the mock; the stored messages are checked as well.
//! - each: until the last of the `generations × 7` messages was answered 2xx.
//! - per generation, from its completed event's 202 to its final state on the mock (median,
//!   max): how stale a message is while the burst drains.
//! - the requests the mock saw (posts, edits, how many of them showed a state that was not
//!   the final one, 429s, other refusals), the deliveries printbell stored (done,
//!   superseded, …; read from its store after a SIGKILL), printbell's CPU time, the steal.
//! - SPEC §4.1's order: generations whose first post went out before that of a generation
//!   whose first event had been acknowledged before theirs was sent.
//!
//! After the final state, the run waits `PRINTBELL_BURST_SETTLE` seconds more and counts what
//! still arrives (nothing should). One summary table is printed at the end. Settings
//! (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PRINTBELL_BENCH_LOG` | `info` | `RUST_LOG` for printbell (its stderr goes to a file) |
//! | `PRINTBELL_BURST_GENERATIONS` | `30` | generations in the burst (7 events each) |
//! | `PRINTBELL_BURST_CLIENTS` | `4` | concurrent keep-alive clients posting the burst |
//! | `PRINTBELL_BURST_WAIT` | `60` | at most this many seconds per live scenario |
//! | `PRINTBELL_BURST_EACH_WAIT` | `150` | at most this many seconds for `mode = "each"` (0 skips it) |
//! | `PRINTBELL_BURST_SETTLE` | `3` | seconds to watch for requests after the final state |
//! | `PRINTBELL_BENCH_DIR` | system temp | where the temporary stores are created |
//! | `PRINTBELL_BURST_TRACE` | unset | `1`: print every request the mock saw (time, post/edit, answer, state shown) |

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use testkit::host::{busy_steal, cpu_secs, machine};
use testkit::mock_chat::{MockChat, Received};
use testkit::mock_slack_api::{self as slack_api, MockSlackApi};
use testkit::{free_port, ChildService, Launch, WEBHOOK_PATH};

/// The events of one generation, in the order all-images.ai sends them.
const STEPS: usize = 7;
/// Images of a completed generation (the fixture's `nbImages`).
const IMAGES: usize = 4;
/// The mock's Discord webhook bucket: this many requests per window.
const DISCORD_LIMIT: u32 = 5;
const DISCORD_WINDOW: Duration = Duration::from_secs(2);
const DISCORD_HOOK: &str = "/api/webhooks/1300000000000000001/burst-token";
/// Discord's completed colour (`src/platform/discord/body.rs`).
const COMPLETED_COLOUR: u64 = 0x2ECC71;
/// The live target (issue 12).
const TARGET_FINAL: Duration = Duration::from_secs(20);

fn main() {
    // `cargo bench` passes `--bench` (and a filter, if any); there is nothing to select.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = rt.block_on(run());
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    log: String,
    generations: usize,
    clients: usize,
    wait: Duration,
    each_wait: Duration,
    settle: Duration,
    dir: Option<PathBuf>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            log: std::env::var("PRINTBELL_BENCH_LOG").unwrap_or_else(|_| "info".into()),
            generations: env_or("PRINTBELL_BURST_GENERATIONS", 30usize).max(1),
            clients: env_or("PRINTBELL_BURST_CLIENTS", 4usize).max(1),
            wait: Duration::from_secs_f64(env_or("PRINTBELL_BURST_WAIT", 60.0)),
            each_wait: Duration::from_secs_f64(env_or("PRINTBELL_BURST_EACH_WAIT", 150.0)),
            settle: Duration::from_secs_f64(env_or("PRINTBELL_BURST_SETTLE", 3.0)),
            dir: std::env::var_os("PRINTBELL_BENCH_DIR").map(PathBuf::from),
        }
    }

    fn events(&self) -> usize {
        self.generations * STEPS
    }
}

// ---------------------------------------------------------------------------------------------
// The burst

fn generation_id(g: usize) -> String {
    format!("burst-gen-{g:03}")
}

/// Event `step` (0..7) of generation `g`, from the fixtures: created, active, progress with
/// 1..=4 images, completed with all 4.
fn event_body(scenario: &str, g: usize, step: usize) -> String {
    let ty = match step {
        0 => "print.created",
        1 => "print.active",
        6 => "print.completed",
        _ => "print.progress",
    };
    let mut e = testkit::event(ty, &format!("evt_burst_{scenario}_{g:03}_{step}"), None);
    e["data"]["id"] = json!(generation_id(g));
    if ty == "print.progress" {
        let all = testkit::fixture("print.completed")["data"]["images"].clone();
        let done: Vec<Value> = all
            .as_array()
            .map(|a| a.iter().take(step - 1).cloned().collect())
            .unwrap_or_default();
        e["data"]["images"] = Value::Array(done);
    }
    e.to_string()
}

/// Every generation's first event, then every generation's second, …
fn burst(scenario: &str, generations: usize) -> Vec<String> {
    (0..STEPS)
        .flat_map(|step| (0..generations).map(move |g| (g, step)))
        .map(|(g, step)| event_body(scenario, g, step))
        .collect()
}

#[derive(Default)]
struct Ingest {
    /// First event sent → last answer.
    took: Duration,
    accepted: usize,
    /// Non-202 answers by status (0 = transport error).
    refused: BTreeMap<u16, usize>,
    /// When each event (by its index in the burst) was sent, and answered 202.
    sent_at: HashMap<usize, Instant>,
    acked_at: HashMap<usize, Instant>,
}

/// Posts `bodies` in order with `clients` keep-alive connections, each sending the next one as
/// soon as its previous one is answered.
async fn post_burst(url: &str, bodies: Vec<String>, clients: usize, start: Instant) -> Ingest {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url) = (client.clone(), url.to_string());
        let (bodies, next, answers) = (bodies.clone(), next.clone(), answers.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let status = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        s
                    }
                    Err(_) => 0,
                };
                let at = Instant::now();
                if let Ok(mut a) = answers.lock() {
                    a.push((i, status, sent, at));
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut out = Ingest {
        took: start.elapsed(),
        ..Ingest::default()
    };
    for (i, status, sent, at) in answers.lock().map(|a| a.clone()).unwrap_or_default() {
        out.sent_at.insert(i, sent);
        if status == 202 {
            out.accepted += 1;
            out.acked_at.insert(i, at);
        } else {
            *out.refused.entry(status).or_default() += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// What the mock shows

/// The state a message body shows: (generation id, event type, images attached).
fn shown(body: &Value) -> Option<(String, String, usize)> {
    // Discord: one embed with the footer "TYPE · generation ID", one embed per image.
    if let Some(embeds) = body.get("embeds").and_then(Value::as_array) {
        let footer = embeds.first()?.pointer("/footer/text")?.as_str()?;
        let (ty, g) = footer.split_once(" · generation ")?;
        let images = embeds.iter().filter(|e| e.get("image").is_some()).count();
        return Some((g.to_string(), ty.to_string(), images));
    }
    // Slack: a context block "TYPE · generation ID · …", one image block per image.
    let blocks = body.get("blocks").and_then(Value::as_array)?;
    let context = blocks
        .iter()
        .find(|b| b["type"] == "context")?
        .pointer("/elements/0/text")?
        .as_str()?;
    let (ty, rest) = context.split_once(" · generation ")?;
    let g = rest.split(" · ").next()?;
    let images = blocks.iter().filter(|b| b["type"] == "image").count();
    Some((g.to_string(), ty.to_string(), images))
}

/// Whether a body shows a generation's final state: completed with every image (and, on
/// Discord, the completed colour).
fn is_final(body: &Value) -> Option<String> {
    let (g, ty, images) = shown(body)?;
    let colour_ok = match body.pointer("/embeds/0/color") {
        Some(c) => c.as_u64() == Some(COMPLETED_COLOUR),
        None => true,
    };
    (ty == "print.completed" && images == IMAGES && colour_ok).then_some(g)
}

/// What the mock's stored messages show right now.
#[derive(Default)]
struct Board {
    messages: usize,
    /// Generations whose (every) message shows the final state.
    final_generations: usize,
    /// The most messages one generation has.
    max_per_generation: usize,
}

/// One request to the chat platform, as the mock logged it.
struct Call {
    edit: bool,
    /// The platform took it (Discord 2xx; Slack HTTP 200 with `"ok": true`).
    ok: bool,
    /// Answered 429.
    limited: bool,
    /// Why it was refused otherwise: the status, or Slack's error code.
    refusal: Option<String>,
    at: Instant,
    answered_at: Option<Instant>,
    body: Option<Value>,
}

/// The chat mock of a scenario.
enum Sink {
    Discord(MockChat),
    Slack(MockSlackApi),
}

impl Sink {
    /// A Discord webhook whose posts and edits share one bucket of 5 requests / 2 s.
    fn discord() -> Sink {
        let mock = MockChat::start_blocking();
        mock.enforce_discord_limits(DISCORD_HOOK, DISCORD_LIMIT, DISCORD_WINDOW);
        Sink::Discord(mock)
    }

    /// The Slack Web API with its default limits: `chat.postMessage` 1 a second per channel
    /// (bursts of 4), `chat.update` 50 a minute per token (bursts of 6).
    fn slack() -> Sink {
        Sink::Slack(MockSlackApi::start_blocking())
    }

    /// The `[destinations.burst]` table (without its header).
    fn destination(&self, mode: Option<&str>) -> String {
        let mut out = match self {
            Sink::Discord(mock) => format!(
                "kind = \"discord\"\nurl = \"{}\"\nusername = \"printbell\"\n",
                mock.url(DISCORD_HOOK)
            ),
            Sink::Slack(mock) => format!(
                "kind = \"slack\"\ntoken = \"{}\"\nchannel = \"{}\"\napi_url = \"{}\"\n",
                MockSlackApi::TOKEN,
                MockSlackApi::CHANNEL,
                mock.api_url()
            ),
        };
        if let Some(m) = mode {
            out.push_str(&format!("mode = \"{m}\"\n"));
        }
        out
    }

    /// What the stored messages show.
    fn board(&self) -> Board {
        let stored: Vec<Value> = match self {
            Sink::Discord(mock) => mock.messages(DISCORD_HOOK),
            Sink::Slack(mock) => mock
                .messages(MockSlackApi::CHANNEL)
                .into_iter()
                .filter(|m| m.thread_ts.is_none() && !m.deleted)
                .map(|m| json!({"text": m.text, "blocks": m.blocks}))
                .collect(),
        };
        // Live: one message per generation, which must show the final state. Each: one of
        // the generation's messages is the completed one.
        let mut per: HashMap<String, usize> = HashMap::new();
        let mut finals: HashSet<String> = HashSet::new();
        for m in &stored {
            if let Some((g, _, _)) = shown(m) {
                *per.entry(g).or_default() += 1;
            }
            if let Some(g) = is_final(m) {
                finals.insert(g);
            }
        }
        Board {
            messages: stored.len(),
            final_generations: finals.len(),
            max_per_generation: per.values().copied().max().unwrap_or(0),
        }
    }

    /// Posts the platform took so far (Discord: cheap, no copy of the log).
    fn ok_posts(&self) -> usize {
        match self {
            Sink::Discord(mock) => mock.count_status(DISCORD_HOOK, 200),
            Sink::Slack(mock) => mock.posts().len(),
        }
    }

    /// Every request to the platform so far.
    fn calls(&self) -> Vec<Call> {
        match self {
            Sink::Discord(mock) => mock
                .requests()
                .into_iter()
                .map(|r: Received| Call {
                    edit: r.route.contains("/messages/"),
                    ok: r.is_ok(),
                    limited: r.status == 429,
                    refusal: (!r.is_ok() && r.status != 429).then(|| r.status.to_string()),
                    at: r.at,
                    answered_at: r.answered_at,
                    body: r.json,
                })
                .collect(),
            Sink::Slack(mock) => mock
                .requests()
                .into_iter()
                .map(|r: Received| {
                    let ok = slack_api::is_ok(&r);
                    Call {
                        edit: slack_api::method_of(&r) == Some(slack_api::UPDATE),
                        ok,
                        limited: r.status == 429,
                        refusal: (!ok && r.status != 429).then(|| {
                            slack_api::error_of(&r).unwrap_or_else(|| r.status.to_string())
                        }),
                        at: r.at,
                        answered_at: r.answered_at,
                        body: r.json,
                    }
                })
                .collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One scenario

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Live,
    Each,
}

struct Scenario {
    name: &'static str,
    tag: &'static str,
    mode: Mode,
    /// `mode = …` in the config; None = the platform's default.
    config_mode: Option<&'static str>,
}

#[derive(Default)]
struct Tally {
    posts: usize,
    posts_ok: usize,
    edits: usize,
    edits_ok: usize,
    /// Posts and edits the platform took that showed an intermediate state (not the final one).
    posts_interim: usize,
    edits_interim: usize,
    limited: usize,
    /// Other refusals by status or Slack error code.
    other: BTreeMap<String, usize>,
    /// Requests that arrived after the measured end (the final state / the last message).
    after_end: usize,
}

#[derive(Default)]
struct Measured {
    ingest: Ingest,
    /// First event sent → the end (live: every final state shown; each: the last message).
    end: Option<Duration>,
    /// Each mode: first event sent → every generation's completed message posted.
    finals_at: Option<Duration>,
    /// Per generation, completed event acknowledged → final state shown: (median, max).
    stale: Option<(Duration, Duration)>,
    /// Generations posted before an older one, and examples.
    disorder: (usize, Vec<String>),
    board: Board,
    tally: Tally,
    /// Delivery states in printbell's store, by role and state.
    states: BTreeMap<(String, String), usize>,
    steal: f64,
    busy: f64,
    /// CPU seconds of printbell and of this process, over the wall seconds measured.
    cpu: (f64, f64, f64),
    problems: Vec<String>,
}

/// Per generation, when its final state was first shown: the answer to the first request
/// the platform took that carried it.
fn finals(calls: &[Call]) -> HashMap<String, Instant> {
    let mut first: HashMap<String, Instant> = HashMap::new();
    for c in calls.iter().filter(|c| c.ok) {
        let (Some(g), Some(t)) = (c.body.as_ref().and_then(is_final), c.answered_at) else {
            continue;
        };
        first.entry(g).or_insert(t);
    }
    first
}

/// When the last generation's final state was shown, if every generation's was.
fn last_final(calls: &[Call], start: Instant, generations: usize) -> Option<Duration> {
    let first = finals(calls);
    (first.len() >= generations)
        .then(|| first.values().max().map(|t| t.duration_since(start)))
        .flatten()
}

/// Per generation, from its completed event's 202 to its final state shown: (median, max),
/// over the generations whose final state was shown.
fn staleness(calls: &[Call], ingest: &Ingest, generations: usize) -> Option<(Duration, Duration)> {
    let first = finals(calls);
    let mut v: Vec<Duration> = (0..generations)
        .filter_map(|g| {
            let shown = first.get(&generation_id(g))?;
            let acked = ingest.acked_at.get(&((STEPS - 1) * generations + g))?;
            Some(shown.saturating_duration_since(*acked))
        })
        .collect();
    v.sort();
    Some((*v.get(v.len() / 2)?, *v.last()?))
}

/// Posts that broke the order of SPEC §4.1 ("posts of different generations go out in the
/// order their first events were received"): a generation's first post that went out before
/// the first post of a generation whose first event had been acknowledged before this one's
/// was even sent (events in flight at the same time may be received in either order).
/// Returns (how many generations' posts overtook an older one, examples).
fn out_of_order(calls: &[Call], ingest: &Ingest) -> (usize, Vec<String>) {
    let mut posted: Vec<usize> = Vec::new();
    for c in calls.iter().filter(|c| c.ok && !c.edit) {
        let Some((g, _, _)) = c.body.as_ref().and_then(shown) else {
            continue;
        };
        let Some(g) = g.strip_prefix("burst-gen-").and_then(|n| n.parse().ok()) else {
            continue;
        };
        if !posted.contains(&g) {
            posted.push(g);
        }
    }
    // A generation's first event is its `created`, index g of the burst.
    let mut count = 0;
    let mut examples = Vec::new();
    for (i, &b) in posted.iter().enumerate() {
        let Some(sent_b) = ingest.sent_at.get(&b) else {
            continue;
        };
        let overtaken: Vec<usize> = posted[i + 1..]
            .iter()
            .copied()
            .filter(|a| ingest.acked_at.get(a).is_some_and(|t| t < sent_b))
            .collect();
        if let Some(a) = overtaken.first() {
            count += 1;
            if examples.is_empty() {
                examples.push(format!(
                    "{} went out before {} older ones, {} among them",
                    generation_id(b),
                    overtaken.len(),
                    generation_id(*a)
                ));
            }
        }
    }
    (count, examples)
}

fn tally(calls: &[Call], end: Option<Instant>) -> Tally {
    let mut t = Tally::default();
    for c in calls {
        let ok = c.ok;
        let interim = usize::from(ok && c.body.as_ref().and_then(is_final).is_none());
        if c.edit {
            t.edits += 1;
            t.edits_ok += usize::from(ok);
            t.edits_interim += interim;
        } else {
            t.posts += 1;
            t.posts_ok += usize::from(ok);
            t.posts_interim += interim;
        }
        if c.limited {
            t.limited += 1;
        }
        if let Some(why) = &c.refusal {
            *t.other.entry(why.clone()).or_default() += 1;
        }
        if end.is_some_and(|e| c.at > e) {
            t.after_end += 1;
        }
    }
    t
}

async fn run_scenario(s: &Settings, sc: &Scenario, sink: Sink) -> Measured {
    let dir = match &s.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir");
    let store = dir.path().join("printbell.db");
    let port = free_port();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nwebhook_path = \"{WEBHOOK_PATH}\"\n\n[store]\npath = \"{}\"\n\n[destinations.burst]\n{}\n[[routes]]\nto = [\"burst\"]\n",
        store.display(),
        sink.destination(sc.config_mode),
    );
    let config_path = dir.path().join("notifier.toml");
    std::fs::write(&config_path, config).expect("write config");
    let mut svc = ChildService::launch(Launch {
        config: &config_path,
        port,
        stderr_path: dir.path().join(format!("printbell-{}.log", sc.tag)),
        rust_log: &s.log,
        envs: &[],
    })
    .await;
    let bodies = burst(sc.tag, s.generations);
    let total = bodies.len();
    eprintln!(
        "{}: {} generations × {STEPS} events = {total}, {} clients",
        sc.name, s.generations, s.clients
    );

    let m0 = machine();
    let cpu0 = (cpu_secs(svc.pid()), cpu_secs(std::process::id()));
    let start = Instant::now();
    let url = format!("{}{WEBHOOK_PATH}", svc.base);
    let ingest = post_burst(&url, bodies, s.clients, start).await;
    eprintln!(
        "      ingest: {} accepted in {:.3} s{}",
        ingest.accepted,
        ingest.took.as_secs_f64(),
        refused_text(&ingest.refused)
    );

    // Wait for the end, bounded.
    let limit = match sc.mode {
        Mode::Live => s.wait,
        Mode::Each => s.each_wait,
    };
    let deadline = start + limit;
    let mut reached = false;
    let mut last_report = Instant::now();
    while Instant::now() < deadline {
        reached = match sc.mode {
            Mode::Live => sink.board().final_generations >= s.generations,
            Mode::Each => sink.ok_posts() >= total,
        };
        if reached {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let b = sink.board();
            eprintln!(
                "      +{:.0} s: {} messages stored, {} of {} generations final",
                start.elapsed().as_secs_f64(),
                b.messages,
                b.final_generations,
                s.generations
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let calls = sink.calls();
    let end_at: Option<Instant> = if !reached {
        None
    } else {
        match sc.mode {
            Mode::Live => last_final(&calls, start, s.generations).map(|d| start + d),
            Mode::Each => calls
                .iter()
                .filter(|c| !c.edit && c.ok)
                .filter_map(|c| c.answered_at)
                .max(),
        }
    };
    let (busy, steal) = busy_steal(m0, machine());
    let window = start.elapsed().as_secs_f64();
    let cpu = (
        cpu_secs(svc.pid()) - cpu0.0,
        cpu_secs(std::process::id()) - cpu0.1,
        window,
    );
    if reached {
        tokio::time::sleep(s.settle).await;
    }
    let calls = sink.calls();
    if std::env::var("PRINTBELL_BURST_TRACE").as_deref() == Ok("1") {
        trace(&calls, start);
    }
    let board = sink.board();
    svc.kill();
    let mut states = BTreeMap::new();
    for d in testkit::store::deliveries(&store) {
        *states.entry((d.role, d.state)).or_default() += 1;
    }
    let problems = svc
        .log()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .take(5)
        .map(str::to_string)
        .collect();
    let r = Measured {
        end: end_at.map(|e| e.duration_since(start)),
        finals_at: last_final(&calls, start, s.generations),
        stale: staleness(&calls, &ingest, s.generations),
        disorder: out_of_order(&calls, &ingest),
        tally: tally(&calls, end_at),
        ingest,
        board,
        states,
        steal,
        busy,
        cpu,
        problems,
    };
    eprintln!(
        "      end: {}; posts {} (2xx {}), edits {} (2xx {}), 429 × {}, {} requests after the end; steal {:.1} %",
        secs(r.end),
        r.tally.posts,
        r.tally.posts_ok,
        r.tally.edits,
        r.tally.edits_ok,
        r.tally.limited,
        r.tally.after_end,
        r.steal * 100.0
    );
    drop(dir);
    r
}

/// Every request of a scenario, one line each (stderr).
fn trace(calls: &[Call], start: Instant) {
    for c in calls {
        let state = c
            .body
            .as_ref()
            .and_then(shown)
            .map(|(g, ty, images)| format!("{g} {ty} {images} images"))
            .unwrap_or_else(|| "?".into());
        eprintln!(
            "      +{:7.3} s {} {}: {state}",
            c.at.duration_since(start).as_secs_f64(),
            if c.edit { "edit" } else { "post" },
            if c.ok {
                "ok".to_string()
            } else if c.limited {
                "429".to_string()
            } else {
                c.refusal.clone().unwrap_or_default()
            },
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Report

fn refused_text(r: &BTreeMap<u16, usize>) -> String {
    if r.is_empty() {
        return String::new();
    }
    let list: Vec<String> = r
        .iter()
        .map(|(s, n)| {
            if *s == 0 {
                format!("{n} × transport error")
            } else {
                format!("{n} × {s}")
            }
        })
        .collect();
    format!("; refused: {}", list.join(", "))
}

fn secs(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2} s", d.as_secs_f64()),
        None => "not reached".into(),
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

fn states_text(states: &BTreeMap<(String, String), usize>) -> String {
    if states.is_empty() {
        return "none".into();
    }
    states
        .iter()
        .map(|((role, state), n)| {
            if role == "message" {
                format!("{n} {state}")
            } else {
                format!("{n} {state} ({role})")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn other_text(t: &Tally) -> String {
    if t.other.is_empty() {
        return "none".into();
    }
    t.other
        .iter()
        .map(|(s, n)| format!("{n} × {s}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A check: (one of issue 12's targets rather than a contract check, met).
type Check = (bool, bool);

/// Rows of one scenario and its checks.
fn rows(s: &Settings, sc: &Scenario, r: &Measured) -> (Vec<[String; 4]>, Vec<Check>) {
    let mut rows = Vec::new();
    let mut checks = Vec::new();
    let n = sc.name;
    let target = sc.tag == "discord-live";
    let total = s.events();
    let ingest_ok = r.ingest.accepted == total;
    rows.push([
        format!("{n}: ingest, first event sent → last answer"),
        format!(
            "{:.3} s ({} of {total} × 202{})",
            r.ingest.took.as_secs_f64(),
            r.ingest.accepted,
            refused_text(&r.ingest.refused)
        ),
        String::new(),
        String::new(),
    ]);
    let t = &r.tally;
    match sc.mode {
        Mode::Live => {
            let in_time = r.end.is_some_and(|e| e <= TARGET_FINAL);
            let all_final = r.board.final_generations == s.generations
                && r.board.messages == s.generations
                && r.board.max_per_generation == 1;
            rows.push([
                format!("{n}: first event → every generation's final state shown"),
                secs(r.end),
                if sc.tag == "discord-live" {
                    format!("≤ {} s", TARGET_FINAL.as_secs())
                } else {
                    format!(
                        "(none; {} posts at 1/s, 3 at once, take ≈ {} s)",
                        s.generations,
                        s.generations.saturating_sub(3)
                    )
                },
                if sc.tag == "discord-live" {
                    checks.push((true, in_time && ingest_ok));
                    verdict(in_time && ingest_ok).into()
                } else {
                    String::new()
                },
            ]);
            rows.push([
                format!("{n}: per generation, completed event acknowledged → final state shown: median / max"),
                match r.stale {
                    Some((p50, max)) => format!("{:.2} s / {:.2} s", p50.as_secs_f64(), max.as_secs_f64()),
                    None => "none shown".into(),
                },
                String::new(),
                String::new(),
            ]);
            rows.push([
                format!("{n}: messages on the mock at the end, showing the final state"),
                format!(
                    "{} messages, {} of {} generations final, at most {} per generation",
                    r.board.messages,
                    r.board.final_generations,
                    s.generations,
                    r.board.max_per_generation
                ),
                "1 per generation, all final".into(),
                {
                    checks.push((false, all_final));
                    verdict(all_final).into()
                },
            ]);
            let posts_ok = t.posts == s.generations && t.posts_ok == s.generations;
            rows.push([
                format!("{n}: posts (2xx, of which showing an intermediate state)"),
                format!("{} ({}, {})", t.posts, t.posts_ok, t.posts_interim),
                format!("{}", s.generations),
                {
                    checks.push((target, posts_ok));
                    verdict(posts_ok).into()
                },
            ]);
            rows.push([
                format!("{n}: edits (2xx, of which showing an intermediate state)"),
                format!("{} ({}, {})", t.edits, t.edits_ok, t.edits_interim),
                String::new(),
                String::new(),
            ]);
        }
        Mode::Each => {
            rows.push([
                format!("{n}: first event → last of the {total} messages"),
                secs(r.end),
                format!(
                    "(≈ {:.0} s at the limit)",
                    total as f64 / DISCORD_LIMIT as f64 * DISCORD_WINDOW.as_secs_f64()
                ),
                String::new(),
            ]);
            rows.push([
                format!("{n}: first event → every generation's completed message"),
                secs(r.finals_at),
                String::new(),
                String::new(),
            ]);
            rows.push([
                format!("{n}: posts (2xx) / edits"),
                format!("{} ({}) / {}", t.posts, t.posts_ok, t.edits),
                format!("{total}"),
                String::new(),
            ]);
        }
    }
    let no_429 = t.limited == 0;
    rows.push([
        format!("{n}: 429 answers"),
        t.limited.to_string(),
        "0".into(),
        {
            checks.push((target, no_429));
            verdict(no_429).into()
        },
    ]);
    let (late, examples) = &r.disorder;
    rows.push([
        format!("{n}: generations posted before an older one (first event acknowledged before theirs was sent)"),
        if examples.is_empty() {
            late.to_string()
        } else {
            format!("{late} (e.g. {})", examples.join("; "))
        },
        "0 (SPEC §4.1 order)".into(),
        {
            checks.push((false, *late == 0));
            verdict(*late == 0).into()
        },
    ]);
    rows.push([
        format!(
            "{n}: other refusals; requests after the end (+{:.0} s)",
            s.settle.as_secs_f64()
        ),
        format!("{}; {}", other_text(t), t.after_end),
        "none; 0".into(),
        String::new(),
    ]);
    rows.push([
        format!("{n}: deliveries in the store"),
        states_text(&r.states),
        String::new(),
        String::new(),
    ]);
    rows.push([
        format!("{n}: CPU of printbell / of the bench over the measured time; machine busy / hypervisor steal"),
        format!(
            "{:.2} s / {:.2} s in {:.1} s; {:.0} % / {:.1} %",
            r.cpu.0,
            r.cpu.1,
            r.cpu.2,
            r.busy * 100.0,
            r.steal * 100.0
        ),
        String::new(),
        String::new(),
    ]);
    (rows, checks)
}

async fn run() -> i32 {
    let s = Settings::from_env();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let bin = testkit::bin();
    eprintln!("printbell binary: {bin}");
    if !bin.contains("/release/") {
        eprintln!("warning: the printbell binary is not a release build (use `cargo bench`)");
    }
    let bench_start = Instant::now();
    let mut scenarios: Vec<(Scenario, Sink)> = vec![(
        Scenario {
            name: "Discord live",
            tag: "discord-live",
            mode: Mode::Live,
            config_mode: None,
        },
        Sink::discord(),
    )];
    scenarios.push((
        Scenario {
            name: "Slack live",
            tag: "slack-live",
            mode: Mode::Live,
            config_mode: None,
        },
        Sink::slack(),
    ));
    if !s.each_wait.is_zero() {
        scenarios.push((
            Scenario {
                name: "Discord each",
                tag: "discord-each",
                mode: Mode::Each,
                config_mode: Some("each"),
            },
            Sink::discord(),
        ));
    }
    let mut results = Vec::new();
    for (sc, sink) in scenarios {
        let r = run_scenario(&s, &sc, sink).await;
        results.push((sc, r));
    }

    for (sc, r) in &results {
        if !r.problems.is_empty() {
            eprintln!("printbell ({}) logged problems, first ones:", sc.name);
            for p in &r.problems {
                eprintln!("  {p}");
            }
        }
    }
    println!();
    println!(
        "printbell burst benchmark — nproc {nproc}, loopback, {} generations × {STEPS} events interleaved, {} clients, printbell RUST_LOG={}, Discord mock {DISCORD_LIMIT} requests / {} s per webhook, Slack mock chat.postMessage 1/s, chat.update 50/min, total {:.0} s",
        s.generations,
        s.clients,
        s.log,
        DISCORD_WINDOW.as_secs(),
        bench_start.elapsed().as_secs_f64()
    );
    println!();
    println!("| measure | value | target | result |");
    println!("|---|---|---|---|");
    let mut checks = Vec::new();
    for (sc, r) in &results {
        let (rows, c) = rows(&s, sc, r);
        checks.extend(c);
        for [a, b, c, d] in rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
    let met = |issue: bool| {
        let of: Vec<bool> = checks
            .iter()
            .filter(|c| c.0 == issue)
            .map(|c| c.1)
            .collect();
        (of.iter().filter(|ok| **ok).count(), of.len())
    };
    println!();
    let (a, b) = met(true);
    let (c, d) = met(false);
    println!("issue 12 targets met (Discord live: final states ≤ {} s, {} posts, no 429): {a} of {b}; contract checks met (one final message per generation, post order, no 429): {c} of {d}", TARGET_FINAL.as_secs(), s.generations);
    0
}
