//! Child processes: the real printbell binary running `serve` ([`ChildService`]), for crash,
//! signal and benchmark runs, and [`Proc`], a child that is killed (SIGKILL) and reaped when
//! dropped, so a failing test or bench never leaves one behind. Plus [`free_port`] for the
//! ports they listen on.

use crate::cli::bin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (SIGKILL) and reaped when dropped, unless it has already exited.
pub struct Proc {
    child: Child,
}

impl Proc {
    pub fn new(child: Child) -> Proc {
        Proc { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The std handle, e.g. to take its stdin / stdout pipes.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends a signal (`TERM`, `HUP`, `KILL`, `STOP`, `CONT` …) with kill(1); panics if that fails.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// SIGKILL unless it has exited already, then reap it.
    pub fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    /// Waits for exit, at most `limit`; returns the exit code (None: still running, or killed
    /// by a signal).
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
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How to start `printbell --config FILE serve` as a child.
pub struct Launch<'a> {
    pub config: &'a Path,
    /// Listen port, given as `PRINTBELL_LISTEN=127.0.0.1:PORT`.
    pub port: u16,
    /// Where its stderr (the log) goes.
    pub stderr_path: PathBuf,
    /// `RUST_LOG` for the child.
    pub rust_log: &'a str,
    /// More environment, applied last.
    pub envs: &'a [(&'a str, &'a str)],
}

/// The binary running `serve` as a child process, for crash and signal tests.
pub struct ChildService {
    pub child: Proc,
    pub base: String,
    pub stderr_path: PathBuf,
}

impl ChildService {
    /// Starts `printbell serve --config FILE` on `port` and waits for /healthz.
    pub async fn start(config: &Path, port: u16, log_dir: &Path, tag: &str) -> ChildService {
        Self::start_with_env(config, port, log_dir, tag, &[]).await
    }

    /// Like [`ChildService::start`] with more environment; the log is
    /// `log_dir/stderr-{tag}.log`, at `RUST_LOG=info`.
    pub async fn start_with_env(
        config: &Path,
        port: u16,
        log_dir: &Path,
        tag: &str,
        envs: &[(&str, &str)],
    ) -> ChildService {
        Self::launch(Launch {
            config,
            port,
            stderr_path: log_dir.join(format!("stderr-{tag}.log")),
            rust_log: "info",
            envs,
        })
        .await
    }

    /// Starts the child as `how` says and waits (up to 20 s) until /healthz answers 200.
    /// Its stdin and stdout are /dev/null; `PRINTBELL_CONFIG`, `PRINTBELL_LOG_FORMAT` and
    /// `PRINTBELL_STORE_URL` are removed unless `envs` sets them.
    pub async fn launch(how: Launch<'_>) -> ChildService {
        let stderr = std::fs::File::create(&how.stderr_path).expect("log file");
        let child = Command::new(bin())
            .args([
                "--config",
                how.config.to_str().expect("utf-8 path"),
                "serve",
            ])
            .env("PRINTBELL_LISTEN", format!("127.0.0.1:{}", how.port))
            .env("RUST_LOG", how.rust_log)
            .env_remove("PRINTBELL_CONFIG")
            .env_remove("PRINTBELL_LOG_FORMAT")
            .env_remove("PRINTBELL_STORE_URL")
            .envs(how.envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn printbell");
        let child = Proc::new(child);
        let base = format!("http://127.0.0.1:{}", how.port);
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                let log = std::fs::read_to_string(&how.stderr_path).unwrap_or_default();
                panic!("printbell did not become healthy:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ChildService {
            child,
            base,
            stderr_path: how.stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Sends a signal with kill(1), see [`Proc::signal`].
    pub fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }

    /// SIGKILL and reap, see [`Proc::kill`].
    pub fn kill(&mut self) {
        self.child.kill();
    }

    /// Waits for exit, at most `limit`; returns the exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        self.child.wait(limit).await
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}
