//! The stop signal: one [`Trigger`] held by `serve`, a [`Shutdown`] in every task that must
//! stop (HTTP servers, lanes, housekeeping). Shaped after tokio-rs/mini-redis `shutdown.rs`.

use tokio::sync::watch;

/// Starts the shutdown of everything subscribed. Dropping it also counts as a stop, so a
/// service dropped without [`Trigger::start`] does not leave tasks running.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the stop signal; cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Trigger {
    pub fn new() -> Trigger {
        Trigger(watch::channel(false).0)
    }

    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }

    pub fn start(&self) {
        self.0.send_replace(true);
    }
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::new()
    }
}

impl Shutdown {
    /// Whether the stop has begun (or the trigger is gone).
    pub fn is_started(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the stop begins; at once if it already has.
    pub async fn started(&mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_the_start_and_a_dropped_trigger() {
        let trigger = Trigger::new();
        let mut a = trigger.subscribe();
        let b = trigger.subscribe();
        assert!(!a.is_started());
        trigger.start();
        a.started().await;
        assert!(b.is_started());

        let gone = Trigger::new();
        let mut c = gone.subscribe();
        drop(gone);
        assert!(c.is_started());
        c.started().await;
    }
}
