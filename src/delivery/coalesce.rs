//! Coalescing for live messages: of the updates of one generation's message that wait, which
//! one is sent and which are superseded. Pure, so the rules can be tested without a lane.
//!
//! Rules (one message per generation and destination):
//! - never backwards: an update ranked below what the message shows sends nothing;
//! - a terminal state (completed / failed) is replaced only by a later terminal state (a
//!   retried generation), never by anything else;
//! - of the updates that may be sent, only the newest of the highest rank is: the others are
//!   superseded, so a backlog of seven events becomes one post or edit.

use crate::domain::Rank;

/// One waiting update: its delivery id (later ids were received later) and its rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiting {
    pub id: i64,
    pub rank: Rank,
}

/// What to do with the waiting updates of one message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The update to send now, if any.
    pub send: Option<i64>,
    /// Updates that will never be sent.
    pub supersede: Vec<i64>,
}

/// Whether an update of rank `next` may replace what a message showing `shown` shows.
pub fn moves_on(shown: Option<Rank>, next: Rank) -> bool {
    match shown {
        None => true,
        Some(shown) if shown.is_terminal() => next.is_terminal(),
        Some(shown) => next > shown,
    }
}

/// Plans the waiting updates of one message that shows `shown` (`None`: nothing posted yet).
pub fn plan(shown: Option<Rank>, waiting: &[Waiting]) -> Plan {
    let send = waiting
        .iter()
        .filter(|w| moves_on(shown, w.rank))
        .max_by_key(|w| (w.rank, w.id))
        .map(|w| w.id);
    Plan {
        send,
        supersede: waiting
            .iter()
            .map(|w| w.id)
            .filter(|id| Some(*id) != send)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventType::{self, *};

    fn w(id: i64, t: EventType, images: u64) -> Waiting {
        Waiting {
            id,
            rank: t.rank(images),
        }
    }

    #[test]
    fn a_backlog_becomes_one_update_with_the_newest_state() {
        let waiting = [
            w(1, Created, 0),
            w(2, Active, 0),
            w(3, Progress, 1),
            w(4, Progress, 2),
            w(5, Completed, 2),
        ];
        assert_eq!(
            plan(None, &waiting),
            Plan {
                send: Some(5),
                supersede: vec![1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn late_updates_never_move_a_message_backwards() {
        let shown = Some(Completed.rank(4));
        let p = plan(shown, &[w(8, Created, 0), w(9, Progress, 3)]);
        assert_eq!(p.send, None);
        assert_eq!(p.supersede, vec![8, 9]);
        // Out of order progress: 3 of 4 was shown, 2 of 4 arrives late.
        let p = plan(Some(Progress.rank(3)), &[w(7, Progress, 2)]);
        assert_eq!(p.send, None);
        // A repeat of what is shown sends nothing either.
        let p = plan(Some(Progress.rank(3)), &[w(7, Progress, 3)]);
        assert_eq!(p.send, None);
    }

    #[test]
    fn a_later_terminal_state_replaces_a_terminal_one() {
        let p = plan(
            Some(Failed.rank(0)),
            &[w(4, Progress, 1), w(5, Completed, 4)],
        );
        assert_eq!(p.send, Some(5));
        assert_eq!(p.supersede, vec![4]);
        // Of two terminal states waiting, the later one wins.
        let p = plan(None, &[w(6, Completed, 4), w(7, Failed, 0)]);
        assert_eq!(p.send, Some(7));
    }
}
