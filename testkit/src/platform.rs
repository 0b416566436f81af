//! printbell's destination kinds as the tests see them. `printbell::config::Kind` is named
//! only here, so when that type moves only this file changes.

use crate::validate;
use serde_json::Value;

/// The kind of a destination (Slack, Discord, console), as printbell defines it.
pub use printbell::config::Kind;

/// The strict problems of a body rendered for `kind` (see [`crate::validate`]); a console
/// body has none. Empty = within every limit of the platform.
pub fn problems(kind: Kind, body: &Value) -> Vec<String> {
    match kind {
        Kind::Slack => validate::slack_problems(body),
        Kind::Discord => validate::discord_problems(body),
        Kind::Console => Vec::new(),
    }
}

/// True for a Discord destination.
pub fn is_discord(kind: Kind) -> bool {
    kind == Kind::Discord
}
