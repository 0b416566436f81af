//! `notifier.toml`: parsing, `${VAR}` expansion, and validation into a [`Config`].
//!
//! Loading never stops at the first mistake when it can go on: every problem found is
//! returned at once, each with its file, line and column, so `printbell check` lists them all.
//! A TOML syntax error is the exception: it ends parsing. A key serde rejects (unknown, or
//! of the wrong type) is reported, set aside, and the rest of the file is read again.
//!
//! [`parse`] is pure: the environment it sees (for `${VAR}` and `PRINTBELL_LISTEN`) is the
//! lookup it is given. Only [`load`] and [`load_partial`] pass the process environment.
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | the entry points: [`load`], [`parse`] and their `_partial` forms |
//! | `model.rs` | the validated types ([`Config`], [`Destination`], [`Route`], …), re-exported here |
//! | `raw.rs` | the file as written: serde structs with spans |
//! | `recovery.rs` | serde error recovery: report a rejected key, remove it, read again |
//! | `expand.rs` | `${VAR}` / `$$` expansion, a pure function |
//! | `validate/` | the validator, one file per section; per-platform rules in `validate/platform.rs` |
//! | `problems.rs` | `file:line:col` problems, nearest-key suggestions |

mod expand;
mod model;
mod problems;
mod raw;
mod recovery;
mod validate;

pub use model::{
    redact_url, Config, DeliveryConfig, Destination, Mention, Route, ServerConfig, StoreConfig,
    TemplateSource, DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_WEBHOOK_PATH,
};
pub use model::{Mode, SlackApi};
pub use problems::{line_col, nearest, sort as sort_problems, ConfigError, Problem, Problems};
pub use validate::{is_http_url, parse_webhook_url};

pub use crate::domain::Kind;
use std::path::{Path, PathBuf};

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
                unset_secret_of: None,
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
    let (config, mut problems) = validate::validate(file, raw, problems, env);
    problems::sort(&mut problems);
    (Some(config), problems)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
