//! Alert storms (`mention_interval` on a route): within one interval only the first message
//! of a route pings its destination; the others are delivered without mentions, and one
//! summary pings once when the interval ends. Against the strict mock Discord (live mode, the
//! default) and a Slack incoming webhook (each mode); assertions are on what the mocks
//! received, the store and the metrics.

use super::live::{metric, scrape};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use testkit::mock_chat::{describe_all, MockChat, Received};
use testkit::{config_text, fixture, free_port, validate, ChildService, Service, TestStore};

const WAIT: Duration = Duration::from_secs(30);
const ROLE: &str = "223456789012345678";
const SLACK_USER: &str = "U0STORM001";

/// A failure of generation `generation`, named `name`.
fn failure(generation: &str, name: &str) -> Value {
    let mut e = fixture("print.failed");
    e["id"] = json!(format!("{generation}-failed"));
    e["data"]["id"] = json!(generation);
    e["data"]["name"] = json!(name);
    e
}

/// An on-call config: `dest` a Discord webhook on `hook`, one route of failures pinging the
/// role, with `interval` (or none).
fn on_call(mock: &MockChat, dest: &str, hook: &str, interval: Option<&str>) -> String {
    let every = interval
        .map(|i| format!("mention_interval = \"{i}\"\n"))
        .unwrap_or_default();
    format!(
        "[destinations.{dest}]\nkind = \"discord\"\nurl = \"{}\"\n\n\
         [[routes]]\nevents = [\"print.failed\"]\nto = [\"{dest}\"]\nmention = [\"role:{ROLE}\"]\n{every}",
        mock.url(hook)
    )
}

/// The posts `hook` answered 2xx, oldest first.
fn posts(mock: &MockChat, hook: &str) -> Vec<Received> {
    mock.requests_to(hook)
        .into_iter()
        .filter(|r| r.method == "POST" && r.is_ok())
        .collect()
}

fn body(r: &Received) -> &Value {
    r.json.as_ref().expect("a JSON body")
}

/// Whether a Discord post notifies the role (and nobody else).
fn pings_role(r: &Received) -> bool {
    let p = validate::discord_pings(body(r));
    assert!(
        p.users.is_empty() && !p.everyone,
        "only the route's role may be pinged: {}",
        body(r)
    );
    p.roles == [ROLE]
}

fn content(r: &Received) -> &str {
    body(r)["content"].as_str().unwrap_or_default()
}

/// Waits for `n` 2xx posts on `hook`.
async fn wait_posts(mock: &MockChat, hook: &str, n: usize, within: Duration) -> Vec<Received> {
    let got = mock.wait_for_ok(hook, n, within).await;
    got.into_iter().filter(|r| r.method == "POST").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn six_failures_in_one_interval_page_twice() {
    six_failures_page_twice(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn six_failures_page_twice(store: &TestStore) {
    // A destination name per store, so the metrics read are this run's alone.
    let dest = match store {
        TestStore::Sqlite => "storm-six",
        TestStore::Postgres { .. } => "storm-six-pg",
    };
    let mock = MockChat::start().await;
    let hook = "/api/webhooks/3001/storm-token";
    let svc = Service::start_on(store, "", &on_call(&mock, dest, hook, Some("4s"))).await;
    let names: Vec<String> = (1..=6).map(|i| format!("Outage job {i}")).collect();
    for (i, name) in names.iter().enumerate() {
        svc.post_accepted(&failure(&format!("gen-storm-{i}"), name), 1)
            .await;
    }
    // Six messages, then the summary.
    wait_posts(&mock, hook, 7, WAIT).await;
    mock.assert_quiet(hook, mock.requests_to(hook).len(), Duration::from_secs(2))
        .await;
    let all = posts(&mock, hook);
    assert_eq!(all.len(), 7, "{}", describe_all(&all));
    for r in &all {
        assert!(
            r.problems.is_empty(),
            "{}",
            describe_all(std::slice::from_ref(r))
        );
    }
    let pinging: Vec<&Received> = all.iter().filter(|r| pings_role(r)).collect();
    assert_eq!(
        pinging.len(),
        2,
        "exactly two pings:\n{}",
        describe_all(&all)
    );
    // The first failure's own message pings ...
    let first = pinging[0];
    assert!(
        body(first)["embeds"][0]["title"]
            .as_str()
            .is_some_and(|t| t.contains(&names[0])),
        "{}",
        body(first)
    );
    // ... the five others are delivered without mentions ...
    let quiet: Vec<&Received> = all.iter().filter(|r| !pings_role(r)).collect();
    assert_eq!(quiet.len(), 5);
    for (r, name) in quiet.iter().zip(&names[1..]) {
        assert_eq!(
            body(r)["allowed_mentions"],
            json!({"parse": []}),
            "{}",
            body(r)
        );
        assert!(!content(r).contains("<@"), "no mention text: {}", body(r));
        assert!(
            body(r)["embeds"][0]["title"]
                .as_str()
                .is_some_and(|t| t.contains(name.as_str())),
            "in order: {}",
            body(r)
        );
    }
    // ... and one summary, about one interval after the first ping, names them.
    let summary = pinging[1];
    assert!(
        std::ptr::eq(summary, all.last().expect("last")),
        "the summary comes last"
    );
    let after = summary.at.duration_since(first.at);
    eprintln!("summary {after:?} after the first ping");
    assert!(
        after >= Duration::from_millis(3900) && after <= Duration::from_millis(6500),
        "the summary comes when the 4 s interval ends: {after:?}"
    );
    let text = content(summary);
    assert!(text.contains(&format!("<@&{ROLE}>")), "{text}");
    assert!(
        text.contains("5 more events did not ping in the last 4s"),
        "{text}"
    );
    for name in &names[1..] {
        assert!(text.contains(name.as_str()), "names {name}: {text}");
    }
    assert!(!text.contains(&names[0]), "{text}");
    assert_eq!(
        body(summary)["allowed_mentions"],
        json!({"parse": [], "roles": [ROLE]})
    );
    assert!(
        body(summary).get("embeds").is_none(),
        "its own short message"
    );

    let rows = svc.deliveries();
    let summaries: Vec<_> = rows.iter().filter(|d| d.role == "summary").collect();
    assert_eq!(summaries.len(), 1, "{rows:#?}");
    assert_eq!(summaries[0].state, "done");
    let m = scrape(&svc).await;
    let pings = |outcome| {
        metric(
            &m,
            "printbell_pings_total",
            &[("destination", dest), ("outcome", outcome)],
        )
    };
    assert_eq!(
        (pings("sent"), pings("held"), pings("summarised")),
        (1.0, 5.0, 1.0),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_quiet_interval_the_next_failure_pings_at_once() {
    let mock = MockChat::start().await;
    let hook = "/api/webhooks/3002/calm-token";
    let svc = Service::start("", &on_call(&mock, "storm-calm", hook, Some("2s"))).await;
    svc.post_accepted(&failure("gen-calm-1", "Calm job 1"), 1)
        .await;
    svc.post_accepted(&failure("gen-calm-2", "Calm job 2"), 1)
        .await;
    // Job 1 pings, job 2 is held back, the summary names it.
    let got = wait_posts(&mock, hook, 3, WAIT).await;
    let summary_at = got[2].at;
    assert!(pings_role(&got[0]) && !pings_role(&got[1]) && pings_role(&got[2]));
    assert!(
        content(&got[2]).contains("Calm job 2"),
        "{}",
        content(&got[2])
    );
    // The interval after the summary passes with nothing to say: no second summary.
    mock.assert_quiet(hook, 3, Duration::from_millis(2600))
        .await;
    let sent = Instant::now();
    svc.post_accepted(&failure("gen-calm-3", "Calm job 3"), 1)
        .await;
    let got = wait_posts(&mock, hook, 4, WAIT).await;
    let third = &got[3];
    assert!(
        third.at.duration_since(summary_at) > Duration::from_secs(2),
        "after the quiet interval"
    );
    assert!(
        pings_role(third),
        "the next failure pings at once: {}",
        body(third)
    );
    assert!(
        third.at.duration_since(sent) < Duration::from_secs(2),
        "at once, not with a summary"
    );
    assert!(content(third).contains(&format!("<@&{ROLE}>")));
    mock.assert_quiet(hook, 4, Duration::from_millis(2600))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_mention_interval_every_failure_pings() {
    let mock = MockChat::start().await;
    let hook = "/api/webhooks/3003/every-token";
    let svc = Service::start("", &on_call(&mock, "storm-every", hook, None)).await;
    for i in 1..=3 {
        svc.post_accepted(
            &failure(&format!("gen-every-{i}"), &format!("Every job {i}")),
            1,
        )
        .await;
    }
    let got = wait_posts(&mock, hook, 3, WAIT).await;
    mock.assert_quiet(hook, 3, Duration::from_millis(1500))
        .await;
    assert!(got.iter().all(pings_role), "{}", describe_all(&got));
    assert!(svc.deliveries().iter().all(|d| d.role != "summary"));
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_webhook_messages_held_back_carry_no_mention_and_the_summary_does() {
    let mock = MockChat::start().await;
    let hook = "/services/T000/B000/storm-slack-hook";
    let rest = format!(
        "[destinations.storm-slack]\nkind = \"slack\"\nurl = \"{}\"\n\n\
         [[routes]]\nevents = [\"print.failed\"]\nto = [\"storm-slack\"]\n\
         mention = [\"user:{SLACK_USER}\"]\nmention_interval = \"2s\"\n",
        mock.url(hook)
    );
    let svc = Service::start("", &rest).await;
    for i in 1..=3 {
        svc.post_accepted(
            &failure(&format!("gen-slack-{i}"), &format!("Slack job {i}")),
            1,
        )
        .await;
    }
    let got = wait_posts(&mock, hook, 4, WAIT).await;
    mock.assert_quiet(hook, 4, Duration::from_millis(1500))
        .await;
    let mention = format!("<@{SLACK_USER}>");
    let has_mention = |r: &Received| body(r).to_string().contains(&mention);
    let pinging: Vec<bool> = got.iter().map(has_mention).collect();
    assert_eq!(
        pinging,
        [true, false, false, true],
        "{}",
        describe_all(&got)
    );
    for r in &got {
        validate::assert_valid_slack(body(r));
    }
    let summary = body(&got[3])["text"].as_str().expect("text");
    assert!(
        summary.starts_with(&mention)
            && summary.contains(
                "2 more events did not ping in the last 2s: Slack job 2 and Slack job 3."
            ),
        "{summary}"
    );
}

// ---------------------------------------------------------------------------------------------
// kill -9 while pings are held back
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_while_pings_are_held_back_then_the_summary_comes_once() {
    let mock = MockChat::start().await;
    let hook = "/api/webhooks/3004/crash-token";
    let dir = tempfile::tempdir().expect("temp dir");
    let config: PathBuf = dir.path().join("notifier.toml");
    let rest = on_call(&mock, "storm-crash", hook, Some("3s"));
    std::fs::write(&config, config_text(dir.path(), "", &rest)).expect("write config");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let start = |tag: &str| {
        ChildService::launch(testkit::Launch {
            config: &config,
            port: free_port(),
            stderr_path: dir.path().join(format!("stderr-{tag}.log")),
            rust_log: "info",
            envs: &[],
        })
    };
    let post = |child: &ChildService, e: Value| {
        let req = http
            .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
            .header("content-type", "application/json")
            .body(e.to_string());
        async move {
            let resp = req.send().await.expect("service answers");
            assert_eq!(resp.status().as_u16(), 202);
        }
    };
    let mut child = start("first").await;
    for i in 1..=3 {
        post(
            &child,
            failure(&format!("gen-crash-{i}"), &format!("Crash job {i}")),
        )
        .await;
    }
    let got = wait_posts(&mock, hook, 3, WAIT).await;
    assert_eq!(
        got.iter().map(pings_role).collect::<Vec<_>>(),
        [true, false, false]
    );
    child.kill(); // SIGKILL while two pings are held back, before the summary is due
    let killed = Instant::now();
    assert_eq!(posts(&mock, hook).len(), 3, "no summary before the crash");

    let child = start("second").await;
    // A message posted just before the kill may be posted again (its "done" was not on disk
    // yet): without mentions, as the interval is still open. Then the summary.
    let deadline = Instant::now() + WAIT;
    let summary = loop {
        let after: Vec<Received> = posts(&mock, hook).into_iter().skip(3).collect();
        if let Some(s) = after.iter().find(|r| pings_role(r)) {
            break s.clone();
        }
        assert!(Instant::now() < deadline, "no summary:\n{}", child.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let summary = &summary;
    let text = content(summary);
    assert!(
        text.contains("2 more events did not ping in the last 3s: Crash job 2 and Crash job 3."),
        "{text}"
    );
    eprintln!(
        "summary {:?} after the kill -9",
        summary.at.duration_since(killed)
    );
    // Once: nothing more pings through the next interval and beyond.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = posts(&mock, hook);
    let pinging = all.iter().filter(|r| pings_role(r)).count();
    assert_eq!(
        pinging,
        2,
        "the first failure and one summary:\n{}",
        describe_all(&all)
    );
    let rows = testkit::store::deliveries(&dir.path().join("printbell.db"));
    assert_eq!(
        rows.iter().filter(|d| d.role == "summary").count(),
        1,
        "{rows:#?}"
    );
}
