//! The real printbell service started in-process (`printbell::app::start`) on a loopback
//! port, with its config and store in a temp dir, and a client to talk to it.
//!
//! All integration tests run in one process, and printbell's metrics recorder is
//! process-wide: a test that compares metric values must not see another in-process service
//! count events meanwhile. Every [`Service`] therefore holds a shared turn of one gate for its
//! lifetime, and [`Service::start_alone`] holds it exclusively (it waits for the running ones
//! to end; new ones wait for it). Child processes ([`crate::child`]) have their own recorder
//! and are not gated.

use crate::fixtures::{config_text_on, TestStore, WEBHOOK_PATH};
use crate::store::{self, Delivery};
use printbell::app::Running;
use printbell::loaded::Loaded;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// In-process services share the metrics recorder; see the module docs. Fair (FIFO), so a
/// waiting exclusive turn is not starved by a stream of shared ones.
static IN_PROCESS: RwLock<()> = RwLock::const_new(());

/// A turn of [`IN_PROCESS`], held by a service for its lifetime (only dropped, never read).
struct Turn {
    _shared: Option<RwLockReadGuard<'static, ()>>,
    _alone: Option<RwLockWriteGuard<'static, ()>>,
}

/// The service, started in-process from a config.
pub struct Service {
    pub running: Option<Running>,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub base: String,
    pub http: reqwest::Client,
    /// The store it was started on.
    pub store: TestStore,
    /// Dropped after `running` (fields drop in declaration order).
    _turn: Turn,
}

impl Service {
    /// `rest` is everything after `[server]`/`[store]`: delivery, destinations, routes, templates.
    pub async fn start(server_extra: &str, rest: &str) -> Service {
        let turn = Turn {
            _shared: Some(IN_PROCESS.read().await),
            _alone: None,
        };
        Self::start_with(turn, TestStore::Sqlite, server_extra, rest).await
    }

    /// Like [`Service::start`], on `store`.
    pub async fn start_on(store: &TestStore, server_extra: &str, rest: &str) -> Service {
        let turn = Turn {
            _shared: Some(IN_PROCESS.read().await),
            _alone: None,
        };
        Self::start_with(turn, store.clone(), server_extra, rest).await
    }

    /// Like [`Service::start`], while no other in-process service runs: for tests that read
    /// process-wide metrics.
    pub async fn start_alone(server_extra: &str, rest: &str) -> Service {
        let turn = Turn {
            _shared: None,
            _alone: Some(IN_PROCESS.write().await),
        };
        Self::start_with(turn, TestStore::Sqlite, server_extra, rest).await
    }

    async fn start_with(turn: Turn, store: TestStore, server_extra: &str, rest: &str) -> Service {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config_text_on(&store, dir.path(), server_extra, rest);
        let config_path = dir.path().join("notifier.toml");
        std::fs::write(&config_path, &text).expect("write config");
        let loaded = Loaded::from_file(&config_path)
            .unwrap_or_else(|e| panic!("config invalid:\n{e}\n---\n{text}"));
        let running = printbell::app::start(loaded).await.expect("service starts");
        let base = format!("http://{}", running.addr);
        Service {
            running: Some(running),
            dir,
            config_path,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            store,
            _turn: turn,
        }
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.path().join("printbell.db")
    }

    /// Posts raw bytes to the webhook path; returns status and the JSON answer (Null if none).
    pub async fn post_raw(
        &self,
        path_and_query: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path_and_query}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("service answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn post(&self, event: &Value) -> (u16, Value) {
        self.post_raw(
            WEBHOOK_PATH,
            event.to_string().into_bytes(),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Posts and asserts a 202 with `n` deliveries.
    pub async fn post_accepted(&self, event: &Value, n: usize) {
        let (status, body) = self.post(event).await;
        assert_eq!(status, 202, "answer: {body}");
        assert_eq!(body["deliveries"], n, "answer: {body}");
    }

    /// Every delivery in the store (read through a separate connection, as the CLI does).
    pub fn deliveries(&self) -> Vec<Delivery> {
        store::deliveries_in(&self.store.backend(self.dir.path()))
    }

    pub async fn stop(&mut self) -> bool {
        match self.running.take() {
            Some(r) => r.stop().await,
            None => true,
        }
    }
}
