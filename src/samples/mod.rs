//! Built-in sample events, one per event type, for `preview --event TYPE`, `send-test` and the
//! check that a custom template renders. `tests/fixtures/` holds copies, checked equal by a
//! test, so the library is never built from the test folder.

use crate::domain::EventType;

/// The sample body for an event type.
pub fn sample(event_type: EventType) -> &'static str {
    match event_type {
        EventType::Created => include_str!("print.created.json"),
        EventType::Active => include_str!("print.active.json"),
        EventType::Progress => include_str!("print.progress.json"),
        EventType::Failed => include_str!("print.failed.json"),
        EventType::Completed => include_str!("print.completed.json"),
    }
}

/// The sample for an event type named on the command line.
pub fn by_name(name: &str) -> Option<&'static str> {
    EventType::parse(name).map(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_as_their_type_and_match_the_test_fixtures() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for t in EventType::ALL {
            let event = crate::event::parse(sample(t).as_bytes()).expect("sample parses");
            assert_eq!(event.event_type, Some(t));
            let copy = std::fs::read_to_string(fixtures.join(format!("{t}.json")))
                .expect("fixture exists");
            assert_eq!(
                copy,
                sample(t),
                "tests/fixtures/{t}.json differs from src/samples"
            );
        }
    }
}
