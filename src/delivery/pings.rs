//! `mention_interval`: one ping per interval and destination, then a summary.
//!
//! A delivery whose body carries a route's mentions under an interval has a
//! [`PingGuard`](crate::store::PingGuard). When its lane is about to send it, the store says
//! whether an interval is open for its key (who is pinged) at the destination:
//! - none, or it ended: the message pings, and once the platform took it, pings are held
//!   back until `now + interval` ([`Queue::open_ping_window`]);
//! - open: the hold is written to the store first ([`Queue::hold_ping`]), then the message
//!   goes without its mentions (a live failure's separate ping is not sent at all).
//!
//! When an interval ends with pings held back, the lane stores a summary (a
//! [`Role::Summary`] delivery at the head of its lane) and starts the next interval from it,
//! in one transaction ([`Queue::queue_summary`]); the summary is then sent like any message,
//! with retries. Everything is in the store, so a restart neither loses a held-back ping nor
//! pings twice; with replicas, only the lease holder decides, as it is the only sender.
//!
//! [`Queue::open_ping_window`]: crate::store::Queue::open_ping_window
//! [`Queue::hold_ping`]: crate::store::Queue::hold_ping
//! [`Queue::queue_summary`]: crate::store::Queue::queue_summary
//! [`Role::Summary`]: crate::store::Role::Summary

use crate::config::{Destination, Mention};
use crate::domain::Mode;
use crate::render::summary;
use crate::store::{HeldPings, NewDelivery, Role};
use std::time::Duration;

/// What a lane knows of its destination's next summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SummaryClock {
    /// Not read from the store yet (the lane started, or took the lease from another replica).
    Unknown,
    /// No ping is held back.
    Idle,
    /// The earliest interval with pings held back ends then (Unix ms).
    At(i64),
}

impl SummaryClock {
    /// Whether the store must be asked for due summaries now.
    pub fn due(self, now: i64) -> bool {
        match self {
            SummaryClock::Unknown => true,
            SummaryClock::Idle => false,
            SummaryClock::At(t) => t <= now,
        }
    }

    /// A ping was held back until `until`.
    pub fn held_until(self, until: i64) -> SummaryClock {
        match self {
            SummaryClock::Unknown => SummaryClock::Unknown,
            SummaryClock::Idle => SummaryClock::At(until),
            SummaryClock::At(t) => SummaryClock::At(t.min(until)),
        }
    }

    /// How long an idle lane may sleep without missing a summary, at most `max`.
    pub fn wait(self, now: i64, max: Duration) -> Duration {
        match self {
            SummaryClock::At(t) => Duration::from_millis((t - now).max(0) as u64).min(max),
            _ => max,
        }
    }
}

/// The summaries of `held` that are due at `now`, and what the clock is for the rest.
pub(super) fn due(held: &[HeldPings], now: i64) -> (Vec<&HeldPings>, SummaryClock) {
    let (due, later): (Vec<&HeldPings>, Vec<&HeldPings>) =
        held.iter().partition(|h| h.until <= now);
    let clock = match later.iter().map(|h| h.until).min() {
        Some(t) => SummaryClock::At(t),
        None => SummaryClock::Idle,
    };
    (due, clock)
}

/// The summary delivery for `held` at `dest`: it pings who the held-back pings were for.
pub(super) fn summary_delivery(dest: &Destination, held: &HeldPings) -> NewDelivery {
    let mention: Vec<Mention> = held
        .key
        .split_whitespace()
        .filter_map(|m| Mention::parse(m).ok())
        .collect();
    let every = Duration::from_millis(held.every_ms.max(0) as u64);
    let body = summary::body(dest, &mention, held.count, &held.labels, every);
    NewDelivery {
        event_type: held.event_type,
        generation_id: String::new(),
        destination: dest.name.clone(),
        kind: dest.kind,
        mode: Mode::Each,
        role: Role::Summary,
        body: body.to_string(),
        quiet_body: None,
        images_done: 0,
        guard: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventType;

    fn held(key: &str, until: i64) -> HeldPings {
        HeldPings {
            key: key.into(),
            until,
            every_ms: 4_000,
            count: 2,
            labels: vec!["a".into(), "b".into()],
            event_type: EventType::Failed,
        }
    }

    #[test]
    fn the_clock_tells_when_to_look_and_how_long_to_sleep() {
        assert!(SummaryClock::Unknown.due(0));
        assert!(!SummaryClock::Idle.due(i64::MAX));
        assert!(!SummaryClock::At(10).due(9));
        assert!(SummaryClock::At(10).due(10));
        assert_eq!(SummaryClock::Idle.held_until(50), SummaryClock::At(50));
        assert_eq!(SummaryClock::At(40).held_until(50), SummaryClock::At(40));
        assert_eq!(SummaryClock::Unknown.held_until(50), SummaryClock::Unknown);
        let max = Duration::from_secs(1);
        assert_eq!(
            SummaryClock::At(1_300).wait(1_000, max),
            Duration::from_millis(300)
        );
        assert_eq!(SummaryClock::At(900).wait(1_000, max), Duration::ZERO);
        assert_eq!(SummaryClock::Idle.wait(1_000, max), max);
    }

    #[test]
    fn only_ended_intervals_are_summarised() {
        let list = [held("role:1", 100), held("user:2", 300), held("here", 200)];
        let (now, clock) = due(&list, 150);
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].key, "role:1");
        assert_eq!(clock, SummaryClock::At(200));
        let (none, clock) = due(&list[..1], 50);
        assert!(none.is_empty());
        assert_eq!(clock, SummaryClock::At(100));
        assert_eq!(due(&[], 0).1, SummaryClock::Idle);
    }
}
