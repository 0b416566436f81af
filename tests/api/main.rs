//! printbell's integration tests, as one test binary (one link, one process; the shape of
//! zero-to-production's `tests/api/main.rs`). Each module was a test file of its own; the
//! support they share (mock Slack/Discord, validators, the service in-process or as a child)
//! is the `testkit` crate (`testkit/`). Sample events are in `tests/fixtures/`.
//!
//! The tests share one process, so nothing here may change process-wide state (environment,
//! current directory): child processes get their environment per command. Metrics are
//! process-wide too, see `testkit::service`.

mod cli;
mod delivery;
mod hardening;
mod live;
mod message_shape;
mod mock_selftest;
mod ops;
mod pipeline;
mod postgres;
mod store_safety;
mod storms;
