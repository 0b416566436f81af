//! `cargo bench --bench pipeline`: printbell's whole pipeline on loopback, in one run.
//! BENCHMARKS.md explains the figures; this is how they are made.
//!
//! * **the limit**: this very binary re-executed as a child process (hidden mode
//!   `PRINTBELL_BENCH_ROLE=bare`) serving poem 3 with a handler that reads the body and answers
//!   202, nothing else.
//! * **printbell**: the real release binary (`target/release/printbell`, built by `cargo bench`,
//!   started with `testkit::ChildService`) as a child process on a temporary store and config;
//!   two Discord destinations pointing at instant mock sinks in this process (fan-out 2;
//!   Discord rather than Slack because printbell paces Slack to ~1 message/s per webhook).
//!
//! Phases:
//! 1. ingest, closed loop: `clients` keep-alive connections post fixture events (unique ids,
//!    rotating types and tags) as fast as they are answered; rounds alternate bare handler /
//!    printbell, printbell being SIGSTOPped during the bare handler's rounds so its delivery
//!    lanes do not steal the bare handler's CPU. Ratio = median of the per-round ratios.
//! 2. the bare handler, open loop at the fixed rate: the latency floor of the HTTP stack, the
//!    load generator and the machine.
//! 3. printbell's backlog drains with no new events → delivery throughput. Then SIGKILL, and
//!    every acknowledged event id is looked up in the store with its two deliveries.
//! 4. a fresh printbell, open loop at the fixed rate → ack latency and end-to-end latency
//!    (intended send time → body received by the mock sink).
//!
//! RSS comes from /proc/PID/status (VmRSS when idle after start, VmHWM = peak), CPU from
//! /proc/PID/stat. One summary table is printed at the end. Settings (environment):
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `PRINTBELL_BENCH_LOG` | `info` | `RUST_LOG` for printbell (its stderr goes to a file) |
//! | `PRINTBELL_BENCH_CLIENTS` | `32` | closed-loop concurrent keep-alive clients |
//! | `PRINTBELL_BENCH_ROUNDS` | `4` | closed-loop rounds, each: bare handler, then printbell |
//! | `PRINTBELL_BENCH_SECS` | `2` | measured seconds per closed-loop round and server (after 0.5 s) |
//! | `PRINTBELL_BENCH_DRAIN_SECS` | `10` | at most this long measuring the delivery drain |
//! | `PRINTBELL_BENCH_RATE` | `1000` | open-loop offered events/s |
//! | `PRINTBELL_BENCH_OPEN_SECS` | `10` | open-loop measured seconds (after 1 s warm-up) |
//! | `PRINTBELL_BENCH_E2E_WAIT` | `20` | seconds to wait for open-loop deliveries to arrive |
//! | `PRINTBELL_BENCH_DIR` | system temp | where the temporary store is created |
//! | `PRINTBELL_BENCH_PG_REPLICAS` | `1,2,3` | replica counts measured on PostgreSQL (`0`: none) |
//! | `PRINTBELL_BENCH_PG_SECS` | `4` | measured closed-loop seconds per replica count |
//!
//! 5. PostgreSQL, for each replica count: that many printbell processes on one fresh database
//!    (`testkit::postgres`: `PRINTBELL_TEST_DATABASE_URL`, else a private server), the
//!    closed loop's clients and the open loop's requests spread over them round-robin; the
//!    same drain, open loop and durability checks. CPU is summed over the replicas; the
//!    database server's (postmaster and backends) is read separately when it runs here.

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, post, Body, EndpointExt, Route};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use testkit::host::{busy_steal, cpu_secs, machine, tree_cpu_secs};
use testkit::postgres::{Database, Server};
use testkit::store::Stored;
use testkit::{free_port, ChildService, Launch, Proc, WEBHOOK_PATH};

const ROLE_ENV: &str = "PRINTBELL_BENCH_ROLE";
/// Each closed-loop round: connections are opened and the server warms up, then the window.
const ROUND_WARMUP: Duration = Duration::from_millis(500);
const OPEN_WARMUP: Duration = Duration::from_secs(1);
const FAN_OUT: u64 = 2;
/// The bare handler's open-loop run is at most this long (it is only the latency floor).
const BARE_OPEN_SECS: u64 = 5;

fn main() {
    if std::env::var(ROLE_ENV).as_deref() == Ok("bare") {
        bare_server();
        return;
    }
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
    clients: usize,
    rounds: usize,
    secs: f64,
    drain_secs: u64,
    rate: u64,
    open_secs: u64,
    e2e_wait: u64,
    dir: Option<PathBuf>,
    /// Replica counts to measure on PostgreSQL (empty: none).
    pg_replicas: Vec<usize>,
    pg_secs: f64,
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
            clients: env_or("PRINTBELL_BENCH_CLIENTS", 32),
            rounds: env_or("PRINTBELL_BENCH_ROUNDS", 4),
            secs: env_or("PRINTBELL_BENCH_SECS", 2.0),
            drain_secs: env_or("PRINTBELL_BENCH_DRAIN_SECS", 10),
            rate: env_or("PRINTBELL_BENCH_RATE", 1000),
            open_secs: env_or("PRINTBELL_BENCH_OPEN_SECS", 10),
            e2e_wait: env_or("PRINTBELL_BENCH_E2E_WAIT", 20),
            dir: std::env::var_os("PRINTBELL_BENCH_DIR").map(PathBuf::from),
            pg_replicas: std::env::var("PRINTBELL_BENCH_PG_REPLICAS")
                .unwrap_or_else(|_| "1,2,3".into())
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect(),
            pg_secs: env_or("PRINTBELL_BENCH_PG_SECS", 4.0),
        }
    }
}

/// Monotonic nanoseconds since the bench started (shared by the load generator and the sinks).
fn now_ns() -> u64 {
    ns_of(Instant::now())
}

fn ns_of(t: Instant) -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    t.saturating_duration_since(*ORIGIN.get_or_init(Instant::now))
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------------------------
// The bare handler (hidden mode of this binary, run as a child process)

#[handler]
async fn bare_receive(body: Body) -> poem::http::StatusCode {
    let _ = body.into_bytes_limit(1 << 20).await;
    poem::http::StatusCode::ACCEPTED
}

fn bare_server() {
    // Exit when the parent goes away (its end of our stdin closes).
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .expect("bound address");
        println!("{}", addr.port());
        let _ = std::io::stdout().flush();
        let app = Route::new().at(WEBHOOK_PATH, post(bare_receive));
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
}

/// The bare handler as a child process (killed when dropped) and its port.
fn start_bare() -> (Proc, u16) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .env(ROLE_ENV, "bare")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the bare server");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let bare = Proc::new(child);
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("bare server port");
    let port = line.trim().parse().expect("a port number");
    (bare, port)
}

// ---------------------------------------------------------------------------------------------
// Mock Discord sinks (in this process): 200 + {"id": ...} instantly, arrival time per event

#[derive(Default)]
struct Sinks {
    total: AtomicU64,
    /// (event seq, destination index, arrival ns), recorded only while `recording`.
    arrivals: Mutex<Vec<(u64, u8, u64)>>,
    recording: AtomicBool,
    unknown: AtomicU64,
}

const MARKER: &[u8] = b"pbseq";

/// The event sequence number carried in the generation id (`pbseq` + 19 digits), which the
/// Discord footer repeats ("… · generation pbseq…").
fn seq_in(body: &[u8]) -> Option<u64> {
    let at = body.windows(MARKER.len()).position(|w| w == MARKER)? + MARKER.len();
    let digits = body.get(at..at + 19)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[handler]
async fn sink_receive(
    poem::web::Path((hook, _token)): poem::web::Path<(String, String)>,
    body: Body,
    sinks: Data<&Arc<Sinks>>,
) -> poem::Response {
    let bytes = body.into_vec().await.unwrap_or_default();
    let at = now_ns();
    let n = sinks.total.fetch_add(1, Ordering::Relaxed) + 1;
    match seq_in(&bytes) {
        Some(seq) => {
            if sinks.recording.load(Ordering::Relaxed) {
                let dest = u8::from(hook == "1002");
                if let Ok(mut a) = sinks.arrivals.lock() {
                    a.push((seq, dest, at));
                }
            }
        }
        None => {
            sinks.unknown.fetch_add(1, Ordering::Relaxed);
        }
    }
    poem::Response::builder()
        .status(poem::http::StatusCode::OK)
        .content_type("application/json")
        .body(format!(
            "{{\"id\":\"{}\",\"type\":0,\"channel_id\":\"1\"}}",
            1_200_000_000_000_000_000u64 + n
        ))
}

async fn start_sinks(sinks: Arc<Sinks>) -> u16 {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind sinks");
    let port = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .expect("sink address")
        .port();
    let app = Route::new()
        .at("/api/webhooks/:hook/:token", post(sink_receive))
        .data(sinks);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    port
}

// ---------------------------------------------------------------------------------------------
// printbell, the real binary

/// printbell running as a child process (killed when dropped), with its temporary store.
struct Printbell {
    svc: ChildService,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl Printbell {
    fn pid(&self) -> u32 {
        self.svc.pid()
    }
}

/// The benchmark's config: two Discord destinations on the sinks, one route to both. `store`
/// is the `[store]` section's key line. The listen port comes from `PRINTBELL_LISTEN`.
fn bench_config(store: &str, sink_port: u16) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:8080"
webhook_path = "{WEBHOOK_PATH}"
max_body_bytes = 1048576

[store]
{store}

[delivery]
timeout = "10s"

[destinations.discord-a]
kind = "discord"
mode = "each"
url = "http://127.0.0.1:{sink_port}/api/webhooks/1001/token-a"
username = "printbell"

[destinations.discord-b]
kind = "discord"
mode = "each"
url = "http://127.0.0.1:{sink_port}/api/webhooks/1002/token-b"
username = "printbell"

[[routes]]
to = ["discord-a", "discord-b"]
"#
    )
}

fn temp_dir(s: &Settings) -> tempfile::TempDir {
    match &s.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("temp dir")
}

async fn start_printbell(s: &Settings, sink_port: u16, tag: &str) -> Printbell {
    let dir = temp_dir(s);
    let store = dir.path().join("printbell.db");
    let config = bench_config(&format!("path = \"{}\"", store.display()), sink_port);
    let config_path = dir.path().join("notifier.toml");
    std::fs::write(&config_path, config).expect("write config");
    let svc = ChildService::launch(Launch {
        config: &config_path,
        port: free_port(),
        stderr_path: dir.path().join(format!("printbell-{tag}.log")),
        rust_log: &s.log,
        envs: &[],
    })
    .await;
    Printbell {
        svc,
        store,
        _dir: dir,
    }
}

/// `n` printbell replicas on one fresh PostgreSQL database (dropped with this value).
struct Replicas {
    svcs: Vec<ChildService>,
    db: Database,
    _dir: tempfile::TempDir,
}

impl Replicas {
    async fn start(s: &Settings, server: &Server, n: usize, sink_port: u16, tag: &str) -> Replicas {
        let db = server.database().await;
        let dir = temp_dir(s);
        let config = bench_config(&format!("url = \"{}\"", db.url), sink_port);
        let config_path = dir.path().join("notifier.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut svcs = Vec::new();
        for i in 1..=n {
            svcs.push(
                ChildService::launch(Launch {
                    config: &config_path,
                    port: free_port(),
                    stderr_path: dir.path().join(format!("printbell-{tag}-{i}.log")),
                    rust_log: &s.log,
                    envs: &[],
                })
                .await,
            );
        }
        Replicas {
            svcs,
            db,
            _dir: dir,
        }
    }

    fn urls(&self) -> Vec<String> {
        self.svcs
            .iter()
            .map(|svc| format!("{}{WEBHOOK_PATH}", svc.base))
            .collect()
    }

    fn meter(&self, db: Option<u32>) -> Meter {
        Meter {
            servers: self.svcs.iter().map(ChildService::pid).collect(),
            db,
        }
    }

    /// SIGKILLs every replica, then counts the `acked` events the database holds with both
    /// deliveries. Returns (acknowledged, found complete) and the replicas' logs.
    async fn kill_and_verify(&mut self, acked: &[u64]) -> (usize, usize, String) {
        for svc in &mut self.svcs {
            svc.kill();
        }
        let stored = self.db.stored().await;
        let log = self.svcs.iter().map(ChildService::log).collect();
        (acked.len(), count_durable(&stored, acked), log)
    }
}

/// `VmRSS` and `VmHWM` in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

// ---------------------------------------------------------------------------------------------
// Events: fixture bodies, unique ids, varying types and tags

struct EventGen {
    /// Compact fixture JSON per type with `@@EVT@@`, `@@GEN@@` and `"@@TAGS@@"` placeholders.
    templates: HashMap<&'static str, String>,
}

const TAG_SETS: [&str; 5] = [
    r#"["marketing","banners"]"#,
    r#"["product"]"#,
    r#"[]"#,
    r#"["alerts","ops"]"#,
    r#"["Marketing","social","q4-launch"]"#,
];

impl EventGen {
    fn new() -> EventGen {
        let mut templates = HashMap::new();
        for ty in [
            "print.created",
            "print.active",
            "print.progress",
            "print.completed",
            "print.failed",
        ] {
            let mut v: Value = testkit::fixture(ty);
            v["id"] = Value::String("@@EVT@@".into());
            v["data"]["id"] = Value::String("@@GEN@@".into());
            v["data"]["tags"] = Value::String("@@TAGS@@".into());
            templates.insert(ty, v.to_string());
        }
        EventGen { templates }
    }

    /// Event `seq`: a generation's life is created → active → progress → completed (every
    /// tenth fails instead); tags rotate through five sets, including none.
    fn body(&self, seq: u64) -> String {
        let generation = seq / 4;
        let ty = match seq % 4 {
            0 => "print.created",
            1 => "print.active",
            2 => "print.progress",
            _ if generation % 10 == 9 => "print.failed",
            _ => "print.completed",
        };
        let tags = TAG_SETS[(generation % TAG_SETS.len() as u64) as usize];
        self.templates[ty]
            .replacen("@@EVT@@", &event_id(seq), 1)
            .replacen("@@GEN@@", &format!("pbseq{seq:019}"), 1)
            .replacen("\"@@TAGS@@\"", tags, 1)
    }
}

fn event_id(seq: u64) -> String {
    format!("evt_bench_{seq:010}")
}

// ---------------------------------------------------------------------------------------------
// Load generators

fn load_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(20))
        .tcp_nodelay(true)
        .build()
        .expect("client")
}

#[derive(Default)]
struct ClosedResult {
    /// Acknowledged (202) in the measured window, per second.
    throughput: f64,
    acked_in_window: u64,
    /// Every acknowledged event seq (warm-up included).
    acked: Vec<u64>,
    /// Non-202 answers by status (0 = transport error).
    refused: HashMap<u16, u64>,
    /// CPU seconds the server (every replica) used in the measured window.
    server_cpu: f64,
    /// CPU seconds the database server used in the window (0 without one).
    db_cpu: f64,
    /// CPU seconds this process (load generator, and the idle sinks) used in the window.
    gen_cpu: f64,
    /// Fraction of all CPUs busy (any process, steal included) in the window.
    machine_busy: f64,
    /// Fraction of all CPUs stolen by the hypervisor in the window.
    machine_steal: f64,
}

/// Whose CPU a measurement counts: the server processes (every replica) and the database
/// server's process tree, when there is one on this machine.
#[derive(Clone)]
struct Meter {
    servers: Vec<u32>,
    db: Option<u32>,
}

/// CPU seconds so far, as a [`Meter`] reads them.
#[derive(Clone, Copy)]
struct Reading {
    server: f64,
    db: f64,
    own: f64,
    machine: (u64, u64, u64),
}

impl Meter {
    fn one(pid: u32) -> Meter {
        Meter {
            servers: vec![pid],
            db: None,
        }
    }

    fn read(&self) -> Reading {
        Reading {
            server: self.servers.iter().copied().map(cpu_secs).sum(),
            db: self.db.map(tree_cpu_secs).unwrap_or(0.0),
            own: cpu_secs(std::process::id()),
            machine: machine(),
        }
    }
}

/// `clients` keep-alive connections, each posting the next event as soon as the previous one
/// is answered, for `warmup + secs`; only answers arriving in the last `secs` are counted.
/// Client `i` posts to `urls[i % n]` (replicas share the clients round-robin).
async fn closed_loop(
    urls: &[String],
    clients: usize,
    window: Duration,
    load: &Load,
    meter: &Meter,
) -> ClosedResult {
    let client = load_client();
    let start = Instant::now();
    let window_start = start + ROUND_WARMUP;
    let end = window_start + window;
    let cpu_at_start = Arc::new(Mutex::new(None));
    {
        let cpu = cpu_at_start.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window_start.into()).await;
            if let Ok(mut c) = cpu.lock() {
                *c = Some(meter.read());
            }
        });
    }
    let mut tasks = Vec::new();
    for i in 0..clients {
        let client = client.clone();
        let url = urls[i % urls.len()].clone();
        let gen = load.gen.clone();
        let next_seq = load.seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut in_window = 0u64;
            let mut refused: HashMap<u16, u64> = HashMap::new();
            while Instant::now() < end {
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let body = gen.body(seq);
                let status = post_event(&client, &url, body).await;
                let now = Instant::now();
                if status == 202 {
                    acked.push(seq);
                    if now >= window_start && now <= end {
                        in_window += 1;
                    }
                } else {
                    *refused.entry(status).or_default() += 1;
                    if status == 0 || status == 503 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
            (acked, in_window, refused)
        }));
    }
    let mut out = ClosedResult::default();
    for t in tasks {
        let (acked, n, refused) = t.await.expect("client task");
        out.acked.extend(acked);
        out.acked_in_window += n;
        for (k, v) in refused {
            *out.refused.entry(k).or_default() += v;
        }
    }
    let end = meter.read();
    if let Some(start) = cpu_at_start.lock().ok().and_then(|c| *c) {
        out.server_cpu = end.server - start.server;
        out.db_cpu = end.db - start.db;
        out.gen_cpu = end.own - start.own;
        (out.machine_busy, out.machine_steal) = busy_steal(start.machine, end.machine);
    }
    out.throughput = out.acked_in_window as f64 / window.as_secs_f64();
    out
}

struct OpenResult {
    /// (seq, intended send time ns, ack latency ns from the intended time) for measured
    /// events answered 202.
    acked: Vec<(u64, u64, u64)>,
    sent: u64,
    /// Every event acknowledged, warm-up included (the work done while the loop ran).
    acked_all: u64,
    refused: HashMap<u16, u64>,
    first_measured_seq: u64,
    /// How late requests started compared to the schedule (the generator's own slack), sorted.
    lag: Vec<Option<u64>>,
}

/// Posts at a fixed rate regardless of answers. A pacing thread (std sleep: ~0.1 ms slack,
/// where tokio's timer wheel has 1 ms) spawns each request on the runtime at its time;
/// latency is measured from the intended send time, so a stall counts against every request
/// it delays (no coordinated omission). Request `i` goes to `urls[i % n]` (round-robin over
/// replicas).
async fn open_loop(urls: &[String], rate: u64, secs: u64, load: &Load) -> OpenResult {
    let gen = load.gen.clone();
    let next_seq = load.seq.clone();
    let client = load_client();
    let period = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let warm = (OPEN_WARMUP.as_nanos() / period.as_nanos()) as u64;
    let total = warm + rate * secs;
    let handle = tokio::runtime::Handle::current();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let urls = urls.to_vec();
    let pacer = std::thread::spawn(move || {
        let start = Instant::now() + Duration::from_millis(5);
        let mut first_measured_seq = 0;
        for i in 0..total {
            let at = start + period * i as u32;
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            let seq = next_seq.fetch_add(1, Ordering::Relaxed);
            if i == warm {
                first_measured_seq = seq;
            }
            let body = gen.body(seq);
            let client = client.clone();
            let url = urls[i as usize % urls.len()].clone();
            let intended = ns_of(at);
            let measured = i >= warm;
            let task = handle.spawn(async move {
                let started = now_ns();
                let status = post_event(&client, &url, body).await;
                let done = now_ns();
                (seq, intended, started, done, status, measured)
            });
            if tx.send(task).is_err() {
                break;
            }
        }
        first_measured_seq
    });
    let mut out = OpenResult {
        acked: Vec::new(),
        sent: 0,
        acked_all: 0,
        refused: HashMap::new(),
        first_measured_seq: 0,
        lag: Vec::new(),
    };
    while let Some(t) = rx.recv().await {
        let (seq, intended, started, done, status, measured) = t.await.expect("request task");
        out.acked_all += u64::from(status == 202);
        if !measured {
            continue;
        }
        out.sent += 1;
        out.lag.push(Some(started.saturating_sub(intended)));
        if status == 202 {
            out.acked
                .push((seq, intended, done.saturating_sub(intended)));
        } else {
            *out.refused.entry(status).or_default() += 1;
        }
    }
    out.first_measured_seq = pacer.join().expect("pacer thread");
    out.lag.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Checks and statistics

/// SIGKILLs printbell, then checks that every acknowledged event id is in the store with its
/// two deliveries. Returns (acknowledged, found complete).
fn verify_durable(pb: &mut Printbell, acked: &[u64]) -> (usize, usize) {
    pb.svc.kill();
    let stored = testkit::store::stored(&pb.store);
    (acked.len(), count_durable(&stored, acked))
}

/// How many of the `acked` events `stored` holds, with their two deliveries.
fn count_durable(stored: &Stored, acked: &[u64]) -> usize {
    acked
        .iter()
        .map(|s| event_id(*s))
        .filter(|id| {
            stored.events.contains(id) && stored.deliveries.get(id) == Some(&(FAN_OUT as i64))
        })
        .count()
}

/// Nearest-rank percentile of sorted nanoseconds; `None` = beyond the data (undelivered).
fn pct(sorted: &[Option<u64>], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(ns: Option<u64>) -> String {
    match ns {
        Some(n) => format!("{:.2} ms", n as f64 / 1e6),
        None => "∞ (undelivered)".into(),
    }
}

fn refused_text(r: &HashMap<u16, u64>) -> String {
    if r.is_empty() {
        return "none".into();
    }
    let mut v: Vec<_> = r.iter().collect();
    v.sort();
    v.iter()
        .map(|(s, n)| {
            format!(
                "{n}×{}",
                if **s == 0 {
                    "error".into()
                } else {
                    s.to_string()
                }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Closed-loop rounds of one server, summed.
#[derive(Default)]
struct Rounds {
    throughputs: Vec<f64>,
    acked_in_window: u64,
    acked: Vec<u64>,
    refused: HashMap<u16, u64>,
    server_cpu: f64,
    gen_cpu: f64,
    busy: Vec<f64>,
}

impl Rounds {
    fn add(&mut self, r: ClosedResult) {
        self.throughputs.push(r.throughput);
        self.acked_in_window += r.acked_in_window;
        self.acked.extend(r.acked);
        for (k, v) in r.refused {
            *self.refused.entry(k).or_default() += v;
        }
        self.server_cpu += r.server_cpu;
        self.gen_cpu += r.gen_cpu;
        self.busy.push(r.machine_busy);
    }
    fn server_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.acked_in_window.max(1) as f64
    }
    fn gen_us(&self) -> f64 {
        self.gen_cpu * 1e6 / self.acked_in_window.max(1) as f64
    }
}

/// The whole benchmark: the four phases of the module docs, then the summary table.
async fn run() -> i32 {
    now_ns();
    let s = Settings::from_env();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    announce(&s, nproc);
    let load = Load {
        gen: Arc::new(EventGen::new()),
        seq: Arc::new(AtomicU64::new(1)),
    };
    let bench_start = Instant::now();

    let (mut servers, idle_rss) = start_servers(&s).await;
    let ingest = phase_ingest(&s, &servers, &load, idle_rss).await;
    let floor = phase_bare_open_loop(&s, servers.bare, &load).await;
    let drain = phase_drain(&s, &mut servers.pb, &servers.sinks, &ingest).await;
    drop(servers.pb);
    let open = phase_open_loop(&s, servers.sink_port, &servers.sinks, &load).await;
    let pg = phase_postgres(&s, &servers.sinks, servers.sink_port, &load).await;
    if let Err(why) = &pg {
        eprintln!("[5/5] PostgreSQL not measured: {why}");
    }
    let mut logs = vec![
        ("closed loop".to_string(), drain.log.clone()),
        ("open loop".to_string(), open.log.clone()),
    ];
    for row in pg.iter().flatten() {
        logs.push((
            format!("PostgreSQL, {} replicas", row.replicas),
            row.log.clone(),
        ));
    }
    report_logged_problems(&logs);
    print_summary(&s, nproc, bench_start, &ingest, &floor, &drain, &open);
    print_stores(&s, &ingest, &drain, &open, &pg);
    0
}

/// What is measured, with which binary and settings (stderr).
fn announce(s: &Settings, nproc: usize) {
    let bin = testkit::bin();
    eprintln!("printbell binary: {bin}");
    if !bin.contains("/release/") {
        eprintln!("warning: the printbell binary is not a release build (use `cargo bench`)");
    }
    eprintln!(
        "nproc {nproc}; printbell RUST_LOG={}; closed loop: {} clients, {} rounds × ({} s bare + {} s printbell); open loop {}/s for {} s",
        s.log, s.clients, s.rounds, s.secs, s.secs, s.rate, s.open_secs
    );
}

/// The event bodies and the sequence number shared by every load generator.
struct Load {
    gen: Arc<EventGen>,
    seq: Arc<AtomicU64>,
}

/// The closed-loop phase's servers: the bare handler, the sinks and the first printbell.
struct Servers {
    bare: (Proc, u16),
    sinks: Arc<Sinks>,
    sink_port: u16,
    pb: Printbell,
}

/// Starts the bare handler, the mock sinks and printbell; returns them and printbell's idle
/// RSS (KiB) one second after it became healthy.
async fn start_servers(s: &Settings) -> (Servers, u64) {
    // Both servers run for the whole closed-loop phase; rounds alternate between them so that
    // noise from anything else on the machine hits both alike.
    let bare = start_bare();
    let sinks = Arc::new(Sinks::default());
    let sink_port = start_sinks(sinks.clone()).await;
    let pb = start_printbell(s, sink_port, "closed").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = rss_kib(pb.pid());
    let servers = Servers {
        bare,
        sinks,
        sink_port,
        pb,
    };
    (servers, idle_rss)
}

/// Phase 1's results.
struct Ingest {
    idle_rss: u64,
    bare_r: Rounds,
    pb_r: Rounds,
    bare_tp: f64,
    pb_tp: f64,
    ratio: f64,
    /// Messages the sinks had received before the first round.
    sunk_before: u64,
}

/// Phase 1: closed-loop rounds, bare handler (printbell stopped) then printbell.
async fn phase_ingest(s: &Settings, servers: &Servers, load: &Load, idle_rss: u64) -> Ingest {
    let (bare, bare_port) = &servers.bare;
    let pb = &servers.pb;
    let sinks = &servers.sinks;
    let window = Duration::from_secs_f64(s.secs);
    let bare_url = [format!("http://127.0.0.1:{bare_port}{WEBHOOK_PATH}")];
    let pb_url = [format!("{}{WEBHOOK_PATH}", pb.svc.base)];
    let (bare_meter, pb_meter) = (Meter::one(bare.pid()), Meter::one(pb.pid()));
    eprintln!(
        "[1/5] ingest, closed loop: bare poem handler (pid {}) vs printbell (pid {}, idle RSS {:.1} MiB)",
        bare.pid(),
        pb.pid(),
        mib(idle_rss)
    );
    let mut bare_r = Rounds::default();
    let mut pb_r = Rounds::default();
    let mut ratios = Vec::new();
    let sunk_before = sinks.total.load(Ordering::Relaxed);
    let mut pb_time = 0.0;
    let rounds_started = Instant::now();
    for round in 1..=s.rounds {
        // printbell is stopped (SIGSTOP) while the bare handler is measured, so its delivery
        // lanes working through the backlog do not take CPU from the bare handler's round.
        pb.svc.signal("STOP");
        let b = closed_loop(&bare_url, s.clients, window, load, &bare_meter).await;
        pb.svc.signal("CONT");
        let started = Instant::now();
        let p = closed_loop(&pb_url, s.clients, window, load, &pb_meter).await;
        pb_time += started.elapsed().as_secs_f64();
        let ratio = p.throughput / b.throughput.max(1.0);
        eprintln!(
            "      round {round}: bare {:.0} events/s (CPUs {:.0} % busy, {:.1} % stolen), printbell {:.0} events/s (CPUs {:.0} % busy, {:.1} % stolen): {:.1} %",
            b.throughput,
            b.machine_busy * 100.0,
            b.machine_steal * 100.0,
            p.throughput,
            p.machine_busy * 100.0,
            p.machine_steal * 100.0,
            ratio * 100.0
        );
        ratios.push(ratio);
        bare_r.add(b);
        pb_r.add(p);
    }
    let sunk_during = sinks.total.load(Ordering::Relaxed) - sunk_before;
    let bare_tp = median(&bare_r.throughputs);
    let pb_tp = median(&pb_r.throughputs);
    let ratio = median(&ratios);
    eprintln!(
        "      median: bare {bare_tp:.0} events/s ({:.1} µs server CPU + {:.1} µs load generator CPU per event), printbell {pb_tp:.0} events/s ({:.1} µs + {:.1} µs), ratio {:.1} %; refused: bare {}, printbell {}",
        bare_r.server_us(),
        bare_r.gen_us(),
        pb_r.server_us(),
        pb_r.gen_us(),
        ratio * 100.0,
        refused_text(&bare_r.refused),
        refused_text(&pb_r.refused),
    );
    eprintln!(
        "      printbell delivered {sunk_during} messages during its rounds ({:.0} msg/s while ingesting; {:.1} s of {:.1} s)",
        sunk_during as f64 / pb_time.max(0.001),
        pb_time,
        rounds_started.elapsed().as_secs_f64()
    );
    Ingest {
        idle_rss,
        bare_r,
        pb_r,
        bare_tp,
        pb_tp,
        ratio,
        sunk_before,
    }
}

/// Phase 2's results.
struct Floor {
    /// Ack latencies (ns), sorted.
    ack: Vec<Option<u64>>,
    /// Peak RSS (KiB).
    hwm: u64,
}

/// Phase 2: the latency floor of the HTTP stack and the load generator at the same offered
/// rate; the bare handler is stopped afterwards.
async fn phase_bare_open_loop(s: &Settings, bare: (Proc, u16), load: &Load) -> Floor {
    let (mut bare, bare_port) = bare;
    let bare_url = [format!("http://127.0.0.1:{bare_port}{WEBHOOK_PATH}")];
    eprintln!(
        "[2/5] bare poem handler, open loop at {}/s for {} s …",
        s.rate,
        s.open_secs.min(BARE_OPEN_SECS)
    );
    let m0 = machine();
    let bare_open = open_loop(&bare_url, s.rate, s.open_secs.min(BARE_OPEN_SECS), load).await;
    let (bare_busy, bare_steal) = busy_steal(m0, machine());
    let mut bare_ack: Vec<Option<u64>> = bare_open.acked.iter().map(|a| Some(a.2)).collect();
    bare_ack.sort();
    eprintln!(
        "      ack p50 {} p99 {} max {}; pacing lag p99 {}; CPUs {:.0} % busy, {:.1} % stolen; refused: {}",
        ms(pct(&bare_ack, 0.5)),
        ms(pct(&bare_ack, 0.99)),
        ms(bare_ack.last().copied().flatten()),
        ms(pct(&bare_open.lag, 0.99)),
        bare_busy * 100.0,
        bare_steal * 100.0,
        refused_text(&bare_open.refused),
    );
    let (_, bare_hwm) = rss_kib(bare.pid());
    bare.kill();
    drop(bare);
    Floor {
        ack: bare_ack,
        hwm: bare_hwm,
    }
}

/// Phase 3's results.
struct Drain {
    delivery_rate: f64,
    /// Peak RSS (KiB) over the closed loop and the drain.
    hwm: u64,
    acked: usize,
    durable: usize,
    log: String,
}

/// What waiting for a backlog to be delivered measured.
struct Drained {
    messages: u64,
    secs: f64,
    /// Messages the sinks still expected at the end.
    left: u64,
    server_cpu: f64,
    db_cpu: f64,
}

impl Drained {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.secs.max(0.001)
    }
}

/// Waits, at most `limit`, until the sinks have received `expected` messages in all; what
/// arrived meanwhile and the CPU it took.
async fn drain(sinks: &Sinks, expected: u64, limit: Duration, meter: &Meter) -> Drained {
    let start = Instant::now();
    let from = sinks.total.load(Ordering::Relaxed);
    let cpu_from = meter.read();
    while sinks.total.load(Ordering::Relaxed) < expected && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_to = meter.read();
    let total = sinks.total.load(Ordering::Relaxed);
    Drained {
        messages: total - from,
        secs: start.elapsed().as_secs_f64(),
        left: expected.saturating_sub(total),
        server_cpu: cpu_to.server - cpu_from.server,
        db_cpu: cpu_to.db - cpu_from.db,
    }
}

/// Phase 3: no new events; the backlog is delivered as fast as the lanes go. Then SIGKILL and
/// the durability check.
async fn phase_drain(s: &Settings, pb: &mut Printbell, sinks: &Sinks, ingest: &Ingest) -> Drain {
    eprintln!(
        "[3/5] printbell delivery drain (at most {} s) …",
        s.drain_secs
    );
    let expected = ingest.sunk_before + ingest.pb_r.acked.len() as u64 * FAN_OUT;
    let limit = Duration::from_secs(s.drain_secs);
    let d = drain(sinks, expected, limit, &Meter::one(pb.pid())).await;
    let (_, hwm_closed) = rss_kib(pb.pid());
    eprintln!(
        "      {} messages in {:.1} s = {:.0} msg/s ({:.0} µs printbell CPU/message), {} still queued; peak RSS {:.1} MiB",
        d.messages,
        d.secs,
        d.rate(),
        d.server_cpu * 1e6 / d.messages.max(1) as f64,
        d.left,
        mib(hwm_closed)
    );
    let (acked_closed, durable_closed) = verify_durable(pb, &ingest.pb_r.acked);
    eprintln!("      after SIGKILL: {durable_closed} of {acked_closed} acknowledged events found in the store with {FAN_OUT} deliveries");
    Drain {
        delivery_rate: d.rate(),
        hwm: hwm_closed,
        acked: acked_closed,
        durable: durable_closed,
        log: pb.svc.log(),
    }
}

/// Phase 4's results.
struct Open {
    idle_rss: u64,
    run: OpenRun,
    hwm: u64,
    acked: usize,
    durable: usize,
    log: String,
}

/// What an open loop against printbell measured, up to the end of the wait for deliveries.
struct OpenRun {
    /// Ack latencies (ns), sorted.
    ack: Vec<Option<u64>>,
    /// End-to-end latencies (ns), sorted, None (undelivered) last.
    e2e: Vec<Option<u64>>,
    refused: HashMap<u16, u64>,
    /// The acknowledged measured events.
    acked: Vec<u64>,
    /// Messages per second the sinks received from the first send to the end of the wait.
    delivery_rate: f64,
    /// CPU per acknowledged event (µs) from the first send to the end of the wait: printbell
    /// (all replicas) and the database server.
    server_us: f64,
    db_us: f64,
}

/// Posts at the fixed rate to `urls` (round-robin), then waits (bounded) for the deliveries of
/// the measured events.
async fn measure_open(
    s: &Settings,
    urls: &[String],
    sinks: &Sinks,
    load: &Load,
    meter: &Meter,
) -> OpenRun {
    if let Ok(mut a) = sinks.arrivals.lock() {
        a.clear();
    }
    sinks.recording.store(true, Ordering::Relaxed);
    let sunk_before = sinks.total.load(Ordering::Relaxed);
    let open_started = Instant::now();
    let cpu0 = meter.read();
    let open = open_loop(urls, s.rate, s.open_secs, load).await;
    let (busy, steal) = busy_steal(cpu0.machine, machine());
    let sent_elapsed = open_started.elapsed();
    // Wait for the deliveries of the measured events (bounded).
    let wanted = open.acked.len() as u64 * FAN_OUT;
    let wait_deadline = Instant::now() + Duration::from_secs(s.e2e_wait);
    loop {
        let arrived = sinks
            .arrivals
            .lock()
            .map(|a| a.iter().filter(|x| x.0 >= open.first_measured_seq).count())
            .unwrap_or(0);
        if arrived as u64 >= wanted || Instant::now() > wait_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sinks.recording.store(false, Ordering::Relaxed);
    let cpu1 = meter.read();
    let total_secs = open_started.elapsed().as_secs_f64();
    let delivered = sinks.total.load(Ordering::Relaxed) - sunk_before;
    let mut ack: Vec<Option<u64>> = open.acked.iter().map(|a| Some(a.2)).collect();
    ack.sort();
    let e2e = end_to_end(&open, sinks);
    let undelivered = e2e.iter().filter(|v| v.is_none()).count();
    eprintln!(
        "      sent {} measured events in {:.1} s (pacing lag p99 {}; CPUs {:.0} % busy, {:.1} % stolen), {} acknowledged, refused: {}; {} of {} deliveries arrived within {} s after the last send",
        open.sent,
        sent_elapsed.as_secs_f64(),
        ms(pct(&open.lag, 0.99)),
        busy * 100.0,
        steal * 100.0,
        open.acked.len(),
        refused_text(&open.refused),
        e2e.len() - undelivered,
        e2e.len(),
        s.e2e_wait
    );
    // Every event sent, warm-up included, is work done in the span measured.
    let events = open.acked_all.max(1) as f64;
    OpenRun {
        ack,
        e2e,
        refused: open.refused.clone(),
        acked: open.acked.iter().map(|a| a.0).collect(),
        delivery_rate: delivered as f64 / total_secs,
        server_us: (cpu1.server - cpu0.server) * 1e6 / events,
        db_us: (cpu1.db - cpu0.db) * 1e6 / events,
    }
}

/// Phase 4: a fresh printbell (empty queue), open loop at the fixed rate → ack latency and
/// end-to-end latency; then SIGKILL and the durability check.
async fn phase_open_loop(s: &Settings, sink_port: u16, sinks: &Sinks, load: &Load) -> Open {
    let mut pb = start_printbell(s, sink_port, "open").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss2, _) = rss_kib(pb.pid());
    eprintln!(
        "[4/5] printbell open loop at {}/s for {} s (pid {}, idle RSS {:.1} MiB) …",
        s.rate,
        s.open_secs,
        pb.pid(),
        mib(idle_rss2)
    );
    let url = [format!("{}{WEBHOOK_PATH}", pb.svc.base)];
    let run = measure_open(s, &url, sinks, load, &Meter::one(pb.pid())).await;
    let (_, hwm_open) = rss_kib(pb.pid());
    let (acked_open, durable_open) = verify_durable(&mut pb, &run.acked);
    let open_log = pb.svc.log();
    drop(pb);
    Open {
        idle_rss: idle_rss2,
        run,
        hwm: hwm_open,
        acked: acked_open,
        durable: durable_open,
        log: open_log,
    }
}

/// One PostgreSQL row of the store comparison: `replicas` processes on one database.
struct PgRow {
    replicas: usize,
    ingest: ClosedResult,
    drained: Drained,
    open: OpenRun,
    acked: usize,
    durable: usize,
    log: String,
}

/// Phase 5: for each replica count, the closed loop, the drain and the open loop on
/// PostgreSQL (a fresh database for each), or why there is no PostgreSQL to measure.
async fn phase_postgres(
    s: &Settings,
    sinks: &Sinks,
    sink_port: u16,
    load: &Load,
) -> Result<Vec<PgRow>, String> {
    if s.pg_replicas.is_empty() {
        return Err("PRINTBELL_BENCH_PG_REPLICAS names no replica count".into());
    }
    let server = tokio::task::block_in_place(testkit::postgres::server)?;
    let db_pid = server.server_pid().await;
    match db_pid {
        Some(pid) => eprintln!(
            "[5/5] PostgreSQL (server process {pid} and its backends measured separately), replicas {:?} …",
            s.pg_replicas
        ),
        None => eprintln!(
            "[5/5] PostgreSQL (server not on this machine: its CPU is not measured), replicas {:?} …",
            s.pg_replicas
        ),
    }
    let mut rows = Vec::new();
    for &n in &s.pg_replicas {
        rows.push(postgres_row(s, server, db_pid, n, sinks, sink_port, load).await);
    }
    Ok(rows)
}

/// `n` replicas: closed loop and drain on one database, then open loop on a fresh one.
async fn postgres_row(
    s: &Settings,
    server: &Server,
    db_pid: Option<u32>,
    n: usize,
    sinks: &Sinks,
    sink_port: u16,
    load: &Load,
) -> PgRow {
    let mut r = Replicas::start(s, server, n, sink_port, &format!("pg{n}-closed")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let meter = r.meter(db_pid);
    let sunk_before = sinks.total.load(Ordering::Relaxed);
    let window = Duration::from_secs_f64(s.pg_secs);
    let ingest = closed_loop(&r.urls(), s.clients, window, load, &meter).await;
    let per_event = |cpu: f64| cpu * 1e6 / ingest.acked_in_window.max(1) as f64;
    eprintln!(
        "      {n} replica(s), closed loop: {:.0} events/s ({:.0} µs printbell + {:.0} µs PostgreSQL CPU/event; CPUs {:.0} % busy, {:.1} % stolen), refused: {}",
        ingest.throughput,
        per_event(ingest.server_cpu),
        per_event(ingest.db_cpu),
        ingest.machine_busy * 100.0,
        ingest.machine_steal * 100.0,
        refused_text(&ingest.refused),
    );
    let expected = sunk_before + ingest.acked.len() as u64 * FAN_OUT;
    let limit = Duration::from_secs(s.drain_secs);
    let drained = drain(sinks, expected, limit, &meter).await;
    let per_msg = |cpu: f64| cpu * 1e6 / drained.messages.max(1) as f64;
    eprintln!(
        "      drain: {} messages in {:.1} s = {:.0} msg/s ({:.0} µs printbell + {:.0} µs PostgreSQL CPU/message), {} still queued",
        drained.messages,
        drained.secs,
        drained.rate(),
        per_msg(drained.server_cpu),
        per_msg(drained.db_cpu),
        drained.left
    );
    let (acked_closed, durable_closed, log_closed) = r.kill_and_verify(&ingest.acked).await;
    drop(r);

    let mut r = Replicas::start(s, server, n, sink_port, &format!("pg{n}-open")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "      {n} replica(s), open loop at {}/s for {} s …",
        s.rate, s.open_secs
    );
    let open = measure_open(s, &r.urls(), sinks, load, &r.meter(db_pid)).await;
    let (acked_open, durable_open, log_open) = r.kill_and_verify(&open.acked).await;
    eprintln!(
        "      after SIGKILL: {} of {} acknowledged events found in the database with {FAN_OUT} deliveries",
        durable_closed + durable_open,
        acked_closed + acked_open
    );
    PgRow {
        replicas: n,
        ingest,
        drained,
        open,
        acked: acked_closed + acked_open,
        durable: durable_closed + durable_open,
        log: log_closed + &log_open,
    }
}

/// The stores side by side (stdout): SQLite from phases 1–4, PostgreSQL from phase 5.
fn print_stores(
    s: &Settings,
    ingest: &Ingest,
    drain: &Drain,
    open: &Open,
    pg: &Result<Vec<PgRow>, String>,
) {
    println!();
    println!(
        "| store | ingest, closed loop | CPU/event, closed loop: printbell + PostgreSQL | ack p50 / p99 at {0}/s | end-to-end p50 / p99 at {0}/s | CPU/event at {0}/s: printbell + PostgreSQL | delivery drain | acknowledged events in the store |",
        s.rate
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cells = |run: &OpenRun| {
        (
            format!("{} / {}", ms(pct(&run.ack, 0.5)), ms(pct(&run.ack, 0.99))),
            format!("{} / {}", ms(pct(&run.e2e, 0.5)), ms(pct(&run.e2e, 0.99))),
        )
    };
    let (ack, e2e) = cells(&open.run);
    println!(
        "| SQLite, 1 process | {:.0} events/s | {:.0} µs | {ack} | {e2e} | {:.0} µs | {:.0} msg/s | {} / {} |",
        ingest.pb_tp,
        ingest.pb_r.server_us(),
        open.run.server_us,
        drain.delivery_rate,
        drain.durable + open.durable,
        drain.acked + open.acked,
    );
    match pg {
        Ok(rows) => {
            for row in rows {
                let (ack, e2e) = cells(&row.open);
                let per_event = |cpu: f64| cpu * 1e6 / row.ingest.acked_in_window.max(1) as f64;
                let refused = if row.ingest.refused.is_empty() && row.open.refused.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (refused: {} closed, {} open)",
                        refused_text(&row.ingest.refused),
                        refused_text(&row.open.refused)
                    )
                };
                println!(
                    "| PostgreSQL, {} replica{} | {:.0} events/s{refused} | {:.0} + {:.0} µs | {ack} | {e2e} | {:.0} + {:.0} µs | {:.0} msg/s | {} / {} |",
                    row.replicas,
                    if row.replicas == 1 { "" } else { "s" },
                    row.ingest.throughput,
                    per_event(row.ingest.server_cpu),
                    per_event(row.ingest.db_cpu),
                    row.open.server_us,
                    row.open.db_us,
                    row.drained.rate(),
                    row.durable,
                    row.acked,
                );
            }
        }
        Err(why) => println!("| PostgreSQL | not measured: {why} | | | | | | |"),
    }
}

/// End-to-end latency of every (measured event, destination): intended send time → first
/// arrival at its sink; None for the undelivered, sorted last.
fn end_to_end(open: &OpenResult, sinks: &Sinks) -> Vec<Option<u64>> {
    let sent_at: HashMap<u64, u64> = open.acked.iter().map(|a| (a.0, a.1)).collect();
    let mut e2e: Vec<Option<u64>> = Vec::with_capacity(sent_at.len() * 2);
    {
        let arrivals = sinks.arrivals.lock().map(|a| a.clone()).unwrap_or_default();
        let mut seen: HashSet<(u64, u8)> = HashSet::new();
        for (seq, dest, at) in arrivals {
            if let Some(sent) = sent_at.get(&seq) {
                if seen.insert((seq, dest)) {
                    e2e.push(Some(at.saturating_sub(*sent)));
                }
            }
        }
        let missing = sent_at.len() * FAN_OUT as usize - seen.len();
        e2e.extend(std::iter::repeat_n(None, missing));
    }
    // None (undelivered) sorts first; put it last.
    e2e.sort_by_key(|v| v.unwrap_or(u64::MAX));
    e2e
}

/// The first ERROR / WARN lines of each printbell log, if any (stderr).
fn report_logged_problems(logs: &[(String, String)]) {
    for (name, log) in logs {
        let problems: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN"))
            .take(5)
            .collect();
        if !problems.is_empty() {
            eprintln!("printbell ({name}) logged problems, first ones:");
            for p in problems {
                eprintln!("  {p}");
            }
        }
    }
}

/// The summary table and the targets met (stdout).
fn print_summary(
    s: &Settings,
    nproc: usize,
    bench_start: Instant,
    ingest: &Ingest,
    floor: &Floor,
    drain: &Drain,
    open: &Open,
) {
    let (ratio, bare_tp, pb_tp) = (ingest.ratio, ingest.bare_tp, ingest.pb_tp);
    let (bare_r, pb_r) = (&ingest.bare_r, &ingest.pb_r);
    let bare_ack = &floor.ack;
    let (ack, e2e) = (&open.run.ack, &open.run.e2e);
    let (hwm_closed, hwm_open) = (drain.hwm, open.hwm);
    let (durable_closed, acked_closed) = (drain.durable, drain.acked);
    let (durable_open, acked_open) = (open.durable, open.acked);
    let ack_p50 = pct(ack, 0.50);
    let ack_p99 = pct(ack, 0.99);
    let ack_max = ack.last().copied().flatten();
    let e2e_p50 = pct(e2e, 0.50);
    let e2e_p99 = pct(e2e, 0.99);
    let peak = hwm_closed.max(hwm_open);
    let idle = ingest.idle_rss.max(open.idle_rss);
    let all_durable = durable_closed == acked_closed && durable_open == acked_open;
    let t_ingest = ratio >= 0.40 && all_durable;
    let t_ack = ack_p99.is_some_and(|v| v <= 5_000_000) && open.run.refused.is_empty();
    let t_e2e = e2e_p99.is_some_and(|v| v <= 50_000_000);
    let t_peak = peak <= 64 * 1024;
    let t_idle = idle <= 20 * 1024;

    println!();
    println!(
        "printbell pipeline benchmark — nproc {nproc}, loopback, printbell RUST_LOG={}, fan-out {FAN_OUT} (two Discord sinks), {} closed-loop clients, total {:.0} s",
        s.log,
        s.clients,
        bench_start.elapsed().as_secs_f64()
    );
    println!();
    println!("| measure | value | target | result |");
    println!("|---|---|---|---|");
    println!(
        "| bare poem handler, closed loop (median of {}) | {:.0} events/s ({:.0} µs server CPU/event) | (the limit) | |",
        s.rounds,
        bare_tp,
        bare_r.server_us()
    );
    println!(
        "| printbell ingest, closed loop (median of {}) | {:.0} events/s ({:.0} µs server CPU/event) | | |",
        s.rounds,
        pb_tp,
        pb_r.server_us()
    );
    println!(
        "| ingest ratio printbell / bare (median of rounds) | {:.1} % | ≥ 40 % | {} |",
        ratio * 100.0,
        verdict(ratio >= 0.40)
    );
    println!(
        "| acknowledged events in the store after SIGKILL | {} / {} | all | {} |",
        durable_closed + durable_open,
        acked_closed + acked_open,
        verdict(all_durable)
    );
    println!(
        "| bare handler ack latency at {}/s: p50 / p99 / max | {} / {} / {} | (the floor) | |",
        s.rate,
        ms(pct(bare_ack, 0.50)),
        ms(pct(bare_ack, 0.99)),
        ms(bare_ack.last().copied().flatten()),
    );
    println!(
        "| ack latency at {}/s: p50 / p99 / max | {} / {} / {} | p99 ≤ 5 ms | {} |",
        s.rate,
        ms(ack_p50),
        ms(ack_p99),
        ms(ack_max),
        verdict(t_ack)
    );
    println!(
        "| end-to-end latency at {}/s: p50 / p99 | {} / {} | p99 ≤ 50 ms | {} |",
        s.rate,
        ms(e2e_p50),
        ms(e2e_p99),
        verdict(t_e2e)
    );
    println!(
        "| delivery throughput, backlog drain | {:.0} msg/s ({:.0} events/s × {FAN_OUT}) | | |",
        drain.delivery_rate,
        drain.delivery_rate / FAN_OUT as f64
    );
    println!(
        "| delivery during the open loop | {:.0} msg/s (offered {} msg/s) | | |",
        open.run.delivery_rate,
        s.rate * FAN_OUT
    );
    println!(
        "| peak RSS (VmHWM) closed / open loop | {:.1} / {:.1} MiB (bare: {:.1}) | ≤ 64 MB | {} |",
        mib(hwm_closed),
        mib(hwm_open),
        mib(floor.hwm),
        verdict(t_peak)
    );
    println!(
        "| idle RSS after start (VmRSS) | {:.1} MiB | ≤ 20 MB | {} |",
        mib(idle),
        verdict(t_idle)
    );
    println!();
    println!(
        "targets met: {} of 5 (ingest ratio with durability, ack p99, end-to-end p99, peak RSS, idle RSS)",
        [t_ingest, t_ack, t_e2e, t_peak, t_idle]
            .iter()
            .filter(|t| **t)
            .count()
    );
}

/// Posts one event and reads the whole answer; the status, or 0 when the request failed.
async fn post_event(client: &reqwest::Client, url: &str, body: String) -> u16 {
    match client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let _ = resp.bytes().await;
            status
        }
        Err(_) => 0,
    }
}
