//! Self-tests of the chat mock (testkit/src/mock_chat.rs) and the body validators
//! (testkit/src/validate.rs).

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use testkit::mock_chat::{MockChat, Reply};
use testkit::validate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLACK: &str = "/services/T1/B1/XYZ";
const DISCORD: &str = "/api/webhooks/123456789012345678/tok-en_1";
const SECS: Duration = Duration::from_secs(5);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn good_slack() -> Value {
    json!({
        "text": "Sunset banner is ready (2 images)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Sunset banner is ready", "emoji": true}},
            {"type": "section", "block_id": "body", "text": {"type": "mrkdwn", "text": "> a &lt;sunset&gt; over *the* sea", "verbatim": true},
             "fields": [{"type": "mrkdwn", "text": "*Model*\nflux"}, {"type": "plain_text", "text": "1024x1024"}]},
            {"type": "image", "image_url": "https://cdn.example.com/img/1.png", "alt_text": "image 1",
             "title": {"type": "plain_text", "text": "Sunset #1"}},
            {"type": "image", "image_url": "https://cdn.example.com/img/2.png", "alt_text": "image 2"},
            {"type": "divider"},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": "tags: `marketing`, `banners` · gen `g_123`"},
                {"type": "image", "image_url": "https://cdn.example.com/icon.png", "alt_text": "icon"}
            ]},
            {"type": "markdown", "text": "**done**"}
        ],
        "unfurl_links": false,
        "unfurl_media": false
    })
}

fn good_discord() -> Value {
    json!({
        "content": "<@&123456789012345678> Sunset banner is ready",
        "username": "printbell",
        "avatar_url": "https://example.com/bell.png",
        "allowed_mentions": {"parse": [], "roles": ["123456789012345678"]},
        "embeds": [
            {
                "title": "Sunset banner is ready",
                "description": "a sunset over the sea",
                "url": "https://app.all-images.ai/generations/g_123",
                "color": 0x2ECC71,
                "timestamp": "2025-01-02T03:04:05.678Z",
                "image": {"url": "https://cdn.example.com/img/1.png"},
                "fields": [{"name": "Tags", "value": "marketing, banners", "inline": true}],
                "footer": {"text": "generation g_123"},
                "author": {"name": "all-images.ai", "url": "https://all-images.ai"}
            },
            {"url": "https://app.all-images.ai/generations/g_123", "image": {"url": "https://cdn.example.com/img/2.png"}}
        ]
    })
}

async fn post(c: &reqwest::Client, url: String, body: &Value) -> reqwest::Response {
    c.post(url).json(body).send().await.expect("request failed")
}

fn has_problem(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

#[track_caller]
fn assert_problem(problems: Vec<String>, needle: &str) {
    assert!(
        has_problem(&problems, needle),
        "expected a problem containing {needle:?}, got {problems:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// mock: auto replies, scripts, delays, failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slack_auto_reply_is_plain_ok_and_request_is_recorded() {
    let mock = MockChat::start().await;
    assert!(mock.base().starts_with("http://127.0.0.1:"));
    assert_eq!(mock.url(SLACK), format!("{}{SLACK}", mock.base()));
    let c = client();
    let r = c
        .post(mock.url(SLACK))
        .header("User-Agent", "printbell-test")
        .json(&good_slack())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(r.text().await.unwrap(), "ok");

    let reqs = mock.requests_to(SLACK);
    assert_eq!(reqs.len(), 1);
    let q = &reqs[0];
    assert_eq!(q.method, "POST");
    assert_eq!(q.path, SLACK);
    assert_eq!(q.query, None);
    assert_eq!(q.status, 200);
    assert!(q.is_ok() && q.answered_at.is_some() && q.problems.is_empty());
    assert_eq!(q.header("User-Agent"), Some("printbell-test"));
    assert_eq!(q.headers["content-type"], "application/json");
    assert_eq!(q.json.as_ref().unwrap(), &good_slack());
    assert_eq!(mock.requests().len(), 1);
    assert!(mock.requests_to("/other").is_empty());
}

#[tokio::test]
async fn discord_auto_reply_is_204_or_message_with_wait_true() {
    let mock = MockChat::start().await;
    let c = client();
    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.text().await.unwrap(), "");

    let mut ids = Vec::new();
    for wait in ["true", "1", "True"] {
        let r = post(
            &c,
            format!("{}?wait={wait}", mock.url(DISCORD)),
            &good_discord(),
        )
        .await;
        assert_eq!(r.status(), 200);
        let m: Value = r.json().await.unwrap();
        let id = m["id"].as_str().unwrap().to_string();
        assert!(
            id.len() >= 17 && id.bytes().all(|b| b.is_ascii_digit()),
            "snowflake-like id: {id}"
        );
        assert!(m["channel_id"].is_string());
        assert_eq!(m["content"], good_discord()["content"]);
        assert_eq!(m["embeds"].as_array().unwrap().len(), 2);
        assert_eq!(m["embeds"][0]["type"], "rich");
        assert_eq!(m["webhook_id"], "123456789012345678");
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "ids must be unique");

    // thread_id becomes the channel id
    let r = post(
        &c,
        format!("{}?wait=true&thread_id=42", mock.url(DISCORD)),
        &good_discord(),
    )
    .await;
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["channel_id"], "42");

    let reqs = mock.requests_to(DISCORD);
    assert_eq!(reqs.len(), 5);
    assert_eq!(reqs[1].query.as_deref(), Some("wait=true"));
    assert_eq!(reqs[4].query_param("thread_id").as_deref(), Some("42"));
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [204, 200, 200, 200, 200]
    );
}

#[tokio::test]
async fn versioned_discord_path_is_discord_and_matches_the_unversioned_key() {
    let mock = MockChat::start().await;
    let c = client();
    let v10 = "/api/v10/webhooks/123456789012345678/tok-en_1";
    let r = post(&c, format!("{}?wait=true", mock.url(v10)), &good_discord()).await;
    assert_eq!(r.status(), 200);
    let m: Value = r.json().await.unwrap();
    assert!(m["id"].is_string());

    // scripts / limits / queries keyed by the unversioned path apply to /v10 and vice versa
    mock.script(DISCORD, vec![Reply::DiscordUnknownWebhook]);
    assert_eq!(post(&c, mock.url(v10), &good_discord()).await.status(), 404);
    let reqs = mock.requests_to(DISCORD);
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, v10);
    assert_eq!(reqs[0].route, DISCORD);
    assert_eq!(mock.requests_to(&format!("{v10}/")).len(), 2);
    // the message created through /v10 can be edited through the unversioned path
    let msg = format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap());
    let r = c
        .patch(mock.url(&msg))
        .json(&json!({"content": "e"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn discord_message_edit_get_delete() {
    let mock = MockChat::start().await;
    let c = client();
    let m: Value = post(
        &c,
        format!("{}?wait=true", mock.url(DISCORD)),
        &good_discord(),
    )
    .await
    .json()
    .await
    .unwrap();
    let msg_path = format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap());
    let r = c
        .patch(mock.url(&msg_path))
        .json(&json!({"content": "edited", "allowed_mentions": {"parse": []}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["content"], "edited");
    assert_eq!(e["id"], m["id"]);
    assert!(e["edited_timestamp"].is_string());

    // an execute-only key is rejected in an edit body
    let r = c
        .patch(mock.url(&msg_path))
        .json(&json!({"content": "x", "username": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let r = c.get(mock.url(&msg_path)).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["content"], "edited");
    assert_eq!(
        c.delete(mock.url(&msg_path)).send().await.unwrap().status(),
        204
    );
    let r = c.get(mock.url(&msg_path)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 10008);
}

#[tokio::test]
async fn script_is_used_in_order_then_default_then_auto() {
    let mock = MockChat::start().await;
    let c = client();
    mock.script(
        SLACK,
        vec![
            Reply::Status(500, "rollup_error".into()),
            Reply::Status(503, r#"{"error":"x"}"#.into()),
        ],
    );
    mock.script(SLACK, vec![Reply::Status(404, "no_service".into())]); // appends
    let mut got = Vec::new();
    for _ in 0..5 {
        let r = post(&c, mock.url(SLACK), &good_slack()).await;
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        got.push((r.status().as_u16(), r.text().await.unwrap(), ct));
    }
    assert_eq!(got[0].0, 500);
    assert_eq!(got[0].1, "rollup_error");
    assert_eq!(got[1].0, 503);
    assert_eq!(got[1].2.as_deref(), Some("application/json"));
    assert_eq!(got[2].0, 404);
    assert_eq!((got[3].0, got[3].1.as_str()), (200, "ok"));
    assert_eq!(got[4].0, 200);

    // default replaces Auto once the script is exhausted; a new script still wins
    mock.set_default(SLACK, Reply::Status(410, "channel_is_archived".into()));
    mock.script(SLACK, vec![Reply::Auto]);
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 200);
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 410);
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 410);
    // scripts are per path
    assert_eq!(
        post(&c, mock.url("/services/T1/B1/OTHER"), &good_slack())
            .await
            .status(),
        200
    );
    assert_eq!(mock.count_status(SLACK, 410), 2);
}

#[tokio::test]
async fn delay_answers_late_and_status_is_set_when_answered() {
    let mock = MockChat::start().await;
    mock.script(
        SLACK,
        vec![Reply::delay(Duration::from_millis(400), Reply::Auto)],
    );
    let c = client();
    let m2 = mock.clone();
    let t0 = Instant::now();
    let probe = tokio::spawn(async move {
        let reqs = m2.wait_for(SLACK, 1, SECS).await;
        // arrived but not answered yet
        (reqs[0].status, reqs[0].is_ok())
    });
    let r = post(&c, mock.url(SLACK), &good_slack()).await;
    let took = t0.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        took >= Duration::from_millis(400),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(2));
    assert_eq!(probe.await.unwrap(), (0, false));
    let q = &mock.requests_to(SLACK)[0];
    assert_eq!(q.status, 200);
    assert!(q.answered_at.unwrap() - q.at >= Duration::from_millis(400));
}

#[tokio::test]
async fn delay_then_client_timeout_is_not_a_delivery() {
    let mock = MockChat::start().await;
    mock.script(
        SLACK,
        vec![Reply::delay(Duration::from_millis(1500), Reply::Auto)],
    );
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = c
        .post(mock.url(SLACK))
        .json(&good_slack())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let q = mock
        .wait_until("client_gone", SECS, |log| {
            log.iter().find(|r| r.client_gone).cloned()
        })
        .await;
    assert_eq!(q.status, 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mock.requests_to(SLACK)[0].status,
        0,
        "a delayed answer to a gone client is not recorded"
    );
    assert!(mock.ok_requests_to(SLACK).is_empty());
}

#[tokio::test]
async fn hang_makes_the_client_time_out() {
    let mock = MockChat::start().await;
    mock.script(DISCORD, vec![Reply::Hang]);
    let c = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = c
        .post(mock.url(DISCORD))
        .json(&good_discord())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    let q = mock
        .wait_until("client_gone", SECS, |log| {
            log.iter().find(|r| r.client_gone).cloned()
        })
        .await;
    assert_eq!(q.status, 0);
    // the next request is answered normally
    assert_eq!(
        post(&c, mock.url(DISCORD), &good_discord()).await.status(),
        204
    );
}

#[tokio::test]
async fn reset_gives_a_connection_error_and_the_next_request_works() {
    let mock = MockChat::start().await;
    mock.script(
        SLACK,
        vec![
            Reply::Reset,
            Reply::delay(Duration::from_millis(50), Reply::Reset),
        ],
    );
    let c = client();
    // warm a keep-alive connection first so the reset happens on a reused connection
    assert_eq!(
        post(&c, mock.url("/services/warm"), &good_slack())
            .await
            .status(),
        200
    );
    for _ in 0..2 {
        let t0 = Instant::now();
        let err = c
            .post(mock.url(SLACK))
            .json(&good_slack())
            .send()
            .await
            .unwrap_err();
        assert!(!err.is_timeout(), "{err:?}");
        assert!(err.status().is_none());
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 200);
    let st: Vec<u16> = mock.requests_to(SLACK).iter().map(|r| r.status).collect();
    assert_eq!(st, [0, 0, 200]);
}

#[tokio::test]
async fn rate_limited_reply_shapes() {
    let mock = MockChat::start().await;
    let c = client();
    mock.script(
        SLACK,
        vec![Reply::SlackRateLimited {
            retry_after_secs: 7,
        }],
    );
    let r = post(&c, mock.url(SLACK), &good_slack()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
    assert_eq!(r.text().await.unwrap(), "rate_limited");

    mock.script(
        DISCORD,
        vec![
            Reply::DiscordRateLimited {
                retry_after: 1.5,
                global: true,
            },
            Reply::DiscordRateLimited {
                retry_after: 0.25,
                global: false,
            },
            Reply::DiscordUnknownWebhook,
        ],
    );
    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["retry-after"], "2");
    assert_eq!(h["x-ratelimit-global"], "true");
    assert_eq!(h["x-ratelimit-scope"], "global");
    let b: Value = r.json().await.unwrap();
    assert_eq!(
        b,
        json!({"message": "You are being rate limited.", "retry_after": 1.5, "global": true, "code": 0})
    );

    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(r.status(), 429);
    let h = r.headers().clone();
    assert_eq!(h["retry-after"], "1");
    assert_eq!(h["x-ratelimit-scope"], "user");
    assert!(h.get("x-ratelimit-global").is_none());
    assert_eq!(h["x-ratelimit-remaining"], "0");
    assert_eq!(h["x-ratelimit-reset-after"], "0.250");
    assert_eq!(r.json::<Value>().await.unwrap()["global"], false);

    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "Unknown Webhook", "code": 10015})
    );

    assert_eq!(mock.count_429(SLACK), 1);
    assert_eq!(mock.count_429(DISCORD), 2);
}

#[tokio::test]
async fn discord_rate_limit_enforcement() {
    let mock = MockChat::start().await;
    mock.enforce_discord_limits(DISCORD, 5, Duration::from_secs(2));
    let c = client();
    let mut remaining = Vec::new();
    let mut statuses = Vec::new();
    let mut last = None;
    for _ in 0..6 {
        let r = post(
            &c,
            format!("{}?wait=true", mock.url(DISCORD)),
            &good_discord(),
        )
        .await;
        let h = r.headers().clone();
        for k in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "x-ratelimit-reset-after",
            "x-ratelimit-bucket",
        ] {
            assert!(h.contains_key(k), "missing {k} in {h:?}");
        }
        assert_eq!(h["x-ratelimit-limit"], "5");
        let ra = h["x-ratelimit-reset-after"].to_str().unwrap();
        assert_eq!(
            ra.split('.').nth(1).map(str::len),
            Some(3),
            "3 decimals: {ra}"
        );
        let ra: f64 = ra.parse().unwrap();
        assert!(ra > 0.0 && ra <= 2.0, "{ra}");
        let reset: f64 = h["x-ratelimit-reset"].to_str().unwrap().parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(reset > now && reset <= now + 2.1, "reset {reset} now {now}");
        remaining.push(h["x-ratelimit-remaining"].to_str().unwrap().to_string());
        statuses.push(r.status().as_u16());
        last = Some((h, r.json::<Value>().await.unwrap()));
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429]);
    assert_eq!(remaining, ["4", "3", "2", "1", "0", "0"]);
    let (h, body) = last.unwrap();
    let retry_after = body["retry_after"].as_f64().unwrap();
    assert!(retry_after > 0.0 && retry_after <= 2.0, "{body}");
    assert_eq!(body["global"], false);
    assert_eq!(h["retry-after"], "2");
    assert_eq!(mock.count_429(DISCORD), 1);
    assert_eq!(mock.ok_requests_to(DISCORD).len(), 5);
    // other paths are not limited
    for _ in 0..6 {
        assert_eq!(
            post(&c, mock.url("/api/webhooks/9/other"), &good_discord())
                .await
                .status(),
            204
        );
    }
}

#[tokio::test]
async fn rate_limit_window_resets_after_retry_after() {
    let mock = MockChat::start().await;
    mock.enforce_discord_limits(DISCORD, 2, Duration::from_millis(400));
    let c = client();
    assert_eq!(
        post(&c, mock.url(DISCORD), &good_discord()).await.status(),
        204
    );
    assert_eq!(
        post(&c, mock.url(DISCORD), &good_discord()).await.status(),
        204
    );
    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(r.status(), 429);
    let wait = r.json::<Value>().await.unwrap()["retry_after"]
        .as_f64()
        .unwrap();
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    let r = post(&c, mock.url(DISCORD), &good_discord()).await;
    assert_eq!(
        r.status(),
        204,
        "waiting exactly retry_after must be enough"
    );
    assert_eq!(r.headers()["x-ratelimit-remaining"], "1");

    // Slack flavour
    mock.enforce_slack_limits(SLACK, 1, Duration::from_secs(1));
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 200);
    let r = post(&c, mock.url(SLACK), &good_slack()).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers().get("x-ratelimit-limit").is_none());
    assert_eq!(mock.count_429(SLACK), 1);
}

#[tokio::test]
async fn strict_mode_rejects_bad_slack_bodies() {
    let mock = MockChat::start().await;
    let c = client();
    mock.script(SLACK, vec![Reply::Status(500, "rollup_error".into())]);

    let mut bad = good_slack();
    bad["blocks"][0]["text"]["text"] = json!("x".repeat(151));
    let r = post(&c, mock.url(SLACK), &bad).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.text().await.unwrap(), "invalid_blocks");

    let r = post(&c, mock.url(SLACK), &json!({"blocks": []})).await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "no_text".to_string())
    );

    let r = c
        .post(mock.url(SLACK))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "invalid_payload".to_string())
    );

    let r = c
        .post(mock.url(SLACK))
        .body(good_slack().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (400, "invalid_payload".to_string())
    );

    let reqs = mock.requests_to(SLACK);
    assert_problem(
        reqs[0].problems.clone(),
        "/blocks/0/text/text: 151 chars, limit 150",
    );
    assert_problem(reqs[1].problems.clone(), "/text");
    assert_problem(reqs[2].problems.clone(), "not valid JSON");
    assert_problem(reqs[3].problems.clone(), "content-type");
    assert!(reqs.iter().all(|r| r.status == 400));

    // rejected requests did not consume the scripted reply
    assert_eq!(post(&c, mock.url(SLACK), &good_slack()).await.status(), 500);

    // strict off: anything goes
    mock.set_strict(false);
    assert_eq!(post(&c, mock.url(SLACK), &bad).await.status(), 200);
    assert!(mock.requests_to(SLACK).last().unwrap().problems.is_empty());
}

#[tokio::test]
async fn strict_mode_rejects_bad_discord_bodies() {
    let mock = MockChat::start().await;
    let c = client();
    let mut bad = good_discord();
    bad["embeds"][0]["title"] = json!("t".repeat(257));
    bad["embeds"][1]["color"] = json!(-1);
    let r = post(&c, mock.url(DISCORD), &bad).await;
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["code"], 50035);
    assert_eq!(b["message"], "Invalid Form Body");
    assert!(b["errors"]["embeds"]["0"]["title"]["_errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("limit 256"));
    assert!(
        b["errors"]["embeds"]["1"]["color"]["_errors"].is_array(),
        "{b}"
    );
    let q = mock.requests_to(DISCORD).pop().unwrap();
    assert_eq!(q.status, 400);
    assert_problem(q.problems.clone(), "/embeds/0/title: 257 chars, limit 256");
    assert_problem(q.problems, "/embeds/1/color");

    let r = post(&c, mock.url(DISCORD), &json!({"content": "   "})).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 50006);

    let r = c
        .post(mock.url(DISCORD))
        .body(good_discord().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 50035);

    let r = c
        .post(mock.url(DISCORD))
        .header("content-type", "application/json")
        .body("[1,")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 50109);
}

#[tokio::test]
async fn non_post_is_405() {
    let mock = MockChat::start().await;
    let c = client();
    assert_eq!(c.get(mock.url(SLACK)).send().await.unwrap().status(), 405);
    let r = c
        .put(mock.url(DISCORD))
        .json(&good_discord())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(mock.count_status(SLACK, 405), 1);
}

#[tokio::test]
async fn wait_for_and_wait_for_ok_differ() {
    let mock = MockChat::start().await;
    mock.script(
        DISCORD,
        vec![Reply::Status(502, "bad gateway".into()), Reply::Reset],
    );
    let c = client();
    let m = mock.clone();
    let sender = tokio::spawn(async move {
        let c2 = client();
        for _ in 0..3 {
            let _ = c2.post(m.url(DISCORD)).json(&good_discord()).send().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let all = mock.wait_for(DISCORD, 3, SECS).await;
    assert_eq!(all.len(), 3);
    let ok = mock.wait_for_ok(DISCORD, 1, SECS).await;
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].status, 204);
    sender.await.unwrap();
    assert_eq!(mock.delivered_json(DISCORD), vec![good_discord()]);
    drop(c);
}

#[tokio::test]
#[should_panic(expected = "timed out")]
async fn wait_for_ok_timeout_panics_listing_requests() {
    let mock = MockChat::start().await;
    mock.script(SLACK, vec![Reply::Status(500, "rollup_error".into())]);
    post(&client(), mock.url(SLACK), &good_slack()).await;
    mock.wait_for_ok(SLACK, 1, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn timeout_panic_message_lists_what_was_received() {
    let mock = MockChat::start().await;
    mock.script(SLACK, vec![Reply::Status(500, "rollup_error".into())]);
    post(&client(), mock.url(SLACK), &json!({"text": "hello"})).await;
    let m = mock.clone();
    let err = tokio::spawn(async move { m.wait_for_ok(SLACK, 1, Duration::from_millis(50)).await })
        .await
        .unwrap_err();
    let msg = err.into_panic();
    let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("POST /services/T1/B1/XYZ -> 500"), "{msg}");
    assert!(msg.contains("hello"), "{msg}");
}

#[tokio::test]
async fn keep_alive_chunked_and_pipelined_on_a_raw_socket() {
    let mock = MockChat::start().await;
    let addr = mock.base().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = json!({"text": "hi"}).to_string();
    let req1 = format!(
        "POST {SLACK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (a, b) = body.split_at(4);
    let req2 = format!(
        "POST {SLACK}?x=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let req3 = format!(
        "POST {DISCORD} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{}",
        json!({"content": "x"}).to_string().len(),
        json!({"content": "x"})
    );
    s.write_all(format!("{req1}{req2}{req3}").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(SECS, s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
    assert_eq!(out.matches("HTTP/1.1 204 No Content").count(), 1, "{out}");
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].json, Some(json!({"text": "hi"})));
    assert_eq!(reqs[1].query.as_deref(), Some("x=1"));
}

#[tokio::test]
async fn reset_is_a_tcp_rst_without_any_answer_on_a_raw_socket() {
    let mock = MockChat::start().await;
    mock.script(SLACK, vec![Reply::Reset]);
    let addr = mock.base().trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = json!({"text": "hi"}).to_string();
    let req = format!(
        "POST {SLACK} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let got = tokio::time::timeout(SECS, s.read_to_end(&mut out))
        .await
        .expect("the mock closes the connection");
    let err = got.expect_err("an RST, not a clean close");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err:?}");
    assert!(
        out.is_empty(),
        "no answer: {}",
        String::from_utf8_lossy(&out)
    );
    let q = mock.wait_for(SLACK, 1, SECS).await.remove(0);
    assert_eq!(q.status, 0);
    assert!(!q.client_gone);
}

#[tokio::test]
async fn concurrent_connections_are_served_in_parallel() {
    let mock = MockChat::start().await;
    mock.set_default(SLACK, Reply::delay(Duration::from_millis(300), Reply::Auto));
    let c = client();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let c = c.clone();
        let url = mock.url(SLACK);
        tasks.push(tokio::spawn(async move {
            c.post(url)
                .json(&good_slack())
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(mock.wait_for_ok(SLACK, 20, SECS).await.len(), 20);
}

#[test]
fn works_from_a_sync_test_with_blocking_waits() {
    let mock = MockChat::start_blocking();
    let url = mock.url(SLACK);
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { post(&client(), url, &good_slack()).await.status() })
    });
    let got = mock.wait_for_ok_blocking(SLACK, 1, SECS);
    assert_eq!(got.len(), 1);
    assert_eq!(h.join().unwrap(), 200);
}

#[tokio::test]
async fn dropping_the_mock_stops_the_server() {
    let mock = MockChat::start().await;
    let url = mock.url(SLACK);
    assert_eq!(
        post(&client(), url.clone(), &good_slack()).await.status(),
        200
    );
    drop(mock);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = reqwest::Client::new()
        .post(url)
        .json(&good_slack())
        .send()
        .await;
    assert!(r.is_err(), "server still answering: {r:?}");
}

// ---------------------------------------------------------------------------------------------
// validators
// ---------------------------------------------------------------------------------------------

#[test]
fn slack_validator_accepts_good_body() {
    validate::assert_valid_slack(&good_slack());
    validate::assert_valid_slack(&json!({"text": "plain message"}));
}

#[test]
fn slack_validator_rejects() {
    let mut b = good_slack();
    b["blocks"][0]["text"]["text"] = json!("é".repeat(151));
    assert_problem(
        validate::slack_problems(&b),
        "/blocks/0/text/text: 151 chars, limit 150",
    );
    // exactly 150 chars (multi-byte) is fine
    b["blocks"][0]["text"]["text"] = json!("é".repeat(150));
    validate::assert_valid_slack(&b);

    let mut b = good_slack();
    b["blocks"] = json!(vec![json!({"type": "divider"}); 51]);
    assert_problem(validate::slack_problems(&b), "51 blocks, limit 50");
    b["blocks"] = json!(vec![json!({"type": "divider"}); 50]);
    validate::assert_valid_slack(&b);

    let mut b = good_slack();
    b["blocks"][2].as_object_mut().unwrap().remove("alt_text");
    assert_problem(validate::slack_problems(&b), "/blocks/2/alt_text: required");
    let mut b = good_slack();
    b["blocks"][5]["elements"][1]
        .as_object_mut()
        .unwrap()
        .remove("alt_text");
    assert_problem(
        validate::slack_problems(&b),
        "/blocks/5/elements/1/alt_text: required",
    );

    let mut b = good_slack();
    b.as_object_mut().unwrap().remove("text");
    assert_problem(validate::slack_problems(&b), "/text: required");
    b["text"] = json!("  ");
    assert_problem(validate::slack_problems(&b), "/text: must not be empty");

    let cases: Vec<(Value, &str)> = vec![
        (json!([1]), "expected an object"),
        (json!({"text": "x", "txt": "y"}), "unknown key \"txt\""),
        (
            json!({"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}]}),
            "/blocks/0/text/type",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "", }}]}),
            "/blocks/0/text/text: must not be empty",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a".repeat(3001)}}]}),
            "3001 chars, limit 3000",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section"}]}),
            "needs `text` or `fields`",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section", "fields": vec![json!({"type":"plain_text","text":"f"}); 11]}]}),
            "11 fields, limit 10",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section", "fields": [{"type":"plain_text","text":"f".repeat(2001)}]}]}),
            "2001 chars, limit 2000",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "a", "emoji": true}}]}),
            "emoji: not allowed on mrkdwn",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "a", "verbatim": true}}]}),
            "verbatim: not allowed on plain_text",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "image", "image_url": "ftp://x/a.png", "alt_text": "a"}]}),
            "must be http(s)",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "image", "image_url": format!("https://x/{}", "a".repeat(3000)), "alt_text": "a"}]}),
            "limit 3000",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "image", "image_url": "https://x/a.png", "alt_text": "a".repeat(2001)}]}),
            "2001 chars, limit 2000",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "context", "elements": []}]}),
            "0 elements",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "context", "elements": vec![json!({"type":"mrkdwn","text":"c"}); 11]}]}),
            "11 elements",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]}),
            "duplicate block_id",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "divider", "block_id": "a".repeat(256)}]}),
            "256 chars, limit 255",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "divider", "text": "no"}]}),
            "unknown key \"text\" in a divider block",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "actions", "elements": []}]}),
            "unknown/unsupported block type",
        ),
        (
            json!({"text": "x", "blocks": [{"type": "markdown", "text": "m".repeat(12001)}]}),
            "12001 chars, limit 12000",
        ),
        (
            json!({"text": "x".repeat(40001)}),
            "40001 chars, limit 40000",
        ),
        (
            json!({"text": "x", "unfurl_links": "no"}),
            "expected a boolean",
        ),
        (
            json!({"text": "x", "blocks": (0..5).map(|_| json!({"type": "section", "text": {"type": "mrkdwn", "text": "a".repeat(2500)}})).collect::<Vec<_>>()}),
            "msg_blocks_too_long",
        ),
    ];
    for (body, needle) in cases {
        let p = validate::slack_problems(&body);
        assert!(
            has_problem(&p, needle),
            "body {body}\nexpected {needle:?} in {p:#?}"
        );
    }
}

#[test]
fn discord_validator_accepts_good_body() {
    validate::assert_valid_discord(&good_discord());
    validate::assert_valid_discord(&json!({"content": "hi"}));
    validate::assert_valid_discord(
        &json!({"embeds": [{"image": {"url": "attachment://a.png"}}], "content": null}),
    );
    validate::assert_valid_discord(
        &json!({"content": "x", "flags": 4096, "tts": false, "allowed_mentions": {"parse": ["everyone"]}}),
    );
    // limits count after trimming
    validate::assert_valid_discord(
        &json!({"embeds": [{"title": format!("  {}  ", "t".repeat(256))}]}),
    );
    assert!(validate::discord_edit_problems(&json!({"content": null})).is_empty());
}

#[test]
fn discord_validator_rejects() {
    let mut b = good_discord();
    b["embeds"][0]["title"] = json!("t".repeat(257));
    assert_problem(
        validate::discord_problems(&b),
        "/embeds/0/title: 257 chars, limit 256",
    );

    let mut b = good_discord();
    b["embeds"] = json!(vec![json!({"description": "d"}); 11]);
    assert_problem(validate::discord_problems(&b), "11 embeds, limit 10");

    // 6000 total: each piece within its own limit, the sum over embeds is not
    let mut b = good_discord();
    b["embeds"] = json!(vec![
        json!({"title": "t".repeat(200), "description": "d".repeat(1000)});
        5
    ]);
    validate::assert_valid_discord(&b); // exactly 6000 is fine
    b["embeds"][4]["footer"] = json!({"text": "f"});
    assert_problem(validate::discord_problems(&b), "totals 6001 chars");

    let mut b = good_discord();
    b["allowed_mentions"] = json!({"parse": ["users"], "users": ["123"]});
    assert_problem(validate::discord_problems(&b), "mutually exclusive");
    b["allowed_mentions"] = json!({"parse": ["roles"], "roles": ["123"]});
    assert_problem(validate::discord_problems(&b), "/allowed_mentions/roles");

    let mut b = good_discord();
    b["embeds"][0]["color"] = json!(16777216);
    assert_problem(
        validate::discord_problems(&b),
        "/embeds/0/color: 16777216 out of range",
    );
    b["embeds"][0]["color"] = json!("#ff0000");
    assert_problem(
        validate::discord_problems(&b),
        "/embeds/0/color: expected an integer",
    );

    let mut b = good_discord();
    b["allow_mentions"] = json!({"parse": []});
    assert_problem(
        validate::discord_problems(&b),
        "unknown key \"allow_mentions\"",
    );
    let mut b = good_discord();
    b["embeds"][0]["colour"] = json!(1);
    assert_problem(
        validate::discord_problems(&b),
        "/embeds/0/colour: unknown key",
    );

    let e = |emb: Value| json!({"embeds": [emb]});
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "cannot send an empty message"),
        (json!({"content": " \n "}), "cannot send an empty message"),
        (json!({"embeds": []}), "cannot send an empty message"),
        (
            json!({"content": "c".repeat(2001)}),
            "/content: 2001 chars, limit 2000",
        ),
        (
            json!({"content": "x", "username": ""}),
            "/username: must not be empty",
        ),
        (
            json!({"content": "x", "username": "u".repeat(81)}),
            "81 chars, limit 80",
        ),
        (
            json!({"content": "x", "username": "Discord Bot"}),
            "must not contain \"discord\"",
        ),
        (
            json!({"content": "x", "avatar_url": "not a url"}),
            "/avatar_url",
        ),
        (
            json!({"content": "x", "tts": "yes"}),
            "/tts: expected a boolean",
        ),
        (json!({"content": "x", "flags": 1}), "/flags"),
        (json!({"content": "x", "flags": 32768}), "IS_COMPONENTS_V2"),
        (e(json!({"title": "   "})), "embed is empty"),
        (
            e(json!({"description": "d".repeat(4097)})),
            "4097 chars, limit 4096",
        ),
        (
            e(json!({"title": "t", "url": "javascript:alert(1)"})),
            "/embeds/0/url",
        ),
        (
            e(json!({"title": "t", "timestamp": "2025-01-02 03:04"})),
            "not an RFC 3339",
        ),
        (
            e(json!({"title": "t", "timestamp": "2025-02-30T00:00:00Z"})),
            "not an RFC 3339",
        ),
        (
            e(json!({"title": "t", "footer": {"text": ""}})),
            "/embeds/0/footer/text: must not be empty",
        ),
        (
            e(json!({"title": "t", "footer": {"text": "f".repeat(2049)}})),
            "2049 chars, limit 2048",
        ),
        (
            e(json!({"title": "t", "author": {"url": "https://a"}})),
            "/embeds/0/author/name: required",
        ),
        (
            e(json!({"title": "t", "author": {"name": "a".repeat(257)}})),
            "257 chars, limit 256",
        ),
        (
            e(json!({"title": "t", "image": {}})),
            "/embeds/0/image/url: required",
        ),
        (
            e(json!({"title": "t", "image": {"url": "https://x/a.png", "proxy_url": "https://y"}})),
            "unknown key \"proxy_url\"",
        ),
        (
            e(json!({"title": "t", "fields": vec![json!({"name": "n", "value": "v"}); 26]})),
            "26 fields, limit 25",
        ),
        (
            e(json!({"title": "t", "fields": [{"name": "n"}]})),
            "/embeds/0/fields/0/value: required",
        ),
        (
            e(json!({"title": "t", "fields": [{"name": " ", "value": "v"}]})),
            "/embeds/0/fields/0/name: must not be empty",
        ),
        (
            e(json!({"title": "t", "fields": [{"name": "n", "value": "v".repeat(1025)}]})),
            "1025 chars, limit 1024",
        ),
        (e(json!({"title": "t", "type": "image"})), "always \"rich\""),
        (
            json!({"content": "x", "allowed_mentions": {"parse": ["here"]}}),
            "/allowed_mentions/parse/0",
        ),
        (
            json!({"content": "x", "allowed_mentions": {"users": ["abc"]}}),
            "/allowed_mentions/users/0: must be a snowflake",
        ),
        (
            json!({"content": "x", "allowed_mentions": {"users": (0..101).map(|i| (1000 + i).to_string()).collect::<Vec<_>>()}}),
            "101 ids, limit 100",
        ),
        (
            json!({"content": "x", "allowed_mentions": {"parse": [], "everyone": true}}),
            "unknown key \"everyone\"",
        ),
        (
            json!({"content": "x", "thread_name": "n".repeat(101)}),
            "/thread_name",
        ),
    ];
    for (body, needle) in cases {
        let p = validate::discord_problems(&body);
        assert!(
            has_problem(&p, needle),
            "body {body}\nexpected {needle:?} in {p:#?}"
        );
    }
}

/// The hand-coded key lists and limits must match the copied OpenAPI subset.
#[test]
fn discord_constants_match_openapi_subset() {
    let spec: Value =
        serde_json::from_str(include_str!("../fixtures/discord-webhook-schema.json")).unwrap();
    let schemas = &spec["components"]["schemas"];
    let keys = |name: &str| -> Vec<String> {
        let mut k: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name} missing"))
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    };
    let sorted = |l: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = l.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(
        keys("IncomingWebhookRequestPartial"),
        sorted(validate::DISCORD_EXECUTE_KEYS)
    );
    assert_eq!(
        keys("IncomingWebhookUpdateRequestPartial"),
        sorted(validate::DISCORD_EDIT_KEYS)
    );
    assert_eq!(keys("RichEmbed"), sorted(validate::DISCORD_EMBED_KEYS));
    assert_eq!(keys("RichEmbedField"), sorted(validate::DISCORD_FIELD_KEYS));
    assert_eq!(
        keys("RichEmbedFooter"),
        sorted(validate::DISCORD_FOOTER_KEYS)
    );
    assert_eq!(
        keys("RichEmbedAuthor"),
        sorted(validate::DISCORD_AUTHOR_KEYS)
    );
    assert_eq!(keys("RichEmbedImage"), sorted(validate::DISCORD_MEDIA_KEYS));
    assert_eq!(
        keys("RichEmbedThumbnail"),
        sorted(validate::DISCORD_MEDIA_KEYS)
    );
    assert_eq!(keys("RichEmbedVideo"), sorted(validate::DISCORD_MEDIA_KEYS));
    assert_eq!(
        keys("RichEmbedProvider"),
        sorted(validate::DISCORD_PROVIDER_KEYS)
    );
    assert_eq!(
        keys("MessageAllowedMentionsRequest"),
        sorted(validate::DISCORD_ALLOWED_MENTIONS_KEYS)
    );
    assert_eq!(
        keys("MessageAttachmentRequest"),
        sorted(validate::DISCORD_ATTACHMENT_KEYS)
    );
    assert_eq!(
        keys("PollCreateRequest"),
        sorted(validate::DISCORD_POLL_KEYS)
    );
    let mut types: Vec<String> = schemas["AllowedMentionTypes"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["const"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, sorted(validate::DISCORD_MENTION_TYPES));
    assert_eq!(
        schemas["RichEmbedField"]["required"],
        json!(["name", "value"])
    );
    for (schema, prop, kw, val) in validate::DISCORD_SCHEMA_LIMITS {
        assert_eq!(
            schemas[schema]["properties"][prop][kw].as_u64(),
            Some(*val),
            "{schema}.{prop}.{kw}"
        );
    }
    // the constants used by the checks agree with the table
    let lim = |s: &str, p: &str, k: &str| {
        validate::DISCORD_SCHEMA_LIMITS
            .iter()
            .find(|(a, b, c, _)| *a == s && *b == p && *c == k)
            .unwrap()
            .3 as usize
    };
    assert_eq!(
        lim("IncomingWebhookRequestPartial", "content", "maxLength"),
        validate::DISCORD_MAX_CONTENT
    );
    assert_eq!(
        lim("IncomingWebhookRequestPartial", "embeds", "maxItems"),
        validate::DISCORD_MAX_EMBEDS
    );
    assert_eq!(
        lim("RichEmbed", "title", "maxLength"),
        validate::DISCORD_MAX_TITLE
    );
    assert_eq!(
        lim("RichEmbed", "description", "maxLength"),
        validate::DISCORD_MAX_DESCRIPTION
    );
    assert_eq!(
        lim("RichEmbed", "fields", "maxItems"),
        validate::DISCORD_MAX_FIELDS
    );
    assert_eq!(
        lim("RichEmbed", "color", "maximum"),
        validate::DISCORD_MAX_COLOR as usize
    );
    assert_eq!(
        lim("RichEmbedField", "name", "maxLength"),
        validate::DISCORD_MAX_FIELD_NAME
    );
    assert_eq!(
        lim("RichEmbedField", "value", "maxLength"),
        validate::DISCORD_MAX_FIELD_VALUE
    );
    assert_eq!(
        lim("RichEmbedFooter", "text", "maxLength"),
        validate::DISCORD_MAX_FOOTER
    );
    assert_eq!(
        lim("RichEmbedAuthor", "name", "maxLength"),
        validate::DISCORD_MAX_AUTHOR
    );
    assert_eq!(
        lim("RichEmbed", "url", "maxLength"),
        validate::DISCORD_MAX_URL
    );
}

#[test]
fn rfc3339_parser() {
    for ok in [
        "2025-01-02T03:04:05Z",
        "2025-01-02T03:04:05.678Z",
        "2025-01-02T03:04:05+00:00",
        "2024-02-29T23:59:59.123456-07:30",
    ] {
        assert!(validate::is_rfc3339(ok), "{ok}");
    }
    for bad in [
        "2025-01-02",
        "2025-01-02T03:04:05",
        "2025-13-02T03:04:05Z",
        "2023-02-29T00:00:00Z",
        "2025-01-02T03:04:05.Z",
        "2025-01-02T03:04:05+0000",
        "1735787045",
    ] {
        assert!(!validate::is_rfc3339(bad), "{bad}");
    }
}

#[test]
fn live_token_helpers() {
    let s = json!({
        "text": "hi <!channel> &lt;!here&gt;",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "see <https://evil|docs> and <@U123>"}},
            {"type": "header", "text": {"type": "plain_text", "text": "<!everyone>"}}
        ]
    });
    let t = validate::slack_live_tokens(&s);
    assert_eq!(
        t,
        vec![
            "/text: <!channel>".to_string(),
            "/blocks/0/text/text: <https://evil|docs>".to_string(),
            "/blocks/0/text/text: <@U123>".to_string(),
        ]
    );
    assert!(validate::slack_live_tokens(&good_slack()).is_empty());

    let d =
        json!({"content": "@here <@123> <@!45> <@&67> <@x>", "embeds": [{"title": "@everyone"}]});
    let m = validate::discord_live_mentions(&d);
    assert_eq!(
        m,
        vec![
            "/content: @here".to_string(),
            "/content: <@123>".to_string(),
            "/content: <@!45>".to_string(),
            "/content: <@&67>".to_string(),
            "/embeds/0/title: @everyone".to_string(),
        ]
    );
}

#[test]
fn discord_pings_follow_allowed_mentions() {
    let p = validate::discord_pings(&json!({
        "content": "<@&111> <@222> <@!333> @here <@&111>",
        "allowed_mentions": {"parse": [], "roles": ["111"]}
    }));
    assert_eq!(p.roles, vec!["111".to_string()]);
    assert!(p.users.is_empty() && !p.everyone);
    // Without allowed_mentions a webhook parses users only.
    let p = validate::discord_pings(&json!({"content": "<@&111> <@222> @everyone"}));
    assert_eq!(p.users, vec!["222".to_string()]);
    assert!(p.roles.is_empty() && !p.everyone);
    let p = validate::discord_pings(&json!({
        "content": "@here <@&9>",
        "allowed_mentions": {"parse": ["everyone", "roles"]}
    }));
    assert!(p.everyone);
    assert_eq!(p.roles, vec!["9".to_string()]);
    // Mentions in embeds never notify; parse [] silences everything.
    assert!(validate::discord_pings(&json!({
        "content": "<@1> @everyone",
        "embeds": [{"title": "<@&2>"}],
        "allowed_mentions": {"parse": []}
    }))
    .is_empty());
}

// ---------------------------------------------------------------------------------------------
// Discord: edits, deleted messages, threads, one bucket per webhook
// ---------------------------------------------------------------------------------------------

async fn discord_post_wait(
    c: &reqwest::Client,
    mock: &MockChat,
    query: &str,
    body: &Value,
) -> Value {
    let r = post(c, format!("{}?wait=true{query}", mock.url(DISCORD)), body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn patch(c: &reqwest::Client, url: String, body: &Value) -> (u16, Value) {
    let r = c.patch(url).json(body).send().await.expect("patch");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn discord_edits_are_checked_against_the_edit_schema() {
    let mock = MockChat::start().await;
    let c = client();
    let m = discord_post_wait(&c, &mock, "", &good_discord()).await;
    let msg = mock.url(&format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap()));
    for (key, value) in [
        ("username", json!("printbell")),
        ("avatar_url", json!("https://example.com/a.png")),
        ("tts", json!(false)),
        ("thread_name", json!("a thread")),
    ] {
        let mut body = json!({"content": "edited", "allowed_mentions": {"parse": []}});
        body[key] = value;
        let (status, answer) = patch(&c, msg.clone(), &body).await;
        assert_eq!(status, 400, "{key}: {answer}");
        assert_eq!(answer["code"], 50035, "{answer}");
        assert!(answer["errors"][key]["_errors"].is_array(), "{answer}");
    }
    // The execute limits hold for edits too.
    let (status, answer) = patch(&c, msg.clone(), &json!({"content": "x".repeat(2001)})).await;
    assert_eq!((status, answer["code"].clone()), (400, json!(50035)));
    let too_many: Vec<Value> = (0..11).map(|i| json!({"title": format!("e{i}")})).collect();
    let (status, _) = patch(&c, msg.clone(), &json!({"embeds": too_many})).await;
    assert_eq!(status, 400);
    let (status, answer) = patch(
        &c,
        msg.clone(),
        &json!({"embeds": [{"title": "t", "color": 0x2ECC71}], "allowed_mentions": {"parse": []}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let reqs = mock.requests_to(&format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap()));
    assert_eq!(reqs.len(), 7);
    assert!(reqs[..6].iter().all(|r| !r.problems.is_empty()));
    assert!(reqs[6].problems.is_empty());
}

#[tokio::test]
async fn discord_message_state_follows_edits_and_knows_its_pings() {
    let mock = MockChat::start().await;
    let c = client();
    let m = discord_post_wait(&c, &mock, "", &good_discord()).await;
    let id = m["id"].as_str().unwrap().to_string();
    // good_discord pings exactly its role.
    assert_eq!(m["mention_roles"], json!(["123456789012345678"]));
    assert_eq!(m["mention_everyone"], false);
    assert_eq!(mock.message(DISCORD, &id).unwrap(), m);

    let (status, _) = patch(
        &c,
        mock.url(&format!("{DISCORD}/messages/{id}")),
        &json!({"embeds": [{"title": "now green", "color": 0x2ECC71}], "allowed_mentions": {"parse": []}}),
    )
    .await;
    assert_eq!(status, 200);
    let now = mock.message(DISCORD, &id).unwrap();
    assert_eq!(
        now["embeds"],
        json!([{"title": "now green", "color": 0x2ECC71, "type": "rich"}])
    );
    assert_eq!(
        now["content"], m["content"],
        "content kept when the edit has none"
    );
    assert!(now["edited_timestamp"].is_string());
    // Edited content is parsed again with the edit's allowed_mentions.
    patch(
        &c,
        mock.url(&format!("{DISCORD}/messages/{id}")),
        &json!({"content": "<@&123456789012345678> still", "allowed_mentions": {"parse": []}}),
    )
    .await;
    assert_eq!(
        mock.message(DISCORD, &id).unwrap()["mention_roles"],
        json!([])
    );

    let second = discord_post_wait(&c, &mock, "", &json!({"content": "two"})).await;
    let ids: Vec<Value> = mock
        .messages(DISCORD)
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, vec![m["id"].clone(), second["id"].clone()]);
    assert!(mock.messages("/api/webhooks/9/other").is_empty());
    assert!(mock.message(DISCORD, "1").is_none());
}

#[tokio::test]
async fn discord_a_deleted_message_is_unknown() {
    let mock = MockChat::start().await;
    let c = client();
    let m = discord_post_wait(&c, &mock, "", &good_discord()).await;
    let id = m["id"].as_str().unwrap();
    let path = format!("{DISCORD}/messages/{id}");
    assert!(mock.delete_message(DISCORD, id));
    assert!(!mock.delete_message(DISCORD, id), "already deleted");
    assert!(mock.message(DISCORD, id).is_none());
    let (status, answer) = patch(&c, mock.url(&path), &json!({"content": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(answer, json!({"message": "Unknown Message", "code": 10008}));
    let r = c.get(mock.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = c.delete(mock.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(mock.messages(DISCORD).is_empty());
}

#[tokio::test]
async fn discord_a_thread_message_is_found_only_with_its_thread_id() {
    let mock = MockChat::start().await;
    let c = client();
    let m = discord_post_wait(&c, &mock, "&thread_id=42", &good_discord()).await;
    let path = format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap());
    let edit = json!({"content": "x", "allowed_mentions": {"parse": []}});
    assert_eq!(patch(&c, mock.url(&path), &edit).await.0, 404);
    assert_eq!(
        patch(&c, format!("{}?thread_id=43", mock.url(&path)), &edit)
            .await
            .0,
        404
    );
    assert_eq!(
        patch(&c, format!("{}?thread_id=42", mock.url(&path)), &edit)
            .await
            .0,
        200
    );
    let r = c
        .get(format!("{}?thread_id=42", mock.url(&path)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["content"], "x");
    // A message of the channel itself is not in a thread.
    let m = discord_post_wait(&c, &mock, "", &good_discord()).await;
    let path = format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap());
    assert_eq!(
        patch(&c, format!("{}?thread_id=42", mock.url(&path)), &edit)
            .await
            .0,
        404
    );
    assert_eq!(patch(&c, mock.url(&path), &edit).await.0, 200);
}

#[tokio::test]
async fn discord_posts_and_edits_share_the_webhook_bucket() {
    let mock = MockChat::start().await;
    mock.enforce_discord_limits(DISCORD, 3, Duration::from_secs(2));
    let c = client();
    let r = post(
        &c,
        format!("{}?wait=true", mock.url(DISCORD)),
        &good_discord(),
    )
    .await;
    let h = r.headers().clone();
    let m: Value = r.json().await.unwrap();
    let msg = mock.url(&format!("{DISCORD}/messages/{}", m["id"].as_str().unwrap()));
    let edit = json!({"content": "x", "allowed_mentions": {"parse": []}});
    let r2 = c.patch(&msg).json(&edit).send().await.unwrap();
    let r3 = c.get(&msg).send().await.unwrap();
    let r4 = c.patch(&msg).json(&edit).send().await.unwrap();
    let hs = [&h, r2.headers(), r3.headers(), r4.headers()];
    assert_eq!(
        hs.iter()
            .map(|h| h["x-ratelimit-remaining"].to_str().unwrap())
            .collect::<Vec<_>>(),
        ["2", "1", "0", "0"]
    );
    assert!(
        hs.iter()
            .all(|x| x["x-ratelimit-bucket"] == h["x-ratelimit-bucket"]),
        "one bucket id for the webhook"
    );
    assert_eq!([r2.status(), r3.status()], [200, 200]);
    assert_eq!(r4.status(), 429);
    let body: Value = r4.json().await.unwrap();
    let retry = body["retry_after"].as_f64().unwrap();
    assert!(retry > 0.0 && retry <= 2.0, "{body}");
    // A post is over the budget as well, another webhook is not.
    assert_eq!(
        post(&c, mock.url(DISCORD), &good_discord()).await.status(),
        429
    );
    assert_eq!(
        post(&c, mock.url("/api/webhooks/9/other"), &good_discord())
            .await
            .status(),
        204
    );
    tokio::time::sleep(Duration::from_secs_f64(retry)).await;
    assert_eq!(
        c.patch(&msg).json(&edit).send().await.unwrap().status(),
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Slack Web API mock
// ---------------------------------------------------------------------------------------------

use testkit::mock_slack_api::{self, Limit, MockSlackApi, SlackReply, POST_MESSAGE, UPDATE};

const CH: &str = MockSlackApi::CHANNEL;

/// For tests of other things than the rate limits.
fn unlimited(api: &MockSlackApi) {
    api.set_limit(POST_MESSAGE, None);
    api.set_limit(UPDATE, None);
}

/// One Web API call: (HTTP status, Retry-After, JSON answer).
async fn slack_call(
    c: &reqwest::Client,
    api: &MockSlackApi,
    method: &str,
    token: Option<&str>,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let mut req = c
        .post(api.method_url(method))
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.expect("slack api answers");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

async fn bot(c: &reqwest::Client, api: &MockSlackApi, method: &str, body: &Value) -> Value {
    let (status, _, answer) = slack_call(c, api, method, Some(MockSlackApi::TOKEN), body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

fn slack_post(channel: &str) -> Value {
    let mut b = good_slack();
    b["channel"] = json!(channel);
    b
}

#[tokio::test]
async fn slack_api_posts_and_updates_messages() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    assert_eq!(api.api_url(), format!("{}/api", api.base()));
    let c = client();
    let a = bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["channel"], CH);
    let ts = a["ts"].as_str().unwrap().to_string();
    let (secs, micros) = ts.split_once('.').unwrap();
    assert!(secs.len() == 10 && micros.len() == 6, "{ts}");
    assert_eq!(a["message"]["text"], good_slack()["text"]);
    assert_eq!(a["message"]["blocks"], good_slack()["blocks"]);
    let b = bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await;
    let ts2 = b["ts"].as_str().unwrap();
    assert!(
        ts2.parse::<f64>().unwrap() > ts.parse::<f64>().unwrap(),
        "{ts} < {ts2}"
    );

    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "4 of 4"}}]);
    let u = bot(
        &c,
        &api,
        UPDATE,
        &json!({"channel": CH, "ts": ts, "text": "done", "blocks": blocks}),
    )
    .await;
    assert_eq!(u["ok"], true, "{u}");
    assert_eq!(
        (u["channel"].as_str(), u["ts"].as_str()),
        (Some(CH), Some(ts.as_str()))
    );
    assert_eq!(u["text"], "done");
    let m = api.message(CH, &ts).unwrap();
    assert_eq!((m.text.as_str(), &m.blocks, m.edits), ("done", &blocks, 1));
    assert!(!m.deleted && m.thread_ts.is_none());
    // Text without blocks drops the blocks, as on Slack.
    bot(
        &c,
        &api,
        UPDATE,
        &json!({"channel": CH, "ts": ts, "text": "plain"}),
    )
    .await;
    let m = api.message(CH, &ts).unwrap();
    assert_eq!(
        (m.text.as_str(), m.blocks.is_null(), m.edits),
        ("plain", true, 2)
    );
    assert_eq!(api.messages(CH).len(), 2);
    assert_eq!(api.posts().len(), 2);
    assert_eq!(api.updates().len(), 2);
    assert!(api.replies().is_empty());
    let first = &api.requests()[0];
    assert_eq!(first.path, "/api/chat.postMessage");
    assert_eq!(mock_slack_api::method_of(first), Some(POST_MESSAGE));
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {}", MockSlackApi::TOKEN).as_str())
    );
    assert!(first.answered_at.is_some());
    let image = api.message(CH, ts2).unwrap().image_urls();
    assert_eq!(
        image,
        [
            "https://cdn.example.com/img/1.png",
            "https://cdn.example.com/img/2.png"
        ]
    );
}

#[tokio::test]
async fn slack_api_checks_the_token() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    let c = client();
    let body = slack_post(CH);
    for token in [None, Some("xoxb-wrong")] {
        let (status, _, a) = slack_call(&c, &api, POST_MESSAGE, token, &body).await;
        assert_eq!(
            (status, a),
            (200, json!({"ok": false, "error": "invalid_auth"}))
        );
    }
    api.add_token("xoxb-second");
    assert_eq!(
        slack_call(&c, &api, POST_MESSAGE, Some("xoxb-second"), &body)
            .await
            .2["ok"],
        true
    );
    api.revoke_token(MockSlackApi::TOKEN);
    let (status, _, a) = slack_call(&c, &api, POST_MESSAGE, Some(MockSlackApi::TOKEN), &body).await;
    assert_eq!((status, a["error"].as_str()), (200, Some("token_revoked")));
    let reqs = api.requests();
    assert_eq!(reqs.len(), 4);
    assert_eq!(
        reqs.iter()
            .map(mock_slack_api::error_of)
            .collect::<Vec<_>>(),
        [
            Some("invalid_auth".into()),
            Some("invalid_auth".into()),
            None,
            Some("token_revoked".into())
        ]
    );
    assert!(
        reqs[0].problems[0].contains("Bearer"),
        "{:?}",
        reqs[0].problems
    );
    assert_eq!(api.posts().len(), 1);
}

#[tokio::test]
async fn slack_api_refuses_bad_channels_and_payloads() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    let c = client();
    let err = |a: &Value| a["error"].as_str().map(str::to_string);
    let a = bot(&c, &api, POST_MESSAGE, &slack_post("C0NOTHERE")).await;
    assert_eq!(err(&a).as_deref(), Some("channel_not_found"));
    let mut no_channel = good_slack();
    no_channel["unfurl_links"] = json!(false);
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &no_channel).await).as_deref(),
        Some("channel_not_found")
    );

    let mut long_header = slack_post(CH);
    long_header["blocks"][0]["text"]["text"] = json!("h".repeat(151));
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &long_header).await).as_deref(),
        Some("invalid_blocks")
    );
    let no_text = json!({"channel": CH, "unfurl_links": false});
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &no_text).await).as_deref(),
        Some("no_text")
    );
    let long = json!({"channel": CH, "text": "x".repeat(40_001)});
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &long).await).as_deref(),
        Some("msg_too_long")
    );
    let mut unknown = slack_post(CH);
    unknown["unfurl"] = json!(false);
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &unknown).await).as_deref(),
        Some("invalid_arguments")
    );
    let mut bad_type = slack_post(CH);
    bad_type["reply_broadcast"] = json!("yes");
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &bad_type).await).as_deref(),
        Some("invalid_arguments")
    );

    // Not JSON, not declared as JSON, an unknown method, not a POST.
    let raw = |ct: &'static str, body: &'static str| {
        c.post(api.method_url(POST_MESSAGE))
            .header("authorization", format!("Bearer {}", MockSlackApi::TOKEN))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let a: Value = raw("application/json", "{nope")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(err(&a).as_deref(), Some("invalid_json"));
    let a: Value = raw("application/x-www-form-urlencoded", "{}")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(err(&a).as_deref(), Some("invalid_arguments"));
    let (status, _, a) = slack_call(
        &c,
        &api,
        "chat.delete",
        Some(MockSlackApi::TOKEN),
        &json!({}),
    )
    .await;
    assert_eq!((status, err(&a).as_deref()), (404, Some("unknown_method")));
    assert_eq!(
        c.get(api.method_url(POST_MESSAGE))
            .send()
            .await
            .unwrap()
            .status(),
        405
    );

    api.archive_channel(CH);
    assert_eq!(
        err(&bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await).as_deref(),
        Some("is_archived")
    );
    api.add_channel("C0SECOND");
    assert_eq!(
        bot(&c, &api, POST_MESSAGE, &slack_post("C0SECOND")).await["ok"],
        true
    );

    let reqs = api.requests();
    assert!(
        reqs[..reqs.len() - 1]
            .iter()
            .all(|r| !r.problems.is_empty()),
        "{}",
        describe(&reqs)
    );
    assert!(api.messages(CH).is_empty());
    assert_eq!(api.messages("C0SECOND").len(), 1);
}

fn describe(reqs: &[testkit::mock_chat::Received]) -> String {
    testkit::mock_chat::describe_all(reqs)
}

#[tokio::test]
async fn slack_api_update_of_a_missing_or_deleted_message_is_message_not_found() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    let c = client();
    let err = |a: Value| a["error"].as_str().map(str::to_string);
    let update =
        |ts: &str| json!({"channel": CH, "ts": ts, "text": "t", "blocks": good_slack()["blocks"]});
    assert_eq!(
        err(bot(&c, &api, UPDATE, &update("1.000001")).await).as_deref(),
        Some("message_not_found")
    );
    let ts = bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(bot(&c, &api, UPDATE, &update(&ts)).await["ok"], true);
    // Only the token that posted a message may update it.
    api.add_token("xoxb-other");
    let (_, _, a) = slack_call(&c, &api, UPDATE, Some("xoxb-other"), &update(&ts)).await;
    assert_eq!(err(a).as_deref(), Some("cant_update_message"));
    assert!(api.delete_message(CH, &ts));
    assert!(!api.delete_message(CH, &ts));
    assert!(api.message(CH, &ts).unwrap().deleted);
    assert_eq!(
        err(bot(&c, &api, UPDATE, &update(&ts)).await).as_deref(),
        Some("message_not_found")
    );
    assert_eq!(api.updates().len(), 1);
    assert_eq!(api.message(CH, &ts).unwrap().edits, 1);
}

#[tokio::test]
async fn slack_api_thread_replies_are_recorded() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    let c = client();
    let parent = bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = json!({"channel": CH, "thread_ts": parent, "reply_broadcast": true, "text": "<!here> failed",
                       "unfurl_links": false, "unfurl_media": false});
    let a = bot(&c, &api, POST_MESSAGE, &reply).await;
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(a["message"]["thread_ts"], json!(parent));
    let m = api.message(CH, a["ts"].as_str().unwrap()).unwrap();
    assert_eq!(m.thread_ts.as_deref(), Some(parent.as_str()));
    assert!(m.reply_broadcast);
    assert_eq!(api.replies().len(), 1);
    assert_eq!(api.posts().len(), 1);
    let mut orphan = reply.clone();
    orphan["thread_ts"] = json!("1.000001");
    assert_eq!(
        bot(&c, &api, POST_MESSAGE, &orphan).await["error"],
        "thread_not_found"
    );
}

#[tokio::test]
async fn slack_api_rate_limits_per_method_and_channel() {
    let api = MockSlackApi::start().await;
    api.add_channel("C0SECOND");
    api.set_limit(POST_MESSAGE, Some(Limit::new(Duration::from_secs(1), 2)));
    api.set_limit(UPDATE, Some(Limit::new(Duration::from_secs(3), 1)));
    let c = client();
    let tok = Some(MockSlackApi::TOKEN);
    let a = slack_call(&c, &api, POST_MESSAGE, tok, &slack_post(CH)).await;
    let b = slack_call(&c, &api, POST_MESSAGE, tok, &slack_post(CH)).await;
    let limited = slack_call(&c, &api, POST_MESSAGE, tok, &slack_post(CH)).await;
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(limited.0, 429);
    assert_eq!(limited.1.as_deref(), Some("1"));
    assert_eq!(limited.2, json!({"ok": false, "error": "ratelimited"}));
    // Another channel has its own budget; updates have theirs.
    assert_eq!(
        slack_call(&c, &api, POST_MESSAGE, tok, &slack_post("C0SECOND"))
            .await
            .0,
        200
    );
    let ts = a.2["ts"].as_str().unwrap();
    let upd = json!({"channel": CH, "ts": ts, "text": "t"});
    assert_eq!(slack_call(&c, &api, UPDATE, tok, &upd).await.0, 200);
    let u = slack_call(&c, &api, UPDATE, tok, &upd).await;
    assert_eq!((u.0, u.1.as_deref()), (429, Some("3")));
    // Refused calls before auth do not count; the bucket refills.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        slack_call(&c, &api, POST_MESSAGE, tok, &slack_post(CH))
            .await
            .0,
        200
    );
    api.set_limit(UPDATE, None);
    for _ in 0..5 {
        assert_eq!(slack_call(&c, &api, UPDATE, tok, &upd).await.0, 200);
    }
    assert_eq!(api.calls(POST_MESSAGE).len(), 5);
    assert!(api.calls(POST_MESSAGE)[2].problems[0].contains("rate limit"));
}

#[tokio::test]
async fn slack_api_scripted_replies_come_in_order_for_valid_calls() {
    let api = MockSlackApi::start().await;
    unlimited(&api);
    api.script(
        POST_MESSAGE,
        vec![
            SlackReply::error("internal_error"),
            SlackReply::RateLimited {
                retry_after_secs: 3,
            },
            SlackReply::delay(Duration::from_millis(300), SlackReply::Auto),
            SlackReply::Hang,
        ],
    );
    let c = client();
    // An invalid call does not use the script.
    let (_, _, a) = slack_call(&c, &api, POST_MESSAGE, None, &slack_post(CH)).await;
    assert_eq!(a["error"], "invalid_auth");
    assert_eq!(
        bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await["error"],
        "internal_error"
    );
    let (status, retry, a) = slack_call(
        &c,
        &api,
        POST_MESSAGE,
        Some(MockSlackApi::TOKEN),
        &slack_post(CH),
    )
    .await;
    assert_eq!(
        (status, retry.as_deref(), a["error"].as_str()),
        (429, Some("3"), Some("ratelimited"))
    );
    let t = Instant::now();
    assert_eq!(
        bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await["ok"],
        true
    );
    assert!(t.elapsed() >= Duration::from_millis(300));
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let hung = quick
        .post(api.method_url(POST_MESSAGE))
        .header("authorization", format!("Bearer {}", MockSlackApi::TOKEN))
        .json(&slack_post(CH))
        .send()
        .await;
    assert!(hung.is_err(), "hang never answers");
    let gone = api
        .wait_until("the hung call marked client_gone", SECS, |log| {
            log.last().filter(|r| r.client_gone).cloned()
        })
        .await;
    assert_eq!(gone.status, 0);
    // Scripts exhausted: back to normal; only the delayed one posted.
    assert_eq!(
        bot(&c, &api, POST_MESSAGE, &slack_post(CH)).await["ok"],
        true
    );
    assert_eq!(api.posts().len(), 2);
    assert_eq!(api.messages(CH).len(), 2);
}
