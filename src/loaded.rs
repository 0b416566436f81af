//! A validated config together with its compiled templates, and the cell that holds the one in
//! force so SIGHUP can swap it atomically for everything that reads it.

use crate::config::{self, Config, ConfigError};
use crate::render::Renderer;
use std::path::Path;
use std::sync::{Arc, RwLock};

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub renderer: Renderer,
}

impl Loaded {
    /// Reads, validates and compiles a config file; every problem is reported at once,
    /// template errors included even when other parts of the file are wrong.
    pub fn from_file(path: &Path) -> Result<Loaded, ConfigError> {
        let (partial, mut problems) = config::load_partial(path);
        match partial.map(Loaded::from_config) {
            Some(Ok(loaded)) if problems.is_empty() => return Ok(loaded),
            Some(Err(e)) => problems.extend(e.problems),
            _ => {}
        }
        config::sort_problems(&mut problems);
        Err(ConfigError { problems })
    }

    /// Like [`Loaded::from_file`], but a destination whose URL or token uses an unset variable
    /// is left out instead of failing the whole file (for `preview` and `send-test`, which
    /// should work for one destination while another's secret is not set here). Returns the
    /// warnings naming what was left out; any other problem still fails.
    pub fn from_file_leaving_out_unset_secrets(
        path: &Path,
    ) -> Result<(Loaded, Vec<(String, String)>), ConfigError> {
        let (partial, problems) = config::load_partial(path);
        let (left_out, other): (Vec<_>, Vec<_>) = problems
            .into_iter()
            .partition(|p| p.unset_secret_of.is_some());
        match partial {
            Some(config) if other.is_empty() => {
                let loaded = Loaded::from_config(config)?;
                let warnings = left_out
                    .into_iter()
                    .map(|p| (p.unset_secret_of.clone().unwrap_or_default(), p.to_string()))
                    .collect();
                Ok((loaded, warnings))
            }
            _ => {
                let mut problems = other;
                problems.extend(left_out);
                config::sort_problems(&mut problems);
                Err(ConfigError { problems })
            }
        }
    }

    pub fn from_config(config: Config) -> Result<Loaded, ConfigError> {
        let renderer = Renderer::new(&config).map_err(|problems| ConfigError { problems })?;
        Ok(Loaded { config, renderer })
    }
}

/// The config in force. Readers take an `Arc` snapshot, so one event is handled entirely
/// with one config even if a reload happens meanwhile.
#[derive(Clone, Debug)]
pub struct Live(Arc<RwLock<Arc<Loaded>>>);

impl Live {
    pub fn new(loaded: Loaded) -> Live {
        Live(Arc::new(RwLock::new(Arc::new(loaded))))
    }

    pub fn get(&self) -> Arc<Loaded> {
        match self.0.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn set(&self, loaded: Loaded) {
        let new = Arc::new(loaded);
        match self.0.write() {
            Ok(mut g) => *g = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }
}
