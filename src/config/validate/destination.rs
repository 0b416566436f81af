//! `[destinations.NAME]`: the kind, the webhook URL (`url`, or `url_file` read relative to the
//! config file) and the optional keys. What a kind accepts or requires is asked of
//! `platform.rs`; this file only walks the keys and words the problems.

use super::{platform, Validator};
use crate::config::problems::nearest;
use crate::config::raw::{RawDestination, SString};
use crate::config::{Destination, Mode, SlackApi};
use crate::domain::Kind;
use crate::platform::Reach;
use url::Url;

/// Slack's Web API, unless `api_url` says otherwise (GovSlack, a test server).
pub const DEFAULT_SLACK_API: &str = "https://slack.com/api/";

impl Validator<'_> {
    pub(super) fn destination(
        &mut self,
        name: &str,
        d: &toml::Spanned<RawDestination>,
    ) -> Option<Destination> {
        let span = Some(d.span());
        let d = d.get_ref();
        let key = |k: &str| format!("destinations.{name}.{k}");
        let kind = match &d.kind {
            Some(k) => {
                let text = self.expand(k, &key("kind"))?;
                match Kind::parse(text.trim()) {
                    Some(kind) => kind,
                    None => {
                        let kinds = Kind::ALL.map(Kind::as_str);
                        let hint = match nearest(text.trim(), kinds) {
                            Some(best) => format!("; did you mean `{best}`?"),
                            None => format!("; expected one of: {}", kinds.join(", ")),
                        };
                        self.p.at(
                            Some(k.span()),
                            format!("`{}`: unknown kind `{text}`{hint}", key("kind")),
                        );
                        return None;
                    }
                }
            }
            None => {
                self.p.at(
                    span,
                    format!("destination `{name}` needs `kind` (slack, discord or console)"),
                );
                return None;
            }
        };
        let optional = [
            ("username", &d.username),
            ("avatar_url", &d.avatar_url),
            ("thread_id", &d.thread_id),
            ("token", &d.token),
            ("token_file", &d.token_file),
            ("channel", &d.channel),
            ("api_url", &d.api_url),
        ];
        debug_assert_eq!(optional.map(|(k, _)| k), platform::PLATFORM_KEYS);
        let mut refused = false;
        for (field, value) in optional {
            if let (Some(v), Some(why)) = (value, platform::refuses_key(kind, field)) {
                self.p.at(Some(v.span()), format!("`{}` {why}", key(field)));
                refused = true;
            }
        }
        let wants_bot = d.token.is_some() || d.token_file.is_some();
        let wants_url = d.url.is_some() || d.url_file.is_some();
        let reach = crate::platform::of(kind).reach();
        if reach == Reach::WebhookOrBot && wants_bot && wants_url {
            self.p.at(
                span,
                format!("destination `{name}` has both a webhook `url` and a bot `token`; keep one (a token can edit messages, a webhook cannot)"),
            );
            return None;
        }
        let slack_api = if reach == Reach::WebhookOrBot && wants_bot {
            Some(self.slack_api(name, kind, d)?)
        } else {
            if let (Reach::WebhookOrBot, Some(c)) =
                (reach, d.channel.as_ref().or(d.api_url.as_ref()))
            {
                self.p.at(
                    Some(c.span()),
                    format!("`{}` and `{}` go with a bot `token`; an incoming webhook posts to its own channel", key("channel"), key("api_url")),
                );
            }
            None
        };
        let needs_url = platform::needs_url(kind) && slack_api.is_none();
        let url_text = match (needs_url, &d.url, &d.url_file) {
            (false, None, None) => None,
            (false, Some(s), _) | (false, None, Some(s)) => {
                self.p.at(
                    Some(s.span()),
                    format!("{kind} destination `{name}` takes no url"),
                );
                None
            }
            (true, Some(u), Some(_)) => {
                self.p.at(
                    Some(u.span()),
                    format!("destination `{name}` has both `url` and `url_file`; keep one"),
                );
                None
            }
            (true, Some(u), None) => self.expand(u, &key("url")).map(|t| (t, u.span(), "url")),
            (true, None, Some(f)) => self
                .read_secret_file(f, &key("url_file"))
                .map(|t| (t, f.span(), "url_file")),
            (true, None, None) => {
                let how = if reach == Reach::WebhookOrBot {
                    "`url` (an incoming webhook) or `token` and `channel` (a bot, which can edit its messages)"
                } else {
                    "`url` or `url_file`"
                };
                self.p.at(span, format!("destination `{name}` needs {how}"));
                return None;
            }
        };
        let url = match url_text {
            Some((text, span, field)) => match platform::parse_webhook_url(kind, &text) {
                Ok(u) => Some(u),
                Err(why) => {
                    let what = if field == "url" {
                        format!("`{}`", key("url"))
                    } else {
                        format!("the content of `{}`", key("url_file"))
                    };
                    self.p.at(
                        Some(span),
                        format!("{what} is not a usable webhook URL: {why}"),
                    );
                    None
                }
            },
            None => None,
        };
        if needs_url && url.is_none() {
            return None;
        }
        // Each value is checked even where its key was refused above, as it always was.
        let mut value = |v: &Option<SString>, field: &str| {
            self.checked(v.as_ref(), &key(field), |text| {
                platform::check_key(kind, field, text)
            })
        };
        let username = value(&d.username, "username");
        let avatar_url = value(&d.avatar_url, "avatar_url");
        let thread_id = value(&d.thread_id, "thread_id");
        let mut dest = Destination {
            name: name.to_string(),
            kind,
            url,
            username,
            avatar_url,
            thread_id,
            mode: Mode::Each,
            slack_api,
        };
        let can_edit = crate::platform::of(kind).can_edit(&dest);
        dest.mode = match &d.mode {
            None => {
                if can_edit {
                    Mode::Live
                } else {
                    Mode::Each
                }
            }
            Some(m) => {
                let text = self.expand(m, &key("mode"))?;
                match Mode::parse(text.trim()) {
                    Some(Mode::Live) if !can_edit => {
                        let why = match reach {
                            Reach::WebhookOrBot => "Slack incoming webhooks cannot edit messages; use a bot `token` and `channel` (Slack's Web API) for live messages, or mode = \"each\"",
                            _ => "this destination cannot edit messages; use mode = \"each\"",
                        };
                        self.p.at(
                            Some(m.span()),
                            format!("`{}` = \"live\": {why}", key("mode")),
                        );
                        Mode::Each
                    }
                    Some(mode) => mode,
                    None => {
                        self.p.at(
                            Some(m.span()),
                            format!(
                                "`{}`: unknown mode `{text}`; expected live or each",
                                key("mode")
                            ),
                        );
                        Mode::Each
                    }
                }
            }
        };
        if refused {
            return None;
        }
        Some(dest)
    }

    /// `token`/`token_file`, `channel` and `api_url` of a destination posting as a bot (Slack's
    /// Web API).
    fn slack_api(&mut self, name: &str, kind: Kind, d: &RawDestination) -> Option<SlackApi> {
        let key = |k: &str| format!("destinations.{name}.{k}");
        let token = match (&d.token, &d.token_file) {
            (Some(t), Some(_)) => {
                self.p.at(
                    Some(t.span()),
                    format!("destination `{name}` has both `token` and `token_file`; keep one"),
                );
                None
            }
            (Some(t), None) => self.checked(Some(t), &key("token"), |v| {
                platform::check_key(kind, "token", v)
            }),
            (None, Some(f)) => self.read_secret_file(f, &key("token_file")),
            (None, None) => None,
        };
        let channel = match &d.channel {
            Some(c) => self.checked(Some(c), &key("channel"), |v| {
                platform::check_key(kind, "channel", v)
            }),
            None => {
                self.p.at(
                    d.token.as_ref().or(d.token_file.as_ref()).map(|t| t.span()),
                    format!("destination `{name}` has a bot `token` but no `channel`: add the channel id (e.g. C0123456789) the bot is a member of"),
                );
                None
            }
        };
        let base = match &d.api_url {
            Some(u) => {
                let text = self.expand(u, &key("api_url"))?;
                match Url::parse(text.trim()) {
                    Ok(url)
                        if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() =>
                    {
                        Some(url)
                    }
                    _ => {
                        self.p.at(
                            Some(u.span()),
                            format!("`{}` = \"{text}\" is not an http(s) URL like \"https://slack.com/api\"", key("api_url")),
                        );
                        None
                    }
                }
            }
            None => Url::parse(DEFAULT_SLACK_API).ok(),
        };
        let mut base = base?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        Some(SlackApi {
            base,
            token: token?,
            channel: channel?,
        })
    }

    /// Reads a secret (a webhook URL, a token) from a file relative to the config file.
    fn read_secret_file(&mut self, f: &SString, key: &str) -> Option<String> {
        let path = self.expand(f, key)?;
        let full = self.base.join(&path);
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(text.trim().to_string()),
            Err(e) => {
                self.p.at(
                    Some(f.span()),
                    format!("`{key}`: cannot read {}: {e}", full.display()),
                );
                None
            }
        }
    }

    /// Expands an optional value and checks it with `check`, reporting at the value.
    fn checked(
        &mut self,
        value: Option<&SString>,
        key: &str,
        check: impl Fn(&str) -> Result<(), &'static str>,
    ) -> Option<String> {
        let s = value?;
        let v = self.expand(s, key)?;
        if let Err(why) = check(&v) {
            self.p.at(Some(s.span()), format!("`{key}` {why}"));
        }
        Some(v)
    }
}
