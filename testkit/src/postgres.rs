//! PostgreSQL for the tests: a server, and a fresh database for each test.
//!
//! Where the server comes from, in this order:
//! 1. `PRINTBELL_TEST_DATABASE_URL`, a URL of a server the tests may create databases on
//!    (e.g. `postgres://root@127.0.0.1:5432/postgres`). If it is set but does not answer, the
//!    tests fail: a server was asked for.
//! 2. A private server: `initdb` and `pg_ctl` (from `PATH`, else `/usr/lib/postgresql/*/bin`)
//!    in a temp dir on a free loopback port, started once per test process (as the `postgres`
//!    user when the tests run as root, since the server refuses root). A watchdog shell waits
//!    on a pipe this process holds and stops the server when the process ends, however it ends.
//! 3. Neither: each PostgreSQL test passes after writing one line to stderr,
//!    `SKIPPED postgres test NAME: WHY` (straight to the stream, so it shows even when the test
//!    harness captures output). With `PRINTBELL_TEST_REQUIRE_POSTGRES=1` (CI) a skip fails
//!    the test instead.
//!
//! [`Database`] is one test's database (`CREATE DATABASE` with a unique name, dropped when
//! the value is dropped, its connections ended). [`PrivateServer`] is a server of a test's
//! own, for tests that stop and start it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The environment variable naming a server for the tests.
pub const DATABASE_URL_ENV: &str = "PRINTBELL_TEST_DATABASE_URL";
/// Set to `1` to make a skipped PostgreSQL test fail (CI).
pub const REQUIRE_ENV: &str = "PRINTBELL_TEST_REQUIRE_POSTGRES";
/// What a skipped test writes to stderr, before its name and the reason.
pub const SKIP_MARK: &str = "SKIPPED postgres test";

/// Says why `test` does not run; fails it instead under `PRINTBELL_TEST_REQUIRE_POSTGRES=1`.
pub fn skip(test: &str, why: &str) {
    if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: PostgreSQL is required ({REQUIRE_ENV}=1), but {why}");
    }
    let _ = writeln!(std::io::stderr(), "{SKIP_MARK} {test}: {why}");
}

/// A server the tests can create databases on: its URL (connecting to its `postgres`
/// database as a superuser).
#[derive(Debug, Clone)]
pub struct Server {
    pub admin_url: String,
}

/// The server for the tests of this process (see the module docs), or why there is none.
pub fn server() -> Result<&'static Server, String> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    static PRIVATE: OnceLock<PrivateServer> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
                if !url.is_empty() {
                    return Ok(Server { admin_url: url });
                }
            }
            let private =
                PrivateServer::start().map_err(|e| format!("no {DATABASE_URL_ENV}, and {e}"))?;
            let server = private.server();
            // Kept for the whole process; its watchdog stops it at exit.
            let _ = PRIVATE.set(private);
            Ok(server)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// A fresh database for `test` on [`server`], or `None` (after [`skip`]) when there is no
/// server.
pub async fn database(test: &str) -> Option<Database> {
    match server() {
        Ok(server) => Some(server.database().await),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// A server of `test`'s own, or `None` (after [`skip`]) when one cannot be started here.
pub fn private_server(test: &str) -> Option<PrivateServer> {
    match PrivateServer::start() {
        Ok(s) => Some(s),
        Err(why) => {
            skip(
                test,
                &format!("{why} (this test stops a server of its own)"),
            );
            None
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server {url}: {e:?}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let mut u = url::Url::parse(url).expect("the test server's URL parses");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

impl Server {
    /// The pid of the server process (the postmaster), when it runs on this machine: the
    /// parent of the backend that answers a connection.
    pub async fn server_pid(&self) -> Option<u32> {
        let client = connect(&self.admin_url).await;
        let row = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .ok()?;
        let backend: i32 = row.get(0);
        crate::host::server_of_backend(u32::try_from(backend).ok()?)
    }

    /// Creates a database with a name no other test uses.
    pub async fn database(&self) -> Database {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "printbell_test_{}_{}_{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let admin = connect(&self.admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e:?}"));
        Database {
            url: with_database(&self.admin_url, &name),
            admin_url: self.admin_url.clone(),
            name,
        }
    }
}

/// One test's database; dropped (with any connection to it ended) when this is dropped.
#[derive(Debug)]
pub struct Database {
    /// Where printbell finds it: `[store] url`.
    pub url: String,
    pub name: String,
    admin_url: String,
}

impl Database {
    /// The event ids and deliveries per event stored in this database, for the benchmark's
    /// durability check (the same query as [`crate::store::stored`] on SQLite).
    pub async fn stored(&self) -> crate::store::Stored {
        let client = connect(&self.url).await;
        let rows = client
            .query(
                "SELECT event_id, COUNT(*) FROM deliveries GROUP BY event_id",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("reading deliveries: {e:?}"));
        let deliveries = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let rows = client
            .query("SELECT id FROM events", &[])
            .await
            .unwrap_or_else(|e| panic!("reading events: {e:?}"));
        let events = rows.iter().map(|r| r.get(0)).collect();
        crate::store::Stored { events, deliveries }
    }

    /// Runs `sql` (simple query protocol) and returns the first column of every row as text.
    pub async fn query(&self, sql: &str) -> Vec<Option<String>> {
        let client = connect(&self.url).await;
        let messages = client
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .ok()?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            let _ = writeln!(
                std::io::stderr(),
                "could not drop test database {}",
                self.name
            );
        }
    }
}

/// A PostgreSQL server in a temp dir, stopped (and its dir removed) when dropped or when the
/// test process ends.
pub struct PrivateServer {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// `Some("postgres")` when the tests run as root.
    user: Option<String>,
    /// Closing it (drop, or the end of the process) makes the watchdog stop the server.
    watchdog_stdin: Option<ChildStdin>,
    watchdog: Child,
}

impl PrivateServer {
    /// initdb + pg_ctl start, waiting until it accepts connections.
    pub fn start() -> Result<PrivateServer, String> {
        let bin =
            server_bin_dir().ok_or("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin")?;
        let user = running_as_root().then(|| "postgres".to_string());
        let dir = tempfile::Builder::new()
            .prefix("printbell-pg-")
            .tempdir()
            .map_err(|e| format!("temp dir: {e}"))?
            .keep();
        if let Some(u) = &user {
            let ok = Command::new("chown")
                .args(["-R", u])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!(
                    "running as root, and cannot hand a temp dir to the `{u}` user"
                ));
            }
        }
        let port = crate::free_port();
        let mut server = PrivateServer {
            port,
            watchdog: spawn_watchdog(&bin, &dir, user.as_deref())?,
            watchdog_stdin: None,
            dir,
            bin,
            user,
        };
        server.watchdog_stdin = server.watchdog.stdin.take();
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        )?;
        server.pg_ctl_start()?;
        Ok(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs one of the server's programs (as the `postgres` user when root); its output goes
    /// to `dir/NAME.log`.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let log = self.dir.join(format!("{program}.log"));
        let out = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let status = cmd
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        if status.success() {
            Ok(())
        } else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Err(format!("{program} {args:?} failed ({status}):\n{text}"))
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        // fsync off: the tests crash printbell, never this server, and it is much faster.
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=200 -c fsync=off",
            self.port,
            path_str(&self.dir)
        );
        let log = self.dir.join("server.log");
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// The server as the tests use it.
    pub fn server(&self) -> Server {
        Server {
            admin_url: format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
        }
    }

    /// `pg_ctl stop` (fast: connections are ended, committed work is kept).
    pub fn stop(&self) {
        let data = self.data();
        self.run(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "fast", "-w", "stop"],
        )
        .expect("pg_ctl stop");
    }

    /// `pg_ctl start` again, on the same port.
    pub fn start_again(&self) {
        self.pg_ctl_start().expect("pg_ctl start");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        // The watchdog stops the server and removes the dir once its stdin closes.
        drop(self.watchdog_stdin.take());
        let _ = self.watchdog.wait();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Waits for its stdin to close (the test process ended or dropped the server), then stops
/// the server at once and removes its dir.
fn spawn_watchdog(bin: &Path, dir: &Path, user: Option<&str>) -> Result<Child, String> {
    let script = format!(
        "read _; '{}' -D '{}/data' -m immediate -w stop >/dev/null 2>&1; rm -rf '{}'",
        bin.join("pg_ctl").display(),
        dir.display(),
        dir.display()
    );
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--", "sh", "-c", &script]);
            c
        }
        None => {
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        }
    };
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server's watchdog: {e}"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Where `initdb` and `pg_ctl` are: `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
fn server_bin_dir() -> Option<PathBuf> {
    let has_both = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for d in std::env::split_paths(&path) {
            if has_both(&d) {
                // A symlink on PATH (Debian's /usr/local/bin) points into the real bin dir.
                let real = std::fs::canonicalize(d.join("initdb"))
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf));
                return Some(real.filter(|r| has_both(r)).unwrap_or(d));
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has_both(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}
