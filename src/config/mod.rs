//! `notifier.toml`: parsing, `${VAR}` expansion, and validation into a [`Config`].
//!
//! Loading never stops at the first mistake when it can go on: every problem found is
//! returned at once, each with its file, line and column, so `printbell check` lists them all.
//! A TOML syntax error is the exception: it ends parsing. A key serde rejects (unknown, or
//! of the wrong type) is reported, set aside, and the rest of the file is read again.

mod expand;
mod model;
mod problems;
mod raw;
mod recovery;

pub use model::{
    redact_url, Config, DeliveryConfig, Destination, Mention, Route, ServerConfig, StoreConfig,
    TemplateSource, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_WEBHOOK_PATH,
};
pub use problems::{line_col, nearest, sort as sort_problems, ConfigError, Problem, Problems};

use crate::domain::EventType;
pub use crate::domain::Kind;
use expand::ExpandError;
use raw::{RawConfig, RawTemplate, SString};
use reqwest::Url;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

impl Mention {
    fn parse(s: &str) -> Result<Mention, String> {
        let id_ok = |id: &str| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric());
        let (kind, id) = match s.split_once(':') {
            Some((k, id)) => (k, Some(id)),
            None => (s, None),
        };
        match (kind, id) {
            ("here", None) => Ok(Mention::Here),
            ("channel", None) => Ok(Mention::Channel),
            ("everyone", None) => Ok(Mention::Everyone),
            ("user" | "role" | "group", Some(id)) if id_ok(id) => Ok(match kind {
                "user" => Mention::User(id.to_string()),
                "role" => Mention::Role(id.to_string()),
                _ => Mention::Group(id.to_string()),
            }),
            ("user" | "role" | "group", _) => Err(format!(
                "mention `{s}` needs an id of letters and digits, like `{kind}:123456789012345678`"
            )),
            _ => Err(format!(
                "unknown mention `{s}`; expected user:ID, role:ID, group:ID, here, channel or everyone"
            )),
        }
    }

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

/// Where the config comes from when `--config` is not given.
pub fn default_path() -> PathBuf {
    std::env::var_os("PRINTBELL_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("notifier.toml"))
}

/// Reads and validates a config file, reporting every problem found.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    into_result(load_partial(path))
}

/// Like [`load`], but also returns the config as far as it could be built when there are
/// problems (`None` only when the file cannot be read or is not TOML), so later checks such
/// as template compilation can still report theirs.
pub fn load_partial(path: &Path) -> (Option<Config>, Vec<Problem>) {
    match std::fs::read_to_string(path) {
        Ok(source) => parse_partial(path, &source, &|name| std::env::var(name).ok()),
        Err(e) => {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                "the config file does not exist (give one with --config FILE or $PRINTBELL_CONFIG)"
                    .to_string()
            } else {
                format!("cannot read the config file: {e}")
            };
            let problem = Problem {
                file: path.to_path_buf(),
                line: None,
                column: None,
                message,
            };
            (None, vec![problem])
        }
    }
}

/// Validates config text. `env` is the only environment it sees (the process environment in
/// `load`): it looks up `${VAR}` values and `PRINTBELL_LISTEN`, which overrides `server.listen`.
pub fn parse(
    file: &Path,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    into_result(parse_partial(file, source, env))
}

fn into_result((config, problems): (Option<Config>, Vec<Problem>)) -> Result<Config, ConfigError> {
    match config {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(ConfigError { problems }),
    }
}

/// [`parse`], returning what could be built along with every problem (see [`load_partial`]).
pub fn parse_partial(
    file: &Path,
    source: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Option<Config>, Vec<Problem>) {
    let mut problems = Problems::new(file, source);
    let Some(raw) = recovery::deserialize_all(source, &mut problems) else {
        return (None, problems.list);
    };
    let mut v = Validator {
        p: problems,
        env,
        base: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
        warnings: Vec::new(),
    };
    let config = v.config(file, raw);
    let mut problems = v.p.list;
    problems::sort(&mut problems);
    (Some(config), problems)
}

struct Validator<'a> {
    p: Problems<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: PathBuf,
    warnings: Vec<String>,
}

impl Validator<'_> {
    /// Expands `${VAR}` (and `$$` to a literal `$`), reporting unset variables.
    fn expand(&mut self, s: &SString, key: &str) -> Option<String> {
        match expand::expand(s.get_ref(), self.env) {
            Ok(text) => Some(text),
            Err(errors) => {
                for error in errors {
                    let message = match error {
                        ExpandError::Unset(name) => format!(
                            "`{key}` uses the environment variable {name}, which is not set"
                        ),
                        ExpandError::Unclosed => {
                            format!("`{key}` has `${{` without a closing `}}`")
                        }
                    };
                    self.p.at(Some(s.span()), message);
                }
                None
            }
        }
    }

    fn duration(&mut self, s: &Option<SString>, key: &str, default: Duration) -> Duration {
        let Some(s) = s else { return default };
        let Some(text) = self.expand(s, key) else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                self.p
                    .at(Some(s.span()), format!("`{key}` must be longer than zero"));
                default
            }
            Err(e) => {
                self.p.at(
                    Some(s.span()),
                    format!("`{key}` = \"{text}\" is not a duration ({e}); write e.g. \"10s\", \"5m\", \"24h\", \"7d\""),
                );
                default
            }
        }
    }

    fn config(&mut self, file: &Path, raw: RawConfig) -> Config {
        let server = self.server(&raw.server);
        let store = StoreConfig {
            path: raw
                .store
                .path
                .as_ref()
                .and_then(|s| self.expand(s, "store.path"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("printbell.db")),
            retention: self.duration(
                &raw.store.retention,
                "store.retention",
                Duration::from_secs(7 * 24 * 3600),
            ),
        };
        let defaults = DeliveryConfig::default();
        let max_attempts = match &raw.delivery.max_attempts {
            Some(n) if (1..=1000).contains(n.get_ref()) => *n.get_ref() as u32,
            Some(n) => {
                self.p.at(
                    Some(n.span()),
                    "`delivery.max_attempts` must be between 1 and 1000",
                );
                defaults.max_attempts
            }
            None => defaults.max_attempts,
        };
        let delivery = DeliveryConfig {
            timeout: self.duration(&raw.delivery.timeout, "delivery.timeout", defaults.timeout),
            max_attempts,
            max_age: self.duration(&raw.delivery.max_age, "delivery.max_age", defaults.max_age),
        };

        let mut destinations = BTreeMap::new();
        for (name, d) in &raw.destinations {
            if let Some(dest) = self.destination(name, d) {
                destinations.insert(name.clone(), dest);
            }
        }
        let templates = self.templates(&raw.templates, "templates");
        // Every name written in the file, valid or not: a route naming a destination whose
        // own definition has problems is not also told that it names an undefined one.
        let defined: Vec<&str> = raw.destinations.keys().map(|s| s.as_str()).collect();
        let routes = raw
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(i + 1, r, &destinations, &defined))
            .collect();
        if server.secret.is_none() && !is_loopback_listen(&server.listen) {
            self.warnings.push(format!(
                "server.secret is not set while server.listen = \"{}\" is reachable from other machines: anyone who can reach it can post events",
                server.listen
            ));
        }
        Config {
            file: file.to_path_buf(),
            server,
            store,
            delivery,
            destinations,
            routes,
            templates,
            warnings: std::mem::take(&mut self.warnings),
        }
    }

    fn server(&mut self, raw: &raw::RawServer) -> ServerConfig {
        // Read through the lookup like `${VAR}`, so `parse` sees only the environment it is given.
        let listen = match (self.env)("PRINTBELL_LISTEN").filter(|s| !s.is_empty()) {
            Some(l) => l,
            None => raw
                .listen
                .as_ref()
                .and_then(|s| self.expand(s, "server.listen"))
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
        };
        if listen.parse::<std::net::SocketAddr>().is_err()
            && listen
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            let span = raw.listen.as_ref().map(|s| s.span());
            self.p.at(
                span,
                format!("`server.listen` = \"{listen}\" is not an address like \"0.0.0.0:8080\""),
            );
        }
        let webhook_path = raw
            .webhook_path
            .as_ref()
            .and_then(|s| self.expand(s, "server.webhook_path"))
            .unwrap_or_else(|| DEFAULT_WEBHOOK_PATH.to_string());
        if !webhook_path.starts_with('/') {
            let span = raw.webhook_path.as_ref().map(|s| s.span());
            self.p.at(span, "`server.webhook_path` must start with `/`");
        }
        let secret = match &raw.secret {
            Some(s) => match self.expand(s, "server.secret") {
                Some(v) if v.is_empty() => {
                    self.p.at(
                        Some(s.span()),
                        "`server.secret` is empty; set it or remove the key to accept unauthenticated events",
                    );
                    None
                }
                v => v,
            },
            None => None,
        };
        let max_body_bytes = match &raw.max_body_bytes {
            Some(n) if *n.get_ref() >= 1024 => *n.get_ref() as u64,
            Some(n) => {
                self.p.at(
                    Some(n.span()),
                    "`server.max_body_bytes` must be at least 1024",
                );
                DEFAULT_MAX_BODY_BYTES
            }
            None => DEFAULT_MAX_BODY_BYTES,
        };
        let metrics_listen = raw
            .metrics_listen
            .as_ref()
            .and_then(|s| self.expand(s, "server.metrics_listen"));
        let request_timeout = self.duration(
            &raw.request_timeout,
            "server.request_timeout",
            Duration::from_secs(30),
        );
        ServerConfig {
            listen,
            webhook_path,
            secret,
            max_body_bytes,
            metrics_listen,
            request_timeout,
        }
    }

    fn destination(
        &mut self,
        name: &str,
        d: &toml::Spanned<raw::RawDestination>,
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
                        let kinds = ["slack", "discord", "console"];
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
        for (field, value) in [
            ("username", &d.username),
            ("avatar_url", &d.avatar_url),
            ("thread_id", &d.thread_id),
        ] {
            if let (Some(v), false) = (value, kind == Kind::Discord) {
                self.p.at(
                    Some(v.span()),
                    format!("`{}` is only for Discord destinations", key(field)),
                );
            }
        }
        let url_text = match (kind, &d.url, &d.url_file) {
            (Kind::Console, None, None) => None,
            (Kind::Console, Some(s), _) | (Kind::Console, None, Some(s)) => {
                self.p.at(
                    Some(s.span()),
                    format!("console destination `{name}` takes no url"),
                );
                None
            }
            (_, Some(u), Some(_)) => {
                self.p.at(
                    Some(u.span()),
                    format!("destination `{name}` has both `url` and `url_file`; keep one"),
                );
                None
            }
            (_, Some(u), None) => self.expand(u, &key("url")).map(|t| (t, u.span(), "url")),
            (_, None, Some(f)) => {
                let path = self.expand(f, &key("url_file"))?;
                let full = self.base.join(&path);
                match std::fs::read_to_string(&full) {
                    Ok(text) => Some((text.trim().to_string(), f.span(), "url_file")),
                    Err(e) => {
                        self.p.at(
                            Some(f.span()),
                            format!("`{}`: cannot read {}: {e}", key("url_file"), full.display()),
                        );
                        None
                    }
                }
            }
            (_, None, None) => {
                self.p.at(
                    span,
                    format!("destination `{name}` needs `url` or `url_file`"),
                );
                return None;
            }
        };
        let url = match url_text {
            Some((text, span, field)) => match parse_webhook_url(kind, &text) {
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
        if kind != Kind::Console && url.is_none() {
            return None;
        }
        let username = d
            .username
            .as_ref()
            .and_then(|s| self.expand(s, &key("username")));
        if let (Some(u), Some(s)) = (&username, &d.username) {
            let n = u.chars().count();
            let lower = u.to_lowercase();
            if !(1..=80).contains(&n) || lower.contains("clyde") || lower.contains("discord") {
                self.p.at(
                    Some(s.span()),
                    format!("`{}` must be 1 to 80 characters and may not contain \"clyde\" or \"discord\"", key("username")),
                );
            }
        }
        let avatar_url = d
            .avatar_url
            .as_ref()
            .and_then(|s| self.expand(s, &key("avatar_url")));
        if let (Some(a), Some(s)) = (&avatar_url, &d.avatar_url) {
            if !is_http_url(a) || a.len() > 2048 {
                self.p.at(
                    Some(s.span()),
                    format!(
                        "`{}` must be an http(s) URL of at most 2048 characters",
                        key("avatar_url")
                    ),
                );
            }
        }
        let thread_id = d
            .thread_id
            .as_ref()
            .and_then(|s| self.expand(s, &key("thread_id")));
        if let (Some(t), Some(s)) = (&thread_id, &d.thread_id) {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_digit()) {
                self.p.at(
                    Some(s.span()),
                    format!("`{}` must be a Discord id (digits)", key("thread_id")),
                );
            }
        }
        Some(Destination {
            name: name.to_string(),
            kind,
            url,
            username,
            avatar_url,
            thread_id,
        })
    }

    fn event_type(&mut self, s: &SString, what: &str) -> Option<EventType> {
        self.event_name(s.get_ref(), s.span(), what)
    }

    fn event_name(
        &mut self,
        t: &str,
        span: std::ops::Range<usize>,
        what: &str,
    ) -> Option<EventType> {
        if let Some(ty) = EventType::parse(t) {
            return Some(ty);
        }
        let names = EventType::names();
        let hint = match nearest(t, names) {
            Some(best) => format!("; did you mean `{best}`?"),
            None => format!("; expected one of: {}", names.join(", ")),
        };
        self.p.at(
            Some(span),
            format!("{what}: unknown event type `{t}`{hint}"),
        );
        None
    }

    fn templates(
        &mut self,
        raw: &BTreeMap<toml::Spanned<String>, RawTemplate>,
        where_: &str,
    ) -> BTreeMap<EventType, TemplateSource> {
        let mut out = BTreeMap::new();
        for (ty, t) in raw {
            let Some(ty) = self.event_type(ty, where_) else {
                continue;
            };
            let mut field = |s: &Option<SString>, name: &str| {
                s.as_ref().and_then(|s| {
                    let line = self.p.first_line_of_string(s.span());
                    self.expand(s, &format!("{where_}.\"{ty}\".{name}"))
                        .map(|v| (v, line))
                })
            };
            let src = TemplateSource {
                title: field(&t.title, "title"),
                text: field(&t.text, "text"),
            };
            out.insert(ty, src);
        }
        out
    }

    fn route(
        &mut self,
        number: usize,
        r: &toml::Spanned<raw::RawRoute>,
        destinations: &BTreeMap<String, Destination>,
        defined: &[&str],
    ) -> Option<Route> {
        let route_span = r.span();
        let r = r.get_ref();
        let label = format!("route {number}");
        let tags = r.tags.as_ref().map(|tags| {
            tags.iter()
                .filter_map(|t| self.expand(t, &format!("{label}.tags")))
                .map(|t| t.trim().to_lowercase())
                .collect::<Vec<_>>()
        });
        let untagged = r.untagged.unwrap_or(false);
        if untagged && tags.as_ref().is_some_and(|t| !t.is_empty()) {
            self.p.at(
                Some(route_span.clone()),
                format!("{label} has both `tags` and `untagged = true`, which can never both match; keep one"),
            );
        }
        let events = match &r.events {
            Some(list) => {
                if list.is_empty() {
                    self.p.at(
                        Some(route_span.clone()),
                        format!("{label} has an empty `events` list, so it never matches; remove the key to match every event type"),
                    );
                }
                list.iter()
                    .filter_map(|e| {
                        let t = self.expand(e, &format!("{label}.events"))?;
                        self.event_name(&t, e.span(), &label)
                    })
                    .collect()
            }
            None => EventType::ALL.to_vec(),
        };
        let no_destinations = Vec::new();
        let to_list = match &r.to {
            Some(to) => {
                if to.get_ref().is_empty() {
                    self.p
                        .at(Some(to.span()), format!("{label} has an empty `to` list"));
                }
                to.get_ref()
            }
            None => {
                self.p.at(
                    Some(route_span.clone()),
                    format!("{label} needs `to`, the destinations it sends to"),
                );
                &no_destinations
            }
        };
        let mut mention = Vec::new();
        for m in &r.mention {
            let Some(text) = self.expand(m, &format!("{label}.mention")) else {
                continue;
            };
            match Mention::parse(text.trim()) {
                Ok(parsed) => mention.push((parsed, m.span())),
                Err(why) => self.p.at(Some(m.span()), format!("{label}: {why}")),
            }
        }
        let mut to = Vec::new();
        for dest in to_list {
            let Some(name) = self.expand(dest, &format!("{label}.to")) else {
                continue;
            };
            let name = &name;
            match destinations.get(name) {
                Some(d) => {
                    for (m, span) in &mention {
                        if let Some(why) = m.problem_on(d.kind) {
                            self.p.at(
                                Some(span.clone()),
                                format!(
                                    "{label}: mention `{}` {why} (destination `{name}`)",
                                    mention_text(m)
                                ),
                            );
                        }
                    }
                    to.push(name.clone());
                }
                // Defined but invalid: its own problems are already reported.
                None if defined.contains(&name.as_str()) => {}
                None => {
                    let hint = nearest(name, defined.iter().copied())
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default();
                    self.p.at(
                        Some(dest.span()),
                        format!(
                            "{label} sends to `{name}`, which is not a defined destination{hint}"
                        ),
                    );
                }
            }
        }
        let templates = self.templates(&r.templates, &format!("{label} templates"));
        Some(Route {
            number,
            name: r
                .name
                .as_ref()
                .and_then(|n| self.expand(n, &format!("{label}.name"))),
            tags,
            untagged,
            events,
            to,
            mention: mention.into_iter().map(|(m, _)| m).collect(),
            templates,
        })
    }
}

fn mention_text(m: &Mention) -> String {
    match m {
        Mention::User(id) => format!("user:{id}"),
        Mention::Role(id) => format!("role:{id}"),
        Mention::Group(id) => format!("group:{id}"),
        Mention::Here => "here".into(),
        Mention::Channel => "channel".into(),
        Mention::Everyone => "everyone".into(),
    }
}

pub fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn is_loopback_listen(listen: &str) -> bool {
    match listen.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => listen.starts_with("localhost:"),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "KIND" => Some("discord".into()),
            "TEAM" => Some("Team-A".into()),
            "EVENT" => Some("print.failed".into()),
            "DEST" => Some("oncall".into()),
            "ROLE" => Some("role:123456789012345678".into()),
            _ => None,
        }
    }

    #[test]
    fn env_vars_expand_in_every_string_value() {
        let text = r#"
[destinations.oncall]
kind = "${KIND}"
url = "https://discord.com/api/webhooks/1/abc"

[[routes]]
name = "for ${TEAM}"
tags = ["${TEAM}"]
events = ["${EVENT}"]
to = ["${DEST}"]
mention = ["${ROLE}"]
"#;
        let config = parse(Path::new("t.toml"), text, &env).expect("valid config");
        assert_eq!(config.destinations["oncall"].kind, Kind::Discord);
        let route = &config.routes[0];
        assert_eq!(route.name.as_deref(), Some("for Team-A"));
        assert_eq!(route.tags, Some(vec!["team-a".to_string()]));
        assert_eq!(route.events, vec![EventType::Failed]);
        assert_eq!(route.to, vec!["oncall".to_string()]);
        assert_eq!(
            route.mention,
            vec![Mention::Role("123456789012345678".into())]
        );
    }

    #[test]
    fn printbell_listen_from_the_lookup_overrides_the_file() {
        let text = "[server]\nlisten = \"127.0.0.1:9000\"\nsecret = \"s\"\n";
        let listen =
            |name: &str| (name == "PRINTBELL_LISTEN").then(|| "127.0.0.1:7000".to_string());
        let config = parse(Path::new("t.toml"), text, &listen).expect("valid config");
        assert_eq!(config.server.listen, "127.0.0.1:7000");
        // Set but empty counts as unset, as before.
        let empty = |name: &str| (name == "PRINTBELL_LISTEN").then(String::new);
        let config = parse(Path::new("t.toml"), text, &empty).expect("valid config");
        assert_eq!(config.server.listen, "127.0.0.1:9000");
        // A lookup without it leaves the file's value, whatever the process environment holds.
        let config = parse(Path::new("t.toml"), text, &|_| None).expect("valid config");
        assert_eq!(config.server.listen, "127.0.0.1:9000");
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
        let err = parse(Path::new("t.toml"), text, &env).expect_err("bad mentions");
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
    fn an_unset_variable_in_a_route_is_named() {
        let text = r#"
[destinations.out]
kind = "console"

[[routes]]
tags = ["${NOPE_TAG}"]
to = ["out"]
"#;
        let err = parse(Path::new("t.toml"), text, &env).expect_err("unset variable");
        let all = err.to_string();
        assert!(all.contains("NOPE_TAG"), "{all}");
        assert!(all.contains("route 1.tags"), "{all}");
    }
}
