//! Delivery robustness (SPEC §5), end to end on loopback: retries and backoff, rate limits,
//! permanent errors and `deliveries retry`, lanes that do not hold each other up, order per
//! destination, `max_attempts`, and crash / SIGTERM recovery of the real binary.
//!
//! Timing assertions are lower bounds (the contract) or generous upper bounds (so a loaded
//! machine does not make them flaky).

use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::mock_chat::{describe_all, MockChat, Received, Reply};
use testkit::store::{now_ms, Delivery};
use testkit::{
    config_text, event, free_port, run_cli, ChildService, Proc, Service, TestStore, WEBHOOK_PATH,
};

const WAIT: Duration = Duration::from_secs(30);
const D1: &str = "/api/webhooks/1001/token-one";
const D2: &str = "/api/webhooks/1002/token-two";
const D3: &str = "/api/webhooks/1003/token-three";
const S1: &str = "/services/T000/B000/slack-one";
const S2: &str = "/services/T000/B000/slack-two";
const SERVER_ERROR: &str = r#"{"message": "Internal Server Error", "code": 0}"#;

pub(crate) fn discord(name: &str, url: &str) -> String {
    format!("[destinations.{name}]\nkind = \"discord\"\nurl = \"{url}\"\n\n")
}

fn slack(name: &str, url: &str) -> String {
    format!("[destinations.{name}]\nkind = \"slack\"\nurl = \"{url}\"\n\n")
}

pub(crate) fn route_all(names: &[&str]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[[routes]]\nto = [{}]\n", list.join(", "))
}

/// Event number `i` of series `series`: a distinct event id and a generation id `zqNNN` that
/// the rendered body carries (Discord footer, Slack context), so a request tells its event.
pub(crate) fn ev(series: &str, i: usize) -> Value {
    let mut e = event("print.created", &format!("evt-{series}-{i:03}"), None);
    e["data"]["id"] = json!(format!("zq{i:03}"));
    e
}

/// The event number a request carries (see [`ev`]).
pub(crate) fn mark(r: &Received) -> Option<usize> {
    let t = r.text();
    let i = t.find("zq")?;
    t.get(i + 2..i + 5)?.parse().ok()
}

pub(crate) fn marks(reqs: &[Received]) -> Vec<usize> {
    reqs.iter().filter_map(mark).collect()
}

fn gap(a: &Received, b: &Received) -> Duration {
    b.at.saturating_duration_since(a.at)
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn only(rows: &[Delivery], destination: &str) -> Vec<Delivery> {
    rows.iter()
        .filter(|d| d.destination == destination)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Retries with backoff
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_with_backoff_and_delivered_once() {
    retried_with_backoff(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn retried_with_backoff(store: &TestStore) {
    let mock = MockChat::start().await;
    mock.script(
        D1,
        vec![
            Reply::Status(500, SERVER_ERROR.into()),
            Reply::Status(500, SERVER_ERROR.into()),
        ],
    );
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start_on(store, "", &rest).await;
    svc.post_accepted(&ev("retry", 1), 1).await;

    mock.wait_for_ok(D1, 1, WAIT).await;
    testkit::eventually(WAIT, "delivery marked done", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;
    // Nothing more arrives after the success.
    mock.assert_quiet(D1, 3, Duration::from_millis(1500)).await;
    let reqs = mock.requests_to(D1);
    let all = describe_all(&reqs);
    assert_eq!(reqs.len(), 3, "{all}");
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 500, 200],
        "{all}"
    );
    assert_eq!(marks(&reqs), vec![1, 1, 1]);
    // Backoff: 1 s then 2 s, jitter adding up to as much again. 10 ms of slack for the
    // millisecond rounding of the stored schedule.
    let (g1, g2) = (gap(&reqs[0], &reqs[1]), gap(&reqs[1], &reqs[2]));
    eprintln!("backoff gaps: {g1:?}, {g2:?}");
    assert!(
        ms(g1) >= 990,
        "2nd attempt only {g1:?} after the 1st\n{all}"
    );
    assert!(
        ms(g2) >= 1990,
        "3rd attempt only {g2:?} after the 2nd\n{all}"
    );
    assert!(
        g1 < Duration::from_secs(8) && g2 < Duration::from_secs(12),
        "backoff far above 1 s / 2 s (+100% jitter): {g1:?}, {g2:?}"
    );
    let rows = svc.deliveries();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "done");
    assert_eq!(rows[0].attempts, 3);
    assert_eq!(rows[0].last_status, Some(200));
    assert!(
        rows[0].message_id.is_some(),
        "Discord message id kept (wait=true)"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Rate limits wait as told and do not count as attempts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_told_and_is_not_counted_as_an_attempt() {
    let mock = MockChat::start().await;
    mock.script(
        D1,
        vec![Reply::DiscordRateLimited {
            retry_after: 1.5,
            global: false,
        }],
    );
    mock.script(
        S1,
        vec![Reply::SlackRateLimited {
            retry_after_secs: 1,
        }],
    );
    let rest = format!(
        "{}{}{}",
        discord("d", &mock.url(D1)),
        slack("s", &mock.url(S1)),
        route_all(&["d", "s"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("rl", 1), 2).await;

    mock.wait_for_ok(D1, 1, WAIT).await;
    mock.wait_for_ok(S1, 1, WAIT).await;
    testkit::eventually(WAIT, "both deliveries done", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;
    mock.assert_quiet(D1, 2, Duration::from_millis(500)).await;

    let d = mock.requests_to(D1);
    assert_eq!(
        d.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200],
        "{}",
        describe_all(&d)
    );
    let dg = gap(&d[0], &d[1]);
    let s = mock.requests_to(S1);
    assert_eq!(
        s.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 200],
        "{}",
        describe_all(&s)
    );
    let sg = gap(&s[0], &s[1]);
    eprintln!("discord retry_after 1.5 -> next after {dg:?}; slack Retry-After 1 -> {sg:?}");
    assert!(
        dg >= Duration::from_millis(1500),
        "Discord: next attempt {dg:?} after a 429 asking for 1.5 s"
    );
    // Slack's wait is only in the stored (millisecond) schedule: 10 ms of slack for rounding.
    assert!(
        ms(sg) >= 990,
        "Slack: next attempt {sg:?} after Retry-After: 1"
    );
    assert!(dg < Duration::from_secs(10) && sg < Duration::from_secs(10));
    for row in svc.deliveries() {
        assert_eq!(row.state, "done", "{row:?}");
        assert_eq!(row.attempts, 1, "the 429 is not a failed attempt: {row:?}");
    }
    assert_eq!(mock.count_429(D1), 1);
}

// ---------------------------------------------------------------------------------------------
// 3. Permanent errors: dead at once, listed, and `deliveries retry` sends again
// ---------------------------------------------------------------------------------------------

async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&a, &[])
    })
    .await
    .expect("cli task")
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_webhook_is_dead_at_once_and_deliveries_retry_sends_it_again() {
    dead_then_retried_from_the_cli(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL, the CLI included).
pub(crate) async fn dead_then_retried_from_the_cli(store: &TestStore) {
    let mock = MockChat::start().await;
    mock.script(D1, vec![Reply::DiscordUnknownWebhook]);
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start_on(store, "", &rest).await;
    svc.post_accepted(&ev("dead", 1), 1).await;

    mock.wait_for(D1, 1, WAIT).await;
    testkit::eventually(WAIT, "delivery dead", || {
        svc.deliveries().iter().any(|d| d.state == "dead")
    })
    .await;
    mock.assert_quiet(D1, 1, Duration::from_millis(2500)).await;
    let row = svc.deliveries().remove(0);
    assert_eq!(row.state, "dead");
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_status, Some(404));
    assert_eq!(
        row.last_error.as_deref(),
        Some("Unknown Webhook (code 10015)")
    );

    let config = svc.config_path.to_string_lossy().into_owned();
    let s = |x: &str| x.to_string();
    let (code, out, err) = cli(vec![
        s("deliveries"),
        s("list"),
        s("--state"),
        s("dead"),
        s("--config"),
        config.clone(),
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&row.id.to_string()))
        .unwrap_or_else(|| panic!("delivery {} not listed:\n{out}", row.id));
    assert!(
        line.contains("dead") && line.contains("404 Unknown Webhook (code 10015)"),
        "{line}"
    );
    assert!(!out.contains("token-one"), "no webhook token in the list");

    // The webhook works again (the script is used up: Auto); retry while serve runs.
    let (code, out, err) = cli(vec![
        s("deliveries"),
        s("retry"),
        row.id.to_string(),
        s("--config"),
        config.clone(),
    ])
    .await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let got = mock.wait_for_ok(D1, 1, WAIT).await;
    assert_eq!(mark(&got[0]), Some(1));
    testkit::eventually(WAIT, "retried delivery done", || {
        svc.deliveries()[0].state == "done"
    })
    .await;
    let row = svc.deliveries().remove(0);
    assert_eq!(row.attempts, 1, "a retry starts a fresh series: {row:?}");
    assert_eq!(mock.requests_to(D1).len(), 2);

    let (code, out, _) = cli(vec![
        s("deliveries"),
        s("list"),
        s("--state"),
        s("dead"),
        s("--config"),
        config,
    ])
    .await;
    assert_eq!(code, 0);
    assert!(out.contains("no deliveries"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deliveries_retry_cuts_short_the_backoff_of_a_waiting_delivery() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Status(503, SERVER_ERROR.into()));
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("wait", 1), 1).await;
    // After the 4th failure the next attempt is 8-16 s away.
    mock.wait_for(D1, 4, WAIT).await;
    testkit::eventually(WAIT, "4 attempts recorded", || {
        svc.deliveries().first().is_some_and(|d| d.attempts == 4)
    })
    .await;
    let row = svc.deliveries().remove(0);
    assert!(row.next_attempt_at - now_ms() >= 6_000, "{row:?}");

    mock.set_default(D1, Reply::Auto);
    let config = svc.config_path.to_string_lossy().into_owned();
    let args = [
        "deliveries",
        "retry",
        &row.id.to_string(),
        "--config",
        &config,
    ]
    .map(String::from);
    let (code, out, err) = cli(args.to_vec()).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let asked = Instant::now();
    mock.wait_for_ok(D1, 1, WAIT).await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "sent {:?} after the retry, not at the old backoff time",
        asked.elapsed()
    );
    testkit::eventually(WAIT, "done", || svc.deliveries()[0].state == "done").await;
    assert_eq!(
        svc.deliveries()[0].attempts,
        1,
        "a fresh series of attempts"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_done_mark_the_store_refuses_for_a_while_is_kept_trying_not_resent() {
    let mock = MockChat::start().await;
    // The post takes 1 s: time to lock the store before printbell records it as done.
    mock.script(
        D1,
        vec![Reply::delay(Duration::from_millis(1000), Reply::Auto)],
    );
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("lock", 1), 1).await;
    mock.wait_for(D1, 1, WAIT).await;

    // Another process holds the write lock for 7 s, longer than printbell's 5 s busy timeout,
    // so the first "done" mark fails.
    let store = svc.store_path();
    let locker = tokio::task::spawn_blocking(move || {
        let lock = testkit::store::WriteLock::take(&store);
        std::thread::sleep(Duration::from_secs(7));
        lock.release();
    });
    mock.wait_for_ok(D1, 1, WAIT).await;
    locker.await.expect("locker");
    testkit::eventually(WAIT, "marked done once the lock is gone", || {
        svc.deliveries().first().is_some_and(|d| d.state == "done")
    })
    .await;
    mock.assert_quiet(D1, 1, Duration::from_millis(2500)).await;
    assert_eq!(mock.requests_to(D1).len(), 1, "posted exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_errors_are_dead_at_once_with_the_platform_text() {
    let mock = MockChat::start().await;
    mock.set_default(S1, Reply::Status(403, "invalid_token".into()));
    mock.set_default(S2, Reply::Status(410, "channel_is_archived".into()));
    mock.set_default(
        D1,
        Reply::json(400, json!({"code": 50035, "message": "Invalid Form Body"})),
    );
    mock.set_default(
        D2,
        Reply::json(401, json!({"code": 0, "message": "401: Unauthorized"})),
    );
    let rest = format!(
        "{}{}{}{}{}",
        slack("forbidden", &mock.url(S1)),
        slack("archived", &mock.url(S2)),
        discord("invalid", &mock.url(D1)),
        discord("unauthorized", &mock.url(D2)),
        route_all(&["forbidden", "archived", "invalid", "unauthorized"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("gone", 1), 4).await;
    testkit::eventually(WAIT, "all dead", || {
        let rows = svc.deliveries();
        rows.len() == 4 && rows.iter().all(|d| d.state == "dead")
    })
    .await;
    // Longer than the first backoff: a retry would show up.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for p in [S1, S2, D1, D2] {
        let reqs = mock.requests_to(p);
        assert_eq!(
            reqs.len(),
            1,
            "{p}: one request only\n{}",
            describe_all(&reqs)
        );
    }
    let rows = svc.deliveries();
    let expect = [
        ("forbidden", 403, "invalid_token"),
        ("archived", 410, "channel_is_archived"),
        ("invalid", 400, "Invalid Form Body (code 50035)"),
        ("unauthorized", 401, "401: Unauthorized (code 0)"),
    ];
    for (name, status, text) in expect {
        let d = &only(&rows, name)[0];
        assert_eq!(
            (d.last_status, d.last_error.as_deref(), d.attempts),
            (Some(status), Some(text), 1),
            "{name}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 4. A stuck destination does not hold up another
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_destination_does_not_delay_a_healthy_one() {
    let mock = MockChat::start().await;
    // The first post to `slow` takes 8 s to answer (the timeout is the default 10 s).
    mock.script(D1, vec![Reply::delay(Duration::from_secs(8), Reply::Auto)]);
    // And `limited` is told to wait 8 s (its own webhook only, not global).
    mock.script(
        D3,
        vec![Reply::DiscordRateLimited {
            retry_after: 8.0,
            global: false,
        }],
    );
    let rest = format!(
        "{}{}{}{}",
        discord("slow", &mock.url(D1)),
        discord("fast", &mock.url(D2)),
        discord("limited", &mock.url(D3)),
        route_all(&["slow", "fast", "limited"])
    );
    let svc = Service::start("", &rest).await;
    let t0 = Instant::now();
    for i in 1..=5 {
        svc.post_accepted(&ev("slow", i), 3).await;
    }
    let fast = mock.wait_for_ok(D2, 5, WAIT).await;
    let took = t0.elapsed();
    // Still waiting for the first answer on `slow`: the healthy lane did not wait for it.
    let slow = mock.requests_to(D1);
    assert_eq!(slow.len(), 1, "{}", describe_all(&slow));
    assert_eq!(
        slow[0].status, 0,
        "the slow answer came before the healthy lane finished ({took:?})"
    );
    let limited = mock.requests_to(D3);
    assert_eq!(
        limited.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429],
        "{}",
        describe_all(&limited)
    );
    assert_eq!(marks(&fast), vec![1, 2, 3, 4, 5]);
    eprintln!("5 messages to the healthy destination in {took:?} while the others were stuck");
    // The slow lane then delivers everything, in order.
    let slow = mock.wait_for_ok(D1, 5, WAIT).await;
    assert_eq!(marks(&slow), vec![1, 2, 3, 4, 5]);
    let limited = mock.wait_for_ok(D3, 5, WAIT).await;
    assert_eq!(marks(&limited), vec![1, 2, 3, 4, 5]);
    let first = &mock.requests_to(D3)[0];
    assert!(gap(first, &limited[0]) >= Duration::from_secs(8));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_destination_times_out_and_does_not_delay_a_healthy_one() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Hang);
    let rest = format!(
        "[delivery]\ntimeout = \"1s\"\n\n{}{}{}",
        discord("hung", &mock.url(D1)),
        discord("fast", &mock.url(D2)),
        route_all(&["hung", "fast"])
    );
    let svc = Service::start("", &rest).await;
    let t0 = Instant::now();
    for i in 1..=5 {
        svc.post_accepted(&ev("hang", i), 2).await;
    }
    let fast = mock.wait_for_ok(D2, 5, WAIT).await;
    let took = t0.elapsed();
    assert_eq!(marks(&fast), vec![1, 2, 3, 4, 5]);
    // The hung lane gives up after the 1 s timeout and retries (1 s timeout + >= 1 s backoff).
    let hung = mock.wait_for(D1, 2, WAIT).await;
    let all = describe_all(&hung);
    assert!(hung.iter().all(|r| !r.is_ok()), "{all}");
    assert!(
        hung[0].client_gone,
        "the client gave up on the hung post\n{all}"
    );
    assert!(
        gap(&hung[0], &hung[1]) >= Duration::from_millis(1990),
        "timeout + backoff\n{all}"
    );
    assert_eq!(
        marks(&hung),
        vec![1, 1],
        "the head blocks its own lane only"
    );
    eprintln!(
        "healthy lane: 5 messages in {took:?}; hung lane retried after {:?}",
        gap(&hung[0], &hung[1])
    );
    assert!(
        fast[4].at < hung[1].at,
        "all healthy messages arrived while the hung lane was still on its first try"
    );
    let rows = svc.deliveries();
    let head = &only(&rows, "hung")[0];
    assert_eq!(head.state, "pending");
    assert!(
        head.last_error
            .as_deref()
            .is_some_and(|e| e.contains("timed out") && !e.contains("token")),
        "{head:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 5, 6. Order per destination, and Discord's bucket headers
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn quick_events_arrive_in_order() {
    in_order(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn in_order(store: &TestStore) {
    let mock = MockChat::start().await;
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start_on(store, "", &rest).await;
    for i in 0..10 {
        svc.post_accepted(&ev("order", i), 1).await;
    }
    let got = mock.wait_for_ok(D1, 10, WAIT).await;
    assert_eq!(marks(&got), (0..10).collect::<Vec<_>>());
    mock.assert_quiet(D1, 10, Duration::from_millis(500)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discord_burst_follows_the_bucket_headers_without_a_429() {
    let mock = MockChat::start().await;
    mock.enforce_discord_limits(D1, 5, Duration::from_secs(2));
    let rest = format!("{}{}", discord("d", &mock.url(D1)), route_all(&["d"]));
    let svc = Service::start("", &rest).await;
    for i in 0..20 {
        svc.post_accepted(&ev("burst", i), 1).await;
    }
    let got = mock.wait_for_ok(D1, 20, WAIT).await;
    let all = describe_all(&mock.requests_to(D1));
    assert_eq!(mock.count_429(D1), 0, "{all}");
    assert_eq!(marks(&got), (0..20).collect::<Vec<_>>());
    assert_eq!(mock.requests_to(D1).len(), 20);
    let span = gap(&got[0], &got[19]);
    eprintln!("20 messages at 5 per 2 s took {span:?}");
    assert!(
        span < Duration::from_secs(25),
        "pacing far too slow: {span:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 7, 8. Network errors; max_attempts
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn reset_and_timeout_are_retried_then_delivered() {
    let mock = MockChat::start().await;
    mock.script(D1, vec![Reply::Reset]);
    mock.script(D2, vec![Reply::Hang]);
    let rest = format!(
        "[delivery]\ntimeout = \"1s\"\n\n{}{}{}",
        discord("reset", &mock.url(D1)),
        discord("hang", &mock.url(D2)),
        route_all(&["reset", "hang"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("net", 1), 2).await;
    mock.wait_for_ok(D1, 1, WAIT).await;
    mock.wait_for_ok(D2, 1, WAIT).await;
    testkit::eventually(WAIT, "both done", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;
    mock.assert_quiet(D1, 2, Duration::from_millis(500)).await;
    for (path, min) in [(D1, 990), (D2, 1990)] {
        let reqs = mock.requests_to(path);
        let all = describe_all(&reqs);
        assert_eq!(reqs.len(), 2, "{all}");
        assert_eq!(reqs[0].status, 0, "{all}");
        assert!(reqs[1].is_ok(), "{all}");
        let g = gap(&reqs[0], &reqs[1]);
        eprintln!("{path}: retried after {g:?}");
        assert!(ms(g) >= min, "{path}: retried after only {g:?}\n{all}");
    }
    for row in svc.deliveries() {
        assert_eq!((row.state.as_str(), row.attempts), ("done", 2), "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn max_attempts_then_dead() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Status(500, SERVER_ERROR.into()));
    let rest = format!(
        "[delivery]\nmax_attempts = 2\n\n{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("max", 1), 1).await;
    testkit::eventually(WAIT, "dead after 2 attempts", || {
        svc.deliveries().iter().all(|d| d.state == "dead")
    })
    .await;
    mock.assert_quiet(D1, 2, Duration::from_millis(2500)).await;
    assert_eq!(mock.requests_to(D1).len(), 2);
    let row = svc.deliveries().remove(0);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.last_status, Some(500));
    let err = row.last_error.unwrap_or_default();
    assert!(
        err.contains("gave up after 2 attempts") && err.contains("Internal Server Error"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_then_dead() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Status(503, SERVER_ERROR.into()));
    let rest = format!(
        "[delivery]\nmax_age = \"2s\"\n\n{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("age", 1), 1).await;
    testkit::eventually(WAIT, "dead after max_age", || {
        svc.deliveries().iter().all(|d| d.state == "dead")
    })
    .await;
    mock.assert_quiet(D1, mock.requests_to(D1).len(), Duration::from_millis(2500))
        .await;
    let reqs = mock.requests_to(D1);
    let all = describe_all(&reqs);
    // Attempts at 0 and after 1-2 s; a last one at the 2 s deadline if the backoff overshoots.
    assert!((2..=3).contains(&reqs.len()), "{all}");
    let last = gap(&reqs[0], &reqs[reqs.len() - 1]);
    assert!(ms(last) >= 990, "{all}");
    assert!(last < Duration::from_millis(4000), "{all}");
    let row = svc.deliveries().remove(0);
    assert_eq!(row.attempts as usize, reqs.len());
    let err = row.last_error.unwrap_or_default();
    assert!(err.contains("max_age"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_counts_from_the_first_attempt_not_from_the_time_queued() {
    let mock = MockChat::start().await;
    // Event 1 takes 2.5 s to be answered, so event 2 waits longer than max_age in the queue;
    // its first attempt then fails once. It must be retried, not declared too old.
    mock.script(
        D1,
        vec![
            Reply::delay(Duration::from_millis(2500), Reply::Auto),
            Reply::Status(503, SERVER_ERROR.into()),
        ],
    );
    let rest = format!(
        "[delivery]\nmax_age = \"2s\"\n\n{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("queued", 1), 1).await;
    svc.post_accepted(&ev("queued", 2), 1).await;
    let oks = mock.wait_for_ok(D1, 2, WAIT).await;
    assert_eq!(marks(&oks), vec![1, 2], "{}", describe_all(&oks));
    let reqs = mock.requests_to(D1);
    assert_eq!(marks(&reqs), vec![1, 2, 2], "{}", describe_all(&reqs));
    testkit::eventually(WAIT, "both done in the store", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;
    let second = svc
        .deliveries()
        .into_iter()
        .find(|d| d.event_id == "evt-queued-002")
        .expect("event 2 stored");
    assert_eq!(second.attempts, 2);
}

// ---------------------------------------------------------------------------------------------
// 9, 10. The real binary: kill -9 and SIGTERM
// ---------------------------------------------------------------------------------------------

struct ChildSetup {
    dir: tempfile::TempDir,
    config: PathBuf,
    http: reqwest::Client,
}

impl ChildSetup {
    fn new(rest: &str) -> ChildSetup {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("notifier.toml");
        std::fs::write(&config, config_text(dir.path(), "", rest)).expect("write config");
        ChildSetup {
            dir,
            config,
            // No pooled connections: the server behind the port dies between requests.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("printbell.db")
    }

    async fn start(&self, tag: &str) -> ChildService {
        ChildService::start(&self.config, free_port(), self.dir.path(), tag).await
    }

    async fn post(&self, child: &ChildService, e: &Value) {
        let resp = self
            .http
            .post(format!("{}{WEBHOOK_PATH}", child.base))
            .header("content-type", "application/json")
            .body(e.to_string())
            .send()
            .await
            .expect("service answers");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 202, "{body}\n{}", child.log());
    }
}

/// Kills the child with SIGKILL; returns when the signal was sent and when the exit was seen.
pub(crate) async fn kill_9(child: &mut ChildService) -> (Instant, Instant) {
    let sent = Instant::now();
    child.signal("KILL");
    loop {
        if let Ok(Some(_)) = child.child.try_wait() {
            return (sent, Instant::now());
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "kill -9 did not end it"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn all_logs(dir: &Path) -> String {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|e| e.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.sort();
    let mut all = String::new();
    for p in names
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
    {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        all.push_str(&format!("== {}\n{}\n", p.display(), text));
    }
    all
}

/// Waits until every event 0..n was delivered (2xx) to `path` at least once.
pub(crate) async fn wait_all_delivered(mock: &MockChat, path: &str, n: usize, limit: Duration) {
    let p = path.to_string();
    mock.wait_until(&format!("events 0..{n} delivered"), limit, move |log| {
        let mut seen = vec![false; n];
        for r in log.iter().filter(|r| r.matches(&p) && r.is_ok()) {
            if let Some(i) = mark(r).filter(|i| *i < n) {
                seen[i] = true;
            }
        }
        seen.iter().all(|s| *s).then_some(())
    })
    .await
}

/// Order of first delivery per event, and the number of extra deliveries.
pub(crate) fn first_delivery_order(oks: &[Received]) -> (Vec<usize>, usize) {
    let mut count: HashMap<usize, usize> = HashMap::new();
    let mut order = Vec::new();
    for i in marks(oks) {
        let c = count.entry(i).or_default();
        if *c == 0 {
            order.push(i);
        }
        *c += 1;
    }
    let dups = count.values().map(|c| c - 1).sum();
    (order, dups)
}

fn log_tail(dir: &Path) -> String {
    let chars: Vec<char> = all_logs(dir).chars().collect();
    chars[chars.len().saturating_sub(6000)..].iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_every_acknowledged_event_loses_nothing() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Status(500, SERVER_ERROR.into()));
    let setup = ChildSetup::new(&format!(
        "{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    ));
    let t0 = Instant::now();
    for i in 0..20 {
        let mut child = setup.start(&format!("run{i:02}")).await;
        setup.post(&child, &ev("crash", i)).await;
        kill_9(&mut child).await;
    }
    let phase = t0.elapsed();
    let rows = testkit::store::deliveries(&setup.store());
    assert_eq!(rows.len(), 20, "every acknowledged event is in the store");
    assert!(rows.iter().all(|d| d.state == "pending"), "{rows:?}");
    let failed = mock.requests_to(D1);
    assert!(failed.iter().all(|r| !r.is_ok()));
    let head = rows[0].clone();

    // The platform recovers; one more start on the same store.
    mock.set_default(D1, Reply::Auto);
    let (resume_wall, resume_at) = (now_ms(), Instant::now());
    let _child = setup.start("final").await;
    let due_in = Duration::from_millis((head.next_attempt_at - now_ms()).max(0) as u64);
    wait_all_delivered(&mock, D1, 20, due_in + WAIT).await;
    // Give a late duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let reqs = mock.requests_to(D1);
    let after: Vec<&Received> = reqs.iter().filter(|r| r.at >= resume_at).collect();
    // The stored schedule survived the crashes: nothing before the head's next attempt.
    let first_wall = resume_wall + after[0].at.duration_since(resume_at).as_millis() as i64;
    assert!(
        first_wall + 20 >= head.next_attempt_at,
        "first post after restart at {first_wall}, but the stored schedule said {}",
        head.next_attempt_at
    );
    let oks = mock.ok_requests_to(D1);
    let (order, dups) = first_delivery_order(&oks);
    eprintln!(
        "20 kill -9 cycles in {phase:?}; {} failed posts during them; head had {} attempts, due {} ms after the final start; {} posts after it, {dups} duplicates",
        failed.len(),
        head.attempts,
        head.next_attempt_at - resume_wall,
        after.len()
    );
    assert_eq!(
        order,
        (0..20).collect::<Vec<_>>(),
        "{}",
        log_tail(setup.dir.path())
    );
    // Nothing was ever answered 2xx before the final run, and it was not crashed: exactly once.
    assert_eq!(dups, 0, "{}", describe_all(&oks));
    testkit::eventually(WAIT, "all done in the store", || {
        testkit::store::deliveries(&setup.store())
            .iter()
            .all(|d| d.state == "done")
    })
    .await;
    assert!(
        !all_logs(setup.dir.path()).contains("token-one"),
        "token in a log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_delivering_keeps_order_and_at_least_once() {
    let mock = MockChat::start().await;
    // A short delay makes it likely that a post is in flight when the process dies.
    mock.set_default(D1, Reply::delay(Duration::from_millis(20), Reply::Auto));
    let setup = ChildSetup::new(&format!(
        "{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    ));
    let mut kills = Vec::new();
    for i in 0..20 {
        let mut child = setup.start(&format!("run{i:02}")).await;
        setup.post(&child, &ev("inflight", i)).await;
        kills.push(kill_9(&mut child).await);
    }
    let before_final = mock.ok_requests_to(D1).len();
    let _child = setup.start("final").await;
    wait_all_delivered(&mock, D1, 20, WAIT).await;
    testkit::eventually(WAIT, "all done in the store", || {
        testkit::store::deliveries(&setup.store())
            .iter()
            .all(|d| d.state == "done")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let oks = mock.ok_requests_to(D1);
    let (order, dups) = first_delivery_order(&oks);
    eprintln!(
        "{before_final} of 20 delivered between kills; {} requests in all; {dups} duplicates",
        mock.requests_to(D1).len()
    );
    assert_eq!(order, (0..20).collect::<Vec<_>>(), "{}", describe_all(&oks));
    // A duplicate only for the message in flight at a crash: between two 2xx answers for one
    // event there is a kill, and each kill explains at most one duplicate.
    let mut used = vec![false; kills.len()];
    for i in 0..20 {
        let times: Vec<Instant> = oks
            .iter()
            .filter(|r| mark(r) == Some(i))
            .map(|r| r.at)
            .collect();
        for w in times.windows(2) {
            let k = kills
                .iter()
                .enumerate()
                .position(|(n, (sent, exited))| !used[n] && w[0] < *exited && *sent < w[1]);
            let Some(k) = k else {
                panic!(
                    "event {i} delivered twice without a crash in between\n{}",
                    describe_all(&oks)
                );
            };
            used[k] = true;
        }
    }
    assert!(
        dups <= 10,
        "duplicates should be rare: {dups}\n{}",
        describe_all(&oks)
    );
    assert!(
        !all_logs(setup.dir.path()).contains("token-one"),
        "token in a log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_with_pending_deliveries_exits_0_and_the_rest_goes_out_after_restart() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Hang);
    let setup = ChildSetup::new(&format!(
        "[delivery]\ntimeout = \"2s\"\n\n{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    ));
    let mut child = setup.start("first").await;
    for i in 0..5 {
        setup.post(&child, &ev("term", i)).await;
    }
    // The head is in flight (hanging) when the signal comes.
    mock.wait_for(D1, 1, WAIT).await;
    let t = Instant::now();
    child.signal("TERM");
    let code = child.wait(Duration::from_secs(20)).await;
    let took = t.elapsed();
    eprintln!("SIGTERM -> exit {code:?} after {took:?}");
    assert_eq!(code, Some(0), "{}", child.log());
    let log = child.log();
    assert!(
        !log.contains("token-one"),
        "the webhook token is never logged:\n{log}"
    );
    let rows = testkit::store::deliveries(&setup.store());
    assert_eq!(rows.len(), 5);
    assert!(rows.iter().all(|d| d.state == "pending"), "{rows:?}");
    assert_eq!(mock.ok_requests_to(D1).len(), 0);

    mock.set_default(D1, Reply::Auto);
    let _child = setup.start("second").await;
    let got = mock.wait_for_ok(D1, 5, WAIT).await;
    assert_eq!(marks(&got), vec![0, 1, 2, 3, 4]);
    mock.assert_quiet(D1, mock.requests_to(D1).len(), Duration::from_millis(500))
        .await;
    assert_eq!(mock.ok_requests_to(D1).len(), 5);
}

// ---------------------------------------------------------------------------------------------
// 11. Discord's global limit holds back every webhook on the host
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_discord_global_429_holds_back_other_webhooks_on_the_host() {
    let mock = MockChat::start().await;
    mock.script(
        D1,
        vec![Reply::DiscordRateLimited {
            retry_after: 2.0,
            global: true,
        }],
    );
    let rest = format!(
        "{}{}[[routes]]\ntags = [\"a\"]\nto = [\"a\"]\n\n[[routes]]\ntags = [\"b\"]\nto = [\"b\"]\n",
        discord("a", &mock.url(D1)),
        discord("b", &mock.url(D2)),
    );
    let svc = Service::start("", &rest).await;
    let mut ea = ev("global", 1);
    ea["data"]["tags"] = json!(["a"]);
    svc.post_accepted(&ea, 1).await;
    // Wait until the lane has taken note of the 429 (the mock logs the request before that).
    testkit::eventually(WAIT, "the 429 recorded", || {
        svc.deliveries().iter().any(|d| d.last_status == Some(429))
    })
    .await;
    let mut eb = ev("global", 2);
    eb["data"]["tags"] = json!(["b"]);
    svc.post_accepted(&eb, 1).await;

    let b = mock.wait_for_ok(D2, 1, WAIT).await;
    let a = mock.wait_for_ok(D1, 1, WAIT).await;
    let limited = &mock.requests_to(D1)[0];
    assert_eq!(limited.status, 429);
    let (ga, gb) = (gap(limited, &a[0]), gap(limited, &b[0]));
    eprintln!("global retry_after 2.0: same webhook after {ga:?}, other webhook after {gb:?}");
    assert!(ga >= Duration::from_secs(2), "same webhook after {ga:?}");
    assert!(gb >= Duration::from_secs(2), "other webhook after {gb:?}");
    assert_eq!(mock.requests_to(D2).len(), 1, "no 429 on the other webhook");
    testkit::eventually(WAIT, "both done", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;
    for row in svc.deliveries() {
        assert_eq!((row.state.as_str(), row.attempts), ("done", 1), "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_destinations_on_one_discord_webhook_share_its_bucket() {
    let mock = MockChat::start().await;
    mock.enforce_discord_limits(D1, 5, Duration::from_secs(2));
    let url = mock.url(D1);
    let rest = format!(
        "[destinations.one]\nkind = \"discord\"\nurl = \"{url}\"\nthread_id = \"111\"\n\n[destinations.two]\nkind = \"discord\"\nurl = \"{url}\"\nthread_id = \"222\"\n\n{}",
        route_all(&["one", "two"])
    );
    let svc = Service::start("", &rest).await;
    for i in 0..10 {
        svc.post_accepted(&ev("shared", i), 2).await;
    }
    mock.wait_for_ok(D1, 20, WAIT).await;
    let all = describe_all(&mock.requests_to(D1));
    assert_eq!(mock.count_429(D1), 0, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_destinations_on_one_slack_webhook_share_its_pacing() {
    let mock = MockChat::start().await;
    // The lane's own pacing (1/s, burst 3) fits 6 per 2 s; two lanes each pacing alone do not.
    mock.enforce_slack_limits(S1, 6, Duration::from_secs(2));
    let url = mock.url(S1);
    let rest = format!(
        "{}{}{}",
        slack("one", &url),
        slack("two", &url),
        route_all(&["one", "two"])
    );
    let svc = Service::start("", &rest).await;
    for i in 0..4 {
        svc.post_accepted(&ev("shared", i), 2).await;
    }
    mock.wait_for_ok(S1, 8, WAIT).await;
    let all = describe_all(&mock.requests_to(S1));
    assert_eq!(mock.count_429(S1), 0, "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_waiting_for_a_retry_exits_promptly() {
    let mock = MockChat::start().await;
    mock.set_default(D1, Reply::Status(500, SERVER_ERROR.into()));
    let setup = ChildSetup::new(&format!(
        "{}{}",
        discord("d", &mock.url(D1)),
        route_all(&["d"])
    ));
    let mut child = setup.start("first").await;
    // A sender that keeps its connection open (keep-alive), as real senders do.
    let sender = reqwest::Client::new();
    for i in 0..3 {
        let r = sender
            .post(format!("{}{WEBHOOK_PATH}", child.base))
            .header("content-type", "application/json")
            .body(ev("idle", i).to_string())
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status().as_u16(), 202);
    }
    testkit::eventually(WAIT, "first attempt failed", || {
        testkit::store::deliveries(&setup.store())
            .iter()
            .any(|d| d.attempts == 1)
    })
    .await;
    let t = Instant::now();
    child.signal("TERM");
    let code = child.wait(Duration::from_secs(20)).await;
    let took = t.elapsed();
    eprintln!(
        "SIGTERM during backoff, keep-alive sender connected -> exit {code:?} after {took:?}"
    );
    assert_eq!(code, Some(0), "{}", child.log());
    assert!(took < Duration::from_secs(10), "{took:?}\n{}", child.log());
    drop(sender);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_destination_is_retried_and_its_error_has_no_token() {
    let mock = MockChat::start().await;
    // Nothing listens on this port.
    let closed = format!("http://127.0.0.1:{}{D1}", free_port());
    let rest = format!(
        "{}{}{}",
        discord("down", &closed),
        discord("up", &mock.url(D2)),
        route_all(&["down", "up"])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&ev("down", 1), 2).await;
    mock.wait_for_ok(D2, 1, WAIT).await;
    testkit::eventually(WAIT, "two failed attempts", || {
        only(&svc.deliveries(), "down")[0].attempts >= 2
    })
    .await;
    let row = only(&svc.deliveries(), "down").remove(0);
    assert_eq!(row.state, "pending");
    let err = row.last_error.unwrap_or_default();
    assert!(err.contains("could not connect"), "{err}");
    assert!(!err.contains("token-one") && !err.contains("://"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_console_destination_survives_a_closed_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("notifier.toml");
    let rest = "[destinations.out]\nkind = \"console\"\n\n[[routes]]\nto = [\"out\"]\n";
    std::fs::write(&config, config_text(dir.path(), "", rest)).expect("write config");
    let port = free_port();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = Proc::new(
        std::process::Command::new(testkit::bin())
            .args(["--config", config.to_str().expect("utf-8"), "serve"])
            .env("PRINTBELL_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("PRINTBELL_CONFIG")
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("log file"))
            .spawn()
            .expect("spawn printbell"),
    );
    // The reader goes away: every write to stdout now fails with EPIPE.
    drop(child.child_mut().stdout.take());
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    testkit::eventually(WAIT, "printbell is healthy", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let resp = http
        .post(format!("{base}{WEBHOOK_PATH}"))
        .body(ev("pipe", 1).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 202);
    let store = dir.path().join("printbell.db");
    testkit::eventually(WAIT, "the failed write is recorded as a retry", || {
        testkit::store::deliveries(&store).iter().any(|d| {
            d.attempts >= 1
                && d.state == "pending"
                && d.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("standard output"))
        })
    })
    .await;
    let health = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("still answers");
    assert_eq!(health.status().as_u16(), 200);
    drop(child);
    let log = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(!log.contains("panicked"), "{log}");
}
