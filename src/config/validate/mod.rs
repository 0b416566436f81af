//! The validator: the file as written ([`RawConfig`]) → the validated [`Config`].
//!
//! One [`Validator`] walks the whole file and records every problem instead of stopping at the
//! first; a part with problems is left out (or given its default) so the rest can still be
//! checked. Each section has its own file:
//!
//! | file | what it checks |
//! |---|---|
//! | `server.rs` | `[server]`, the `PRINTBELL_LISTEN` override, the no-secret warning |
//! | `store.rs` | `[store]` |
//! | `delivery.rs` | `[delivery]` |
//! | `destination.rs` | `[destinations.NAME]`: kind, url / url_file, the optional keys |
//! | `platform.rs` | the rules that depend on the destination kind (per platform) |
//! | `route.rs` | `[[routes]]`: tags, events, `to`, mentions |
//! | `templates.rs` | `[templates]` and route templates; event type names |
//!
//! Here: the entry point, `${VAR}` expansion with its problems, durations.

mod delivery;
mod destination;
mod platform;
mod route;
mod server;
mod store;
mod templates;

pub use platform::parse_webhook_url;

use super::expand::{self, ExpandError};
use super::problems::{Problem, Problems};
use super::raw::{RawConfig, SString};
use super::Config;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// Validates `raw`, read from `file`; `env` is the environment `${VAR}` and `PRINTBELL_LISTEN`
/// are looked up in. Returns the config as far as it could be built, and every problem (in
/// the order found; see [`super::sort_problems`]).
pub fn validate<'a>(
    file: &'a Path,
    raw: RawConfig,
    problems: Problems<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
) -> (Config, Vec<Problem>) {
    let mut v = Validator {
        p: problems,
        env,
        base: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
        warnings: Vec::new(),
    };
    let config = v.config(file, raw);
    (config, v.p.list)
}

struct Validator<'a> {
    p: Problems<'a>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The config file's directory: `url_file` paths are relative to it.
    base: PathBuf,
    warnings: Vec<String>,
}

/// The destination whose secret `key` is (`destinations.NAME.url`, `url_file`, `token`,
/// `token_file`), if it is one.
fn secret_of(key: &str) -> Option<String> {
    let rest = key.strip_prefix("destinations.")?;
    let (name, field) = rest.rsplit_once('.')?;
    matches!(field, "url" | "url_file" | "token" | "token_file").then(|| name.to_string())
}

impl Validator<'_> {
    /// Expands `${VAR}` (and `$$` to a literal `$`), reporting unset variables.
    fn expand(&mut self, s: &SString, key: &str) -> Option<String> {
        match expand::expand(s.get_ref(), self.env) {
            // A value made empty by variables set to "" would fail later with a confusing
            // reason ("relative URL without a base"): name the variables instead.
            Ok(text) if text.trim().is_empty() && !s.get_ref().trim().is_empty() => {
                let empty: Vec<String> = expand::variables(s.get_ref())
                    .into_iter()
                    .filter(|v| (self.env)(v).is_some_and(|x| x.trim().is_empty()))
                    .collect();
                if empty.is_empty() {
                    return Some(text);
                }
                self.p.at(
                    Some(s.span()),
                    format!(
                        "`{key}` is empty: the environment variable {} is set to an empty string",
                        empty.join(", ")
                    ),
                );
                None
            }
            Ok(text) => Some(text),
            Err(errors) => {
                for error in errors {
                    let (message, unset) = match error {
                        ExpandError::Unset(name) => (
                            format!(
                                "`{key}` uses the environment variable {name}, which is not set"
                            ),
                            true,
                        ),
                        ExpandError::Unclosed => {
                            (format!("`{key}` has `${{` without a closing `}}`"), false)
                        }
                    };
                    self.p.at(Some(s.span()), message);
                    if let (true, Some(dest), Some(last)) =
                        (unset, secret_of(key), self.p.list.last_mut())
                    {
                        last.unset_secret_of = Some(dest);
                    }
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
        let store = self.store(&raw.store);
        let delivery = self.delivery(&raw.delivery);

        let mut destinations = BTreeMap::new();
        for (name, d) in &raw.destinations {
            if let Some(dest) = self.destination(name, d) {
                destinations.insert(name.clone(), dest);
            }
        }
        let templates = self.templates(&raw.templates, "templates");
        let link = self.link(&raw.links);
        // Every name written in the file, valid or not: a route naming a destination whose
        // own definition has problems is not also told that it names an undefined one.
        let defined: Vec<&str> = raw.destinations.keys().map(|s| s.as_str()).collect();
        let routes = raw
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| self.route(i + 1, r, &destinations, &defined))
            .collect();
        self.warn_about_server(&server);
        Config {
            file: file.to_path_buf(),
            server,
            store,
            delivery,
            destinations,
            routes,
            templates,
            link,
            warnings: std::mem::take(&mut self.warnings),
        }
    }
}

pub fn is_http_url(s: &str) -> bool {
    Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Kind, Mention};
    use crate::domain::EventType;
    use std::path::Path;

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
