//! Test support for printbell, shared by the integration tests (`tests/api/`), the benchmarks
//! (`benches/pipeline.rs`, `benches/burst.rs`) and the fuzz target (`fuzz/`, validators only).
//!
//! It is a dev-only workspace member (`publish = false`), compiled once instead of once per
//! test binary, and it is the only place that knows some of printbell's internals:
//!
//! | module | what it is for |
//! |---|---|
//! | [`validate`] | strict checks of Slack / Discord bodies against the platforms' limits |
//! | [`platform`] | the destination kinds (`printbell::config::Kind`) and which validator fits |
//! | [`mock_chat`] | the mock Slack / Discord webhook servers, scriptable and strict |
//! | [`mock_slack_api`] | the mock Slack Web API (`chat.postMessage`, `chat.update`) for bot tokens |
//! | [`fixtures`] | sample events (`tests/fixtures/`) and config text |
//! | [`service`] | the service started in-process on a loopback port |
//! | [`child`] | the real binary as a child process (`serve`), signals, kill -9, free ports |
//! | [`cli`] | the binary run to completion (`check`, `preview`, `deliveries` …) |
//! | [`store`] | every direct read or write of the store file the tests and the bench make |
//! | [`postgres`] | a PostgreSQL server for the tests (given, private, or a skip) and a database per test |
//! | [`wait`] | polling until a condition holds |
//! | [`host`] | CPU busy and hypervisor steal from /proc/stat, for the benchmarks |
//!
//! Everything but [`validate`] and [`platform`] is behind the default feature `harness`.

pub mod platform;
pub mod validate;

#[cfg(feature = "harness")]
pub mod child;
#[cfg(feature = "harness")]
pub mod cli;
#[cfg(feature = "harness")]
pub mod fixtures;
#[cfg(feature = "harness")]
pub mod host;
#[cfg(feature = "harness")]
pub mod mock_chat;
#[cfg(feature = "harness")]
pub mod mock_slack_api;
#[cfg(feature = "harness")]
pub mod postgres;
#[cfg(feature = "harness")]
pub mod service;
#[cfg(feature = "harness")]
pub mod store;
#[cfg(feature = "harness")]
pub mod wait;

#[cfg(feature = "harness")]
pub use child::{free_port, ChildService, Launch, Proc};
#[cfg(feature = "harness")]
pub use cli::{bin, run_cli, run_cli_in};
#[cfg(feature = "harness")]
pub use fixtures::{config_text, config_text_on, event, fixture, TestStore, WEBHOOK_PATH};
#[cfg(feature = "harness")]
pub use service::Service;
#[cfg(feature = "harness")]
pub use wait::eventually;
