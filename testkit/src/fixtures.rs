//! Test inputs: the sample events in `tests/fixtures/` (the same files printbell compiles in
//! as its built-in samples) and the config text every in-process or child service starts from.

use printbell::store::{Backend, PostgresUrl};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The webhook path every test config uses.
pub const WEBHOOK_PATH: &str = "/webhooks/all-images";

/// `tests/fixtures/` of the repository.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

/// A fixture event from tests/fixtures.
pub fn fixture(event_type: &str) -> Value {
    let path = fixtures_dir().join(format!("{event_type}.json"));
    let text = std::fs::read_to_string(&path).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A fixture with another event id (so it is not a duplicate) and optionally other tags.
pub fn event(event_type: &str, id: &str, tags: Option<Value>) -> Value {
    let mut e = fixture(event_type);
    e["id"] = Value::String(id.to_string());
    if let Some(t) = tags {
        e["data"]["tags"] = t;
    }
    e
}

/// Which store a test's service uses: the same tests run on either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestStore {
    /// `printbell.db` in the service's dir.
    Sqlite,
    /// A PostgreSQL database (see [`crate::postgres`]).
    Postgres { url: String },
}

impl TestStore {
    /// The `[store]` section for a service whose files are in `dir`.
    pub fn section(&self, dir: &Path) -> String {
        match self {
            TestStore::Sqlite => format!(
                "[store]\npath = \"{}\"\n",
                dir.join("printbell.db").display()
            ),
            TestStore::Postgres { url } => format!("[store]\nurl = \"{url}\"\n"),
        }
    }

    /// The store as printbell names it, for a service whose files are in `dir`.
    pub fn backend(&self, dir: &Path) -> Backend {
        match self {
            TestStore::Sqlite => Backend::Sqlite {
                path: dir.join("printbell.db"),
            },
            TestStore::Postgres { url } => Backend::Postgres {
                url: PostgresUrl::parse(url).expect("a valid PostgreSQL URL"),
            },
        }
    }
}

/// A config: `[server]` on a free loopback port and `[store]` in `dir`, then `rest`.
pub fn config_text(dir: &Path, server_extra: &str, rest: &str) -> String {
    config_text_on(&TestStore::Sqlite, dir, server_extra, rest)
}

/// [`config_text`] with the given store.
pub fn config_text_on(store: &TestStore, dir: &Path, server_extra: &str, rest: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nwebhook_path = \"{WEBHOOK_PATH}\"\n{server_extra}\n\n{}\n{rest}\n",
        store.section(dir)
    )
}
