//! Small types shared by every layer, with no behaviour beyond their own parsing: the event
//! types all-images.ai sends (and the rank live messages order them by) and the platform kinds.
//!
//! They sit below everything else, so `config` can name an event type without knowing the
//! event model, and the store can record a platform kind without knowing any platform.

mod event_type;
mod kind;

pub use event_type::{EventType, Rank};
pub use kind::{Kind, Mode};
