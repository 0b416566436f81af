//! `printbell serve`: wires the store, the delivery workers and the HTTP server together, and
//! handles signals (SIGTERM/SIGINT: graceful stop; SIGHUP: reload) and housekeeping.

use crate::delivery::Workers;
use crate::loaded::{Live, Loaded};
use crate::server::guard::GuardedAcceptor;
use crate::server::{self, AppState};
use crate::shutdown::{Shutdown, Trigger};
use crate::store::{self, now_ms, Store};
use poem::listener::{Acceptor, AcceptorExt, Listener, TcpListener};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How long in-flight posts may take to finish after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

/// A running service.
pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub store: Store,
    pub live: Live,
    pub workers: Workers,
    shutdown: Trigger,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    /// Dropped last, after the workers stopped: no other `serve` on this store before then.
    lock: store::ServeLock,
}

async fn bind(
    listen: &str,
    what: &str,
    request_timeout: Duration,
) -> Result<(poem::listener::BoxAcceptor, SocketAddr), String> {
    let acceptor = TcpListener::bind(listen.to_string())
        .into_acceptor()
        .await
        .map_err(|e| format!("cannot listen on {listen} ({what}): {e}"))?;
    let addr = acceptor
        .local_addr()
        .into_iter()
        .find_map(|a| a.as_socket_addr().copied())
        .ok_or_else(|| format!("cannot tell the address bound for {listen}"))?;
    Ok((
        GuardedAcceptor::new(acceptor, request_timeout).boxed(),
        addr,
    ))
}

/// Opens the store, starts the workers and the HTTP server(s). Returns once listening.
pub async fn start(loaded: Loaded) -> Result<Running, String> {
    let config = &loaded.config;
    // Before opening: a second `serve` must not even migrate a store another one is using.
    let lock = store::lock_for_serve(&config.store.backend).map_err(|e| e.to_string())?;
    let store = store::open(&config.store.backend)
        .await
        .map_err(|e| e.to_string())?;
    let shutdown = Trigger::new();
    let listen = config.server.listen.clone();
    let metrics_listen = config.server.metrics_listen.clone();
    let webhook_path = config.server.webhook_path.clone();
    let request_timeout = config.server.request_timeout;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let live = Live::new(loaded);
    let workers = Workers::start(store.clone(), live.clone(), shutdown.subscribe()).await?;
    let state = Arc::new(AppState::new(live.clone(), store.clone(), workers.clone()));
    server::ops::recorder();

    let mut servers = Vec::new();
    let (acceptor, addr) = bind(&listen, "server.listen", request_timeout).await?;
    let app = server::app(state.clone(), &webhook_path, metrics_listen.is_none());
    servers.push(spawn_server(acceptor, app, shutdown.subscribe()));
    let mut metrics_addr = None;
    if let Some(m) = &metrics_listen {
        let (acceptor, maddr) = bind(m, "server.metrics_listen", request_timeout).await?;
        metrics_addr = Some(maddr);
        servers.push(spawn_server(
            acceptor,
            server::metrics_app(state),
            shutdown.subscribe(),
        ));
    }
    tokio::spawn(housekeeping(
        store.clone(),
        live.clone(),
        shutdown.subscribe(),
    ));
    tracing::info!(%addr, webhook_path = %webhook_path, store = %store.backend(), "printbell is listening");
    Ok(Running {
        addr,
        metrics_addr,
        store,
        live,
        workers,
        shutdown,
        servers,
        lock,
    })
}

fn spawn_server(
    acceptor: poem::listener::BoxAcceptor,
    app: impl poem::Endpoint + 'static,
    mut stop: Shutdown,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        poem::Server::new_with_acceptor(acceptor)
            .idle_timeout(Duration::from_secs(30))
            .run_with_graceful_shutdown(
                app,
                async move { stop.started().await },
                Some(Duration::from_secs(5)),
            )
            .await
    })
}

/// Purges done deliveries and old event ids every hour (and once at start), with the
/// retention of the config in force.
async fn housekeeping(store: Store, live: Live, mut stop: Shutdown) {
    loop {
        let retention = live.get().config.store.retention;
        let before = now_ms() - retention.as_millis() as i64;
        match store.purge(before, false, now_ms()).await {
            Ok(p) if p.deliveries + p.events > 0 => {
                tracing::info!(
                    deliveries = p.deliveries,
                    events = p.events,
                    "purged records older than the retention period"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(HOUSEKEEPING_EVERY) => {}
            _ = stop.started() => return,
        }
    }
}

impl Running {
    /// Stops accepting, lets in-flight posts finish (bounded), and returns whether everything
    /// finished within the grace period.
    pub async fn stop(self) -> bool {
        self.shutdown.start();
        for s in self.servers {
            let _ = s.await;
        }
        let clean = self.workers.join(SHUTDOWN_GRACE).await;
        drop(self.lock);
        clean
    }

    /// Re-reads the config; a valid one takes effect for new events, an invalid one is refused
    /// with every problem logged. Returns whether it was applied.
    pub fn reload(&self, path: &Path) -> bool {
        match Loaded::from_file(path) {
            Ok(new) => {
                let old = self.live.get();
                if new.config.server.listen != old.config.server.listen
                    || new.config.store.backend != old.config.store.backend
                    || new.config.server.webhook_path != old.config.server.webhook_path
                    || new.config.server.metrics_listen != old.config.server.metrics_listen
                {
                    tracing::warn!("server.listen, server.webhook_path, server.metrics_listen and store.path/url changes take effect only after a restart");
                }
                if new.config.delivery.timeout != old.config.delivery.timeout
                    || new.config.server.request_timeout != old.config.server.request_timeout
                {
                    tracing::warn!("delivery.timeout and server.request_timeout changes take effect only after a restart");
                }
                for w in &new.config.warnings {
                    tracing::warn!("{w}");
                }
                let names: Vec<String> = new.config.destinations.keys().cloned().collect();
                let removed: Vec<String> = old
                    .config
                    .destinations
                    .keys()
                    .filter(|k| !new.config.destinations.contains_key(*k))
                    .cloned()
                    .collect();
                self.live.set(new);
                for n in names.iter().chain(removed.iter()) {
                    self.workers.wake(n);
                }
                tracing::info!(destinations = names.len(), "config reloaded");
                true
            }
            Err(e) => {
                for p in &e.problems {
                    tracing::error!(problem = %p, "config reload refused; the running config stays");
                }
                false
            }
        }
    }
}

/// Runs until SIGTERM/SIGINT; SIGHUP reloads `config_path`.
pub async fn serve(config_path: &Path, loaded: Loaded) -> Result<(), String> {
    // Listening for signals before answering /healthz: a SIGTERM right after start must stop
    // gracefully, not kill the process (the default action).
    let signals = Signals::new()?;
    let running = start(loaded).await?;
    signals.wait(&running, config_path).await;
    tracing::info!("stopping: no new events; finishing in-flight deliveries");
    if running.stop().await {
        tracing::info!("stopped cleanly");
    } else {
        tracing::warn!(
            "some deliveries were still in flight; they will be sent after the next start"
        );
    }
    Ok(())
}

#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> Result<Signals, String> {
        use tokio::signal::unix::{signal, SignalKind};
        let mk = |k: SignalKind| signal(k).map_err(|e| format!("cannot listen for signals: {e}"));
        Ok(Signals {
            term: mk(SignalKind::terminate())?,
            int: mk(SignalKind::interrupt())?,
            hup: mk(SignalKind::hangup())?,
        })
    }

    /// Until SIGTERM/SIGINT; SIGHUP reloads `config_path`.
    async fn wait(mut self, running: &Running, config_path: &Path) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = self.int.recv() => return,
                _ = self.hup.recv() => {
                    tracing::info!(config = %config_path.display(), "SIGHUP: reloading the config");
                    running.reload(config_path);
                }
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> Result<Signals, String> {
        Ok(Signals)
    }

    async fn wait(self, _running: &Running, _config_path: &Path) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
