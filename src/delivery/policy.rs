//! Retry policy: exponential backoff with jitter (1 s doubling, capped at 5 min) until
//! `max_attempts` or `max_age`, then dead.

use crate::config::DeliveryConfig;
use backon::BackoffBuilder;
use std::time::Duration;

pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(300);

/// Delay before the attempt after `failed_attempts` failures (1 → about 1 s, 2 → about 2 s, …).
/// Jitter adds up to the same again, so lanes that failed together do not retry together;
/// the result never exceeds [`MAX_DELAY`].
pub fn backoff(failed_attempts: u32) -> Duration {
    let n = failed_attempts.max(1) as usize;
    backon::ExponentialBuilder::default()
        .with_min_delay(FIRST_DELAY)
        .with_factor(2.0)
        .with_max_delay(MAX_DELAY)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(n - 1)
        .unwrap_or(MAX_DELAY)
        .min(MAX_DELAY)
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(i64),
    GiveUp(String),
}

/// `attempts` counts the attempt that just failed; times are Unix milliseconds.
pub fn after_failure(
    cfg: &DeliveryConfig,
    attempts: u32,
    started_at: i64,
    now: i64,
) -> AfterFailure {
    if attempts >= cfg.max_attempts {
        return AfterFailure::GiveUp(format!("gave up after {attempts} attempts"));
    }
    let deadline = started_at.saturating_add(cfg.max_age.as_millis() as i64);
    if now >= deadline {
        return AfterFailure::GiveUp(format!(
            "gave up: still failing after max_age ({})",
            humantime::format_duration(cfg.max_age)
        ));
    }
    let next = now.saturating_add(backoff(attempts).as_millis() as i64);
    // The last try happens at the deadline rather than not at all.
    AfterFailure::RetryAt(next.min(deadline))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for n in 1..=20u32 {
            let base = FIRST_DELAY
                .saturating_mul(1 << (n - 1).min(20))
                .min(MAX_DELAY);
            let d = backoff(n);
            assert!(d >= base, "attempt {n}: {d:?} < {base:?}");
            assert!(d <= (base * 2).min(MAX_DELAY), "attempt {n}: {d:?}");
        }
    }

    #[test]
    fn gives_up_on_attempts_or_age() {
        let cfg = DeliveryConfig {
            max_attempts: 3,
            max_age: Duration::from_secs(60),
            ..DeliveryConfig::default()
        };
        assert!(
            matches!(after_failure(&cfg, 1, 0, 0), AfterFailure::RetryAt(t) if (1000..=2000).contains(&t))
        );
        assert!(matches!(
            after_failure(&cfg, 3, 0, 0),
            AfterFailure::GiveUp(_)
        ));
        assert!(matches!(
            after_failure(&cfg, 1, 0, 60_000),
            AfterFailure::GiveUp(_)
        ));
        assert_eq!(
            after_failure(&cfg, 2, 0, 59_500),
            AfterFailure::RetryAt(60_000)
        );
    }
}
