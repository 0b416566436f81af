//! The summary `mention_interval` sends when an interval ends with pings held back: one short
//! message that pings once, says how many events did not, and names their generations.

use super::text::truncate;
use crate::config::{Destination, Mention};
use crate::platform;
use serde_json::Value;
use std::time::Duration;

/// A generation's name is cut to this many characters in a summary.
const LABEL_MAX: usize = 80;

/// The summary's body for `dest`: `count` events did not ping within `every`; `labels` are
/// the first of their generations (name, else id), the rest are "and N more".
pub fn body(
    dest: &Destination,
    mention: &[Mention],
    count: u64,
    labels: &[String],
    every: Duration,
) -> Value {
    let platform = platform::of(dest.kind);
    platform.notice_body(
        dest,
        mention,
        &text(platform.escape(), count, labels, every),
    )
}

fn text(
    escape: super::templates::Escape,
    count: u64,
    labels: &[String],
    every: Duration,
) -> String {
    let names: Vec<String> = labels
        .iter()
        .map(|l| escape.apply(&truncate(l.trim(), LABEL_MAX)))
        .collect();
    let more = count.saturating_sub(names.len() as u64);
    let list = match (names.split_last(), more) {
        (None, _) => String::new(),
        (Some((last, [])), 0) => last.clone(),
        (Some((last, rest)), 0) => format!("{} and {last}", rest.join(", ")),
        (Some(_), more) => format!("{} and {more} more", names.join(", ")),
    };
    let events = if count == 1 { "event" } else { "events" };
    let every = humantime::format_duration(every);
    if list.is_empty() {
        format!("{count} more {events} did not ping in the last {every}.")
    } else {
        format!("{count} more {events} did not ping in the last {every}: {list}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::templates::Escape;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("gen-{i}")).collect()
    }

    #[test]
    fn names_up_to_ten_then_says_how_many_more() {
        let five = text(Escape::Plain, 5, &names(5), Duration::from_secs(4));
        assert_eq!(
            five,
            "5 more events did not ping in the last 4s: gen-1, gen-2, gen-3, gen-4 and gen-5."
        );
        let one = text(Escape::Plain, 1, &names(1), Duration::from_secs(300));
        assert_eq!(one, "1 more event did not ping in the last 5m: gen-1.");
        let many = text(Escape::Plain, 13, &names(10), Duration::from_secs(300));
        assert!(many.ends_with("gen-9, gen-10 and 3 more."), "{many}");
    }

    #[test]
    fn names_from_event_data_cannot_ping() {
        let evil = vec!["<!channel> @everyone".to_string()];
        let slack = text(Escape::Slack, 1, &evil, Duration::from_secs(60));
        assert!(!slack.contains("<!channel>"), "{slack}");
        let discord = text(Escape::Discord, 1, &evil, Duration::from_secs(60));
        assert!(!discord.contains("@everyone"), "{discord}");
    }
}
