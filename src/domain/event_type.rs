//! The five event types of an image generation's life, and their rank.

/// An all-images.ai event type. An event whose `type` is none of these is still accepted (it
/// has no [`EventType`] and no route takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    Created,
    Active,
    Progress,
    Failed,
    Completed,
}

impl EventType {
    /// In the order of a generation's life (the order `check` and `preview` list them in).
    pub const ALL: [EventType; 5] = [
        EventType::Created,
        EventType::Active,
        EventType::Progress,
        EventType::Failed,
        EventType::Completed,
    ];

    /// The wire name, e.g. `print.completed`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "print.created",
            EventType::Active => "print.active",
            EventType::Progress => "print.progress",
            EventType::Failed => "print.failed",
            EventType::Completed => "print.completed",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The wire names of all five, for hints in error messages.
    pub fn names() -> [&'static str; 5] {
        EventType::ALL.map(EventType::as_str)
    }

    /// `print.completed` and `print.failed` end a generation (until all-images.ai retries it).
    pub fn is_terminal(self) -> bool {
        matches!(self, EventType::Completed | EventType::Failed)
    }

    /// Where a message showing this event stands in the generation's story:
    /// created < active < progress (by images done) < completed = failed.
    pub fn rank(self, images_done: u64) -> Rank {
        let stage = match self {
            EventType::Created => 0,
            EventType::Active => 1,
            EventType::Progress => 2,
            EventType::Failed | EventType::Completed => 3,
        };
        // Terminal states compare equal whatever their image count: a retried generation's
        // second terminal event replaces the first.
        let images = if self.is_terminal() { 0 } else { images_done };
        Rank { stage, images }
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order of a generation's states; a live message never goes to a lower one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rank {
    stage: u8,
    images: u64,
}

impl Rank {
    /// Whether a message showing this state is finished (completed or failed).
    pub fn is_terminal(self) -> bool {
        self.stage == 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("print.deleted"), None);
        assert_eq!(EventType::parse("Print.Created"), None);
    }

    #[test]
    fn ranks_follow_the_story() {
        let created = EventType::Created.rank(0);
        let active = EventType::Active.rank(0);
        let one = EventType::Progress.rank(1);
        let three = EventType::Progress.rank(3);
        let done = EventType::Completed.rank(4);
        let failed = EventType::Failed.rank(1);
        assert!(created < active && active < one && one < three && three < done);
        assert_eq!(done, failed);
        assert!(done.is_terminal() && !three.is_terminal());
    }
}
