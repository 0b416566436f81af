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
