//! The per-platform rules: every config check that depends on the destination kind, and
//! nothing else. They are small functions of a [`Kind`] and a value, so each can move to its
//! platform (Slack, Discord, console) unchanged; the validator only asks them and words the
//! problem with the key it was found at.
//!
//! - which keys a kind accepts: [`refuses_key`] (`username`, `avatar_url`, `thread_id` are
//!   Discord's) and [`needs_url`] (console posts nowhere and takes no url);
//! - the webhook URL: [`parse_webhook_url`] (http(s) with a host; Discord's legacy and client
//!   hosts become `discord.com`, and the path must have `/webhooks/`);
//! - Discord's optional keys: [`check_username`], [`check_avatar_url`], [`check_thread_id`];
//! - mentions: [`Mention::problem_on`] (Slack has no roles, Discord no user groups; Discord
//!   ids are digits).

use super::is_http_url;
use crate::config::Mention;
use crate::domain::Kind;
use reqwest::Url;

/// Why a destination of `kind` may not set `key`, if it may not. Only `username`,
/// `avatar_url` and `thread_id` depend on the kind: they are Discord's.
pub fn refuses_key(kind: Kind, key: &str) -> Option<&'static str> {
    match key {
        "username" | "avatar_url" | "thread_id" if kind != Kind::Discord => {
            Some("is only for Discord destinations")
        }
        _ => None,
    }
}

/// Whether a destination of `kind` posts to a webhook URL. If it does, `url` or `url_file` is
/// required; if not (console), neither is accepted.
pub fn needs_url(kind: Kind) -> bool {
    match kind {
        Kind::Slack | Kind::Discord => true,
        Kind::Console => false,
    }
}

/// Checks a webhook URL and applies the platform's URL rules (legacy Discord host).
pub fn parse_webhook_url(kind: Kind, text: &str) -> Result<Url, String> {
    let mut url = Url::parse(text.trim()).map_err(|e| format!("{e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme `{}` is not http or https", url.scheme()));
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err("it has no host".into());
    }
    if kind == Kind::Discord {
        // The legacy host (v10 is not served there and it has an extra global limit) and the
        // ptb/canary client hosts Discord's "Copy Webhook URL" may give are one API: use its
        // canonical host, so rate limits are tracked once.
        let legacy = url.host_str().is_some_and(|h| {
            [
                "discordapp.com",
                "ptb.discordapp.com",
                "canary.discordapp.com",
                "ptb.discord.com",
                "canary.discord.com",
            ]
            .contains(&h)
        });
        if legacy {
            url.set_host(Some("discord.com"))
                .map_err(|e| e.to_string())?;
        }
        if !url.path().contains("/webhooks/") {
            return Err(
                "a Discord webhook URL looks like https://discord.com/api/webhooks/ID/TOKEN".into(),
            );
        }
    }
    Ok(url)
}

/// Discord's rule for the name a webhook posts as.
pub fn check_username(username: &str) -> Result<(), &'static str> {
    let n = username.chars().count();
    let lower = username.to_lowercase();
    if !(1..=80).contains(&n) || lower.contains("clyde") || lower.contains("discord") {
        return Err("must be 1 to 80 characters and may not contain \"clyde\" or \"discord\"");
    }
    Ok(())
}

/// Discord's rule for the avatar a webhook posts with.
pub fn check_avatar_url(avatar_url: &str) -> Result<(), &'static str> {
    if !is_http_url(avatar_url) || avatar_url.len() > 2048 {
        return Err("must be an http(s) URL of at most 2048 characters");
    }
    Ok(())
}

/// Discord's rule for the thread a webhook posts into: a snowflake id.
pub fn check_thread_id(thread_id: &str) -> Result<(), &'static str> {
    if thread_id.is_empty() || !thread_id.chars().all(|c| c.is_ascii_digit()) {
        return Err("must be a Discord id (digits)");
    }
    Ok(())
}

impl Mention {
    /// Why this mention cannot work on the platform, if it cannot.
    pub fn problem_on(&self, kind: Kind) -> Option<String> {
        match (self, kind) {
            (Mention::Role(_), Kind::Slack) | (Mention::Group(_), Kind::Discord) => {
                Some(format!("does not exist on {}", kind.as_str()))
            }
            // Discord ids are snowflakes; a Slack-style `U…` id would silently ping nobody.
            (Mention::User(id) | Mention::Role(id), Kind::Discord)
                if !id.chars().all(|c| c.is_ascii_digit()) =>
            {
                Some("is not a Discord id, which is all digits (Developer Mode → Copy ID)".into())
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
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
    }

    #[test]
    fn discord_values_follow_discord_rules() {
        assert!(check_username("Printer").is_ok());
        assert!(check_username("").is_err());
        assert!(check_username(&"x".repeat(81)).is_err());
        assert!(check_username("my Discord bot").is_err());
        assert!(check_username("Clyde").is_err());
        assert!(check_avatar_url("https://example.com/a.png").is_ok());
        assert!(check_avatar_url("ftp://example.com/a.png").is_err());
        assert!(check_avatar_url(&format!("https://e.com/{}", "a".repeat(2048))).is_err());
        assert!(check_thread_id("123456789012345678").is_ok());
        assert!(check_thread_id("").is_err());
        assert!(check_thread_id("12a").is_err());
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
}
