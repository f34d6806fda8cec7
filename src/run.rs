//! The daemon as a library call: start the fleet, the local master and the HTTP server
//! from a config and an inventory ([`Daemon::start`]), and stop them in order. `run`
//! takes a shutdown future so tests and `main` trigger shutdown the same way.

use std::future::Future;
use std::net::SocketAddr;

use tracing::info;

use crate::config::{Config, ConfigError};
use crate::fleet::{Fleet, FleetError};
use crate::http::{self, HttpError};
use crate::inventory::Inventory;
use crate::master::local::LocalMaster;
use crate::telemetry;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Http(#[from] HttpError),
}

impl RunError {
    /// Process exit code: 64 (EX_USAGE) for a bad config, as linkerd2-proxy does;
    /// 69 (EX_UNAVAILABLE) when a listener cannot be bound; 70 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 64,
            RunError::Http(HttpError::Token(_)) => 64,
            RunError::Http(HttpError::Bind { .. }) => 69,
            RunError::Fleet(_) => 70,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    pub fleet: Fleet,
    pub master: LocalMaster,
    pub http_addr: SocketAddr,
    server: http::Server,
}

impl Daemon {
    /// Starts everything; call inside an actix `System`.
    pub async fn start(cfg: &Config, inventory: Inventory) -> Result<Daemon, RunError> {
        let _ = telemetry::metrics_handle();
        let token = cfg
            .http
            .token_file
            .as_deref()
            .map(|p| {
                let p = if p.is_absolute() {
                    p.to_owned()
                } else {
                    cfg.base_dir.join(p)
                };
                http::read_token(&p)
            })
            .transpose()?;
        let devices = inventory.len();
        let fleet = Fleet::start(cfg.fleet.clone(), inventory).await?;
        let master = LocalMaster::new(fleet.clone(), cfg.fleet.job_history);
        let server = http::serve(cfg.http.listen, cfg.http.workers, token, master.clone())?;
        info!(devices, http = %server.addr, "Drover started.");
        Ok(Daemon {
            fleet,
            master,
            http_addr: server.addr,
            server,
        })
    }

    /// Stops taking requests, then stops the fleet.
    pub async fn stop(self) {
        self.server.handle.stop(true).await;
        self.fleet.shutdown().await;
        info!("Drover stopped.");
    }

    /// Runs until `shutdown` completes (or the HTTP server dies), then stops.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Daemon {
            fleet,
            master,
            http_addr,
            server,
        } = self;
        let handle = server.handle.clone();
        tokio::select! {
            _ = shutdown => info!("Shutting down."),
            r = server.task => info!(result = ?r, "HTTP server ended."),
        }
        handle.stop(true).await;
        let _ = (master, http_addr);
        fleet.shutdown().await;
        info!("Drover stopped.");
    }
}

/// Loads the config and its inventory, runs until `shutdown`.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let inventory = Inventory::load(&cfg.inventory_paths())?;
    let daemon = Daemon::start(&cfg, inventory).await?;
    daemon.run_until(shutdown).await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
