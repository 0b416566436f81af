//! `[store]`: where the queue is — a SQLite file (`path`, the default) or a PostgreSQL database
//! (`url`, overridden by `PRINTBELL_STORE_URL`) — and how long done deliveries and seen event
//! ids are kept.

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::StoreConfig;
use crate::store::{Backend, PostgresUrl};
use std::path::PathBuf;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: &RawStore) -> StoreConfig {
        if let (Some(_), Some(url)) = (&raw.path, &raw.url) {
            self.p.at(
                Some(url.span()),
                "`store.path` and `store.url` are both set; keep one: `path` for a SQLite file, \
                 `url` for PostgreSQL",
            );
        }
        let path = raw
            .path
            .as_ref()
            .and_then(|s| self.expand(s, "store.path"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("printbell.db"));
        let sqlite = Backend::Sqlite { path };
        // Read through the lookup like `${VAR}`, so `parse` sees only the environment it is
        // given. Problems name the key, never the URL: it may hold a password.
        let backend = match (self.env)("PRINTBELL_STORE_URL").filter(|s| !s.is_empty()) {
            Some(text) => match PostgresUrl::parse(&text) {
                Ok(url) => Backend::Postgres { url },
                Err(why) => {
                    self.p.at(None, format!("PRINTBELL_STORE_URL {why}"));
                    sqlite
                }
            },
            None => match &raw.url {
                Some(s) => match self.expand(s, "store.url") {
                    Some(text) => match PostgresUrl::parse(&text) {
                        Ok(url) => Backend::Postgres { url },
                        Err(why) => {
                            self.p.at(Some(s.span()), format!("`store.url` {why}"));
                            sqlite
                        }
                    },
                    None => sqlite,
                },
                None => sqlite,
            },
        };
        StoreConfig {
            backend,
            retention: self.duration(
                &raw.retention,
                "store.retention",
                Duration::from_secs(7 * 24 * 3600),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::store::Backend;
    use std::path::{Path, PathBuf};

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn path_is_sqlite_and_url_is_postgres() {
        let c = parse(Path::new("t.toml"), "[store]\npath = \"q.db\"\n", &none).expect("valid");
        assert_eq!(
            c.store.backend,
            Backend::Sqlite {
                path: PathBuf::from("q.db")
            }
        );
        let text = "[store]\nurl = \"postgresql://pb:s3cret@db/pb?sslmode=require\"\n";
        let c = parse(Path::new("t.toml"), text, &none).expect("valid");
        assert!(matches!(c.store.backend, Backend::Postgres { .. }));
        assert_eq!(
            c.store.backend.to_string(),
            "postgresql://pb:***@db/pb?sslmode=require"
        );
        assert!(
            !format!("{c:?}").contains("s3cret"),
            "Debug shows no password"
        );
    }

    #[test]
    fn both_keys_are_one_problem_naming_both() {
        let text = "[store]\npath = \"q.db\"\nurl = \"postgres://pb@db/pb\"\n";
        let err = parse(Path::new("t.toml"), text, &none).expect_err("both");
        let all = err.to_string();
        assert!(all.contains("`store.path` and `store.url`"), "{all}");
        assert!(all.contains("t.toml:3"), "{all}");
    }

    #[test]
    fn a_bad_url_is_named_by_its_key_without_the_password() {
        let text = "[store]\nurl = \"postgres://pb:s3cret@db/pb?sslmode=always\"\n";
        let err = parse(Path::new("t.toml"), text, &none).expect_err("bad url");
        let all = err.to_string();
        assert!(
            all.contains("`store.url` is not a valid PostgreSQL URL"),
            "{all}"
        );
        assert!(!all.contains("s3cret"), "{all}");
        let err = parse(Path::new("t.toml"), "[store]\nurl = \"db.sqlite\"\n", &none)
            .expect_err("not postgres");
        assert!(err.to_string().contains("is not a PostgreSQL URL"), "{err}");
    }

    #[test]
    fn printbell_store_url_from_the_lookup_overrides_both_keys() {
        let env = |name: &str| {
            (name == "PRINTBELL_STORE_URL").then(|| "postgres://pb:s3cret@env-db/pb".to_string())
        };
        let c = parse(Path::new("t.toml"), "[store]\npath = \"q.db\"\n", &env).expect("valid");
        assert_eq!(c.store.backend.to_string(), "postgres://pb:***@env-db/pb");
        let text = "[store]\nurl = \"postgres://pb@file-db/pb\"\n";
        let c = parse(Path::new("t.toml"), text, &env).expect("valid");
        assert_eq!(c.store.backend.to_string(), "postgres://pb:***@env-db/pb");
        // Empty counts as unset.
        let empty = |name: &str| (name == "PRINTBELL_STORE_URL").then(String::new);
        let c = parse(Path::new("t.toml"), "[store]\npath = \"q.db\"\n", &empty).expect("valid");
        assert!(matches!(c.store.backend, Backend::Sqlite { .. }));
        let bad = |name: &str| (name == "PRINTBELL_STORE_URL").then(|| "q.db".to_string());
        let err = parse(Path::new("t.toml"), "", &bad).expect_err("bad env");
        assert!(
            err.to_string()
                .contains("PRINTBELL_STORE_URL is not a PostgreSQL URL"),
            "{err}"
        );
    }
}
