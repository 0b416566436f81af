//! printbell: all-images.ai image-generation webhooks in, Slack and Discord messages out.
//!
//! The path of an event, one module per step (each uses only the ones above it):
//!
//! | module | job |
//! |---|---|
//! | [`config`] | `notifier.toml` → validated [`config::Config`] (every problem, with file:line:col) |
//! | [`event`] | tolerant parser for the all-images.ai webhook body |
//! | [`routing`] | which destinations get the event (tags, event type; once per destination) |
//! | [`render`] | templates → the exact Slack / Discord / console body, escaped and within limits |
//! | [`store`] | the durable queue (SQLite, or PostgreSQL shared by replicas): event ids and deliveries, committed before the 202 |
//! | [`delivery`] | one lane per destination: ordered posting, retries, rate limits, dead letters |
//! | [`server`] | HTTP: the webhook receiver (parse → route → render → store) and ops endpoints |
//! | [`app`] | `serve`: wiring, signals, reload, housekeeping |
//! | [`commands`] | the other subcommands (`check`, `preview`, `deliveries`, …) |
//!
//! See ARCHITECTURE.md for the invariants.

pub mod app;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod event;
pub mod loaded;
pub mod platform;
pub mod render;
pub mod routing;
pub mod samples;
pub mod server;
pub mod shutdown;
pub mod store;
