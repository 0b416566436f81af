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

/// Whether this process runs as root, for whom permission bits do not bite.
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Makes `path` unwritable for the printbell child in the way that works for this user: mode
/// bits (0555 / 0444) for a user, the immutable attribute (`chattr +i`) for root, whom mode
/// bits do not stop. Undone on drop. `None`, with why, when neither works here.
struct Unwritable {
    path: PathBuf,
    immutable: bool,
    mode: u32,
}

impl Unwritable {
    fn make(path: &Path) -> Result<Unwritable, String> {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| e.to_string())?
            .permissions()
            .mode();
        if running_as_root() {
            let ok = Command::new("chattr")
                .args(["+i", path.to_str().expect("utf-8")])
                .output()
                .map_err(|e| format!("running as root, and chattr is not there ({e})"))?;
            if !ok.status.success() {
                return Err(format!(
                    "running as root (mode bits do not stop it), and chattr +i failed: {}",
                    String::from_utf8_lossy(&ok.stderr).trim()
                ));
            }
            return Ok(Unwritable {
                path: path.to_path_buf(),
                immutable: true,
                mode,
            });
        }
        let ro = if path.is_dir() { 0o555 } else { 0o444 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(ro))
            .map_err(|e| e.to_string())?;
        Ok(Unwritable {
            path: path.to_path_buf(),
            immutable: false,
            mode,
        })
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if self.immutable {
            let _ = Command::new("chattr")
                .args(["-i", self.path.to_str().unwrap_or_default()])
                .status();
        }
        let _ = std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(self.mode));
    }
}

/// `serve` exits 2 and `check` exits 1, both naming `db` and saying `why`.
async fn serve_and_check_refuse(config: &Path, db: &Path, why: &str) {
    let log = config.with_extension("serve.log");
    let (code, stderr) = serve_to_the_end(config, free_port(), &log).await;
    let db = db.display().to_string();
    assert_eq!(code, Some(2), "serve must refuse the store:\n{stderr}");
    assert!(
        stderr.contains(&db) && stderr.contains(why),
        "serve names {db} and says `{why}`:\n{stderr}"
    );
    assert!(
        !stderr.contains("unable to open database file"),
        "SQLite's words alone say nothing:\n{stderr}"
    );
    let (code, out, err) = run_cli(&["--config", config.to_str().expect("utf-8"), "check"], &[]);
    assert_eq!(
        code, 1,
        "check reports the store as a problem:\n{out}\n{err}"
    );
    assert!(
        err.contains(&db) && err.contains(why) && err.contains("is invalid"),
        "check names {db} and says `{why}`:\n{err}"
    );
}

fn config_with_store(dir: &Path, db: &Path) -> PathBuf {
    let config = dir.join("notifier.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n{CONSOLE}",
        db.display()
    );
    std::fs::write(&config, text).expect("write config");
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_in_a_missing_directory_is_named_with_why() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("not-there").join("printbell.db");
    let config = config_with_store(dir.path(), &db);
    serve_and_check_refuse(&config, &db, "does not exist").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_in_an_unwritable_directory_is_named_with_why() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let db = data.join("printbell.db");
    let config = config_with_store(dir.path(), &db);
    let guard = match Unwritable::make(&data) {
        Ok(g) => g,
        Err(why) => {
            println!("SKIPPED unwritable store directory: {why}");
            return;
        }
    };
    serve_and_check_refuse(&config, &db, "is not writable").await;
    drop(guard);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_store_file_is_refused_instead_of_opened_read_only() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("printbell.db");
    let config = config_with_store(dir.path(), &db);
    // A store that exists and is up to date: SQLite would open it read-only without a word.
    let mut first = ChildService::start(&config, free_port(), dir.path(), "create").await;
    first.signal("TERM");
    assert_eq!(first.wait(WAIT).await, Some(0));
    let guard = match Unwritable::make(&db) {
        Ok(g) => g,
        Err(why) => {
            println!("SKIPPED read-only store file: {why}");
            return;
        }
    };
    serve_and_check_refuse(&config, &db, "read-only").await;
    drop(guard);
}

/// `GET base/readyz`: status and body.
async fn readyz(http: &reqwest::Client, base: &str) -> (u16, String) {
    let r = http
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz answers");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Sets the soft file-size limit (RLIMIT_FSIZE) of process `pid`, in bytes or "unlimited".
fn set_file_size_limit(pid: u32, limit: &str) -> Result<(), String> {
    let out = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}:")])
        .output()
        .map_err(|e| format!("prlimit (util-linux) is not there: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "prlimit failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The size of `path` once it stopped changing for 300 ms.
async fn settled_size(path: &Path) -> u64 {
    let size = || std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let mut last = size();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = size();
        if now == last {
            return now;
        }
        last = now;
    }
}

/// A real write failure, caused from outside: the file-size limit of the running `serve` is
/// lowered to just above its WAL, so SQLite's write of an event's pages fails in the kernel
/// (EFBIG on the WAL file, SQLite's "disk I/O error"), as on a full disk, while readiness' one
/// row still fits. Before, `/readyz` answered 200 there while every event got 503.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_after_a_write_failed_until_a_write_succeeds() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), CONSOLE);
    let port = free_port();
    let log = dir.path().join("serve.log");
    // SIGXFSZ ignored (as a shell passes it on), so a write past the limit fails instead of
    // killing the process.
    let child = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; exec \"$@\"",
            "sh",
            bin(),
            "--config",
            config.to_str().expect("utf-8"),
            "serve",
        ])
        .env("PRINTBELL_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("PRINTBELL_CONFIG")
        .env_remove("PRINTBELL_STORE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let mut serve = Proc::new(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    while !http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status() == 200)
    {
        assert!(started.elapsed() < WAIT, "serve did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let post = |event: serde_json::Value| {
        let (http, url) = (http.clone(), format!("{base}{}", testkit::WEBHOOK_PATH));
        async move {
            let r = http
                .post(url)
                .body(event.to_string())
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let small = |id: &str| testkit::event("print.completed", id, None);
    assert_eq!(post(small("small-1")).await.0, 202);
    assert_eq!(readyz(&http, &base).await.0, 200);

    let wal = settled_size(&dir.path().join("printbell.db-wal")).await;
    // Room for three more WAL frames (page + header): the probe's row, not an event of pages.
    if let Err(why) = set_file_size_limit(serve.pid(), &(wal + 3 * 4120).to_string()) {
        println!("SKIPPED readyz after a failed write: {why}");
        return;
    }
    let mut big = small("big-1");
    big["data"]["prompt"] = serde_json::Value::String("a misty forest ".repeat(20_000));
    let (status, body) = post(big).await;
    assert_eq!(status, 503, "the event cannot be stored: {body}");
    let (status, body) = readyz(&http, &base).await;
    assert_eq!(status, 503, "readiness follows the failed write: {body}");
    assert!(body.contains("write failed"), "{body}");

    set_file_size_limit(serve.pid(), "unlimited").expect("limit lifted");
    assert_eq!(
        readyz(&http, &base).await.0,
        503,
        "the probe alone does not prove that events fit"
    );
    let (status, body) = post(small("small-2")).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = readyz(&http, &base).await;
    assert_eq!(status, 200, "a write succeeded, ready again: {body}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("the store cannot take writes")
            && log_text.contains("takes writes again"),
        "both turns are logged:\n{log_text}"
    );
    serve.signal("TERM");
    assert_eq!(serve.wait(WAIT).await, Some(0));
}

/// `serve` listens for SIGTERM before it answers /healthz: a stop right after start (a
/// supervisor's restart, a test) is graceful, exit 0, not the signal's default kill.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_right_after_health_answers_stops_gracefully() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), CONSOLE);
    for round in 0..10 {
        let tag = format!("quick-{round}");
        let mut serve = ChildService::start(&config, free_port(), dir.path(), &tag).await;
        serve.signal("TERM");
        assert_eq!(
            serve.wait(WAIT).await,
            Some(0),
            "round {round}: exit 0 after an early SIGTERM:\n{}",
            serve.log()
        );
    }
}
