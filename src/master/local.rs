//! The local master: jobs submitted through the HTTP API (and so `drover cmd`), with a
//! bounded history of recent jobs and their returns for `GET /v1/jobs/<jid>`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::ConfigError;
use crate::fleet::supervisor::Diff;
use crate::fleet::{Fleet, FleetError};
use crate::inventory::InventorySource;
use crate::job::{Jid, JobRequest, Return};

/// One job as the local master remembers it.
#[derive(Debug, Serialize)]
pub struct JobRecord {
    pub jid: Jid,
    pub fun: String,
    pub minions: Vec<String>,
    pub started_unix: u64,
    #[serde(serialize_with = "ser_returns")]
    returns: Mutex<Vec<Return>>,
    #[serde(serialize_with = "ser_done")]
    done: Mutex<bool>,
}

fn ser_returns<S: serde::Serializer>(m: &Mutex<Vec<Return>>, s: S) -> Result<S::Ok, S::Error> {
    let v = m.lock().map(|v| v.clone()).unwrap_or_default();
    v.serialize(s)
}

fn ser_done<S: serde::Serializer>(m: &Mutex<bool>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(m.lock().map(|d| *d).unwrap_or(false))
}

impl JobRecord {
    pub fn returns(&self) -> Vec<Return> {
        self.returns.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn is_done(&self) -> bool {
        self.done.lock().map(|d| *d).unwrap_or(false)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this daemon was not started from inventory files; nothing to reload")]
    NoSource,
    #[error("new inventory rejected, the running one is kept: {0}")]
    Inventory(#[from] ConfigError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

#[derive(Clone)]
pub struct LocalMaster {
    fleet: Fleet,
    history: Arc<Mutex<VecDeque<Arc<JobRecord>>>>,
    keep: usize,
    source: Option<InventorySource>,
    /// One reload at a time: two racing reloads could apply in either order.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl LocalMaster {
    pub fn new(fleet: Fleet, keep: usize, source: Option<InventorySource>) -> LocalMaster {
        LocalMaster {
            fleet,
            history: Arc::new(Mutex::new(VecDeque::new())),
            keep: keep.max(1),
            source,
            reloading: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Reads the inventory again and applies the difference: new devices start,
    /// removed ones stop, changed ones restart, the rest are not touched. A bad
    /// inventory is rejected as a whole.
    pub async fn reload(&self) -> Result<Diff, ReloadError> {
        let source = self.source.as_ref().ok_or(ReloadError::NoSource)?;
        let _one = self.reloading.lock().await;
        let inventory = match source.load() {
            Ok(i) => i,
            Err(e) => {
                tracing::warn!(error = %e, "Reload rejected; keeping the running inventory.");
                return Err(e.into());
            }
        };
        let diff = self.fleet.apply(inventory).await?;
        tracing::info!(
            added = diff.added.len(),
            removed = diff.removed.len(),
            changed = diff.changed.len(),
            "Inventory reloaded."
        );
        Ok(diff)
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Submits a job; returns its record and a stream of returns as they arrive. The
    /// record is filled even when the stream's reader goes away.
    pub async fn submit(
        &self,
        req: JobRequest,
    ) -> Result<(Arc<JobRecord>, mpsc::Receiver<Return>), FleetError> {
        let mut handle = self.fleet.submit(req).await?;
        let record = Arc::new(JobRecord {
            jid: handle.jid.clone(),
            fun: handle.fun.clone(),
            minions: handle.minions.clone(),
            started_unix: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            returns: Mutex::new(Vec::with_capacity(handle.minions.len())),
            done: Mutex::new(false),
        });
        if let Ok(mut h) = self.history.lock() {
            h.push_back(record.clone());
            while h.len() > self.keep {
                h.pop_front();
            }
        }
        let (tx, rx) = mpsc::channel(256);
        let rec = record.clone();
        tokio::spawn(async move {
            let mut reader_gone = false;
            while let Some(r) = handle.returns.recv().await {
                if let Ok(mut v) = rec.returns.lock() {
                    v.push(r.clone());
                }
                if !reader_gone && tx.send(r).await.is_err() {
                    reader_gone = true;
                }
            }
            if let Ok(mut d) = rec.done.lock() {
                *d = true;
            }
        });
        Ok((record, rx))
    }

    pub fn job(&self, jid: &str) -> Option<Arc<JobRecord>> {
        let h = self.history.lock().ok()?;
        h.iter().rev().find(|r| r.jid.0 == jid).cloned()
    }
}
