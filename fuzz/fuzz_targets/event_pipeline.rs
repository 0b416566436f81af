//! Fuzzes the whole event path without the network: parse → route → render, then checks every
//! rendered Slack/Discord body against the same limit checks the integration tests use.
//! Run: `cargo +stable fuzz run event_pipeline` with RUSTC_BOOTSTRAP=1 (see README).
#![no_main]

use libfuzzer_sys::fuzz_target;
use printbell::loaded::Loaded;
use std::sync::OnceLock;
use testkit::platform;

fn loaded() -> &'static Loaded {
    static LOADED: OnceLock<Loaded> = OnceLock::new();
    LOADED.get_or_init(|| {
        let text = r#"
[destinations.s]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/X"
[destinations.d]
kind = "discord"
url = "https://discord.com/api/webhooks/1/x"
[destinations.c]
kind = "console"
[[routes]]
to = ["s", "d", "c"]
mention = ["here"]
[[routes]]
tags = ["a", "B"]
events = ["print.failed"]
to = ["d"]
mention = ["role:1", "user:2"]
"#;
        let config = printbell::config::parse(std::path::Path::new("fuzz.toml"), text, &|_| None)
            .expect("fuzz config is valid");
        Loaded::from_config(config).expect("templates compile")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(event) = printbell::event::parse(data) else {
        return;
    };
    let l = loaded();
    for target in printbell::routing::route(&l.config, &event) {
        let r = l.renderer.render(&l.config, &target, &event).expect("known destination");
        let text = r.body.to_string();
        let body: serde_json::Value = serde_json::from_str(&text).expect("body is JSON");
        let problems = platform::problems(r.kind, &body);
        assert!(problems.is_empty(), "{:?} body out of limits: {problems:?}\n{text}", r.kind);
    }
});
