//! One sender per destination across replicas: a lane holds its destination's lease in the
//! store before it writes or sends anything of that destination (SPEC §5.1).
//!
//! The rules a lane follows (see `Lane::run` and `Lane::step`):
//! - **Before each step**, [`Lease::hold`]: a lease granted less than [`RENEW_EVERY`] ago is
//!   used as it is; an older one is renewed in the store, a missing one is taken.
//! - **Right before each post**, [`Lease::covers_post`]: the lease must stay ours for the whole
//!   post (the HTTP timeout plus [`SEND_MARGIN`]), by this process's monotonic clock, counted
//!   from the moment the lease was *asked for* (before the store computed its expiry). No
//!   store call there: the platform's pacing permit is held. So no post is in flight after
//!   the lease expired, and another replica can only take it after that.
//! - **A lease taken anew** (not renewed while still ours) means another replica may have sent
//!   meanwhile: the lane drops the queue it read and reads the store again.
//! - **An idle lane releases** its lease, after its "done" marks are committed, and so does a
//!   stopping one; a lane that dies loses it at expiry, [`ttl`] after its last renewal.
//! - A lane whose destination is held elsewhere tries again every [`LEASE_POLL`] while the
//!   destination has pending deliveries.
//!
//! A backend with one sending process (SQLite) always grants the lease.
//! The guarantee holds while a process is not frozen longer than the margins (a stopped VM,
//! `kill -STOP`) and the database's clock does not jump ahead: as with any lease, a sender
//! that sleeps through its expiry wakes up unaware.

use crate::store::Store;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Renew a lease this old before the next step.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(5);
/// Left over at the end of the longest post, for the clocks and the store's answer time.
pub(super) const SEND_MARGIN: Duration = Duration::from_secs(1);
/// The shortest lease.
const MIN_TTL: Duration = Duration::from_secs(15);
/// How often a lane waiting for another replica's lease asks again.
pub(super) const LEASE_POLL: Duration = Duration::from_millis(250);

/// How long a lease lasts: long enough that a lease renewed [`RENEW_EVERY`] ago still covers a
/// whole post. With the default `delivery.timeout` (10 s) that is 16 s, so a replica that dies
/// is replaced within about 16 s.
pub(super) fn ttl(post_timeout: Duration) -> Duration {
    MIN_TTL.max(post_timeout + RENEW_EVERY + SEND_MARGIN)
}

/// A name for this process among the replicas: host (the pod's name in Kubernetes), pid and
/// start time, so a restarted process on the same host is another owner (and a counter, so
/// two services started in one process in one millisecond, as tests do, are two owners).
pub(super) fn owner_id() -> Arc<str> {
    static STARTED: AtomicU64 = AtomicU64::new(0);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "printbell".to_string());
    let started = crate::store::now_ms();
    let n = STARTED.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    match n {
        0 => format!("{host}/{pid}/{started}").into(),
        n => format!("{host}/{pid}/{started}.{n}").into(),
    }
}

/// What [`Lease::hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Ours, without a break since it was last seen.
    Held,
    /// Ours again after a break (or for the first time): re-read the queue first.
    Taken,
    /// Another replica holds it (or the store could not tell): send nothing.
    Elsewhere,
}

/// One lane's lease on its destination.
pub(super) struct Lease {
    store: Store,
    destination: String,
    owner: Arc<str>,
    ttl: Duration,
    /// The lane's HTTP timeout: the longest a post can take.
    post_timeout: Duration,
    /// When the lease was last asked for, if it was granted; it is ours until `asked + ttl`.
    asked: Option<Instant>,
}

impl Lease {
    pub(super) fn new(
        store: Store,
        destination: &str,
        owner: Arc<str>,
        post_timeout: Duration,
    ) -> Lease {
        Lease {
            store,
            destination: destination.to_string(),
            owner,
            ttl: ttl(post_timeout),
            post_timeout,
            asked: None,
        }
    }

    /// Until when the lease is surely ours, if it is.
    fn until(&self) -> Option<Instant> {
        self.asked.map(|a| a + self.ttl)
    }

    /// Makes sure the lease is ours before a step: renews it when older than
    /// [`RENEW_EVERY`], takes it when missing.
    pub(super) async fn hold(&mut self) -> Hold {
        let now = Instant::now();
        let ours = self.until().is_some_and(|u| now < u);
        if ours && self.asked.is_some_and(|a| now - a < RENEW_EVERY) {
            return Hold::Held;
        }
        let asked = Instant::now();
        match self
            .store
            .lease(&self.destination, &self.owner, self.ttl)
            .await
        {
            Ok(true) => {
                self.asked = Some(asked);
                if ours {
                    Hold::Held
                } else {
                    tracing::debug!(destination = %self.destination, owner = %self.owner, "took the destination's lease");
                    Hold::Taken
                }
            }
            Ok(false) => {
                self.asked = None;
                Hold::Elsewhere
            }
            Err(e) => {
                self.asked = None;
                tracing::warn!(destination = %self.destination, error = %e, "cannot take the destination's lease; not sending");
                Hold::Elsewhere
            }
        }
    }

    /// Whether the lease stays ours for a whole post started now (no store call).
    pub(super) fn covers_post(&self) -> bool {
        self.until()
            .is_some_and(|u| Instant::now() + self.post_timeout + SEND_MARGIN <= u)
    }

    /// Gives the lease up, if it is ours, so another replica can take over at once.
    pub(super) async fn release(&mut self) {
        if self.asked.take().is_none() {
            return;
        }
        if let Err(e) = self.store.release(&self.destination, &self.owner).await {
            tracing::warn!(destination = %self.destination, error = %e, "cannot release the destination's lease; it expires by itself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewed_lease_covers_the_longest_post() {
        for timeout in [1, 10, 30, 120].map(Duration::from_secs) {
            let ttl = ttl(timeout);
            assert!(ttl >= MIN_TTL);
            // Just before renewal it still covers a whole post.
            assert!(ttl - RENEW_EVERY >= timeout + SEND_MARGIN, "{timeout:?}");
        }
        assert_eq!(ttl(Duration::from_secs(10)), Duration::from_secs(16));
    }

    #[tokio::test]
    async fn sqlite_always_grants_and_a_first_grant_is_taken() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = crate::store::Backend::Sqlite {
            path: dir.path().join("s.db"),
        };
        let store = crate::store::open(&backend).await.expect("store");
        let mut lease = Lease::new(store, "d", owner_id(), Duration::from_secs(10));
        assert!(!lease.covers_post());
        assert_eq!(lease.hold().await, Hold::Taken);
        assert!(lease.covers_post());
        assert_eq!(lease.hold().await, Hold::Held);
        lease.release().await;
        assert!(!lease.covers_post());
        assert_eq!(lease.hold().await, Hold::Taken);
    }
}
