//! The config file exactly as written: serde shapes with spans, before any validation.
//!
//! Every table denies unknown keys so a typo is an error, not a silently ignored setting.
//! Values checked against a fixed list (`kind`) and required keys (`kind`, `to`) are read as
//! plain options and validated afterwards, so one such mistake does not hide the others.

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

pub type SString = Spanned<String>;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub destinations: BTreeMap<String, Spanned<RawDestination>>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    #[serde(default)]
    pub templates: BTreeMap<Spanned<String>, RawTemplate>,
    #[serde(default)]
    pub links: RawLinks,
}

/// `[links]`: templates of URLs the messages link to.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLinks {
    pub generation: Option<SString>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<SString>,
    pub webhook_path: Option<SString>,
    pub secret: Option<SString>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub metrics_listen: Option<SString>,
    pub request_timeout: Option<SString>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<SString>,
    pub url: Option<SString>,
    pub retention: Option<SString>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub timeout: Option<SString>,
    pub max_attempts: Option<Spanned<i64>>,
    pub max_age: Option<SString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub kind: Option<SString>,
    pub url: Option<SString>,
    pub url_file: Option<SString>,
    pub username: Option<SString>,
    pub avatar_url: Option<SString>,
    pub thread_id: Option<SString>,
    pub mode: Option<SString>,
    pub token: Option<SString>,
    pub token_file: Option<SString>,
    pub channel: Option<SString>,
    pub api_url: Option<SString>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<SString>,
    pub tags: Option<Vec<SString>>,
    pub untagged: Option<bool>,
    pub events: Option<Vec<SString>>,
    pub to: Option<Spanned<Vec<SString>>>,
    #[serde(default)]
    pub mention: Vec<SString>,
    pub mention_interval: Option<SString>,
    #[serde(default)]
    pub templates: BTreeMap<Spanned<String>, RawTemplate>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub title: Option<SString>,
    pub text: Option<SString>,
}
