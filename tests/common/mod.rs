//! Shared test support: the real printbell service started in-process on a loopback port,
//! or the real binary as a child process, plus the mock chat servers.
#![allow(dead_code)]

pub mod mock_chat;
pub mod validate;

use printbell::app::Running;
use printbell::loaded::Loaded;
use printbell::store::{Backend, Delivery, Filter};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const WEBHOOK_PATH: &str = "/webhooks/all-images";

/// A fixture event from tests/fixtures.
pub fn fixture(event_type: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("{event_type}.json"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A fixture with another event id (so it is not a duplicate) and optionally other tags.
pub fn event(event_type: &str, id: &str, tags: Option<Value>) -> Value {
    let mut e = fixture(event_type);
    e["id"] = Value::String(id.to_string());
    if let Some(t) = tags {
        e["data"]["tags"] = t;
    }
    e
}

/// A config: `[server]` on a free loopback port and `[store]` in `dir`, then `rest`.
pub fn config_text(dir: &Path, server_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nwebhook_path = \"{WEBHOOK_PATH}\"\n{server_extra}\n\n[store]\npath = \"{}\"\n\n{rest}\n",
        dir.join("printbell.db").display()
    )
}

/// The service, started in-process from a config.
pub struct Service {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub base: String,
    pub http: reqwest::Client,
}

impl Service {
    /// `rest` is everything after `[server]`/`[store]`: delivery, destinations, routes, templates.
    pub async fn start(server_extra: &str, rest: &str) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config_text(dir.path(), server_extra, rest);
        let config_path = dir.path().join("notifier.toml");
        std::fs::write(&config_path, &text).expect("write config");
        let loaded = Loaded::from_file(&config_path)
            .unwrap_or_else(|e| panic!("config invalid:\n{e}\n---\n{text}"));
        let running = printbell::app::start(loaded).await.expect("service starts");
        let base = format!("http://{}", running.addr);
        Service {
            running: Some(running),
            dir,
            config_path,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("printbell.db")
    }

    /// Posts raw bytes to the webhook path; returns status and the JSON answer (Null if none).
    pub async fn post_raw(
        &self,
        path_and_query: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path_and_query}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("service answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, event: &Value) -> (u16, Value) {
        self.post_raw(
            WEBHOOK_PATH,
            event.to_string().into_bytes(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Posts and asserts a 202 with `n` deliveries.
    pub async fn post_accepted(&self, event: &Value, n: usize) {
        let (status, body) = self.post(event).await;
        assert_eq!(status, 202, "answer: {body}");
        assert_eq!(body["deliveries"], n, "answer: {body}");
    }

    /// Every delivery in the store (read through a separate connection, as the CLI does).
    pub fn deliveries(&self) -> Vec<Delivery> {
        deliveries_in(&self.store_path())
    }

    pub async fn stop(&mut self) -> bool {
        match self.running.take() {
            Some(r) => r.stop().await,
            None => true,
        }
    }
}

pub fn deliveries_in(store: &Path) -> Vec<Delivery> {
    let path = store.to_path_buf();
    // The store's API is async and callers poll it from sync code, inside a runtime or not.
    let mut all = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let store = rt
            .block_on(printbell::store::open(&Backend::Sqlite { path }))
            .expect("open store");
        let all = Filter {
            state: None,
            destination: None,
            limit: 100_000,
        };
        rt.block_on(store.list(all)).expect("list")
    })
    .join()
    .expect("store reader");
    all.reverse();
    all
}

/// Waits until `cond` holds, polling; panics with `what` after `limit`.
pub async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut cond: F) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The printbell binary built by cargo for these tests.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_printbell")
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    run_cli_in(None, args, envs)
}

/// Like [`run_cli`], optionally in another working directory.
pub fn run_cli_in(
    dir: Option<&Path>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.args(args)
        .env_remove("PRINTBELL_CONFIG")
        .env_remove("PRINTBELL_LISTEN")
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run printbell");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary running `serve` as a child process, for crash and signal tests.
pub struct ChildService {
    pub child: Child,
    pub base: String,
    pub stderr_path: PathBuf,
}

impl ChildService {
    /// Starts `printbell serve --config FILE` on `port` and waits for /healthz.
    pub async fn start(config: &Path, port: u16, log_dir: &Path, tag: &str) -> ChildService {
        Self::start_with_env(config, port, log_dir, tag, &[]).await
    }

    pub async fn start_with_env(
        config: &Path,
        port: u16,
        log_dir: &Path,
        tag: &str,
        envs: &[(&str, &str)],
    ) -> ChildService {
        let stderr_path = log_dir.join(format!("stderr-{tag}.log"));
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let child = Command::new(bin())
            .args(["--config", config.to_str().expect("utf-8 path"), "serve"])
            .env("PRINTBELL_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .env_remove("PRINTBELL_CONFIG")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn printbell");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                panic!("printbell did not become healthy:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ChildService {
            child,
            base,
            stderr_path,
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit, at most `limit`; returns the exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for ChildService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
