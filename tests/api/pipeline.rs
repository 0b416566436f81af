//! The straight path, end to end: the real server on a loopback port receives fixture events
//! and the strict mock Slack/Discord servers receive the bodies (SPEC §3.1, §4).

use serde_json::{json, Value};
use std::time::Duration;
use testkit::mock_chat::MockChat;
use testkit::{event, fixture, Service, TestStore, WEBHOOK_PATH};

const SLACK: &str = "/services/T000/B000/slacktoken";
const DISCORD: &str = "/api/webhooks/111/discordtoken";
const WAIT: Duration = Duration::from_secs(20);

fn destinations(mock: &MockChat) -> String {
    format!(
        "[destinations.slack]\nkind = \"slack\"\nurl = \"{}\"\n\n[destinations.discord]\nkind = \"discord\"\nurl = \"{}\"\nusername = \"printbell\"\n",
        mock.url(SLACK),
        mock.url(DISCORD)
    )
}

async fn both(mock: &MockChat) -> Service {
    both_on(mock, &TestStore::Sqlite).await
}

async fn both_on(mock: &MockChat, store: &TestStore) -> Service {
    let rest = format!(
        "{}\n[[routes]]\nto = [\"slack\", \"discord\"]\n",
        destinations(mock)
    );
    Service::start_on(store, "", &rest).await
}

fn blocks_of_type<'a>(body: &'a Value, ty: &str) -> Vec<&'a Value> {
    body["blocks"]
        .as_array()
        .map(|b| b.iter().filter(|x| x["type"] == ty).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn completion_shows_images_on_slack_and_as_a_discord_gallery() {
    completion_shows_images(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn completion_shows_images(store: &TestStore) {
    let mock = MockChat::start().await;
    let svc = both_on(&mock, store).await;
    svc.post_accepted(&fixture("print.completed"), 2).await;

    let slack = mock.wait_for_ok(SLACK, 1, WAIT).await;
    let body = slack[0].json.clone().expect("json");
    assert_eq!(body["text"], "Autumn forest banner is ready (4 images)");
    let header = blocks_of_type(&body, "header");
    assert_eq!(
        header[0]["text"]["text"],
        "Autumn forest banner is ready (4 images)"
    );
    let images = blocks_of_type(&body, "image");
    let urls: Vec<&str> = images
        .iter()
        .filter_map(|b| b["image_url"].as_str())
        .collect();
    assert_eq!(
        urls,
        (1..=4)
            .map(|i| format!("https://cdn.example-images.test/prints/6567a1f2/{i}.png"))
            .collect::<Vec<_>>()
    );
    assert_eq!(images[0]["alt_text"], "Autumn forest 1");
    let section = blocks_of_type(&body, "section");
    assert!(section[0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .contains("misty autumn forest"));
    let context = blocks_of_type(&body, "context");
    let ctx = context[0]["elements"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        ctx.contains("6567a1f2c3b4d5e6f7a8b9c0") && ctx.contains("marketing"),
        "{ctx}"
    );

    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    assert_eq!(discord[0].query_param("wait").as_deref(), Some("true"));
    let body = discord[0].json.clone().expect("json");
    let embeds = body["embeds"].as_array().expect("embeds");
    assert_eq!(embeds.len(), 4, "one embed per image, up to 4 (gallery)");
    let shared = embeds[0]["url"].clone();
    assert!(
        embeds.iter().all(|e| e["url"] == shared),
        "gallery embeds share one url"
    );
    assert_eq!(embeds[0]["color"], 0x2ECC71);
    assert_eq!(
        embeds[0]["title"],
        "Autumn forest banner is ready (4 images)"
    );
    assert_eq!(embeds[0]["timestamp"], "2026-11-30T09:15:02Z");
    assert_eq!(
        embeds[3]["image"]["url"],
        "https://cdn.example-images.test/prints/6567a1f2/4.png"
    );
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    assert_eq!(body["username"], "printbell");
    assert!(
        body.get("content").is_none(),
        "no content without a configured mention"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_event_type_has_its_colour_and_a_readable_default() {
    let mock = MockChat::start().await;
    // One message per event (`each`): each keeps its own colour.
    let rest = format!(
        "{}mode = \"each\"\n\n[[routes]]\nto = [\"discord\"]\n",
        destinations(&mock)
    );
    let svc = Service::start("", &rest).await;
    let types = [
        "print.created",
        "print.active",
        "print.progress",
        "print.failed",
        "print.completed",
    ];
    for t in types {
        svc.post_accepted(&fixture(t), 1).await;
    }
    let got = mock.wait_for_ok(DISCORD, 5, WAIT).await;
    let colours: Vec<(String, u64)> = got
        .iter()
        .map(|r| {
            let b = r.json.clone().expect("json");
            let footer = b["embeds"][0]["footer"]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (footer, b["embeds"][0]["color"].as_u64().unwrap_or_default())
        })
        .collect();
    let expected = [0x95A5A6, 0x3498DB, 0xF1A208, 0xE74C3C, 0x2ECC71];
    for (i, t) in types.iter().enumerate() {
        assert!(colours[i].0.starts_with(t), "in order: {colours:?}");
        assert_eq!(colours[i].1, expected[i], "{t}");
    }
    let failed = got[3].json.clone().expect("json");
    assert_eq!(
        failed["embeds"][0]["title"],
        "Generation failed: Rejected prompt"
    );
    let progress = got[2].json.clone().expect("json");
    assert_eq!(
        progress["embeds"][0]["title"],
        "Autumn forest banner: image 1 of 4 ready"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_text_cannot_ping_or_forge_links() {
    let mock = MockChat::start().await;
    let svc = both(&mock).await;
    let mut e = fixture("print.completed");
    e["data"]["name"] = json!("<!channel> <@U123> @everyone");
    e["data"]["prompt"] = json!("<!here> <https://evil.example|click> [click](https://evil.example) <@123> <@&456> @here <#C1> <!subteam^S1>");
    e["data"]["tags"] = json!(["<!everyone>", "@everyone"]);
    e["data"]["images"][0]["titles"] = json!({"en": "<!channel> title"});
    svc.post_accepted(&e, 2).await;

    let slack = mock.wait_for_ok(SLACK, 1, WAIT).await;
    let text = slack[0].text();
    for live in [
        "<!channel>",
        "<!here>",
        "<!everyone>",
        "<@U123>",
        "<https://evil",
        "<#C1>",
        "<!subteam",
    ] {
        assert!(
            !text.contains(live),
            "Slack body contains live `{live}`: {text}"
        );
    }
    assert!(
        text.contains("&lt;!here&gt;"),
        "escaped, still readable: {text}"
    );

    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    let body = discord[0].json.clone().expect("json");
    assert_eq!(body["allowed_mentions"], json!({"parse": []}));
    assert!(body.get("content").is_none());
    let desc = body["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(
        desc.contains("\\[click\\](https://evil.example)"),
        "masked link neutralised: {desc}"
    );
    assert!(
        !desc.contains("@here") && desc.contains("@\u{200B}here"),
        "{desc}"
    );
    assert!(
        desc.contains("\\<@123\\>") && desc.contains("\\<@&456\\>"),
        "{desc}"
    );
    let title = body["embeds"][0]["title"].as_str().unwrap_or_default();
    assert!(!title.contains("@everyone"), "{title}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_10000_character_prompt_is_truncated_within_every_limit() {
    let mock = MockChat::start().await;
    let svc = both(&mock).await;
    let mut e = fixture("print.completed");
    let prompt: String = "Ünïcødé 🎨 漢字 ".chars().cycle().take(10_000).collect();
    e["data"]["prompt"] = json!(prompt);
    e["data"]["name"] = json!("n".repeat(400));
    svc.post_accepted(&e, 2).await;

    // The strict mocks answer 200 only to bodies within every limit.
    let slack = mock.wait_for_ok(SLACK, 1, WAIT).await;
    let body = slack[0].json.clone().expect("json");
    let section = blocks_of_type(&body, "section")[0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(section.chars().count(), 3000);
    assert!(section.ends_with('…'));
    let header = blocks_of_type(&body, "header")[0]["text"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(header.chars().count(), 150);

    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    let body = discord[0].json.clone().expect("json");
    let desc = body["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(desc.chars().count(), 4096);
    assert!(desc.ends_with('…'));
    assert_eq!(
        body["embeds"][0]["title"]
            .as_str()
            .unwrap_or_default()
            .chars()
            .count(),
        256
    );
    assert!(slack[0].problems.is_empty() && discord[0].problems.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn many_images_and_unsafe_urls() {
    let mock = MockChat::start().await;
    let svc = both(&mock).await;
    let mut e = fixture("print.completed");
    let mut images: Vec<Value> = (1..=7)
        .map(|i| json!({"id": format!("i{i}"), "url": format!("https://cdn.test/{i}.png"), "titles": {}}))
        .collect();
    images.push(json!({"id": "x", "url": "javascript:alert(1)"}));
    images.push(json!({"id": "y", "url": "ftp://cdn.test/y.png"}));
    images.push(json!({"id": "z", "url": null}));
    e["data"]["images"] = json!(images);
    svc.post_accepted(&e, 2).await;

    let slack = mock.wait_for_ok(SLACK, 1, WAIT).await;
    let body = slack[0].json.clone().expect("json");
    assert_eq!(blocks_of_type(&body, "image").len(), 7);
    assert!(!slack[0].text().contains("javascript:") && !slack[0].text().contains("ftp://"));

    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    let body = discord[0].json.clone().expect("json");
    assert_eq!(body["embeds"].as_array().map(Vec::len), Some(4));
    let desc = body["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    for i in 5..=7 {
        assert!(
            desc.contains(&format!("https://cdn.test/{i}.png")),
            "image {i} listed as a link: {desc}"
        );
    }
    assert!(!discord[0].text().contains("javascript:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_prompt_does_not_push_out_the_links_to_extra_images() {
    let mock = MockChat::start().await;
    let svc = both(&mock).await;
    let mut e = fixture("print.completed");
    e["data"]["prompt"] = json!("long prompt ".repeat(1_000));
    let images: Vec<Value> = (1..=7)
        .map(|i| json!({"id": format!("i{i}"), "url": format!("https://cdn.test/{i}.png")}))
        .collect();
    e["data"]["images"] = json!(images);
    svc.post_accepted(&e, 2).await;

    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    assert!(discord[0].problems.is_empty(), "{:?}", discord[0].problems);
    let body = discord[0].json.clone().expect("json");
    let desc = body["embeds"][0]["description"]
        .as_str()
        .unwrap_or_default();
    assert!(desc.chars().count() <= 4096);
    assert!(desc.contains("long prompt"), "the text is kept, truncated");
    assert!(desc.contains('…'), "the text is marked as cut: {desc}");
    for i in 5..=7 {
        assert!(
            desc.contains(&format!("[image {i}](https://cdn.test/{i}.png)")),
            "image {i} is still linked: {desc}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_tag_event_and_untagged_once_per_destination() {
    let mock = MockChat::start().await;
    let rest = format!(
        r#"{dest}
[destinations.other]
kind = "slack"
url = "{other}"

[[routes]]
tags = ["Marketing"]
events = ["print.completed", "print.failed"]
to = ["slack"]

[[routes]]
events = ["print.failed"]
to = ["discord"]
mention = ["role:123456789012345678"]

[[routes]]
events = ["print.failed"]
to = ["slack"]
mention = ["here"]

[[routes]]
untagged = true
to = ["other"]
"#,
        dest = destinations(&mock),
        other = mock.url("/services/T0/B0/other")
    );
    let svc = Service::start("", &rest).await;
    // Tag match is case-insensitive; created is filtered out by `events`.
    svc.post_accepted(&event("print.created", "e1", Some(json!(["MARKETING"]))), 0)
        .await;
    svc.post_accepted(
        &event("print.completed", "e2", Some(json!(["marketing"]))),
        1,
    )
    .await;
    // Two routes name `slack`: still one message; discord gets the mention.
    svc.post_accepted(&event("print.failed", "e3", Some(json!(["Marketing"]))), 2)
        .await;
    // Untagged (absent, null, []) only.
    let mut untagged = event("print.created", "e4", None);
    untagged["data"].as_object_mut().map(|d| d.remove("tags"));
    svc.post_accepted(&untagged, 1).await;
    svc.post_accepted(&event("print.created", "e5", Some(json!(null))), 1)
        .await;
    svc.post_accepted(&event("print.created", "e6", Some(json!(["other"]))), 0)
        .await;
    // An event type no route asks for (routes without `events` take the five known types).
    let mut unknown = event("print.created", "e7", Some(json!([])));
    unknown["type"] = json!("print.unknown");
    svc.post_accepted(&unknown, 0).await;

    let slack = mock.wait_for_ok(SLACK, 2, WAIT).await;
    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    mock.wait_for_ok("/services/T0/B0/other", 2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        mock.requests_to(SLACK).len(),
        2,
        "slack: completed + failed, once each"
    );
    assert_eq!(mock.requests_to(DISCORD).len(), 1);
    assert_eq!(mock.requests_to("/services/T0/B0/other").len(), 2);
    assert!(
        slack[0].text().contains("print.completed") && slack[1].text().contains("print.failed")
    );
    let failed = slack[1].json.clone().expect("json");
    assert!(
        failed["text"]
            .as_str()
            .unwrap_or_default()
            .starts_with("<!here> "),
        "mention merged from the later route: {failed}"
    );
    let d = discord[0].json.clone().expect("json");
    assert_eq!(d["content"], "<@&123456789012345678>");
    assert_eq!(
        d["allowed_mentions"],
        json!({"parse": [], "roles": ["123456789012345678"]})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_event_is_acknowledged_and_not_sent_again() {
    duplicate_is_not_sent_again(&TestStore::Sqlite).await;
}

/// On either store (`postgres.rs` runs it on PostgreSQL).
pub(crate) async fn duplicate_is_not_sent_again(store: &TestStore) {
    let mock = MockChat::start().await;
    let svc = both_on(&mock, store).await;
    let e = fixture("print.failed");
    svc.post_accepted(&e, 2).await;
    let (status, body) = svc.post(&e).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"id": "evt_01HZX0005", "duplicate": true}));
    mock.wait_for_ok(SLACK, 1, WAIT).await;
    mock.wait_for_ok(DISCORD, 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(mock.requests().len(), 2);
    assert_eq!(svc.deliveries().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_requests_store_and_send_nothing() {
    let mock = MockChat::start().await;
    let rest = format!(
        "{}\n[[routes]]\nto = [\"slack\", \"discord\"]\n",
        destinations(&mock)
    );
    let svc = Service::start("secret = \"s3cret\"\nmax_body_bytes = 4096", &rest).await;
    let good = fixture("print.completed").to_string().into_bytes();
    let json_ct = ("content-type", "application/json");

    // (what, body, headers, status, a word the error must contain)
    type Case<'a> = (&'a str, Vec<u8>, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("no secret", good.clone(), vec![json_ct], 401, "secret"),
        (
            "wrong token",
            good.clone(),
            vec![json_ct, ("x-printbell-token", "nope")],
            401,
            "wrong",
        ),
        (
            "not json",
            b"{nope".to_vec(),
            vec![("x-printbell-token", "s3cret")],
            400,
            "JSON",
        ),
        (
            "missing data.id",
            br#"{"id":"a","type":"print.created","data":{}}"#.to_vec(),
            vec![("x-printbell-token", "s3cret")],
            400,
            "data.id",
        ),
        (
            "too large",
            vec![b' '; 5000],
            vec![("x-printbell-token", "s3cret")],
            413,
            "max_body_bytes",
        ),
    ];
    for (what, body, headers, status, word) in cases {
        let (got, answer) = svc.post_raw(WEBHOOK_PATH, body, &headers).await;
        assert_eq!(got, status, "{what}: {answer}");
        let err = answer["error"].as_str().unwrap_or_default();
        assert!(
            err.contains(word),
            "{what}: error `{err}` should mention {word}"
        );
    }
    // A valid signature over a different body.
    let sig = printbell::server::auth::sign("s3cret", b"{}");
    let (got, _) = svc
        .post_raw(
            WEBHOOK_PATH,
            good.clone(),
            &[("x-printbell-signature", sig.as_str())],
        )
        .await;
    assert_eq!(got, 401);
    assert!(svc.deliveries().is_empty(), "nothing stored");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(mock.requests().is_empty(), "nothing sent");

    // Each way of proving the secret works.
    let mut n = 0;
    for (path, headers) in [
        (format!("{WEBHOOK_PATH}?token=s3cret"), vec![]),
        (
            WEBHOOK_PATH.to_string(),
            vec![("x-printbell-token".to_string(), "s3cret".to_string())],
        ),
    ] {
        n += 1;
        let body = event("print.created", &format!("ok{n}"), None)
            .to_string()
            .into_bytes();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (got, answer) = svc.post_raw(&path, body, &h).await;
        assert_eq!(got, 202, "{answer}");
    }
    let body = event("print.created", "ok3", None).to_string().into_bytes();
    let sig = printbell::server::auth::sign("s3cret", &body);
    let (got, answer) = svc
        .post_raw(
            WEBHOOK_PATH,
            body,
            &[("x-printbell-signature", sig.as_str())],
        )
        .await;
    assert_eq!(got, 202, "{answer}");
    assert_eq!(svc.deliveries().len(), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn lenient_input_is_accepted() {
    let mock = MockChat::start().await;
    let svc = both(&mock).await;
    let e = json!({
        "id": "lenient-1", "type": "print.completed", "api_version": "1", "created": "1796030102",
        "unknown_field": {"x": 1},
        "data": {"id": "g1", "images": null, "tags": null, "params": null, "metaData": null}
    });
    // No content type at all.
    let (status, body) = svc
        .post_raw(WEBHOOK_PATH, e.to_string().into_bytes(), &[])
        .await;
    assert_eq!(status, 202, "{body}");
    let got = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    let b = got[0].json.clone().expect("json");
    assert_eq!(b["embeds"][0]["title"], "g1 is ready (0 images)");
    mock.wait_for_ok(SLACK, 1, WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn templates_override_globally_and_per_route() {
    let mock = MockChat::start().await;
    let rest = format!(
        r#"{dest}
[[routes]]
to = ["slack"]
[routes.templates."print.failed"]
title = "Route says: {{{{ generation.name }}}} failed"

[[routes]]
to = ["discord"]

[templates."print.failed"]
title = "Global: {{{{ generation.name }}}} ({{{{ generation.tags | join(', ') }}}})"
text = "{{{{ generation.prompt | quote }}}}"
"#,
        dest = destinations(&mock)
    );
    let svc = Service::start("", &rest).await;
    let mut e = fixture("print.failed");
    e["data"]["name"] = json!("<b>");
    svc.post_accepted(&e, 2).await;
    let slack = mock.wait_for_ok(SLACK, 1, WAIT).await;
    let discord = mock.wait_for_ok(DISCORD, 1, WAIT).await;
    assert_eq!(
        slack[0].json.clone().expect("json")["text"],
        "Route says: &lt;b&gt; failed"
    );
    let d = discord[0].json.clone().expect("json");
    assert_eq!(d["embeds"][0]["title"], "Global: \\<b\\> (alerts)");
    assert_eq!(
        d["embeds"][0]["description"],
        "> A prompt the generator refused"
    );
}
