//! Operations: health and readiness, /metrics, JSON logs, send-test, subscribe/unsubscribe,
//! and SIGHUP reload — each exercised the way an operator would.

use poem::web::{Data, Json, Path as PathParam};
use poem::{handler, EndpointExt, IntoResponse, Route};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use testkit::mock_chat::{MockChat, Reply};
use testkit::{config_text, event, fixture, free_port, run_cli, ChildService, Service};

const WAIT: Duration = Duration::from_secs(20);

/// One sample of the Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, value) = line.rsplit_once(' ').expect("sample has a value");
        let (name, labels) = match head.split_once('{') {
            Some((n, rest)) => {
                let inner = rest.strip_suffix('}').expect("closing brace");
                let mut labels = HashMap::new();
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label k=\"v\"");
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (n.to_string(), labels)
            }
            None => (head.to_string(), HashMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value: value.parse().expect("numeric value"),
        });
    }
    out
}

fn metric(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

async fn scrape(svc: &Service) -> Vec<Sample> {
    let text = svc
        .http
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    parse_exposition(&text)
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_503_when_the_store_is_locked() {
    let svc = Service::start(
        "",
        "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n",
    )
    .await;
    let get = |p: &'static str| {
        let http = svc.http.clone();
        let url = format!("{}{p}", svc.base);
        async move {
            let r = http.get(url).send().await.expect("answer");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 200);

    // Another process holding the write lock: the store cannot accept writes.
    let lock = testkit::store::WriteLock::take(&svc.store_path());
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("store"), "{body}");
    let resp = svc
        .http
        .post(format!("{}{}", svc.base, testkit::WEBHOOK_PATH))
        .body(event("print.created", "locked-1", None).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    lock.release();
    assert!(svc.deliveries().is_empty(), "nothing stored while locked");

    assert_eq!(get("/readyz").await.0, 200);
    svc.post_accepted(&event("print.created", "locked-1", None), 1)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_events_and_deliveries_by_destination() {
    let mock = MockChat::start().await;
    let path = "/api/webhooks/42/metricstoken";
    mock.script(path, vec![Reply::Status(500, "oops".into())]);
    let rest = format!(
        "[destinations.metrics-d]\nkind = \"discord\"\nmode = \"each\"\nurl = \"{}\"\n[[routes]]\nto = [\"metrics-d\"]\n",
        mock.url(path)
    );
    // Alone: the counters are process-wide, and other tests' in-process services post events.
    let svc = Service::start_alone("", &rest).await;
    let before = scrape(&svc).await;
    // Every series exists from the first scrape, so rate() and alerts work before traffic.
    for outcome in ["done", "retried", "rate_limited", "dead"] {
        assert!(
            before.iter().any(|s| s.name == "printbell_deliveries_total"
                && s.labels.get("destination").map(String::as_str) == Some("metrics-d")
                && s.labels.get("outcome").map(String::as_str) == Some(outcome)),
            "deliveries_total{{outcome={outcome}}} is exposed before any delivery"
        );
    }
    let accepted = |s: &[Sample]| {
        metric(
            s,
            "printbell_events_total",
            &[("type", "print.active"), ("outcome", "accepted")],
        )
    };
    let duplicate = |s: &[Sample]| {
        metric(
            s,
            "printbell_events_total",
            &[("type", "print.active"), ("outcome", "duplicate")],
        )
    };

    svc.post_accepted(&event("print.active", "m-1", None), 1)
        .await;
    svc.post_accepted(&event("print.active", "m-2", None), 1)
        .await;
    assert_eq!(svc.post(&event("print.active", "m-2", None)).await.0, 200);
    assert_eq!(
        svc.post_raw(testkit::WEBHOOK_PATH, b"nope".to_vec(), &[])
            .await
            .0,
        400
    );
    mock.wait_for_ok(path, 2, WAIT).await;
    testkit::eventually(WAIT, "both done in the store", || {
        svc.deliveries().iter().all(|d| d.state == "done")
    })
    .await;

    let after = scrape(&svc).await;
    assert_eq!(accepted(&after) - accepted(&before), 2.0);
    assert_eq!(duplicate(&after) - duplicate(&before), 1.0);
    assert!(metric(&after, "printbell_events_total", &[("outcome", "rejected")]) >= 1.0);
    let d = |o: &str| {
        metric(
            &after,
            "printbell_deliveries_total",
            &[("destination", "metrics-d"), ("outcome", o)],
        )
    };
    assert_eq!(d("done"), 2.0);
    assert_eq!(d("retried"), 1.0);
    assert_eq!(
        metric(
            &after,
            "printbell_queue_depth",
            &[("destination", "metrics-d")]
        ),
        0.0
    );
    assert_eq!(
        metric(
            &after,
            "printbell_delivery_latency_seconds_count",
            &[("destination", "metrics-d")]
        ),
        2.0
    );
    let text = svc
        .http
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .expect("m")
        .text()
        .await
        .expect("t");
    assert!(!text.contains("metricstoken"), "no webhook URL in metrics");
    assert!(text.contains("printbell_http_request_duration_seconds"));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_paths_and_methods_are_logged_without_their_query_and_logs_have_no_colour() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("n.toml");
    let rest = "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n";
    std::fs::write(&config, config_text(dir.path(), "", rest)).expect("write");
    let mut child = ChildService::start(&config, free_port(), dir.path(), "paths").await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!(
            "{}/webhook/all-images?token=querysecret",
            child.base
        ))
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!(
            "{}{}?token=querysecret",
            child.base,
            testkit::WEBHOOK_PATH
        ))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 405);
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal("TERM");
    assert_eq!(child.wait(WAIT).await, Some(0));
    let log = child.log();
    let line = |what: &str| {
        log.lines()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` line in:\n{log}"))
            .to_string()
    };
    let unknown = line("request to an unknown path");
    assert!(
        unknown.contains("/webhook/all-images") && unknown.contains("404"),
        "{unknown}"
    );
    let method = line("request with a method this path does not take");
    assert!(method.contains("GET") && method.contains("405"), "{method}");
    assert!(
        !log.contains("querysecret"),
        "the query string (a token) was logged:\n{log}"
    );
    // stderr is a file here, not a terminal: no colour codes.
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_delivery_s_hint_names_the_config_the_service_runs_with() {
    let mock = MockChat::start().await;
    let path = "/api/webhooks/8/hinttoken";
    mock.set_default(path, Reply::DiscordUnknownWebhook);
    let dir = tempfile::tempdir().expect("dir");
    let rest = format!(
        "[destinations.d]\nkind = \"discord\"\nurl = \"{}\"\n[[routes]]\nto = [\"d\"]\n",
        mock.url(path)
    );
    let config = dir.path().join("n.toml");
    std::fs::write(&config, config_text(dir.path(), "", &rest)).expect("write");
    let mut child = ChildService::start(&config, free_port(), dir.path(), "hint").await;
    let resp = reqwest::Client::new()
        .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
        .body(fixture("print.failed").to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 202);
    mock.wait_for(path, 1, WAIT).await;
    testkit::eventually(WAIT, "the dead line is logged", || {
        child.log().contains("delivery is dead")
    })
    .await;
    child.signal("TERM");
    assert_eq!(child.wait(WAIT).await, Some(0));
    let log = child.log();
    let canonical = std::fs::canonicalize(&config).expect("canonical");
    let hint = format!(
        "printbell --config {} deliveries retry",
        canonical.display()
    );
    assert!(log.contains(&hint), "no `{hint}` in:\n{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_carry_event_generation_and_destination() {
    let mock = MockChat::start().await;
    let path = "/api/webhooks/7/logtoken";
    let dir = tempfile::tempdir().expect("dir");
    let rest = format!(
        "[destinations.d]\nkind = \"discord\"\nurl = \"{}\"\n[[routes]]\nto = [\"d\"]\n",
        mock.url(path)
    );
    let config = dir.path().join("n.toml");
    std::fs::write(&config, config_text(dir.path(), "", &rest)).expect("write");
    let mut child = ChildService::start_with_env(
        &config,
        free_port(),
        dir.path(),
        "json",
        &[("PRINTBELL_LOG_FORMAT", "JSON")],
    )
    .await;
    let resp = reqwest::Client::new()
        .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
        .body(fixture("print.completed").to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    mock.wait_for_ok(path, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.signal("TERM");
    assert_eq!(child.wait(WAIT).await, Some(0));

    let log = child.log();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let accepted = lines
        .iter()
        .find(|l| l["message"] == "event accepted")
        .expect("an 'event accepted' line");
    assert_eq!(accepted["event"], "evt_01HZX0004");
    assert_eq!(accepted["generation"], "6567a1f2c3b4d5e6f7a8b9c0");
    let delivered = lines
        .iter()
        .find(|l| l["message"] == "delivered")
        .expect("a 'delivered' line");
    assert_eq!(delivered["destination"], "d");
    assert_eq!(delivered["event"], "evt_01HZX0004");
    assert_eq!(delivered["attempt"], 1);
    assert!(!log.contains("logtoken"), "webhook token in the logs");
}

fn send_test_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let rest = format!("[destinations.chat]\nkind = \"discord\"\nurl = \"{url}\"\n[[routes]]\nto = [\"chat\"]\nmention = [\"here\"]\n");
    let config = dir.join("n.toml");
    std::fs::write(&config, config_text(dir, "", &rest)).expect("write");
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn send_posts_an_event_through_the_real_routes() {
    let mock = MockChat::start().await;
    let (d, quiet) = ("/api/webhooks/3/routetoken", "/api/webhooks/4/othertoken");
    let dir = tempfile::tempdir().expect("dir");
    let rest = format!(
        "[destinations.oncall]\nkind = \"discord\"\nurl = \"{}\"\n[destinations.team]\nkind = \"discord\"\nurl = \"{}\"\n\
         [[routes]]\nevents = [\"print.failed\"]\nto = [\"oncall\"]\nmention = [\"role:123456789012345678\"]\n\
         [[routes]]\nevents = [\"print.completed\"]\nto = [\"team\"]\n",
        mock.url(d),
        mock.url(quiet)
    );
    let config = dir.path().join("n.toml");
    std::fs::write(&config, config_text(dir.path(), "", &rest)).expect("write");
    let cfg = config.to_str().expect("utf-8");
    let (code, out, err) = run_cli(&["--config", cfg, "send", "--event", "print.failed"], &[]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("sending print.failed evt_01HZX0005 to oncall") && out.contains("route 1"),
        "{out}"
    );
    assert!(out.contains("oncall answered 200"), "{out}");
    let got = mock.wait_for_ok(d, 1, WAIT).await;
    let body = got[0].json.clone().expect("json");
    assert_eq!(
        body["embeds"][0]["color"], 0xE74C3C,
        "the route's real template"
    );
    assert!(
        body.get("content").is_none(),
        "no ping without --mention: {body}"
    );
    assert!(
        mock.requests_to(quiet).is_empty(),
        "the other route does not take it"
    );

    let (code, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "send",
            "--event",
            "print.failed",
            "--mention",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let got = mock.wait_for_ok(d, 2, WAIT).await;
    let body = got[1].json.clone().expect("json");
    assert_eq!(
        body["allowed_mentions"]["roles"],
        json!(["123456789012345678"])
    );

    let (code, out, err) = run_cli(&["--config", cfg, "send", "--event", "print.created"], &[]);
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("reaches no destination"), "{err}");
    assert!(out.contains("route 1 does not take it"), "{out}");
    assert!(!out.contains("routetoken") && !err.contains("routetoken"));
}

#[test]
fn subscribe_refuses_a_url_whose_path_printbell_does_not_listen_on() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("n.toml");
    let rest = "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n";
    std::fs::write(&config, config_text(dir.path(), "", rest)).expect("write");
    let cfg = config.to_str().expect("utf-8");
    let (code, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "subscribe",
            "--url",
            "https://bell.example.com/webhook",
        ],
        &[
            ("ALLIMAGES_API_KEY", "k"),
            ("ALLIMAGES_API_BASE", "http://127.0.0.1:9"),
        ],
    );
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("is not this receiver's webhook path `/webhooks/all-images`")
            && err.contains("use https://bell.example.com/webhooks/all-images"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn send_test_through_the_slack_web_api_says_the_message_ts() {
    use testkit::mock_slack_api::{MockSlackApi, POST_MESSAGE};
    let api = MockSlackApi::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let rest = format!(
        "[destinations.team]\nkind = \"slack\"\ntoken = \"{}\"\nchannel = \"{}\"\napi_url = \"{}\"\n[[routes]]\nto = [\"team\"]\n",
        MockSlackApi::TOKEN,
        MockSlackApi::CHANNEL,
        api.api_url()
    );
    let config = dir.path().join("n.toml");
    std::fs::write(&config, config_text(dir.path(), "", &rest)).expect("write");
    let (code, out, err) = run_cli(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "send-test",
            "--to",
            "team",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let posted = api.wait_for_ok(POST_MESSAGE, 1, WAIT).await;
    let messages = api.messages(MockSlackApi::CHANNEL);
    assert_eq!(messages.len(), 1, "{posted:?}");
    let ts = &messages[0].ts;
    assert!(
        out.contains(&format!(
            "message ts {ts} in channel {}",
            MockSlackApi::CHANNEL
        )),
        "{out}"
    );
    assert!(!out.contains(MockSlackApi::TOKEN) && !err.contains(MockSlackApi::TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn send_test_posts_for_real_and_reports_the_answer() {
    let mock = MockChat::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = send_test_config(dir.path(), &mock.url("/api/webhooks/1/sendtoken"));
    let cfg = config.to_str().expect("utf-8");
    let (code, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "send-test",
            "--to",
            "chat",
            "--event",
            "print.failed",
        ],
        &[],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("answered 200"), "{out}");
    let got = mock.wait_for_ok("/api/webhooks/1/sendtoken", 1, WAIT).await;
    let body = got[0].json.clone().expect("json");
    assert!(body["embeds"][0]["title"]
        .as_str()
        .unwrap_or_default()
        .contains("failed"));
    assert!(body.get("content").is_none(), "a test message pings nobody");
    assert!(!out.contains("sendtoken") && !err.contains("sendtoken"));

    mock.set_default("/api/webhooks/2/gone", Reply::DiscordUnknownWebhook);
    let config = send_test_config(dir.path(), &mock.url("/api/webhooks/2/gone"));
    let (code, out, err) = run_cli(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "send-test",
            "--to",
            "chat",
        ],
        &[],
    );
    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        out.contains("404") && out.contains("Unknown Webhook"),
        "{out}"
    );
    assert!(err.contains("refused"), "{err}");
    let (code, _, err) = run_cli(
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "send-test",
            "--to",
            "chta",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("did you mean `chat`"), "{err}");
}

/// One request to the mock API: method, path, headers, JSON body.
type ApiCall = (String, String, HashMap<String, String>, Value);

#[derive(Default)]
struct ApiLog(Mutex<Vec<ApiCall>>);

#[handler]
async fn api_subscribe(
    req: &poem::Request,
    body: Json<Value>,
    log: Data<&Arc<ApiLog>>,
) -> poem::Response {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect::<HashMap<_, _>>();
    let key = headers.get("api-key").cloned().unwrap_or_default();
    log.0
         .0
        .lock()
        .expect("lock")
        .push(("POST".into(), req.uri().path().into(), headers, body.0));
    if key == "good-key" {
        (
            poem::http::StatusCode::CREATED,
            Json(json!({"webhookId": "wh_123"})),
        )
            .into_response()
    } else {
        (
            poem::http::StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key"})),
        )
            .into_response()
    }
}

#[handler]
async fn api_unsubscribe(
    req: &poem::Request,
    id: PathParam<String>,
    log: Data<&Arc<ApiLog>>,
) -> poem::http::StatusCode {
    log.0 .0.lock().expect("lock").push((
        "DELETE".into(),
        req.uri().path().into(),
        HashMap::new(),
        json!(id.0),
    ));
    poem::http::StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribe_and_unsubscribe_call_the_all_images_api() {
    let log = Arc::new(ApiLog::default());
    let app = Route::new()
        .at("/v1/api-keys/webhook/subscribe", poem::post(api_subscribe))
        .at(
            "/v1/api-keys/webhook/unsubscribe/:id",
            poem::delete(api_unsubscribe),
        )
        .data(log.clone());
    let acceptor =
        poem::listener::Listener::into_acceptor(poem::listener::TcpListener::bind("127.0.0.1:0"))
            .await
            .expect("bind");
    let addr = poem::listener::Acceptor::local_addr(&acceptor)[0]
        .as_socket_addr()
        .copied()
        .expect("addr");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let base = format!("http://{addr}");

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("n.toml");
    std::fs::write(
        &config,
        config_text(
            dir.path(),
            "secret = \"s3cret\"",
            "[destinations.o]\nkind = \"console\"\n",
        ),
    )
    .expect("write");
    let cfg = config.to_str().expect("utf-8");
    let env = [
        ("ALLIMAGES_API_KEY", "good-key"),
        ("ALLIMAGES_API_BASE", base.as_str()),
    ];
    let (code, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "subscribe",
            "--url",
            "https://bell.example.com/webhooks/all-images",
            "--events",
            "print.failed,print.completed",
        ],
        &env,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("wh_123"), "{out}");
    {
        let calls = log.0.lock().expect("lock");
        let (method, path, headers, body) = &calls[0];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/v1/api-keys/webhook/subscribe")
        );
        assert_eq!(headers.get("api-key").map(String::as_str), Some("good-key"));
        assert_eq!(
            body["url"],
            "https://bell.example.com/webhooks/all-images?token=s3cret"
        );
        assert_eq!(body["events"], json!(["print.failed", "print.completed"]));
    }
    assert!(!out.contains("good-key") && !err.contains("good-key"));

    let bad = [
        ("ALLIMAGES_API_KEY", "bad-key"),
        ("ALLIMAGES_API_BASE", base.as_str()),
    ];
    let (code, out, err) = run_cli(
        &[
            "--config",
            cfg,
            "subscribe",
            "--url",
            "https://bell.example.com/webhooks/all-images",
        ],
        &bad,
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("Invalid API key") && err.contains("401"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    assert!(!out.contains("bad-key") && !err.contains("bad-key"));

    let (code, _, err) = run_cli(
        &[
            "--config",
            cfg,
            "subscribe",
            "--url",
            "https://x.example/webhooks/all-images",
        ],
        &[("ALLIMAGES_API_BASE", base.as_str())],
    );
    assert_eq!(code, 1);
    assert!(err.contains("ALLIMAGES_API_KEY"), "{err}");

    let (code, out, err) = run_cli(&["--config", cfg, "unsubscribe", "wh_123"], &env);
    assert_eq!(code, 0, "{out}\n{err}");
    let calls = log.0.lock().expect("lock");
    assert_eq!(
        calls.last().map(|c| (c.0.as_str(), c.1.as_str())),
        Some(("DELETE", "/v1/api-keys/webhook/unsubscribe/wh_123"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_valid_config_and_refuses_an_invalid_one() {
    let mock = MockChat::start().await;
    let (a, b) = ("/api/webhooks/1/a", "/api/webhooks/2/b");
    let dir = tempfile::tempdir().expect("dir");
    let dests = format!(
        "[destinations.a]\nkind = \"discord\"\nmode = \"each\"\nurl = \"{}\"\n[destinations.b]\nkind = \"discord\"\nmode = \"each\"\nurl = \"{}\"\n",
        mock.url(a),
        mock.url(b)
    );
    let config = dir.path().join("n.toml");
    let write = |routes: &str| {
        std::fs::write(
            &config,
            config_text(dir.path(), "", &format!("{dests}\n{routes}")),
        )
        .expect("write")
    };
    write("[[routes]]\nto = [\"a\"]\n");
    let mut child = ChildService::start(&config, free_port(), dir.path(), "hup").await;
    let http = reqwest::Client::new();
    let post = |id: &str| {
        let req = http
            .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
            .body(event("print.created", id, None).to_string());
        async move {
            req.send()
                .await
                .expect("post")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    assert_eq!(post("h1").await["deliveries"], 1);

    write("[[routes]]\nto = [\"a\", \"b\"]\n");
    child.signal("HUP");
    testkit::eventually(WAIT, "reload logged", || {
        child.log().contains("config reloaded")
    })
    .await;
    assert_eq!(post("h2").await["deliveries"], 2);
    mock.wait_for_ok(b, 1, WAIT).await;

    write("[[routes]]\nto = [\"a\"]\nbogus_key = 1\n");
    child.signal("HUP");
    testkit::eventually(WAIT, "refusal logged", || {
        child.log().contains("reload refused")
    })
    .await;
    assert!(
        child.log().contains("unknown key `bogus_key`"),
        "{}",
        child.log()
    );
    assert_eq!(post("h3").await["deliveries"], 2, "old routes keep working");
    mock.wait_for_ok(a, 3, WAIT).await;
    mock.wait_for_ok(b, 2, WAIT).await;
    child.signal("TERM");
    assert_eq!(child.wait(WAIT).await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_removing_a_destination_makes_its_queued_deliveries_dead() {
    let mock = MockChat::start().await;
    let (a, b) = ("/api/webhooks/1/keep", "/api/webhooks/2/gone");
    // b fails, so its delivery is still queued (waiting for a retry) when b is removed.
    mock.set_default(b, Reply::Status(503, "{\"message\": \"down\"}".into()));
    let dir = tempfile::tempdir().expect("dir");
    let dest = |name: &str, path: &str| {
        format!(
            "[destinations.{name}]\nkind = \"discord\"\nurl = \"{}\"\n",
            mock.url(path)
        )
    };
    let config = dir.path().join("n.toml");
    let both = format!(
        "{}{}[[routes]]\nto = [\"a\", \"b\"]\n",
        dest("a", a),
        dest("b", b)
    );
    std::fs::write(&config, config_text(dir.path(), "", &both)).expect("write");
    let mut child = ChildService::start(&config, free_port(), dir.path(), "rm").await;
    let resp = reqwest::Client::new()
        .post(format!("{}{}", child.base, testkit::WEBHOOK_PATH))
        .body(event("print.failed", "rm-1", None).to_string())
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
    mock.wait_for(b, 1, WAIT).await;
    mock.wait_for_ok(a, 1, WAIT).await;

    let only_a = format!("{}[[routes]]\nto = [\"a\"]\n", dest("a", a));
    std::fs::write(&config, config_text(dir.path(), "", &only_a)).expect("write");
    child.signal("HUP");
    let store = dir.path().join("printbell.db");
    testkit::eventually(WAIT, "b's delivery is dead", || {
        testkit::store::deliveries(&store)
            .iter()
            .any(|d| d.destination == "b" && d.state == "dead")
    })
    .await;
    let rows = testkit::store::deliveries(&store);
    let gone = rows
        .iter()
        .find(|d| d.destination == "b")
        .expect("b's delivery is kept");
    assert_eq!(
        gone.last_error.as_deref(),
        Some("destination removed from config"),
        "{gone:?}"
    );
    assert_eq!(gone.attempts, 1, "the removal is not counted as an attempt");
    assert!(rows
        .iter()
        .any(|d| d.destination == "a" && d.state == "done"));
    let sent_to_b = mock.requests_to(b).len();
    child.signal("TERM");
    assert_eq!(child.wait(WAIT).await, Some(0));
    assert_eq!(
        mock.requests_to(b).len(),
        sent_to_b,
        "nothing more goes to b"
    );
}
