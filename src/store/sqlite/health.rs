//! Whether the store takes writes, as the writes themselves found it.
//!
//! Readiness' own probe is one small row: on a full disk (or past a file-size limit) it can
//! still fit where an event's deliveries do not, and `/readyz` said 200 while every webhook got
//! 503. So the writer records each write that failed for a reason of the file (disk full, I/O
//! error, read-only), and readiness answers 503 from that record until a write that changed
//! something commits again.
//!
//! A load balancer that believes `/readyz` stops sending events, and with no events (and an
//! empty queue) no write may come to clear the record. So the record counts for
//! [`RECOVERY_MS`] only: after it, readiness asks its probe again; if the next events still fail,
//! the record is back at once. A circuit breaker, in short.

use rusqlite::ErrorCode;
use std::sync::Mutex;

/// How long a failed write keeps readiness at 503 when no write succeeds after it.
pub(super) const RECOVERY_MS: i64 = 30_000;

/// The last failed write, shared by the writer thread and readiness.
#[derive(Debug, Default)]
pub(super) struct WriteHealth {
    failed: Mutex<Option<Failure>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    /// Unix ms of the newest failure.
    pub at: i64,
    /// What the write was and what SQLite said.
    pub error: String,
}

/// Whether an error means the file cannot take writes (rather than, say, a constraint or a
/// bug in a statement). Not a lock held by another process (`SQLITE_BUSY`): the probe needs
/// the same lock, so it tells that case as it is, and it passes as soon as the lock does.
pub(super) fn is_write_failure(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

impl WriteHealth {
    /// A write failed at `now` with `error`.
    pub(super) fn failed(&self, now: i64, op: &str, error: &rusqlite::Error) {
        let Ok(mut g) = self.failed.lock() else {
            return;
        };
        if g.is_none() {
            tracing::error!(error = %error, op, "the store cannot take writes; /readyz answers 503 until a write succeeds");
        }
        *g = Some(Failure {
            at: now,
            error: format!("could not {op}: {error}"),
        });
    }

    /// A write that changed something committed.
    pub(super) fn succeeded(&self) {
        let Ok(mut g) = self.failed.lock() else {
            return;
        };
        if g.take().is_some() {
            tracing::info!("the store takes writes again");
        }
    }

    /// The failure that still counts at `now`, if any.
    pub(super) fn current(&self, now: i64) -> Option<Failure> {
        let g = self.failed.lock().ok()?;
        g.clone().filter(|f| now - f.at < RECOVERY_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL), None)
    }

    #[test]
    fn a_failure_counts_until_a_write_succeeds_or_the_recovery_time_passes() {
        let h = WriteHealth::default();
        assert_eq!(h.current(0), None);
        h.failed(1_000, "store the event", &full());
        let f = h.current(1_001).expect("counts");
        assert!(f.error.contains("store the event"), "{}", f.error);
        assert!(h.current(1_000 + RECOVERY_MS - 1).is_some());
        assert_eq!(
            h.current(1_000 + RECOVERY_MS),
            None,
            "then the probe decides"
        );
        h.failed(2_000, "store the event", &full());
        h.succeeded();
        assert_eq!(h.current(2_001), None, "a write that committed clears it");
    }

    #[test]
    fn only_errors_of_the_file_count() {
        assert!(is_write_failure(&full()));
        let constraint = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT),
            None,
        );
        assert!(!is_write_failure(&constraint));
    }
}
