//! The daemon as a library call: start the fleet, the local master and the HTTP server
//! from a config and an inventory ([`Daemon::start`]), reload on SIGHUP, and stop
//! them in order on shutdown. `run` takes a shutdown future so tests and `main`
//! trigger shutdown the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::config::{Config, ConfigError, MasterKind};
use crate::fleet::{Fleet, FleetError};
use crate::http::{self, HttpError};
use crate::inventory::{Inventory, InventorySource};
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
    #[error("Salt master link: {0}")]
    Salt(#[from] crate::master::salt::SaltError),
    #[error(transparent)]
    Poll(#[from] crate::poll::ModuleError),
    #[error(transparent)]
    Traps(#[from] crate::poll::traps::TrapError),
}

impl RunError {
    /// Process exit code, from the error's type: 64 (EX_USAGE) for a bad config, as
    /// linkerd2-proxy does; 69 (EX_UNAVAILABLE) when a listener or the master cannot
    /// be reached; 70 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(e) => e.exit_code(),
            RunError::Http(
                HttpError::Token(_) | HttpError::EmptyToken(_) | HttpError::NoTokenOffLoopback(_),
            ) => 64,
            RunError::Http(HttpError::Bind { .. }) => 69,
            RunError::Poll(_) => 64,
            RunError::Traps(_) => 69,
            RunError::Fleet(_) => 70,
            RunError::Salt(e) => e.exit_code(),
        }
    }
}

/// A running daemon.
pub struct Daemon {
    pub fleet: Fleet,
    pub master: LocalMaster,
    pub http_addr: SocketAddr,
    server: http::Server,
    /// The background poller (stopped before the fleet).
    pub poll: crate::poll::PollHandle,
    /// The trap listener, when `traps.enabled`.
    pub traps: Option<crate::poll::traps::TrapListener>,
    grace: Duration,
    /// The Salt link, when `master.kind = "salt"`; stopped after the fleet so due
    /// returns still reach the master.
    salt: Option<crate::master::salt::ShutdownHandle>,
    /// Installed at start, before anyone can know the pid: an early SIGHUP must
    /// reload, not kill the process (SIGHUP's default action).
    hangup: Hangup,
    /// Applies pillar-declared device changes (`pillar_inventory`).
    pillar_reloads: Option<tokio::task::JoinHandle<()>>,
}

/// Reloads the inventory whenever the pillar-declared devices change, through the
/// same diff as SIGHUP. Changes that come together are one reload.
async fn reload_on_pillar(
    pillar: std::sync::Arc<crate::inventory::PillarDevices>,
    master: LocalMaster,
) {
    loop {
        pillar.changed().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Err(e) = master.reload().await {
            warn!(error = %e, "Reload after a pillar change failed.");
        }
    }
}

impl Daemon {
    /// Starts everything; call inside an actix `System`. `source`, when given, is
    /// where reloads read the inventory again.
    pub async fn start(
        cfg: &Config,
        inventory: Inventory,
        source: Option<InventorySource>,
    ) -> Result<Daemon, RunError> {
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
        let hangup = hangup_signal();
        let devices = inventory.len();
        let fleet = Fleet::start(cfg.fleet.clone(), inventory).await?;
        let pillar = source.as_ref().and_then(|s| s.pillar.clone());
        let salt = match cfg.master.kind {
            MasterKind::Salt => {
                let master = cfg.master.resolved(&cfg.base_dir);
                let link = crate::master::salt::start(&master, &fleet, pillar.clone()).await?;
                Some(crate::master::bridge::spawn(link, fleet.clone()))
            }
            MasterKind::Local => {
                let roots = cfg.master.resolved(&cfg.base_dir).file_roots;
                if !roots.is_empty() {
                    let files = crate::fileserver::FileRoots::new(roots);
                    fleet.registry.set_files(Some(std::sync::Arc::new(files)));
                }
                None
            }
        };
        let poll = crate::poll::start(&cfg.poll, &fleet)?;
        let traps = if cfg.traps.enabled {
            Some(crate::poll::traps::start(
                &cfg.traps,
                fleet.registry.clone(),
                poll.cache.clone(),
            )?)
        } else {
            None
        };
        let master = LocalMaster::new(
            fleet.clone(),
            cfg.fleet.job_history,
            cfg.fleet.job_history_bytes,
            source,
        );
        let pillar_reloads = pillar.map(|p| tokio::spawn(reload_on_pillar(p, master.clone())));
        let server = http::serve(
            cfg.http.listen,
            cfg.http.workers,
            token,
            master.clone(),
            Some(poll.clone()),
        )?;
        info!(devices, http = %server.addr, "Drover started.");
        Ok(Daemon {
            fleet,
            master,
            http_addr: server.addr,
            server,
            poll,
            traps,
            grace: cfg.fleet.shutdown_grace,
            salt,
            hangup,
            pillar_reloads,
        })
    }

    /// Graceful stop: no new jobs, running jobs finish (or are cut short with error
    /// returns after the grace period), their returns are delivered, then the HTTP
    /// server closes and the fleet's threads stop.
    pub async fn stop(self) {
        if let Some(t) = &self.pillar_reloads {
            t.abort();
        }
        self.poll.stop();
        if let Some(t) = &self.traps {
            t.stop();
        }
        stop_parts(&self.fleet, &self.server.handle, self.grace, self.salt).await;
    }

    /// Runs until `shutdown` completes (or the HTTP server dies), reloading the
    /// inventory on SIGHUP, then stops gracefully.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let Daemon {
            fleet,
            master,
            server,
            grace,
            mut hangup,
            salt,
            pillar_reloads,
            poll,
            traps,
            ..
        } = self;
        let http::Server {
            handle, mut task, ..
        } = server;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    info!("Shutting down.");
                    break;
                }
                Some(()) = recv_hangup(&mut hangup) => {
                    if let Err(e) = master.reload().await {
                        warn!(error = %e, "Reload on SIGHUP failed.");
                    }
                }
                r = &mut task => {
                    warn!(result = ?r, "HTTP server ended.");
                    break;
                }
            }
        }
        if let Some(t) = pillar_reloads {
            t.abort();
        }
        poll.stop();
        drop(traps);
        stop_parts(&fleet, &handle, grace, salt).await;
    }
}

/// The fleet first, so running jobs can still stream their returns over HTTP; the
/// HTTP server (whose job route already answers 503) last.
async fn stop_parts(
    fleet: &Fleet,
    http: &actix_web::dev::ServerHandle,
    grace: Duration,
    salt: Option<crate::master::salt::ShutdownHandle>,
) {
    fleet.shutdown(grace).await;
    if let Some(link) = salt {
        link.run().await;
    }
    http.stop(true).await;
    info!("Drover stopped.");
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

async fn recv_hangup(h: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    {
        match h {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = h;
        std::future::pending().await
    }
}

/// Loads the config's inventory (its shard only), runs until `shutdown`.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let source = InventorySource::from_config(&cfg);
    let inventory = source.load()?;
    let daemon = Daemon::start(&cfg, inventory, Some(source)).await?;
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
