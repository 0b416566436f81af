//! The PostgreSQL store (SPEC §2 `[store] url`, §5.1): the pipeline on it, several replicas
//! sharing one database, a replica killed while it holds a destination, the database going
//! away and coming back, replicas starting together on an empty database.
//!
//! Each test has a database of its own on the server `testkit::postgres` finds
//! (`PRINTBELL_TEST_DATABASE_URL`, else a private server started with initdb + pg_ctl); with
//! neither, the tests pass after one `SKIPPED postgres test …` line on stderr, and fail under
//! `PRINTBELL_TEST_REQUIRE_POSTGRES=1` (CI). The test that stops the database always has a
//! private server of its own.

use crate::delivery::{all_logs, first_delivery_order, kill_9, mark, wait_all_delivered};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testkit::mock_chat::{describe_all, MockChat, Received, Reply};
use testkit::postgres::{self as pg, Database};
use testkit::{config_text_on, event, free_port, ChildService, Service, TestStore, WEBHOOK_PATH};

const D1: &str = "/api/webhooks/2001/pg-token-one";
const D2: &str = "/api/webhooks/2002/pg-token-two";
const WAIT: Duration = Duration::from_secs(30);

/// An existing integration test, run on a database of its own.
macro_rules! on_postgres {
    ($($name:ident => $case:path;)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            let Some(db) = pg::database(stringify!($name)).await else {
                return;
            };
            $case(&store(&db)).await;
        }
    )*};
}

on_postgres! {
    completion_shows_images_on_postgres => crate::pipeline::completion_shows_images;
    a_duplicate_is_not_sent_again_on_postgres => crate::pipeline::duplicate_is_not_sent_again;
    retries_with_backoff_on_postgres => crate::delivery::retried_with_backoff;
    dead_then_retried_from_the_cli_on_postgres => crate::delivery::dead_then_retried_from_the_cli;
    quick_events_arrive_in_order_on_postgres => crate::delivery::in_order;
    a_live_message_is_edited_to_completed_on_postgres => crate::live::one_message_edited_to_completed;
    a_live_failure_edits_and_pings_on_postgres => crate::live::failure_edits_and_pings;
    six_failures_in_one_interval_page_twice_on_postgres => crate::storms::six_failures_page_twice;
}

fn store(db: &Database) -> TestStore {
    TestStore::Postgres {
        url: db.url.clone(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_queue_operation_behaves_alike_on_both_backends() {
    let dir = tempfile::tempdir().expect("temp dir");
    testkit::store::check_every_operation(&TestStore::Sqlite.backend(dir.path()), false).await;
    let test = "every_queue_operation_behaves_alike_on_both_backends";
    let Some(db) = pg::database(test).await else {
        return;
    };
    let backend = store(&db).backend(dir.path());
    testkit::store::check_every_operation(&backend, true).await;
    // Opened again: the schema is up to date and stays as it is.
    testkit::store::check_every_operation(&backend, true).await;
    assert_eq!(
        db.query("SELECT version FROM schema_version").await,
        [Some("3".to_string())]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_the_logs_show_the_url_without_its_password() {
    let test = "check_and_the_logs_show_the_url_without_its_password";
    let Some(db) = pg::database(test).await else {
        return;
    };
    // The server trusts any password; the URL carries one to show it never appears.
    let mut url = reqwest::Url::parse(&db.url).expect("url");
    url.set_password(Some("pw-s3cret")).expect("password");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("notifier.toml");
    let rest = "[destinations.out]\nkind = \"console\"\n\n[[routes]]\nto = [\"out\"]\n";
    let on = TestStore::Postgres {
        url: url.to_string(),
    };
    std::fs::write(&config, config_text_on(&on, dir.path(), "", rest)).expect("config");
    let path = config.to_str().expect("utf-8");
    let (code, out, err) = testkit::run_cli(&["--config", path, "check"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains(":***@127.0.0.1:"), "{out}");
    assert!(!out.contains("pw-s3cret") && !err.contains("pw-s3cret"));

    // The environment variable wins over the file; a bad one is named, not shown.
    let bad = format!("{url}?sslmode=always");
    let (code, out, err) = testkit::run_cli(
        &["--config", path, "check"],
        &[("PRINTBELL_STORE_URL", &bad)],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        err.contains("PRINTBELL_STORE_URL is not a valid PostgreSQL URL"),
        "{err}"
    );
    assert!(
        !out.contains("pw-s3cret") && !err.contains("pw-s3cret"),
        "{err}"
    );

    let mut child = ChildService::start(&config, free_port(), dir.path(), "pw").await;
    let (status, _) = post(
        &client(),
        &child.base,
        &event("print.created", "pw-1", None),
    )
    .await;
    assert_eq!(status, 202);
    let (code, out, err) = testkit::run_cli(&["--config", path, "deliveries", "list"], &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("out"), "{out}");
    child.kill();
    let log = child.log();
    assert!(
        log.contains(":***@127.0.0.1:"),
        "the store is named in the log:\n{log}"
    );
    assert!(!log.contains("pw-s3cret"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sslmode_is_honoured() {
    let test = "sslmode_is_honoured";
    let Some(db) = pg::database(test).await else {
        return;
    };
    let with = |mode: &str| TestStore::Postgres {
        url: format!("{}?sslmode={mode}", db.url),
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let server_has_tls = db.query("SHOW ssl").await == [Some("on".to_string())];
    // prefer and disable always connect; require only to a server with TLS.
    for mode in ["prefer", "disable"] {
        testkit::store::deliveries_in(&with(mode).backend(dir.path()));
    }
    let opened = testkit::store::try_open(&with("require").backend(dir.path())).await;
    assert_eq!(
        opened.is_ok(),
        server_has_tls,
        "sslmode=require, server ssl {server_has_tls}: {opened:?}"
    );
    if server_has_tls {
        // A service on require really is encrypted.
        let rest = "[destinations.out]\nkind = \"console\"\n\n[[routes]]\nto = [\"out\"]\n";
        let svc = Service::start_on(&with("require"), "", rest).await;
        let r = svc.http.get(format!("{}/readyz", svc.base)).send().await;
        assert_eq!(r.expect("readyz").status(), 200);
        let tls = db
            .query(&format!(
                "SELECT bool_and(s.ssl)::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
                 WHERE a.datname = '{}' AND a.application_name = 'printbell'",
                db.name
            ))
            .await;
        assert_eq!(tls, [Some("true".to_string())]);
    }
}

// ---------------------------------------------------------------------------------------------
// Several replicas on one database
// ---------------------------------------------------------------------------------------------

/// Two Discord destinations (one message per event) and a route to both.
fn two_destinations(mock: &MockChat) -> String {
    format!(
        "[destinations.d1]\nkind = \"discord\"\nmode = \"each\"\nurl = \"{}\"\n\n\
         [destinations.d2]\nkind = \"discord\"\nmode = \"each\"\nurl = \"{}\"\n\n\
         [[routes]]\nto = [\"d1\", \"d2\"]\n",
        mock.url(D1),
        mock.url(D2)
    )
}

/// Event `i` of a series, told apart in the posted body by its generation id (`zqNNN`).
fn ev(series: &str, i: usize) -> Value {
    crate::delivery::ev(series, i)
}

/// Replicas of one config on one database, each a child process on its own port.
struct Replicas {
    dir: tempfile::TempDir,
    config: PathBuf,
    children: Vec<ChildService>,
}

impl Replicas {
    fn config(db: &Database, rest: &str) -> Replicas {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("notifier.toml");
        std::fs::write(&config, config_text_on(&store(db), dir.path(), "", rest))
            .expect("write config");
        Replicas {
            dir,
            config,
            children: Vec::new(),
        }
    }

    async fn start(&mut self, n: usize) {
        for _ in 0..n {
            let tag = format!("replica{}", self.children.len());
            let child = ChildService::start(&self.config, free_port(), self.dir.path(), &tag);
            self.children.push(child.await);
        }
    }

    fn logs(&self) -> String {
        all_logs(self.dir.path())
    }
}

/// No pooled connections: a replica behind a port may die between requests.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Posts `e` to the replica at `base`: status (0 when it did not answer) and the JSON answer.
async fn post(http: &reqwest::Client, base: &str, e: &Value) -> (u16, Value) {
    let sent = http
        .post(format!("{base}{WEBHOOK_PATH}"))
        .header("content-type", "application/json")
        .body(e.to_string())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Every 2xx request on `path`, as event numbers in arrival order.
fn delivered(mock: &MockChat, path: &str) -> Vec<usize> {
    mock.ok_requests_to(path).iter().filter_map(mark).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn three_replicas_deliver_every_event_once_in_the_order_acknowledged() {
    let Some(db) =
        pg::database("three_replicas_deliver_every_event_once_in_the_order_acknowledged").await
    else {
        return;
    };
    let mock = MockChat::start().await;
    let mut replicas = Replicas::config(&db, &two_destinations(&mock));
    replicas.start(3).await;
    const N: usize = 300;
    let t0 = Instant::now();
    // Three senders at once, one per replica, each posting its share in turn (round-robin
    // overall): an event acknowledged before another was sent must be delivered before it.
    let mut senders = Vec::new();
    for (r, child) in replicas.children.iter().enumerate() {
        let base = child.base.clone();
        senders.push(tokio::spawn(async move {
            let http = client();
            let mut times = Vec::new();
            for i in (r..N).step_by(3) {
                let sent = Instant::now();
                let (status, body) = post(&http, &base, &ev("rr", i)).await;
                assert_eq!(status, 202, "event {i}: {body}");
                times.push((i, sent, Instant::now()));
            }
            times
        }));
    }
    let mut acked: Vec<(usize, Instant, Instant)> = Vec::new();
    for s in senders {
        acked.extend(s.await.expect("sender"));
    }
    let posted = t0.elapsed();
    for path in [D1, D2] {
        wait_all_delivered(&mock, path, N, WAIT).await;
    }
    let all = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in [D1, D2] {
        let got = delivered(&mock, path);
        let (order, dups) = first_delivery_order(&mock.ok_requests_to(path));
        assert_eq!(dups, 0, "{path}: every event exactly once: {got:?}");
        assert_eq!(order.len(), N);
        let position: HashMap<usize, usize> =
            order.iter().enumerate().map(|(p, i)| (*i, p)).collect();
        for (a, _, a_acked) in &acked {
            for (b, b_sent, _) in &acked {
                if a_acked < b_sent {
                    assert!(
                        position[a] < position[b],
                        "{path}: event {a} was acknowledged before {b} was sent, but delivered after it"
                    );
                }
            }
        }
    }
    let rows = testkit::store::deliveries_in(&store(&db).backend(replicas.dir.path()));
    assert_eq!(rows.len(), 2 * N);
    assert!(rows.iter().all(|d| d.state == "done"));
    let sent_by = |tag: &str| {
        std::fs::read_to_string(replicas.dir.path().join(format!("stderr-{tag}.log")))
            .unwrap_or_default()
            .matches("delivered")
            .count()
    };
    eprintln!(
        "{N} events to 2 destinations through 3 replicas: posted in {posted:?}, all delivered after {all:?}; posts per replica {:?}",
        ["replica0", "replica1", "replica2"].map(sent_by)
    );
    assert!(
        !replicas.logs().contains("pg-token"),
        "no webhook token in a log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_event_posted_to_two_replicas_at_once_is_stored_once() {
    let test = "one_event_posted_to_two_replicas_at_once_is_stored_once";
    let Some(db) = pg::database(test).await else {
        return;
    };
    let mock = MockChat::start().await;
    let mut replicas = Replicas::config(&db, &two_destinations(&mock));
    replicas.start(2).await;
    let (a, b) = (&replicas.children[0].base, &replicas.children[1].base);
    let http = client();
    const N: usize = 20;
    for i in 0..N {
        let e = ev("twice", i);
        let ((sa, ba), (sb, bb)) = tokio::join!(post(&http, a, &e), post(&http, b, &e));
        let mut answers = [(sa, ba), (sb, bb)];
        answers.sort_by_key(|(s, _)| *s);
        assert_eq!(
            answers.clone().map(|(s, _)| s),
            [200, 202],
            "event {i}: {answers:?}"
        );
        assert_eq!(answers[0].1["duplicate"], json!(true));
        assert_eq!(answers[1].1["deliveries"], json!(2));
    }
    for path in [D1, D2] {
        wait_all_delivered(&mock, path, N, WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in [D1, D2] {
        let (order, dups) = first_delivery_order(&mock.ok_requests_to(path));
        assert_eq!((order, dups), ((0..N).collect(), 0), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_lease_holder_mid_burst_loses_nothing_and_keeps_order() {
    let Some(db) =
        pg::database("kill_9_of_the_lease_holder_mid_burst_loses_nothing_and_keeps_order").await
    else {
        return;
    };
    let mock = MockChat::start().await;
    // Slow enough that the queue is long when the holder dies.
    for path in [D1, D2] {
        mock.set_default(path, Reply::delay(Duration::from_millis(25), Reply::Auto));
    }
    let mut replicas = Replicas::config(&db, &two_destinations(&mock));
    replicas.start(3).await;
    const N: usize = 150;
    let bases: Vec<String> = replicas.children.iter().map(|c| c.base.clone()).collect();
    let (dead_tx, dead_rx) = tokio::sync::watch::channel(None::<String>);
    // One sender, round-robin over the replicas alive; a refused or unanswered post goes to
    // the next one (a repeat there is `200 duplicate`, as good as a 202).
    let sender = tokio::spawn(async move {
        let http = client();
        let mut next = 0;
        for i in 0..N {
            let e = ev("kill", i);
            let mut tries = 0;
            loop {
                let base = &bases[next % bases.len()];
                next += 1;
                if dead_rx.borrow().as_deref() == Some(base.as_str()) {
                    continue;
                }
                let (status, body) = post(&http, base, &e).await;
                match status {
                    202 | 200 => break,
                    _ => {
                        tries += 1;
                        assert!(tries < 20, "event {i}: no replica took it: {status} {body}");
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    // The holder of d1's lease dies once a part of the burst is out.
    mock.wait_for_ok(D1, 30, WAIT).await;
    let owner = db
        .query("SELECT owner FROM leases WHERE destination = 'd1'")
        .await;
    let pid: u32 = owner
        .first()
        .and_then(|o| o.as_deref())
        .and_then(|o| o.split('/').nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("d1's lease names its holder: {owner:?}"));
    let k = replicas
        .children
        .iter()
        .position(|c| c.pid() == pid)
        .expect("the holder is one of the replicas");
    let _ = dead_tx.send(Some(replicas.children[k].base.clone()));
    let (killed, _) = kill_9(&mut replicas.children[k]).await;
    let before = mock.ok_requests_to(D1).len();
    sender.await.expect("sender");
    for path in [D1, D2] {
        wait_all_delivered(&mock, path, N, Duration::from_secs(45)).await;
    }
    let recovered = killed.elapsed();
    assert!(
        recovered < Duration::from_secs(45),
        "everything delivered {recovered:?} after the kill"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for path in [D1, D2] {
        let oks = mock.ok_requests_to(path);
        let (order, dups) = first_delivery_order(&oks);
        assert_eq!(
            order,
            (0..N).collect::<Vec<_>>(),
            "{path}\n{}",
            describe_all(&oks)
        );
        assert!(dups <= 16, "{path}: {dups} duplicates");
        eprintln!("{path}: {dups} duplicate(s)");
    }
    // A survivor took d1 over, and nothing is left pending.
    let gap = takeover_gap(&mock.ok_requests_to(D1), killed);
    eprintln!(
        "replica {k} (pid {pid}) killed holding d1 after {before} of {N} posts; d1 resumed {gap:?} after the kill; all delivered {recovered:?} after it"
    );
    let backend = store(&db).backend(replicas.dir.path());
    testkit::eventually(WAIT, "every delivery done", || {
        testkit::store::deliveries_in(&backend)
            .iter()
            .all(|d| d.state == "done")
    })
    .await;
    assert_eq!(testkit::store::deliveries_in(&backend).len(), 2 * N);
}

/// How long after `killed` the first post arrived.
fn takeover_gap(oks: &[Received], killed: Instant) -> Duration {
    oks.iter()
        .find(|r| r.at > killed)
        .map(|r| r.at - killed)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_starting_at_once_on_an_empty_database_both_come_up() {
    let Some(db) =
        pg::database("two_replicas_starting_at_once_on_an_empty_database_both_come_up").await
    else {
        return;
    };
    let mock = MockChat::start().await;
    let replicas = Replicas::config(&db, &two_destinations(&mock));
    let (a, b) = tokio::join!(
        ChildService::start(&replicas.config, free_port(), replicas.dir.path(), "a"),
        ChildService::start(&replicas.config, free_port(), replicas.dir.path(), "b"),
    );
    let http = client();
    for (i, child) in [&a, &b].into_iter().enumerate() {
        let r = http.get(format!("{}/readyz", child.base)).send().await;
        assert_eq!(r.expect("readyz").status(), 200, "{}", child.log());
        let (status, body) = post(&http, &child.base, &ev("start", i)).await;
        assert_eq!(status, 202, "{body}");
    }
    assert_eq!(
        db.query("SELECT version FROM schema_version").await,
        [Some("3".to_string())]
    );
    for path in [D1, D2] {
        wait_all_delivered(&mock, path, 2, WAIT).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The database goes away and comes back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_is_down_senders_get_503_and_then_everything_resumes() {
    let Some(server) = pg::private_server(
        "while_the_database_is_down_senders_get_503_and_then_everything_resumes",
    ) else {
        return;
    };
    let db = server.server().database().await;
    let mock = MockChat::start().await;
    let svc = Service::start_on(&store(&db), "", &two_destinations(&mock)).await;
    let http = client();
    let mut acked = Vec::new();
    for i in 0..5 {
        let (status, body) = post(&http, &svc.base, &ev("down", i)).await;
        assert_eq!(status, 202, "{body}");
        acked.push(i);
    }
    wait_all_delivered(&mock, D1, 5, WAIT).await;

    server.stop();
    let down = Instant::now();
    let mut refused = 0;
    let mut i = 5;
    while down.elapsed() < Duration::from_secs(5) {
        let r = http
            .post(format!("{}{WEBHOOK_PATH}", svc.base))
            .header("content-type", "application/json")
            .body(ev("down", i).to_string())
            .send()
            .await
            .expect("the service answers");
        match r.status().as_u16() {
            503 => {
                assert!(
                    r.headers().contains_key("retry-after"),
                    "503 with Retry-After"
                );
                refused += 1;
            }
            202 => acked.push(i),
            other => panic!("event {i}: {other} while the database is down"),
        }
        i += 1;
        let ready = http.get(format!("{}/readyz", svc.base)).send().await;
        assert_eq!(ready.expect("readyz").status(), 503);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        refused > 0,
        "events were refused while the database was down"
    );

    server.start_again();
    let up = Instant::now();
    let ready_after = loop {
        let r = http.get(format!("{}/readyz", svc.base)).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            break up.elapsed();
        }
        assert!(
            up.elapsed() < WAIT,
            "/readyz not 200 {WAIT:?} after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for _ in 0..5 {
        let (status, body) = post(&http, &svc.base, &ev("down", i)).await;
        assert_eq!(status, 202, "{body}");
        acked.push(i);
        i += 1;
    }
    // Every acknowledged event reaches both destinations, once, in order.
    for path in [D1, D2] {
        let p = path.to_string();
        let want = acked.clone();
        mock.wait_until(&format!("{want:?} delivered on {p}"), WAIT, |log| {
            let got: Vec<usize> = log
                .iter()
                .filter(|r| r.matches(&p) && r.is_ok())
                .filter_map(mark)
                .collect();
            (got == want).then_some(())
        })
        .await;
    }
    eprintln!(
        "{refused} events refused with 503 during 5 s down; ready {ready_after:?} after the restart; {} delivered",
        acked.len()
    );
}
