//! What the validator asks of the platforms: every config rule that depends on the
//! destination kind is answered by its module in `crate::platform` (which keys it takes, how
//! it is reached, its URL and value rules, which mentions it has); this file only puts the
//! generic part around them.

use crate::config::Mention;
use crate::domain::Kind;
use crate::platform::{self, Reach};
use url::Url;

/// The optional keys whose meaning depends on the kind.
pub const PLATFORM_KEYS: [&str; 7] = [
    "username",
    "avatar_url",
    "thread_id",
    "token",
    "token_file",
    "channel",
    "api_url",
];

/// Why a destination of `kind` may not set `key`, if it may not: it names the kinds that do.
pub fn refuses_key(kind: Kind, key: &str) -> Option<String> {
    if !PLATFORM_KEYS.contains(&key) || platform::of(kind).takes_key(key) {
        return None;
    }
    let takers: Vec<String> = Kind::ALL
        .into_iter()
        .filter(|k| platform::of(*k).takes_key(key))
        .map(|k| capitalised(k.as_str()))
        .collect();
    Some(format!("is only for {} destinations", takers.join(" and ")))
}

fn capitalised(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Whether a destination of `kind` may post to a webhook URL at all (`url`/`url_file`).
pub fn needs_url(kind: Kind) -> bool {
    platform::of(kind).reach() != Reach::Nowhere
}

/// Checks a webhook URL and applies the platform's URL rules (legacy Discord host).
pub fn parse_webhook_url(kind: Kind, text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("{e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err("it has no host".into());
    }
    platform::of(kind).webhook_url(url)
}

/// The platform's rule for an optional key's value.
pub fn check_key(kind: Kind, key: &str, value: &str) -> Result<(), &'static str> {
    platform::of(kind).check_key(key, value)
}

impl Mention {
    /// Why this mention cannot work on the platform, if it cannot.
    pub fn problem_on(&self, kind: Kind) -> Option<String> {
        platform::of(kind).mention_problem(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, Mode};
    use std::path::Path;

    #[test]
    fn only_discord_takes_its_keys_and_only_console_takes_no_url() {
        for key in ["username", "avatar_url", "thread_id"] {
            assert_eq!(refuses_key(Kind::Discord, key), None);
            assert!(refuses_key(Kind::Slack, key).is_some());
            assert!(refuses_key(Kind::Console, key).is_some());
        }
        assert_eq!(refuses_key(Kind::Slack, "url"), None);
        assert!(needs_url(Kind::Slack) && needs_url(Kind::Discord) && !needs_url(Kind::Console));
        assert_eq!(
            refuses_key(Kind::Discord, "token").as_deref(),
            Some("is only for Slack destinations")
        );
    }

    #[test]
    fn discord_values_follow_discord_rules() {
        let d = |k: &str, v: &str| check_key(Kind::Discord, k, v);
        assert!(d("username", "Printer").is_ok());
        assert!(d("username", "").is_err());
        assert!(d("username", &"x".repeat(81)).is_err());
        assert!(d("username", "my Discord bot").is_err());
        assert!(d("username", "Clyde").is_err());
        assert!(d("avatar_url", "https://example.com/a.png").is_ok());
        assert!(d("avatar_url", "ftp://example.com/a.png").is_err());
        assert!(d("avatar_url", &format!("https://e.com/{}", "a".repeat(2048))).is_err());
        assert!(d("thread_id", "123456789012345678").is_ok());
        assert!(d("thread_id", "").is_err());
        assert!(d("thread_id", "12a").is_err());
    }

    #[test]
    fn discord_client_and_legacy_hosts_become_discord_com() {
        for host in ["discordapp.com", "canary.discordapp.com", "ptb.discord.com"] {
            let url = parse_webhook_url(
                Kind::Discord,
                &format!("https://{host}/api/webhooks/1/tok?thread_id=2"),
            )
            .expect("valid");
            assert_eq!(
                url.as_str(),
                "https://discord.com/api/webhooks/1/tok?thread_id=2"
            );
        }
        let mock =
            parse_webhook_url(Kind::Discord, "http://127.0.0.1:9/api/webhooks/1/t").expect("valid");
        assert_eq!(mock.host_str(), Some("127.0.0.1"));
    }

    #[test]
    fn mentions_must_exist_on_the_platform() {
        let text = r#"
[destinations.d]
kind = "discord"
url = "https://discord.com/api/webhooks/1/abc"

[destinations.s]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[[routes]]
to = ["d"]
mention = ["user:U024BE7LH", "group:S1"]

[[routes]]
to = ["s"]
mention = ["role:123", "user:U024BE7LH"]
"#;
        let err = parse(Path::new("t.toml"), text, &|_| None).expect_err("bad mentions");
        let all = err.to_string();
        assert!(
            all.contains("`user:U024BE7LH` is not a Discord id"),
            "{all}"
        );
        assert!(
            all.contains("`group:S1` does not exist on discord"),
            "{all}"
        );
        assert!(all.contains("`role:123` does not exist on slack"), "{all}");
        assert_eq!(err.problems.len(), 3, "{all}");
    }

    #[test]
    fn slack_takes_a_webhook_or_a_bot_token_and_live_needs_the_token() {
        let cfg = |dest: &str| {
            parse(
                Path::new("t.toml"),
                &format!("[destinations.s]\nkind = \"slack\"\n{dest}\n"),
                &|_| None,
            )
        };
        let hook = "url = \"https://hooks.slack.com/services/T/B/x\"";
        let bot = "token = \"xoxb-1\"\nchannel = \"C1\"";
        let ok = cfg(hook).expect("webhook");
        assert_eq!(ok.destinations["s"].mode, Mode::Each);
        let ok = cfg(bot).expect("bot");
        let api = ok.destinations["s"].slack_api.as_ref().expect("web api");
        assert_eq!(api.base.as_str(), "https://slack.com/api/");
        assert_eq!(ok.destinations["s"].mode, Mode::Live);
        let gov = cfg(&format!(
            "{bot}\napi_url = \"https://slack-gov.com/api\"\nmode = \"each\""
        ))
        .expect("gov");
        assert_eq!(gov.destinations["s"].mode, Mode::Each);
        assert_eq!(
            gov.destinations["s"]
                .slack_api
                .as_ref()
                .map(|a| a.base.as_str()),
            Some("https://slack-gov.com/api/")
        );

        let err = |dest: &str| cfg(dest).expect_err(dest).to_string();
        assert!(err(&format!("{hook}\nmode = \"live\"")).contains("use a bot `token`"));
        assert!(err(&format!("{hook}\n{bot}")).contains("both a webhook `url` and a bot `token`"));
        assert!(err("token = \"xoxb-1\"").contains("no `channel`"));
        assert!(err("").contains("needs `url` (an incoming webhook) or `token` and `channel`"));
        assert!(err(&format!("{hook}\nchannel = \"C1\"")).contains("go with a bot `token`"));
        assert!(err(&format!("{bot}\nmode = \"sometimes\"")).contains("expected live or each"));
        let discord = parse(
            Path::new("t.toml"),
            "[destinations.d]\nkind = \"discord\"\nurl = \"https://discord.com/api/webhooks/1/x\"\ntoken = \"t\"\n",
            &|_| None,
        )
        .expect_err("token on discord")
        .to_string();
        assert!(
            discord.contains("`destinations.d.token` is only for Slack destinations"),
            "{discord}"
        );
    }

    #[test]
    fn a_bot_token_is_never_in_debug_output() {
        let c = parse(
            Path::new("t.toml"),
            "[destinations.s]\nkind = \"slack\"\ntoken = \"xoxb-very-secret\"\nchannel = \"C1\"\n",
            &|_| None,
        )
        .expect("valid");
        let shown = format!(
            "{:?} {}",
            c.destinations["s"],
            c.destinations["s"].shown_address()
        );
        assert!(!shown.contains("very-secret"), "{shown}");
    }
}
