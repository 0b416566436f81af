//! Delivery workers: one lane per destination, posting that destination's stored deliveries
//! strictly in the order they were received.
//!
//! Invariants:
//! - A lane only ever sends what the store holds, and marks a delivery done only after a 2xx.
//! - Lanes are independent tasks: a failing, slow or rate-limited destination holds up only
//!   its own lane (and destinations that post to the very same webhook, which share its
//!   limits; Discord's global limit holds back every webhook of the host).
//! - Every schedule (next attempt, rate-limit wait) is written to the store, so a restart
//!   continues it instead of starting over.
//! - With several replicas on one store, a destination is sent by the one that holds its
//!   lease (`lease.rs`); the others' lanes for it wait.

pub mod coalesce;
mod lane;
mod lease;
mod pings;
pub mod policy;

use crate::loaded::Live;
use crate::platform::{http, Pacers};
use crate::shutdown::Shutdown;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A lane's wake-up signal and task.
type LaneHandle = (Arc<Notify>, JoinHandle<()>);

/// The running lanes.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    live: Live,
    client: reqwest::Client,
    shutdown: Shutdown,
    /// The pacing of each webhook, shared so that destinations posting to one webhook (e.g.
    /// one Discord webhook with two `thread_id`s) share its rate limit.
    pacers: Arc<Pacers>,
    lanes: Mutex<HashMap<String, LaneHandle>>,
    /// This process among the replicas, as the owner of its lanes' leases.
    owner: Arc<str>,
    /// The HTTP client's timeout: a lease must cover a whole post.
    post_timeout: Duration,
}

impl Workers {
    /// Starts a lane for every configured destination and for every destination that still
    /// has pending deliveries in the store (a removed one: its deliveries are marked dead).
    pub async fn start(store: Store, live: Live, shutdown: Shutdown) -> Result<Workers, String> {
        let timeout = live.get().config.delivery.timeout;
        let client = http::build_client(timeout)
            .map_err(|e| format!("cannot build the HTTP client: {}", http::describe_error(&e)))?;
        let workers = Workers {
            inner: Arc::new(Inner {
                store: store.clone(),
                live: live.clone(),
                client,
                shutdown,
                pacers: Arc::default(),
                lanes: Mutex::default(),
                owner: lease::owner_id(),
                post_timeout: timeout,
            }),
        };
        let mut names: Vec<String> = live.get().config.destinations.keys().cloned().collect();
        let pending = store
            .pending_destinations()
            .await
            .map_err(|e| e.to_string())?;
        names.extend(pending);
        for name in names {
            workers.wake(&name);
        }
        Ok(workers)
    }

    /// Tells a destination's lane that it has new work, starting the lane if needed.
    pub fn wake(&self, destination: &str) {
        let Ok(mut lanes) = self.inner.lanes.lock() else {
            return;
        };
        if let Some((notify, handle)) = lanes.get(destination) {
            if !handle.is_finished() {
                notify.notify_one();
                return;
            }
        }
        if self.inner.shutdown.is_started() {
            return;
        }
        let notify = Arc::new(Notify::new());
        let lane = lane::Lane {
            name: destination.to_string(),
            store: self.inner.store.clone(),
            live: self.inner.live.clone(),
            client: self.inner.client.clone(),
            notify: notify.clone(),
            shutdown: self.inner.shutdown.clone(),
            pacers: self.inner.pacers.clone(),
            lease: lease::Lease::new(
                self.inner.store.clone(),
                destination,
                self.inner.owner.clone(),
                self.inner.post_timeout,
            ),
            summaries: pings::SummaryClock::Unknown,
        };
        let handle = tokio::spawn(lane.run());
        lanes.insert(destination.to_string(), (notify, handle));
    }

    /// Waits for every lane to finish its in-flight post after shutdown was signalled, at most
    /// `limit`. Returns whether all finished in time.
    pub async fn join(&self, limit: Duration) -> bool {
        let handles: Vec<JoinHandle<()>> = match self.inner.lanes.lock() {
            Ok(mut lanes) => lanes.drain().map(|(_, (_, h))| h).collect(),
            Err(_) => return false,
        };
        let all = async {
            for h in handles {
                let _ = h.await;
            }
        };
        tokio::time::timeout(limit, all).await.is_ok()
    }
}
