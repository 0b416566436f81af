//! The store as an operator meets it: one `serve` per SQLite file (the lock beside it), open
//! errors that say why, and readiness that follows failed writes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testkit::{bin, config_text, free_port, run_cli, ChildService, Proc};

const WAIT: Duration = Duration::from_secs(20);
const CONSOLE: &str = "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n";

fn write_config(dir: &Path, rest: &str) -> PathBuf {
    let config = dir.join("notifier.toml");
    std::fs::write(&config, config_text(dir, "", rest)).expect("write config");
    config
}

/// `printbell --config CONFIG serve` on `port`, expected to end by itself: its exit code
/// (None: still running after 20 s, then killed) and its stderr.
async fn serve_to_the_end(config: &Path, port: u16, log: &Path) -> (Option<i32>, String) {
    let stderr = std::fs::File::create(log).expect("log file");
    let child = Command::new(bin())
        .args(["--config", config.to_str().expect("utf-8"), "serve"])
        .env("PRINTBELL_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PRINTBELL_CONFIG")
        .env_remove("PRINTBELL_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn printbell");
    let mut proc = Proc::new(child);
    let code = proc.wait(WAIT).await;
    (code, std::fs::read_to_string(log).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_serve_on_the_same_store_is_refused_naming_the_first_and_a_crash_frees_it() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), CONSOLE);
    let mut first = ChildService::start(&config, free_port(), dir.path(), "first").await;

    let (code, stderr) =
        serve_to_the_end(&config, free_port(), &dir.path().join("second.log")).await;
    assert_eq!(
        code,
        Some(2),
        "a second serve must exit 2 at once:\n{stderr}"
    );
    let pid = format!("pid {}", first.pid());
    assert!(
        stderr.contains(&pid) && stderr.contains("printbell.db"),
        "the refusal names the store and the other process ({pid}):\n{stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one sentence, no panic or dump:\n{stderr}"
    );

    // The CLI is not a second serve: it works on the store while serve runs.
    let config_arg = config.to_str().expect("utf-8");
    let (code, out, err) = run_cli(&["--config", config_arg, "deliveries", "list"], &[]);
    assert_eq!(code, 0, "deliveries list while serve runs:\n{out}\n{err}");

    // kill -9: no clean exit, yet the OS released the lock with the process.
    first.kill();
    let lock_file = dir.path().join("printbell.db.lock");
    assert!(
        std::fs::read_to_string(&lock_file)
            .expect("lock file")
            .contains(&first.pid().to_string()),
        "a crashed serve leaves its pid behind"
    );
    let mut next = ChildService::start(&config, free_port(), dir.path(), "next").await;
    assert_eq!(
        std::fs::read_to_string(&lock_file)
            .expect("lock file")
            .trim(),
        next.pid().to_string(),
        "the new serve holds the lock"
    );
    next.signal("TERM");
    assert_eq!(next.wait(WAIT).await, Some(0));
    assert_eq!(
        std::fs::read_to_string(&lock_file).expect("lock file"),
        "",
        "a clean stop leaves no pid"
    );
}
