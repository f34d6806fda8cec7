//! The jobs the dispatcher is running and which of their devices still owe a return,
//! for masters that are asked about them (Salt's `saltutil.find_job` and `running`).
//! Written only by the dispatcher's job runs; read through [`RunningJobs::for_device`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::target::TargetType;
use crate::job::{Job, Tgt};

/// One running job as a master asked for it.
#[derive(Debug)]
pub struct RunningJob {
    pub job: Arc<Job>,
    pub tgt: Tgt,
    pub tgt_type: TargetType,
    pub started: SystemTime,
    /// Every targeted device, sorted (the dispatcher resolves targets sorted).
    targets: Arc<[String]>,
    /// Devices whose part of the job `saltutil.kill_job` ended.
    pub kills: Kills,
}

/// The devices a job was killed on, and a wake-up for their waiting operations.
#[derive(Debug, Default)]
pub struct Kills {
    killed: Mutex<std::collections::HashSet<String>>,
    notify: tokio::sync::Notify,
}

impl Kills {
    fn kill(&self, id: &str) {
        self.killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned());
        self.notify.notify_waiters();
    }

    fn is_killed(&self, id: &str) -> bool {
        self.killed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// Resolves once the job is killed on `id`.
    pub async fn killed(&self, id: &str) {
        loop {
            let woken = self.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_killed(id) {
                return;
            }
            woken.await;
        }
    }
}

struct Entry {
    info: Arc<RunningJob>,
    /// `pending[i]` while `targets[i]` has not been given its return.
    pending: Vec<bool>,
}

/// Running jobs, keyed by a private sequence number so that a jid a master reuses
/// cannot make one run remove another's record.
#[derive(Default)]
pub struct RunningJobs {
    jobs: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

impl RunningJobs {
    pub fn new() -> Arc<RunningJobs> {
        Arc::new(RunningJobs::default())
    }

    /// Records a job whose `targets` (sorted, deduplicated) all owe a return. The
    /// record goes away when the returned guard is dropped.
    pub fn start(
        self: &Arc<Self>,
        job: Arc<Job>,
        tgt: Tgt,
        tgt_type: TargetType,
        targets: Arc<[String]>,
    ) -> RunningGuard {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            pending: vec![true; targets.len()],
            info: Arc::new(RunningJob {
                job,
                tgt,
                tgt_type,
                started: SystemTime::now(),
                targets,
                kills: Kills::default(),
            }),
        };
        self.lock().insert(key, entry);
        RunningGuard {
            jobs: self.clone(),
            key,
        }
    }

    /// The running jobs that targeted `id` and have not given it its return yet.
    /// Linear in the running jobs (bounded by `fleet.max_jobs`), logarithmic in
    /// their targets.
    pub fn for_device(&self, id: &str) -> Vec<Arc<RunningJob>> {
        self.lock()
            .values()
            .filter(|e| {
                e.info
                    .targets
                    .binary_search_by(|t| t.as_str().cmp(id))
                    .is_ok_and(|i| e.pending[i])
            })
            .map(|e| e.info.clone())
            .collect()
    }

    /// Ends `id`'s part of every running job with this jid (`saltutil.kill_job`);
    /// the jobs it ended.
    pub fn kill(&self, id: &str, jid: &str) -> Vec<Arc<RunningJob>> {
        let hit: Vec<Arc<RunningJob>> = self
            .for_device(id)
            .into_iter()
            .filter(|j| j.job.jid.0 == jid)
            .collect();
        for j in &hit {
            j.kills.kill(id);
        }
        hit
    }

    /// Jobs running now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps one job's record while its run lives; a run that ends any way (finished,
/// cancelled, panicked) takes its record with it.
pub struct RunningGuard {
    jobs: Arc<RunningJobs>,
    key: u64,
}

impl RunningGuard {
    /// Every running job, this one's neighbours included.
    pub fn all(&self) -> &Arc<RunningJobs> {
        &self.jobs
    }

    /// This job's record.
    pub fn info(&self) -> Option<Arc<RunningJob>> {
        self.jobs.lock().get(&self.key).map(|e| e.info.clone())
    }

    /// `id` has been given its return.
    pub fn answered(&self, id: &str) {
        if let Some(e) = self.jobs.lock().get_mut(&self.key) {
            if let Ok(i) = e.info.targets.binary_search_by(|t| t.as_str().cmp(id)) {
                e.pending[i] = false;
            }
        }
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Args;

    fn job(jid: &str) -> Arc<Job> {
        Arc::new(Job {
            jid: crate::job::Jid(jid.into()),
            fun: "test.sleep".into(),
            args: Args::default(),
        })
    }

    #[test]
    fn a_device_sees_the_jobs_it_still_owes_a_return() {
        let running = RunningJobs::new();
        let targets: Arc<[String]> = vec!["a".to_owned(), "b".to_owned()].into();
        let one = running.start(
            job("1"),
            Tgt::Expr("*".into()),
            TargetType::Glob,
            targets.clone(),
        );
        // The same jid again (a master may reuse one) is a second record.
        let two = running.start(job("1"), Tgt::Expr("*".into()), TargetType::Glob, targets);
        assert_eq!(running.for_device("a").len(), 2);
        assert!(running.for_device("c").is_empty());
        one.answered("a");
        assert_eq!(running.for_device("a").len(), 1);
        assert_eq!(running.for_device("b").len(), 2);
        drop(two);
        assert!(running.for_device("a").is_empty());
        assert_eq!(running.for_device("b").len(), 1);
        drop(one);
        assert!(running.is_empty());
    }
}
