//! `[store]`: the SQLite file's path and how long done deliveries and seen event ids are kept.

use super::Validator;
use crate::config::raw::RawStore;
use crate::config::StoreConfig;
use std::path::PathBuf;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn store(&mut self, raw: &RawStore) -> StoreConfig {
        StoreConfig {
            path: raw
                .path
                .as_ref()
                .and_then(|s| self.expand(s, "store.path"))
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("printbell.db")),
            retention: self.duration(
                &raw.retention,
                "store.retention",
                Duration::from_secs(7 * 24 * 3600),
            ),
        }
    }
}
