//! What a message looks like beyond its templates: the title's link (`[links] generation`) on
//! Slack and Discord, and where Slack shows a generation's images when progress and completion
//! are separate messages. Bodies are as the strict mocks received them.

use serde_json::{json, Value};
use std::time::Duration;
use testkit::mock_chat::MockChat;
use testkit::{config_text, event, run_cli, Service};

const SLACK: &str = "/services/T000/B000/slacktoken";
const DISCORD: &str = "/api/webhooks/111/discordtoken";
const WAIT: Duration = Duration::from_secs(20);
const LINK: &str =
    "[links]\ngeneration = \"https://gen.example.test/g/{{ generation.id }}?from=chat\"\n";

fn both(mock: &MockChat, links: &str) -> String {
    format!(
        "{links}\n[destinations.slack]\nkind = \"slack\"\nurl = \"{}\"\n\n[destinations.discord]\nkind = \"discord\"\nurl = \"{}\"\nmode = \"each\"\n\n[[routes]]\nto = [\"slack\", \"discord\"]\n",
        mock.url(SLACK),
        mock.url(DISCORD)
    )
}

/// The first JSON body `path` answered 2xx to.
async fn first_body(mock: &MockChat, path: &str) -> Value {
    let got = mock.wait_for_ok(path, 1, WAIT).await;
    got[0].json.clone().expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_title_links_to_the_generation_on_slack_and_discord() {
    let mock = MockChat::start().await;
    let svc = Service::start("", &both(&mock, LINK)).await;
    let completed = event("print.completed", "link-1", None);
    let generation = completed["data"]["id"].as_str().expect("id").to_string();
    svc.post_accepted(&completed, 2).await;
    let url = format!("https://gen.example.test/g/{generation}?from=chat");

    let discord = first_body(&mock, DISCORD).await;
    let embeds = discord["embeds"].as_array().expect("embeds");
    assert_eq!(
        embeds[0]["url"],
        url.as_str(),
        "the title links to the generation"
    );
    assert_eq!(embeds.len(), 4, "the gallery of four is kept");
    for e in embeds {
        assert_eq!(e["url"], url.as_str(), "the gallery shares the link: {e}");
    }

    let slack = first_body(&mock, SLACK).await;
    let first = &slack["blocks"][0];
    assert_eq!(first["type"], "section", "{slack}");
    assert_eq!(
        first["text"]["text"],
        format!("*<{url}|Autumn forest banner is ready (4 images)>*").as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_link_a_single_image_title_links_nowhere() {
    let mock = MockChat::start().await;
    let svc = Service::start("", &both(&mock, "")).await;
    let mut one = event("print.completed", "nolink-1", None);
    let images = one["data"]["images"].as_array().expect("images").clone();
    one["data"]["images"] = json!([images[0]]);
    svc.post_accepted(&one, 2).await;
    let discord = first_body(&mock, DISCORD).await;
    let main = &discord["embeds"][0];
    assert!(
        main["image"]["url"].is_string(),
        "the image is shown: {main}"
    );
    assert!(
        main.get("url").is_none(),
        "the title must not link to the image file: {main}"
    );
    let slack = first_body(&mock, SLACK).await;
    assert_eq!(slack["blocks"][0]["type"], "header", "{slack}");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_data_cannot_move_the_link_and_a_bad_link_is_left_out_with_a_warning() {
    let mock = MockChat::start().await;
    let svc = Service::start("", &both(&mock, LINK)).await;
    // A generation id that tries to leave its path segment, add a query and a fragment.
    let mut hostile = event("print.created", "link-hostile", None);
    hostile["data"]["id"] = json!("x/../../admin?steal=1#top");
    svc.post_accepted(&hostile, 2).await;
    let discord = first_body(&mock, DISCORD).await;
    assert_eq!(
        discord["embeds"][0]["url"],
        "https://gen.example.test/g/x%2F..%2F..%2Fadmin%3Fsteal%3D1%23top?from=chat"
    );

    // `..` as the whole id would climb out of /g/: no link, and the message still goes.
    mock.clear_requests();
    let mut dots = event("print.created", "link-dots", None);
    dots["data"]["id"] = json!("..");
    svc.post_accepted(&dots, 2).await;
    let discord = first_body(&mock, DISCORD).await;
    assert!(discord["embeds"][0].get("url").is_none(), "{discord}");
    let slack = first_body(&mock, SLACK).await;
    assert_eq!(slack["blocks"][0]["type"], "header", "{slack}");
}

#[test]
fn check_names_a_broken_or_hostless_link_template() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("notifier.toml");
    let rest = "[destinations.out]\nkind = \"console\"\n[[routes]]\nto = [\"out\"]\n";
    let arg = config.to_str().expect("utf-8");
    for (links, says) in [
        (
            "[links]\ngeneration = \"https://x.test/{{ generation.id \"\n",
            "links.generation: template error",
        ),
        (
            "[links]\ngeneration = \"{{ generation.id }}\"\n",
            "is not a URL",
        ),
    ] {
        std::fs::write(
            &config,
            config_text(dir.path(), "", &format!("{links}{rest}")),
        )
        .expect("write");
        let (code, out, err) = run_cli(&["--config", arg, "check"], &[]);
        assert_eq!(code, 1, "{links}\n{out}\n{err}");
        assert!(err.contains(says), "`{says}` for {links}:\n{err}");
        assert!(err.contains("notifier.toml:"), "file:line named:\n{err}");
    }
    std::fs::write(
        &config,
        config_text(dir.path(), "", &format!("{LINK}{rest}")),
    )
    .expect("write");
    let (code, out, err) = run_cli(&["--config", arg, "check"], &[]);
    assert_eq!(code, 0, "a good link template:\n{out}\n{err}");

    // An event whose link cannot be used: the message goes without it, and a warning says why.
    let mut dots = event("print.created", "preview-dots", None);
    dots["data"]["id"] = json!("..");
    let file = dir.path().join("dots.json");
    std::fs::write(&file, dots.to_string()).expect("write event");
    let (code, out, err) = run_cli(
        &[
            "--config",
            arg,
            "preview",
            "--event",
            file.to_str().expect("utf-8"),
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    let both = format!("{out}{err}");
    assert!(
        both.contains("links.generation gave") && both.contains("links nowhere"),
        "the warning names the link and the consequence:\n{both}"
    );
}

/// Slack incoming webhooks post one message per event: a progress message's image would be
/// shown again, full size, by the completion. It is a small context image there instead.
#[tokio::test(flavor = "multi_thread")]
async fn slack_each_shows_progress_images_small_and_full_size_only_on_completion() {
    let mock = MockChat::start().await;
    let rest = format!(
        "[destinations.slack]\nkind = \"slack\"\nurl = \"{}\"\n[[routes]]\nto = [\"slack\"]\n",
        mock.url(SLACK)
    );
    let svc = Service::start("", &rest).await;
    svc.post_accepted(&event("print.progress", "each-progress", None), 1)
        .await;
    svc.post_accepted(&event("print.completed", "each-completed", None), 1)
        .await;
    let got = mock.wait_for_ok(SLACK, 2, WAIT).await;
    let kinds = |b: &Value, ty: &str| -> Vec<Value> {
        b["blocks"]
            .as_array()
            .map(|a| a.iter().filter(|x| x["type"] == ty).cloned().collect())
            .unwrap_or_default()
    };
    let progress = got[0].json.clone().expect("json");
    assert!(
        kinds(&progress, "image").is_empty(),
        "no full-size image in a progress message: {progress}"
    );
    let small: Vec<Value> = kinds(&progress, "context")
        .iter()
        .flat_map(|c| c["elements"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["type"] == "image")
        .collect();
    assert_eq!(small.len(), 1, "the newest image, small: {progress}");
    assert!(small[0]["image_url"]
        .as_str()
        .is_some_and(|u| u.starts_with("https://")));
    assert!(small[0]["alt_text"].is_string());
    let completed = got[1].json.clone().expect("json");
    assert_eq!(
        kinds(&completed, "image").len(),
        4,
        "the full set on completion: {completed}"
    );
}
