//! Subcommands other than `serve`. Each returns `Ok(())` or a [`Failure`] whose exit code
//! follows SPEC §1: 1 for invalid input or config, 2 for a runtime failure.

pub mod check;
pub mod deliveries;
pub mod healthcheck;
pub mod preview;
pub mod send;
pub mod send_test;
pub mod subscribe;

use crate::config::ConfigError;
use crate::loaded::Loaded;
use std::path::Path;

#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
    pub fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        let n = e.problems.len();
        Failure::invalid(format!(
            "{e}\n{n} problem{} found; `printbell check` lists them again",
            if n == 1 { "" } else { "s" }
        ))
    }
}

pub type CommandResult = Result<(), Failure>;

/// Loads the config, turning problems into an exit-code-1 failure.
pub fn load(path: &Path) -> Result<Loaded, Failure> {
    Loaded::from_file(path).map_err(Failure::from)
}

/// Loads the config for a command that looks at some destinations only (`preview`,
/// `send-test`): destinations whose URL or token needs an unset variable are left out, each
/// named in a warning on stderr.
/// Returns, with the config, the destinations left out and why.
pub fn load_leaving_out_unset_secrets(
    path: &Path,
) -> Result<(Loaded, Vec<(String, String)>), Failure> {
    let (loaded, left_out) =
        Loaded::from_file_leaving_out_unset_secrets(path).map_err(Failure::from)?;
    for (dest, why) in &left_out {
        eprintln!("warning: destination `{dest}` is left out: {why}");
    }
    Ok((loaded, left_out))
}
