//! Built-in sample events (the files in `tests/fixtures/`), for `preview --event TYPE` and
//! `send-test`.

const SAMPLES: [(&str, &str); 5] = [
    (
        "print.created",
        include_str!("../tests/fixtures/print.created.json"),
    ),
    (
        "print.active",
        include_str!("../tests/fixtures/print.active.json"),
    ),
    (
        "print.progress",
        include_str!("../tests/fixtures/print.progress.json"),
    ),
    (
        "print.failed",
        include_str!("../tests/fixtures/print.failed.json"),
    ),
    (
        "print.completed",
        include_str!("../tests/fixtures/print.completed.json"),
    ),
];

/// The sample body for an event type.
pub fn sample(event_type: &str) -> Option<&'static str> {
    SAMPLES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, body)| *body)
}
