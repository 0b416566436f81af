//! Live messages (SPEC §4.1), end to end on loopback: one message per generation and
//! destination, posted once and edited as the generation moves on, against the strict mocks
//! (`testkit::mock_chat` for Discord webhooks, `testkit::mock_slack_api` for Slack's Web API).
//! Assertions are on what the mocks received and keep, and on the store.
//!
//! Positive waits poll (no fixed sleeps); "nothing more is sent" is a quiet period.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use testkit::mock_chat::{describe_all, MockChat, Received, Reply};
use testkit::mock_slack_api::{
    self, Limit, MockSlackApi, SlackMessage, SlackReply, POST_MESSAGE, UPDATE,
};
use testkit::store::Delivery;
use testkit::{
    config_text, fixture, free_port, run_cli, validate, ChildService, Service, TestStore,
};

const WAIT: Duration = Duration::from_secs(30);
const QUIET: Duration = Duration::from_millis(1500);
const D: &str = "/api/webhooks/2001/live-token-one";
const S: &str = "/services/T000/B000/live-slack-hook";
const ROLE: &str = "123456789012345678";
const SLACK_USER: &str = "U0ONCALL01";
const SERVER_ERROR: &str = r#"{"message": "Internal Server Error", "code": 0}"#;

const GREY: u64 = 0x95A5A6;
const BLUE: u64 = 0x3498DB;
const AMBER: u64 = 0xF1A208;
const GREEN: u64 = 0x2ECC71;
const RED: u64 = 0xE74C3C;

// ---------------------------------------------------------------------------------------------
// events
// ---------------------------------------------------------------------------------------------

fn img(generation: &str, i: usize) -> String {
    format!("http://img.example.test/{generation}/{i}.png")
}

/// A fixture event of `event_type` with event id `id`, generation `generation` (4 images
/// asked for) and its first `images` images finished.
fn ev(event_type: &str, id: &str, generation: &str, images: usize) -> Value {
    let mut e = fixture(event_type);
    e["id"] = json!(id);
    e["data"]["id"] = json!(generation);
    e["data"]["nbImages"] = json!(4);
    e["data"]["images"] = (1..=images)
        .map(|i| {
            json!({"id": format!("img_{i}"), "url": img(generation, i), "validate": false,
                   "free": false, "titles": {"en": format!("{generation} image {i}")}})
        })
        .collect();
    e
}

/// A generation's seven events: created, active, progress 1..4 images, completed (4).
fn story(generation: &str) -> Vec<Value> {
    let mut v = vec![
        ev(
            "print.created",
            &format!("{generation}-created"),
            generation,
            0,
        ),
        ev(
            "print.active",
            &format!("{generation}-active"),
            generation,
            0,
        ),
    ];
    for i in 1..=4 {
        v.push(ev(
            "print.progress",
            &format!("{generation}-progress-{i}"),
            generation,
            i,
        ));
    }
    v.push(ev(
        "print.completed",
        &format!("{generation}-completed"),
        generation,
        4,
    ));
    v
}

fn failed(id: &str, generation: &str) -> Value {
    ev("print.failed", id, generation, 0)
}

// ---------------------------------------------------------------------------------------------
// config
// ---------------------------------------------------------------------------------------------

fn discord(name: &str, url: &str, extra: &str) -> String {
    format!("[destinations.{name}]\nkind = \"discord\"\nurl = \"{url}\"\n{extra}\n")
}

fn slack_api(name: &str, api: &MockSlackApi, token: &str) -> String {
    format!(
        "[destinations.{name}]\nkind = \"slack\"\ntoken = \"{token}\"\nchannel = \"{}\"\napi_url = \"{}\"\n\n",
        MockSlackApi::CHANNEL,
        api.api_url()
    )
}

fn route(to: &[&str], mention: &[&str]) -> String {
    let list = |l: &[&str]| {
        l.iter()
            .map(|n| format!("\"{n}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut r = format!("[[routes]]\nto = [{}]\n", list(to));
    if !mention.is_empty() {
        r.push_str(&format!("mention = [{}]\n", list(mention)));
    }
    r
}

fn role_mention() -> String {
    format!("role:{ROLE}")
}

// ---------------------------------------------------------------------------------------------
// what the Discord mock saw
// ---------------------------------------------------------------------------------------------

/// Execute-webhook requests (posts) to `hook`, any answer.
fn posts(mock: &MockChat, hook: &str) -> Vec<Received> {
    mock.requests_to(hook)
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

fn ok_posts(mock: &MockChat, hook: &str) -> Vec<Received> {
    posts(mock, hook)
        .into_iter()
        .filter(Received::is_ok)
        .collect()
}

/// Edits (`PATCH …/messages/{id}`) of messages of `hook`, any answer.
fn patches(mock: &MockChat, hook: &str) -> Vec<Received> {
    let prefix = format!("{hook}/messages/");
    mock.requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.route.starts_with(&prefix))
        .collect()
}

/// The message id a PATCH edited.
fn edited_id(r: &Received) -> &str {
    r.route.rsplit('/').next().unwrap_or_default()
}

/// The message id a post created (from the mock's answer).
fn posted_id(r: &Received) -> String {
    let v: Value = serde_json::from_str(&r.response_body).expect("a message answer");
    v["id"].as_str().expect("message id").to_string()
}

fn colour(m: &Value) -> Option<u64> {
    m["embeds"][0]["color"].as_u64()
}

fn all(mock: &MockChat) -> String {
    describe_all(&mock.requests())
}

/// Waits until a message of `hook` satisfies `pred`; returns it (the newest that does).
async fn shown(mock: &MockChat, hook: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(m) = mock.messages(hook).into_iter().rev().find(|m| pred(m)) {
            return m;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {WAIT:?} waiting for a message that {what}; messages now: {:#}\nrequests:\n{}",
                json!(mock.messages(hook)),
                all(mock)
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Completed with all four images: the main embed green with image 1, three more image
/// embeds sharing its url (Discord's gallery).
fn is_completed(m: &Value, generation: &str) -> bool {
    let embeds = m["embeds"].as_array().cloned().unwrap_or_default();
    colour(m) == Some(GREEN)
        && embeds.len() == 4
        && embeds
            .iter()
            .enumerate()
            .all(|(i, e)| e["image"]["url"] == json!(img(generation, i + 1)))
}

#[track_caller]
fn assert_gallery_of_four(m: &Value, generation: &str) {
    let embeds = m["embeds"].as_array().expect("embeds");
    assert_eq!(embeds.len(), 4, "{m:#}");
    assert_eq!(colour(m), Some(GREEN), "completed colour: {m:#}");
    let url = &embeds[0]["url"];
    assert!(url.is_string(), "{m:#}");
    for (i, e) in embeds.iter().enumerate() {
        assert_eq!(e["image"]["url"], json!(img(generation, i + 1)), "{m:#}");
        assert_eq!(&e["url"], url, "gallery embeds share the url: {m:#}");
    }
    assert!(
        m["embeds"][0]["footer"]["text"]
            .as_str()
            .is_some_and(|t| t.contains(generation)),
        "{m:#}"
    );
}

/// Every edit body: valid for the edit schema, without the webhook's identity, with
/// `allowed_mentions`, and notifying nobody.
#[track_caller]
fn assert_edits_are_quiet(reqs: &[Received]) {
    for r in reqs {
        let body = r.json.as_ref().expect("JSON edit");
        assert!(
            r.problems.is_empty(),
            "{}",
            describe_all(std::slice::from_ref(r))
        );
        assert!(
            body.get("username").is_none() && body.get("avatar_url").is_none(),
            "an edit cannot change the identity: {body}"
        );
        assert!(
            body["allowed_mentions"].is_object(),
            "every edit carries allowed_mentions: {body}"
        );
        assert!(validate::discord_pings(body).is_empty(), "{body}");
    }
}

// ---------------------------------------------------------------------------------------------
// the store
// ---------------------------------------------------------------------------------------------

fn states(rows: &[Delivery]) -> Vec<&str> {
    rows.iter().map(|d| d.state.as_str()).collect()
}

/// Waits until nothing in the service's store (either backend) is pending.
async fn settled(svc: &Service) -> Vec<Delivery> {
    settled_in(|| svc.deliveries()).await
}

/// Waits until nothing in the store file is pending; returns every delivery.
async fn settled_at(store: &Path) -> Vec<Delivery> {
    settled_in(|| testkit::store::deliveries(store)).await
}

async fn settled_in(read: impl Fn() -> Vec<Delivery>) -> Vec<Delivery> {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = read();
        if rows.iter().all(|d| d.state != "pending") {
            return rows;
        }
        if Instant::now() > deadline {
            panic!("deliveries still pending after {WAIT:?}: {rows:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(rows: &[Delivery], state: &str) -> usize {
    rows.iter().filter(|d| d.state == state).count()
}

async fn cli(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&a, &[])
    })
    .await
    .expect("cli")
}

/// Posts each event and checks its 202 (`deliveries` counts destinations: a failure's ping
/// is part of its destination's delivery).
async fn post_all(svc: &Service, events: &[Value]) {
    for e in events {
        svc.post_accepted(e, 1).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Discord: one message per generation
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn discord_a_generation_is_one_message_edited_to_completed() {
    one_message_edited_to_completed(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn one_message_edited_to_completed(store: &TestStore) {
    let mock = MockChat::start().await;
    // Posts and edits share the webhook's budget; printbell's pacing keeps it without a 429.
    mock.enforce_discord_limits(D, 5, Duration::from_secs(2));
    let extra = "username = \"printbell\"\navatar_url = \"https://example.com/bell.png\"\nthread_id = \"1234567890\"\n";
    let rest = format!(
        "{}{}",
        discord("d", &mock.url(D), extra),
        route(&["d"], &[])
    );
    let svc = Service::start_on(store, "", &rest).await;
    let g = "gen-one-a1";
    post_all(&svc, &story(g)).await;

    let m = shown(&mock, D, "shows the completed state", |m| {
        is_completed(m, g)
    })
    .await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, mock.requests_to(D).len(), QUIET).await;
    let reqs = mock.requests();
    assert!(
        reqs.iter().all(|r| r.problems.is_empty() && r.is_ok()),
        "every request valid and taken:\n{}",
        all(&mock)
    );
    assert_eq!(mock.count_429(D), 0, "{}", all(&mock));
    let p = posts(&mock, D);
    assert_eq!(p.len(), 1, "exactly one post:\n{}", all(&mock));
    assert_eq!(p[0].query_param("wait").as_deref(), Some("true"));
    assert_eq!(p[0].query_param("thread_id").as_deref(), Some("1234567890"));
    let e = patches(&mock, D);
    assert!(e.len() <= 6, "at most 6 edits:\n{}", all(&mock));
    assert!(
        !e.is_empty(),
        "the post alone cannot be completed: {}",
        all(&mock)
    );
    let id = posted_id(&p[0]);
    for r in &e {
        assert_eq!(edited_id(r), id, "edits of the posted message");
        assert_eq!(r.query_param("thread_id").as_deref(), Some("1234567890"));
    }
    assert_edits_are_quiet(&e);
    assert_eq!(m["id"], json!(id));
    assert_gallery_of_four(&m, g);
    assert_eq!(mock.messages(D).len(), 1);

    // The store: seven live messages, each sent or superseded, none lost or dead.
    assert_eq!(rows.len(), 7, "{rows:#?}");
    assert!(
        rows.iter()
            .all(|d| d.mode == "live" && d.role == "message" && d.generation_id == g),
        "{rows:#?}"
    );
    assert_eq!(count(&rows, "done"), 1 + e.len(), "{:?}", states(&rows));
    assert_eq!(
        count(&rows, "superseded"),
        6 - e.len(),
        "{:?}",
        states(&rows)
    );
    let completed = rows
        .iter()
        .find(|d| d.event_type == "print.completed")
        .unwrap();
    assert_eq!(completed.state, "done");
    assert_eq!(completed.message_id.as_deref(), Some(id.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_mode_still_posts_every_event() {
    let mock = MockChat::start().await;
    let rest = format!(
        "{}{}",
        discord("d", &mock.url(D), "mode = \"each\"\n"),
        route(&["d"], &[])
    );
    let svc = Service::start("", &rest).await;
    let g = "gen-each-b2";
    post_all(&svc, &story(g)).await;
    let oks = mock.wait_for_ok(D, 7, WAIT).await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, 7, QUIET).await;
    assert!(patches(&mock, D).is_empty(), "{}", all(&mock));
    assert_eq!(mock.messages(D).len(), 7);
    let colours: Vec<Option<u64>> = oks
        .iter()
        .map(|r| colour(r.json.as_ref().unwrap()))
        .collect();
    let expected = [GREY, BLUE, AMBER, AMBER, AMBER, AMBER, GREEN].map(Some);
    assert_eq!(colours, expected, "one post per event, in order");
    assert_gallery_of_four(oks[6].json.as_ref().unwrap(), g);
    assert!(rows.iter().all(|d| d.mode == "each" && d.state == "done"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_that_answered_500_gets_one_post_per_generation() {
    down_then_back(
        "down-500",
        Reply::Status(500, SERVER_ERROR.into()),
        "",
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_that_hung_gets_one_post_per_generation() {
    down_then_back(
        "down-hang",
        Reply::Hang,
        "[delivery]\ntimeout = \"1s\"\n\n",
        false,
    )
    .await;
}

/// The destination answers `down` while two generations' events arrive (`interleaved`: A1,
/// B1, A2, B2, …; else A's seven, then B's), then recovers.
/// `name`: the destination, unique to the test (its metrics are read from the process-wide
/// recorder).
async fn down_then_back(name: &str, down: Reply, delivery: &str, interleaved: bool) {
    let mock = MockChat::start().await;
    mock.set_default(D, down);
    let rest = format!(
        "{delivery}{}{}",
        discord(name, &mock.url(D), ""),
        route(&[name], &[])
    );
    let svc = Service::start("", &rest).await;
    let (a, b) = ("gen-down-a", "gen-down-b");
    if interleaved {
        for (ea, eb) in story(a).iter().zip(story(b).iter()) {
            post_all(&svc, &[ea.clone(), eb.clone()]).await;
        }
    } else {
        post_all(&svc, &story(a)).await;
        post_all(&svc, &story(b)).await;
    }
    // It really was down while the events arrived.
    mock.wait_for(D, 1, WAIT).await;
    assert!(mock.requests().iter().all(|r| !r.is_ok()));
    mock.set_default(D, Reply::Auto);

    shown(&mock, D, "shows generation B completed", |m| {
        is_completed(m, b)
    })
    .await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, mock.requests_to(D).len(), QUIET).await;
    let oks = ok_posts(&mock, D);
    assert_eq!(oks.len(), 2, "one post per generation:\n{}", all(&mock));
    assert!(
        oks[0].text().contains(a) && oks[1].text().contains(b),
        "the first generation's post goes out first:\n{}",
        all(&mock)
    );
    assert!(oks[0].at < oks[1].at, "A before B:\n{}", describe_all(&oks));
    let e = patches(&mock, D);
    assert!(e.len() <= 2, "at most 2 edits:\n{}", all(&mock));
    assert_edits_are_quiet(&e);
    let messages = mock.messages(D);
    assert_eq!(messages.len(), 2);
    assert_gallery_of_four(&messages[0], a);
    assert_gallery_of_four(&messages[1], b);

    assert_eq!(rows.len(), 14);
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}");
    let superseded = count(&rows, "superseded");
    assert!(superseded >= 10, "{:?}", states(&rows));
    // And the CLI shows them.
    let store = svc.store_path().to_str().unwrap().to_string();
    let args = [
        "deliveries",
        "--store",
        &store,
        "list",
        "--state",
        "superseded",
    ];
    let (code, out, err) = cli(args.iter().map(|s| s.to_string()).collect()).await;
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let listed: Vec<&str> = out
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(listed.len(), superseded, "{out}");
    assert!(
        listed
            .iter()
            .all(|l| l.contains("superseded") && l.contains(name)),
        "{out}"
    );
    // And the metrics count them.
    let text = scrape(&svc).await;
    let labels = [("destination", name), ("outcome", "superseded")];
    assert_eq!(
        metric(&text, "printbell_deliveries_total", &labels),
        superseded as f64,
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn late_events_after_completed_send_nothing() {
    let mock = MockChat::start().await;
    let rest = format!("{}{}", discord("d", &mock.url(D), ""), route(&["d"], &[]));
    let svc = Service::start("", &rest).await;
    let g = "gen-late-c3";
    post_all(&svc, &story(g)).await;
    let m = shown(&mock, D, "shows the completed state", |m| {
        is_completed(m, g)
    })
    .await;
    settled(&svc).await;
    let before = mock.requests().len();

    // all-images.ai delivers a created and a progress late (new event ids, same generation).
    svc.post_accepted(&ev("print.created", "late-created", g, 0), 1)
        .await;
    svc.post_accepted(&ev("print.progress", "late-progress", g, 2), 1)
        .await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, before, QUIET).await;
    assert_eq!(mock.requests().len(), before, "{}", all(&mock));
    for id in ["late-created", "late-progress"] {
        let d = rows.iter().find(|d| d.event_id == id).expect("stored");
        assert_eq!(d.state, "superseded", "{d:?}");
    }
    let now = mock.message(D, m["id"].as_str().unwrap()).unwrap();
    assert_eq!(now, m, "the message still shows completed");
    assert_gallery_of_four(&now, g);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_failure_is_replaced_by_its_completion_and_nothing_goes_back() {
    let mock = MockChat::start().await;
    let rest = format!("{}{}", discord("d", &mock.url(D), ""), route(&["d"], &[]));
    let svc = Service::start("", &rest).await;
    let g = "gen-retried-o15";
    let events = story(g);
    post_all(&svc, &events[..3]).await;
    svc.post_accepted(&failed("retried-failed", g), 1).await;
    let m = shown(&mock, D, "shows the failure", |m| colour(m) == Some(RED)).await;
    settled(&svc).await;
    // A progress of the failed run arrives late: the failure stays.
    svc.post_accepted(&events[3], 1).await;
    let rows = settled(&svc).await;
    let late = rows
        .iter()
        .find(|d| d.event_id == format!("{g}-progress-2"))
        .unwrap();
    assert_eq!(late.state, "superseded", "{rows:#?}");
    assert_eq!(
        colour(&mock.message(D, m["id"].as_str().unwrap()).unwrap()),
        Some(RED)
    );

    // all-images.ai retried the generation and it completed: that terminal state wins.
    svc.post_accepted(&events[6], 1).await;
    let done = shown(&mock, D, "shows the completion", |m| is_completed(m, g)).await;
    assert_eq!(done["id"], m["id"], "the same message, edited");
    settled(&svc).await;
    assert_eq!(posts(&mock, D).len(), 1, "{}", all(&mock));
    assert_edits_are_quiet(&patches(&mock, D));
    assert_gallery_of_four(&done, g);
}

#[tokio::test(flavor = "multi_thread")]
async fn discord_an_edit_answered_429_waits_and_sends_only_the_newest_state() {
    let mock = MockChat::start().await;
    let rest = format!("{}{}", discord("d", &mock.url(D), ""), route(&["d"], &[]));
    let svc = Service::start("", &rest).await;
    let g = "gen-edit-429-q17";
    let events = story(g);
    svc.post_accepted(&events[0], 1).await;
    let first = mock.wait_for_ok(D, 1, WAIT).await;
    let id = posted_id(&first[0]);
    settled(&svc).await;
    let msg = format!("{D}/messages/{id}");
    mock.script(
        &msg,
        vec![Reply::DiscordRateLimited {
            retry_after: 1.5,
            global: false,
        }],
    );
    post_all(&svc, &events[1..]).await;
    let m = shown(&mock, D, "shows the completed state", |m| {
        is_completed(m, g)
    })
    .await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, mock.requests_to(D).len(), QUIET).await;
    let e = patches(&mock, D);
    assert_eq!(e[0].status, 429, "{}", all(&mock));
    assert!(
        e.len() >= 2 && e[1].at.duration_since(e[0].at) >= Duration::from_millis(1490),
        "the edit after the 429 waited retry_after:\n{}",
        all(&mock)
    );
    assert!(
        e[1..].iter().all(Received::is_ok),
        "one 429 only:\n{}",
        all(&mock)
    );
    // Everything that arrived during the wait became one edit to the newest state.
    assert_eq!(e.len(), 2, "{}", all(&mock));
    assert_eq!(colour(e[1].json.as_ref().unwrap()), Some(GREEN));
    assert_eq!(posts(&mock, D).len(), 1);
    assert_eq!(m["id"], json!(id));
    assert_eq!(count(&rows, "superseded"), 5, "{:?}", states(&rows));
    assert_eq!(count(&rows, "dead"), 0);
}

// ---------------------------------------------------------------------------------------------
// a deleted message; pings
// ---------------------------------------------------------------------------------------------

pub(crate) async fn scrape(svc: &Service) -> String {
    svc.http
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// The value of one sample of a Prometheus text exposition (0 if absent).
pub(crate) fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_message_is_posted_anew_without_pings() {
    let mock = MockChat::start().await;
    let rest = format!(
        "{}{}",
        discord("live-repost", &mock.url(D), ""),
        route(&["live-repost"], &[&role_mention()])
    );
    // Reads process-wide metrics: no other in-process service meanwhile.
    let svc = Service::start_alone("", &rest).await;
    let g = "gen-deleted-d4";
    let events = story(g);
    svc.post_accepted(&events[0], 1).await;
    let first = mock.wait_for_ok(D, 1, WAIT).await;
    let first_id = posted_id(&first[0]);
    let first_body = first[0].json.clone().unwrap();
    assert_eq!(
        validate::discord_pings(&first_body).roles,
        [ROLE],
        "the first post pings the route's role: {first_body}"
    );
    settled(&svc).await;
    assert!(mock.delete_message(D, &first_id));

    svc.post_accepted(&events[1], 1).await;
    let reposted = shown(&mock, D, "shows active after the delete", |m| {
        colour(m) == Some(BLUE)
    })
    .await;
    let rows = settled(&svc).await;
    let p = posts(&mock, D);
    assert_eq!(p.len(), 2, "one re-post:\n{}", all(&mock));
    let e = patches(&mock, D);
    assert_eq!(e.len(), 1, "{}", all(&mock));
    assert_eq!((edited_id(&e[0]), e[0].status), (first_id.as_str(), 404));
    assert!(e[0].at < p[1].at);
    let repost = p[1].json.as_ref().unwrap();
    assert!(
        validate::discord_pings(repost).is_empty() && repost.get("content").is_none(),
        "a re-post pings nobody: {repost}"
    );
    assert_eq!(repost["allowed_mentions"], json!({"parse": []}));
    let new_id = posted_id(&p[1]);
    assert_eq!(reposted["id"], json!(new_id));
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}");
    let active = rows
        .iter()
        .find(|d| d.event_id == format!("{g}-active"))
        .unwrap();
    assert_eq!(
        (active.state.as_str(), active.message_id.as_deref()),
        ("done", Some(new_id.as_str()))
    );

    // Later events edit the new message.
    svc.post_accepted(&events[2], 1).await;
    shown(&mock, D, "shows progress", |m| colour(m) == Some(AMBER)).await;
    settled(&svc).await;
    let e = patches(&mock, D);
    assert_eq!(e.len(), 2, "{}", all(&mock));
    assert_eq!((edited_id(&e[1]), e[1].status), (new_id.as_str(), 200));
    assert_eq!(mock.messages(D).len(), 1);

    let text = scrape(&svc).await;
    let m = |action: &str| {
        metric(
            &text,
            "printbell_messages_total",
            &[("destination", "live-repost"), ("action", action)],
        )
    };
    assert_eq!(
        (m("posted"), m("reposted"), m("edited")),
        (1.0, 1.0, 1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_edits_the_message_and_pings_in_a_separate_one() {
    failure_edits_and_pings(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn failure_edits_and_pings(store: &TestStore) {
    let mock = MockChat::start().await;
    let rest = format!(
        "{}{}",
        discord("d", &mock.url(D), "username = \"printbell\"\n"),
        route(&["d"], &[&role_mention()])
    );
    let svc = Service::start_on(store, "", &rest).await;
    let g = "gen-failed-e5";
    svc.post_accepted(&story(g)[0], 1).await;
    let first = mock.wait_for_ok(D, 1, WAIT).await;
    let id = posted_id(&first[0]);
    settled(&svc).await;

    // A failure with mentions: the message and its ping.
    svc.post_accepted(&failed("fail-1", g), 1).await;
    let oks = mock.wait_for_ok(D, 2, WAIT).await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, 2, QUIET).await;
    let e = patches(&mock, D);
    assert_eq!(e.len(), 1, "one edit:\n{}", all(&mock));
    assert_eq!((edited_id(&e[0]), e[0].status), (id.as_str(), 200));
    assert_edits_are_quiet(&e);
    assert_eq!(colour(e[0].json.as_ref().unwrap()), Some(RED));
    assert_eq!(colour(&mock.message(D, &id).unwrap()), Some(RED));

    let ping = oks[1].json.as_ref().unwrap();
    assert!(oks[1].problems.is_empty());
    assert!(e[0].at < oks[1].at, "the edit, then the ping");
    assert!(
        ping["content"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("<@&{ROLE}>"))),
        "{ping}"
    );
    assert_eq!(
        ping["allowed_mentions"],
        json!({"parse": [], "roles": [ROLE]}),
        "exactly the route's role"
    );
    assert_eq!(validate::discord_pings(ping).roles, [ROLE]);
    assert_ne!(posted_id(&oks[1]), id, "a message of its own");
    let pings: Vec<&Delivery> = rows.iter().filter(|d| d.role == "ping").collect();
    assert_eq!(pings.len(), 1, "{rows:#?}");
    assert_eq!(pings[0].state, "done");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_generation_whose_first_event_is_a_failure_is_one_message_that_pings() {
    let mock = MockChat::start().await;
    let rest = format!(
        "{}{}",
        discord("d", &mock.url(D), ""),
        route(&["d"], &[&role_mention()])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&failed("fail-first", "gen-failed-f6"), 1)
        .await;
    let oks = mock.wait_for_ok(D, 1, WAIT).await;
    let rows = settled(&svc).await;
    mock.assert_quiet(D, 1, QUIET).await;
    assert!(patches(&mock, D).is_empty(), "{}", all(&mock));
    let body = oks[0].json.as_ref().unwrap();
    assert_eq!(colour(body), Some(RED));
    assert!(
        body["content"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("<@&{ROLE}>"))),
        "{body}"
    );
    assert_eq!(
        body["allowed_mentions"],
        json!({"parse": [], "roles": [ROLE]})
    );
    assert_eq!(validate::discord_pings(body).roles, [ROLE]);
    assert_eq!(mock.messages(D).len(), 1);
    let ping = rows.iter().find(|d| d.role == "ping").expect("ping stored");
    assert_eq!(ping.state, "superseded", "{rows:#?}");
}

// ---------------------------------------------------------------------------------------------
// kill -9 in the middle of a generation
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

    async fn start(&self, tag: &str, rust_log: &str) -> ChildService {
        ChildService::launch(testkit::Launch {
            config: &self.config,
            port: free_port(),
            stderr_path: self.dir.path().join(format!("stderr-{tag}.log")),
            rust_log,
            envs: &[],
        })
        .await
    }

    async fn post(&self, child: &ChildService, e: &Value, n: usize) {
        let resp = self
            .http
            .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
            .header("content-type", "application/json")
            .body(e.to_string())
            .send()
            .await
            .expect("service answers");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        assert_eq!(status, 202, "{body}\n{}", child.log());
        assert_eq!(body["deliveries"], n, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_generation_then_restart_shows_the_final_state() {
    let mock = MockChat::start().await;
    // Posts are answered late, so the first one is in flight when the process dies.
    mock.set_default(D, Reply::delay(Duration::from_millis(400), Reply::Auto));
    let setup = ChildSetup::new(&format!(
        "{}{}",
        discord("d", &mock.url(D), ""),
        route(&["d"], &[])
    ));
    let g = "gen-crash-g7";
    let events = story(g);
    let mut child = setup.start("first", "info").await;
    for e in &events[..3] {
        setup.post(&child, e, 1).await;
    }
    mock.wait_for(D, 1, WAIT).await;
    child.kill(); // SIGKILL, reaped
    let before = testkit::store::deliveries(&setup.store());
    assert_eq!(before.len(), 3, "every acknowledged event is stored");

    let child = setup.start("second", "info").await;
    for e in &events[3..] {
        setup.post(&child, e, 1).await;
    }
    let m = shown(&mock, D, "shows the completed state", |m| {
        is_completed(m, g)
    })
    .await;
    let rows = settled_at(&setup.store()).await;
    mock.assert_quiet(D, mock.requests_to(D).len(), QUIET).await;
    let p = posts(&mock, D);
    eprintln!(
        "kill -9 with a post in flight (answer lost: {}); {} post(s) in all",
        p[0].client_gone,
        p.len()
    );
    assert!(
        p.len() <= 2,
        "at most one extra message for the generation:\n{}",
        all(&mock)
    );
    assert_gallery_of_four(&m, g);
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}\n{}", child.log());
    let completed = rows
        .iter()
        .find(|d| d.event_type == "print.completed")
        .unwrap();
    assert_eq!(completed.state, "done", "{rows:#?}");
    assert_eq!(
        completed.message_id.as_ref(),
        m["id"].as_str().map(str::to_string).as_ref()
    );
    // The newest message is the one that shows it, and the edits went to it.
    let last = mock.messages(D).pop().unwrap();
    assert_eq!(last["id"], m["id"]);
    let e = patches(&mock, D);
    assert!(
        e.iter().all(|r| r.status == 200),
        "no edit of an unknown message:\n{}",
        all(&mock)
    );
    assert_edits_are_quiet(&e);
}

// ---------------------------------------------------------------------------------------------
// Slack through the Web API
// ---------------------------------------------------------------------------------------------

fn slack_text(m: &SlackMessage) -> String {
    format!("{} {}", m.text, m.blocks)
}

async fn slack_shown(
    api: &MockSlackApi,
    what: &str,
    pred: impl Fn(&SlackMessage) -> bool,
) -> SlackMessage {
    let deadline = Instant::now() + WAIT;
    loop {
        let list = api.messages(MockSlackApi::CHANNEL);
        if let Some(m) = list.into_iter().rev().find(|m| !m.deleted && pred(m)) {
            return m;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out after {WAIT:?} waiting for a Slack message that {what}; messages: {:#?}\nrequests:\n{}",
                api.messages(MockSlackApi::CHANNEL),
                describe_all(&api.requests())
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn slack_all(api: &MockSlackApi) -> String {
    describe_all(&api.requests())
}

fn slack_completed(m: &SlackMessage, generation: &str) -> bool {
    m.image_urls() == (1..=4).map(|i| img(generation, i)).collect::<Vec<_>>()
        && slack_text(m).contains("print.completed")
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_a_generation_is_one_message_updated_to_completed() {
    let api = MockSlackApi::start().await;
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[])
    );
    let svc = Service::start("", &rest).await;
    let g = "gen-slack-h8";
    post_all(&svc, &story(g)).await;
    let m = slack_shown(&api, "shows 4 images", |m| slack_completed(m, g)).await;
    let rows = settled(&svc).await;
    api.assert_quiet(api.requests().len(), QUIET).await;

    let reqs = api.requests();
    assert!(
        reqs.iter().all(mock_slack_api::is_ok),
        "every call taken (none refused, no 429):\n{}",
        slack_all(&api)
    );
    let posts = api.posts();
    assert_eq!(posts.len(), 1, "one chat.postMessage:\n{}", slack_all(&api));
    let updates = api.updates();
    assert!(
        !updates.is_empty() && updates.len() <= 6,
        "at most 6 chat.update:\n{}",
        slack_all(&api)
    );
    for r in &reqs {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {}", MockSlackApi::TOKEN).as_str())
        );
        assert_eq!(
            r.header("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    let post = posts[0].json.as_ref().unwrap();
    assert_eq!(post["channel"], MockSlackApi::CHANNEL);
    assert_eq!(
        (&post["unfurl_links"], &post["unfurl_media"]),
        (&json!(false), &json!(false)),
        "{post}"
    );
    for u in &updates {
        let body = u.json.as_ref().unwrap();
        assert_eq!(body["channel"], MockSlackApi::CHANNEL);
        assert_eq!(body["ts"], json!(m.ts), "updates of the posted message");
        assert!(
            body["text"].is_string() && body["blocks"].is_array(),
            "{body}"
        );
    }
    assert_eq!(m.edits as usize, updates.len());
    assert_eq!(
        m.image_urls(),
        (1..=4).map(|i| img(g, i)).collect::<Vec<_>>()
    );
    assert!(
        m.text.contains("is ready (4 images)"),
        "the completed title: {m:?}"
    );
    assert_eq!(api.messages(MockSlackApi::CHANNEL).len(), 1);
    assert_eq!(rows.len(), 7);
    assert_eq!(
        count(&rows, "done"),
        1 + updates.len(),
        "{:?}",
        states(&rows)
    );
    assert_eq!(count(&rows, "superseded"), 6 - updates.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_a_bad_token_is_dead_at_once_after_one_request() {
    let api = MockSlackApi::start().await;
    let revoked = "xoxb-1000000001-3000000003-revokedtoken01";
    api.add_token(revoked);
    api.revoke_token(revoked);
    let wrong = "xoxb-1000000001-4000000004-unknowntoken1";
    let rest = format!(
        "{}{}{}",
        slack_api("revoked", &api, revoked),
        slack_api("wrong", &api, wrong),
        route(&["revoked", "wrong"], &[])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&story("gen-token-i9")[0], 2).await;
    let rows = settled(&svc).await;
    api.assert_quiet(2, QUIET).await;
    let reqs = api.requests();
    assert_eq!(
        reqs.len(),
        2,
        "one request each, not retried:\n{}",
        slack_all(&api)
    );
    for (name, token, code) in [
        ("revoked", revoked, "token_revoked"),
        ("wrong", wrong, "invalid_auth"),
    ] {
        let sent: Vec<&Received> = reqs
            .iter()
            .filter(|r| r.header("authorization") == Some(format!("Bearer {token}").as_str()))
            .collect();
        assert_eq!(sent.len(), 1, "{name}:\n{}", slack_all(&api));
        assert_eq!(mock_slack_api::error_of(sent[0]).as_deref(), Some(code));
        let d = rows.iter().find(|d| d.destination == name).unwrap();
        assert_eq!(d.state, "dead", "{d:?}");
        assert_eq!(d.attempts, 1, "{d:?}");
        assert!(
            d.last_error.as_deref().is_some_and(|e| e.contains(code)),
            "the platform's error is kept: {d:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_message_not_found_on_update_is_posted_anew() {
    let api = MockSlackApi::start().await;
    let mention = format!("user:{SLACK_USER}");
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[&mention])
    );
    let svc = Service::start("", &rest).await;
    let events = story("gen-gone-j10");
    svc.post_accepted(&events[0], 1).await;
    let first = api.wait_for_ok(POST_MESSAGE, 1, WAIT).await;
    let first_body = first[0].json.clone().unwrap();
    assert!(
        first_body["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("<@{SLACK_USER}>"))),
        "the first post pings: {first_body}"
    );
    settled(&svc).await;
    let old = api.messages(MockSlackApi::CHANNEL).pop().unwrap();
    assert!(api.delete_message(MockSlackApi::CHANNEL, &old.ts));

    svc.post_accepted(&events[1], 1).await;
    let posts = api.wait_for_ok(POST_MESSAGE, 2, WAIT).await;
    let rows = settled(&svc).await;
    api.assert_quiet(3, QUIET).await;
    let updates = api.calls(UPDATE);
    assert_eq!(updates.len(), 1, "{}", slack_all(&api));
    assert_eq!(
        mock_slack_api::error_of(&updates[0]).as_deref(),
        Some("message_not_found")
    );
    assert_eq!(updates[0].json.as_ref().unwrap()["ts"], json!(old.ts));
    assert!(updates[0].at < posts[1].at);
    let repost = posts[1].json.as_ref().unwrap();
    assert!(
        !repost.to_string().contains(SLACK_USER),
        "a re-post pings nobody: {repost}"
    );
    assert!(repost.get("thread_ts").is_none());
    let now = slack_shown(&api, "shows active", |m| {
        slack_text(m).contains("print.active")
    })
    .await;
    assert_ne!(now.ts, old.ts);
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}");
    assert_eq!(count(&rows, "done"), 2, "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_a_failure_updates_the_message_and_pings_in_its_thread() {
    let api = MockSlackApi::start().await;
    let mention = format!("user:{SLACK_USER}");
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[&mention])
    );
    let svc = Service::start("", &rest).await;
    let g = "gen-slack-fail-k11";
    svc.post_accepted(&story(g)[0], 1).await;
    api.wait_for_ok(POST_MESSAGE, 1, WAIT).await;
    settled(&svc).await;
    let parent = api.messages(MockSlackApi::CHANNEL).pop().unwrap();

    svc.post_accepted(&failed("slack-fail-1", g), 1).await;
    api.wait_for_ok(POST_MESSAGE, 2, WAIT).await;
    let rows = settled(&svc).await;
    api.assert_quiet(api.requests().len(), QUIET).await;
    let (posts, updates, replies) = (api.posts(), api.updates(), api.replies());
    assert_eq!(
        (posts.len(), updates.len(), replies.len()),
        (1, 1, 1),
        "{}",
        slack_all(&api)
    );
    let update = updates[0].json.as_ref().unwrap();
    assert_eq!(update["ts"], json!(parent.ts));
    assert!(
        !update.to_string().contains(SLACK_USER),
        "the edit pings nobody"
    );
    let reply = replies[0].json.as_ref().unwrap();
    assert_eq!(reply["thread_ts"], json!(parent.ts), "{reply}");
    assert_eq!(reply["reply_broadcast"], true);
    assert!(
        reply["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("<@{SLACK_USER}>"))),
        "{reply}"
    );
    assert!(updates[0].at < replies[0].at);
    let shown = api.message(MockSlackApi::CHANNEL, &parent.ts).unwrap();
    assert!(slack_text(&shown).contains("print.failed"), "{shown:?}");
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_a_generation_whose_first_event_is_a_failure_is_one_message_that_pings() {
    let api = MockSlackApi::start().await;
    let mention = format!("user:{SLACK_USER}");
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[&mention])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&failed("slack-fail-first", "gen-slack-ff-r18"), 1)
        .await;
    let posts = api.wait_for_ok(POST_MESSAGE, 1, WAIT).await;
    let rows = settled(&svc).await;
    api.assert_quiet(1, QUIET).await;
    let body = posts[0].json.as_ref().unwrap();
    assert!(
        body["text"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("<@{SLACK_USER}>"))),
        "{body}"
    );
    assert!(body.get("thread_ts").is_none(), "{body}");
    assert!(api.replies().is_empty() && api.updates().is_empty());
    let ping = rows.iter().find(|d| d.role == "ping").expect("ping stored");
    assert_eq!(ping.state, "superseded", "{rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_a_429_waits_retry_after_then_delivers() {
    let api = MockSlackApi::start().await;
    api.script(
        POST_MESSAGE,
        vec![SlackReply::RateLimited {
            retry_after_secs: 2,
        }],
    );
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[])
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&story("gen-429-l12")[0], 1).await;
    api.wait_for_ok(POST_MESSAGE, 1, WAIT).await;
    let rows = settled(&svc).await;
    let calls = api.requests();
    assert_eq!(calls.len(), 2, "{}", slack_all(&api));
    assert_eq!(calls[0].status, 429);
    let gap = calls[1].at.duration_since(calls[0].at);
    // 10 ms of slack for the millisecond rounding of the stored schedule.
    assert!(
        gap >= Duration::from_millis(1990),
        "asked to wait 2 s, came back after {gap:?}\n{}",
        slack_all(&api)
    );
    assert!(gap < Duration::from_secs(10), "{gap:?}");
    assert_eq!(rows[0].state, "done", "{rows:#?}");
    assert_eq!(api.messages(MockSlackApi::CHANNEL).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_updates_over_the_limit_wait_and_are_coalesced() {
    let api = MockSlackApi::start().await;
    // Much tighter than Slack's Tier 3: one update, then one every 3 s.
    api.set_limit(UPDATE, Some(Limit::new(Duration::from_secs(3), 1)));
    let rest = format!(
        "{}{}",
        slack_api("s", &api, MockSlackApi::TOKEN),
        route(&["s"], &[])
    );
    let svc = Service::start("", &rest).await;
    let g = "gen-slack-limit-p16";
    post_all(&svc, &story(g)).await;
    let m = slack_shown(&api, "shows 4 images", |m| slack_completed(m, g)).await;
    let rows = settled(&svc).await;
    api.assert_quiet(api.requests().len(), QUIET).await;
    let calls = api.calls(UPDATE);
    // After each 429, nothing before its Retry-After.
    let limited: Vec<&Received> = calls.iter().filter(|r| r.status == 429).collect();
    assert!(
        !limited.is_empty(),
        "the tight limit was hit:\n{}",
        slack_all(&api)
    );
    for r in limited {
        let secs: u64 = r
            .response_header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After on a 429");
        let next = api.requests().into_iter().find(|n| n.at > r.at);
        let next = next.expect("a call after the 429");
        let gap = next.at.duration_since(r.at);
        assert!(
            gap + Duration::from_millis(10) >= Duration::from_secs(secs),
            "a 429 said {secs} s; the next call came after {gap:?}\n{}",
            slack_all(&api)
        );
    }
    let ok = api.updates();
    assert!(
        ok.len() <= 3,
        "the waiting updates were coalesced:\n{}",
        slack_all(&api)
    );
    assert_eq!(api.posts().len(), 1, "{}", slack_all(&api));
    assert_eq!(m.edits as usize, ok.len());
    assert_eq!(count(&rows, "dead"), 0, "{rows:#?}");
    assert!(count(&rows, "superseded") >= 3, "{:?}", states(&rows));
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_tokens_never_appear_in_the_log() {
    let api = MockSlackApi::start().await;
    // A transient error (retried, logged) on the good destination; a revoked token on the other.
    api.script(POST_MESSAGE, vec![SlackReply::error("internal_error")]);
    let revoked = "xoxb-1000000001-5000000005-revokedsecret";
    api.add_token(revoked);
    api.revoke_token(revoked);
    let setup = ChildSetup::new(&format!(
        "{}{}{}",
        slack_api("good", &api, MockSlackApi::TOKEN),
        slack_api("bad", &api, revoked),
        route(&["good", "bad"], &[&format!("user:{SLACK_USER}")])
    ));
    let child = setup.start("tokens", "debug").await;
    let g = "gen-log-m13";
    let events = story(g);
    for e in &events[..2] {
        setup.post(&child, e, 2).await;
    }
    setup.post(&child, &failed("log-fail", g), 2).await;
    let rows = settled_at(&setup.store()).await;
    assert!(
        rows.iter()
            .filter(|d| d.destination == "good")
            .all(|d| d.state != "dead"),
        "{rows:#?}\n{}",
        child.log()
    );
    assert!(rows
        .iter()
        .any(|d| d.destination == "bad" && d.state == "dead"));
    assert!(
        api.requests()
            .iter()
            .any(|r| r.status == 200
                && mock_slack_api::error_of(r).as_deref() == Some("internal_error")),
        "{}",
        slack_all(&api)
    );
    let log = child.log();
    assert!(log.contains("token_revoked"), "the error is logged:\n{log}");
    for secret in [
        MockSlackApi::TOKEN,
        revoked,
        "mockbottoken",
        "revokedsecret",
    ] {
        assert!(!log.contains(secret), "a token in the log:\n{log}");
    }
    assert!(!log.contains("xoxb-"), "a token in the log:\n{log}");
}

// ---------------------------------------------------------------------------------------------
// both modes on one route
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_each_slack_webhook_and_a_live_discord_destination_on_one_route() {
    let mock = MockChat::start().await;
    let rest = format!(
        "[destinations.team]\nkind = \"slack\"\nurl = \"{}\"\n\n{}{}",
        mock.url(S),
        discord("oncall", &mock.url(D), ""),
        route(&["team", "oncall"], &[])
    );
    let svc = Service::start("", &rest).await;
    let g = "gen-mixed-n14";
    for e in story(g) {
        svc.post_accepted(&e, 2).await;
    }
    let slack = mock.wait_for_ok(S, 7, WAIT).await;
    let m = shown(&mock, D, "shows the completed state", |m| {
        is_completed(m, g)
    })
    .await;
    let rows = settled(&svc).await;
    let n = mock.requests().len();
    mock.assert_quiet(S, 7, QUIET).await;
    assert_eq!(mock.requests().len(), n, "{}", all(&mock));

    // Slack incoming webhook: every event, in order.
    let order: Vec<String> = slack
        .iter()
        .map(|r| {
            let t = r.text();
            ["created", "active", "progress", "completed"]
                .into_iter()
                .find(|k| t.contains(&format!("print.{k}")))
                .unwrap_or("?")
                .to_string()
        })
        .collect();
    assert_eq!(
        order,
        [
            "created",
            "active",
            "progress",
            "progress",
            "progress",
            "progress",
            "completed"
        ]
    );
    let last = slack[6].json.as_ref().unwrap();
    let images: Vec<&Value> = last["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "image")
        .collect();
    assert_eq!(images.len(), 4, "{last}");
    assert!(rows
        .iter()
        .filter(|d| d.destination == "team")
        .all(|d| d.mode == "each" && d.state == "done"));

    // Discord: one message, edited.
    assert_eq!(posts(&mock, D).len(), 1, "{}", all(&mock));
    let e = patches(&mock, D);
    assert!(!e.is_empty() && e.len() <= 6, "{}", all(&mock));
    assert_edits_are_quiet(&e);
    assert_gallery_of_four(&m, g);
    assert!(rows
        .iter()
        .filter(|d| d.destination == "oncall")
        .all(|d| d.mode == "live" && d.state != "dead" && d.state != "pending"));
}
