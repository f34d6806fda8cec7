//! The local master: jobs submitted through the HTTP API (and so `drover cmd`), with a
//! bounded history of recent jobs and their returns for `GET /v1/jobs/<jid>`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::ConfigError;
use crate::fleet::supervisor::Diff;
use crate::fleet::{Fleet, FleetError};
use crate::inventory::InventorySource;
use crate::job::{Jid, JobRequest, Return};

/// Returns the job history keeps, all jobs together (five fan-outs to 10,000
/// devices); the oldest jobs leave first, the newest always stays.
pub const MAX_HISTORY_RETURNS: usize = 50_000;

/// One job as the local master remembers it.
#[derive(Debug, Serialize)]
pub struct JobRecord {
    pub jid: Jid,
    pub fun: String,
    pub minions: Vec<String>,
    pub started_unix: u64,
    /// Shared with the stream to the client: a return is kept once, not copied.
    #[serde(serialize_with = "ser_returns")]
    returns: Mutex<Vec<Arc<Return>>>,
    #[serde(serialize_with = "ser_done")]
    done: Mutex<bool>,
    /// Approximate bytes of the returns held (see [`Return::approx_bytes`]).
    #[serde(skip)]
    bytes: AtomicUsize,
    /// Some returns were streamed to the caller but not kept: the history's byte
    /// bound would have been passed with this job alone.
    truncated: AtomicBool,
}

fn ser_returns<S: serde::Serializer>(m: &Mutex<Vec<Arc<Return>>>, s: S) -> Result<S::Ok, S::Error> {
    let v = m.lock().map(|v| v.clone()).unwrap_or_default();
    s.collect_seq(v.iter().map(|r| &**r))
}

fn ser_done<S: serde::Serializer>(m: &Mutex<bool>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bool(m.lock().map(|d| *d).unwrap_or(false))
}

impl JobRecord {
    pub fn returns(&self) -> Vec<Arc<Return>> {
        self.returns.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn is_done(&self) -> bool {
        self.done.lock().map(|d| *d).unwrap_or(false)
    }

    /// Whether some returns were left out of the record (not of the stream).
    pub fn is_truncated(&self) -> bool {
        self.truncated.load(Ordering::Relaxed)
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
    max_bytes: usize,
    source: Option<InventorySource>,
    /// One reload at a time: two racing reloads could apply in either order.
    reloading: Arc<tokio::sync::Mutex<()>>,
}

impl LocalMaster {
    /// Keeps up to `keep` jobs and `max_bytes` of their returns (approximately).
    pub fn new(
        fleet: Fleet,
        keep: usize,
        max_bytes: usize,
        source: Option<InventorySource>,
    ) -> LocalMaster {
        LocalMaster {
            fleet,
            history: Arc::new(Mutex::new(VecDeque::new())),
            keep: keep.max(1),
            max_bytes,
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
    ) -> Result<(Arc<JobRecord>, mpsc::Receiver<Arc<Return>>), FleetError> {
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
            bytes: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
        });
        if let Ok(mut h) = self.history.lock() {
            h.push_back(record.clone());
            evict(&mut h, self.keep, MAX_HISTORY_RETURNS);
        }
        let (tx, rx) = mpsc::channel(256);
        let rec = record.clone();
        let (history, max_bytes) = (self.history.clone(), self.max_bytes);
        tokio::spawn(async move {
            let mut reader_gone = false;
            while let Some(r) = handle.returns.recv().await {
                let r = Arc::new(r);
                let size = r.approx_bytes();
                let kept = history
                    .lock()
                    .map(|mut h| make_room(&mut h, &rec, size, max_bytes))
                    .unwrap_or(true);
                if kept {
                    if let Ok(mut v) = rec.returns.lock() {
                        v.push(r.clone());
                    }
                } else {
                    rec.truncated.store(true, Ordering::Relaxed);
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

/// Drops the oldest jobs until at most `keep` remain and they hold at most
/// `max_returns` returns (counted as targeted devices, known at submission). Bounded
/// by returns as well as by jobs: 256 fan-outs to 10,000 devices would otherwise keep
/// 2.5 million returns (gigabytes) for `GET /v1/jobs`. The newest job always stays.
fn evict(h: &mut VecDeque<Arc<JobRecord>>, keep: usize, max_returns: usize) {
    let mut held: usize = h.iter().map(|r| r.minions.len()).sum();
    while h.len() > keep || (held > max_returns && h.len() > 1) {
        if let Some(old) = h.pop_front() {
            held -= old.minions.len();
        }
    }
}

/// Makes room in the history for `size` more bytes of `rec`'s returns by dropping
/// the jobs older than it, oldest first; `false` when `rec` alone would pass
/// `max_bytes` (the return is then not kept). A job no longer in the history is
/// held only by whoever asked for it, and keeps everything.
fn make_room(
    h: &mut VecDeque<Arc<JobRecord>>,
    rec: &Arc<JobRecord>,
    size: usize,
    max_bytes: usize,
) -> bool {
    if !h.iter().any(|r| Arc::ptr_eq(r, rec)) {
        return true;
    }
    let mut held: usize = h.iter().map(|r| r.bytes.load(Ordering::Relaxed)).sum();
    while held + size > max_bytes {
        match h.front() {
            Some(old) if !Arc::ptr_eq(old, rec) => {
                held -= old.bytes.load(Ordering::Relaxed);
                h.pop_front();
            }
            _ => break,
        }
    }
    if held + size > max_bytes {
        return false;
    }
    rec.bytes.fetch_add(size, Ordering::Relaxed);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(jid: &str, targets: usize) -> Arc<JobRecord> {
        Arc::new(JobRecord {
            jid: Jid(jid.into()),
            fun: "test.ping".into(),
            minions: (0..targets).map(|i| format!("d{i}")).collect(),
            started_unix: 0,
            returns: Mutex::new(Vec::new()),
            done: Mutex::new(false),
            bytes: AtomicUsize::new(0),
            truncated: AtomicBool::new(false),
        })
    }

    fn jids(h: &VecDeque<Arc<JobRecord>>) -> Vec<&str> {
        h.iter().map(|r| r.jid.0.as_str()).collect()
    }

    #[test]
    fn history_is_bounded_by_jobs_and_by_returns() {
        let mut h: VecDeque<_> = ["a", "b", "c"].iter().map(|j| record(j, 10)).collect();
        evict(&mut h, 2, 1000);
        assert_eq!(jids(&h), ["b", "c"]);
        // 10 + 10 + 25 returns over a bound of 30: the oldest go first.
        h.push_back(record("d", 25));
        evict(&mut h, 10, 30);
        assert_eq!(jids(&h), ["d"]);
        // One job larger than the bound is still kept (it is the newest).
        h.push_back(record("e", 100));
        evict(&mut h, 10, 30);
        assert_eq!(jids(&h), ["e"]);
    }

    #[test]
    fn history_is_bounded_by_the_bytes_of_its_returns() {
        let mut h: VecDeque<_> = ["a", "b", "c"].iter().map(|j| record(j, 10)).collect();
        for r in &h {
            assert!(make_room(&mut h.clone(), r, 300, 1000));
            r.bytes.store(300, Ordering::Relaxed);
        }
        let c = h[2].clone();
        // 900 held; 250 more for c: a goes, b and c stay.
        assert!(make_room(&mut h, &c, 250, 1000));
        assert_eq!(jids(&h), ["b", "c"]);
        assert_eq!(c.bytes.load(Ordering::Relaxed), 550);
        // c alone cannot pass the bound: b goes, then the return is refused.
        assert!(!make_room(&mut h, &c, 500, 1000));
        assert_eq!(jids(&h), ["c"]);
        assert_eq!(c.bytes.load(Ordering::Relaxed), 550);
        // A job the history no longer holds keeps what it gets.
        let gone = record("gone", 1);
        assert!(make_room(&mut h, &gone, 5000, 1000));
        assert_eq!(jids(&h), ["c"]);
    }
}
