//! Connects a remote master link (Salt) to the fleet: it announces every device id
//! to the link (again when its grains change; the link reads them from the
//! registry), turns each verified publication into a job for the dispatcher, and
//! hands every device's return back to the link. The dispatcher never learns which
//! master a job came from.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::fleet::{Fleet, FleetError};
use crate::job::TargetType;
use crate::job::{Jid, JobRequest, Tgt};
use crate::master::salt::{LinkCommand, PublishedJob, SaltLink, SaltReturn, ShutdownHandle};
use crate::telemetry;

/// How long to gather registry changes before announcing them.
const ANNOUNCE_COALESCE: std::time::Duration = std::time::Duration::from_millis(250);

/// Starts the bridge between a link's channels and the fleet; returns the link's
/// shutdown handle. The bridge ends when the link closes its job stream.
pub fn spawn(link: SaltLink, fleet: Fleet) -> ShutdownHandle {
    let SaltLink {
        commands,
        jobs,
        returns,
        shutdown,
        syndic,
    } = link;
    tokio::spawn(run(commands, jobs, returns, fleet, syndic));
    shutdown
}

async fn run(
    commands: mpsc::Sender<LinkCommand>,
    mut jobs: mpsc::Receiver<PublishedJob>,
    returns: mpsc::Sender<SaltReturn>,
    fleet: Fleet,
    syndic: bool,
) {
    // Only a syndic link is told each job's devices.
    let expect = syndic.then(|| commands.clone());
    let announcer = tokio::spawn(announce(fleet.clone(), commands));
    while let Some(job) = jobs.recv().await {
        metrics::counter!(telemetry::MASTER_MESSAGES, "direction" => "in", "kind" => "job")
            .increment(1);
        match to_request(&job) {
            Ok(req) => match fleet.submit(req).await {
                Ok(mut handle) => {
                    if let Some(tx) = &expect {
                        let _ = tx
                            .send(LinkCommand::Expect {
                                jid: job.jid.clone(),
                                minions: handle.minions.clone(),
                            })
                            .await;
                    }
                    let returns = returns.clone();
                    let fun_args = job.arg.clone();
                    let user = job.user.clone();
                    tokio::spawn(async move {
                        while let Some(r) = handle.returns.recv().await {
                            let ret = SaltReturn {
                                id: r.id,
                                jid: r.jid.0,
                                fun: r.fun,
                                fun_args: fun_args.clone(),
                                ret: r.ret,
                                retcode: r.retcode,
                                success: r.success,
                                user: user.clone(),
                                schedule: None,
                            };
                            if returns.send(ret).await.is_err() {
                                warn!("Salt link closed; returns dropped.");
                                return;
                            }
                        }
                    });
                }
                Err(e) => {
                    debug!(jid = %job.jid, error = %e, "Publication not run.");
                    // The master waits for every targeted minion: a refused job
                    // still answers once per device, with the reason.
                    if let FleetError::Dispatch(d) = &e {
                        if let Some(tx) = &expect {
                            let _ = tx
                                .send(LinkCommand::Expect {
                                    jid: job.jid.clone(),
                                    minions: d.refused_minions().to_vec(),
                                })
                                .await;
                        }
                        for id in d.refused_minions() {
                            let ret = SaltReturn {
                                id: id.clone(),
                                jid: job.jid.clone(),
                                fun: job.fun.clone(),
                                fun_args: job.arg.clone(),
                                ret: Value::String(d.to_string()),
                                retcode: crate::job::RETCODE_UNAVAILABLE,
                                success: false,
                                user: job.user.clone(),
                                schedule: None,
                            };
                            if returns.send(ret).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            },
            Err(e) => {
                metrics::counter!(telemetry::MASTER_REJECTED, "reason" => "bad_target")
                    .increment(1);
                debug!(jid = %job.jid, error = %e, "Publication with an unusable target.");
            }
        }
    }
    announcer.abort();
}

/// Why a publication cannot become a job.
#[derive(Debug, thiserror::Error)]
enum BadPublication {
    #[error("target type {tgt_type:?}: {source}")]
    TargetType {
        tgt_type: String,
        #[source]
        source: crate::job::UnknownTargetType,
    },
    #[error("target {0} is neither a string nor a list")]
    Target(Value),
}

fn to_request(job: &PublishedJob) -> Result<JobRequest, BadPublication> {
    let tgt_type: TargetType =
        job.tgt_type
            .parse()
            .map_err(|source| BadPublication::TargetType {
                tgt_type: job.tgt_type.clone(),
                source,
            })?;
    let tgt = match &job.tgt {
        Value::String(s) => Tgt::Expr(s.clone()),
        Value::Array(a) => Tgt::List(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        other => return Err(BadPublication::Target(other.clone())),
    };
    Ok(JobRequest {
        tgt,
        tgt_type,
        fun: job.fun.clone(),
        arg: job.arg.clone(),
        kwarg: job.kwarg.clone(),
        batch: None,
        timeout: None,
        jid: Some(Jid(job.jid.clone())),
    })
}

/// Keeps the link's set of ids equal to the registry's and tells it whose grains
/// changed: every change of the registry is diffed (by grains pointer, then by
/// content), so only new devices and real grains changes are sent.
async fn announce(fleet: Fleet, commands: mpsc::Sender<LinkCommand>) {
    let mut sent: HashMap<String, Arc<Value>> = HashMap::new();
    let mut seen_version = u64::MAX;
    loop {
        let reg = &fleet.registry;
        reg.wait_for(|r| r.version() != seen_version).await;
        // Coalesce: thousands of devices coming up together are one rescan, not
        // thousands.
        tokio::time::sleep(ANNOUNCE_COALESCE).await;
        seen_version = reg.version();
        let mut current: HashMap<String, Arc<Value>> = HashMap::with_capacity(reg.len());
        for e in reg.iter() {
            current.insert(e.key().to_string(), e.grains.clone());
        }
        for (id, grains) in &current {
            // A periodic grains refresh makes a new value that is often equal.
            let changed = sent
                .get(id)
                .is_none_or(|g| !Arc::ptr_eq(g, grains) && g != grains);
            if changed {
                let cmd = LinkCommand::Upsert { id: id.clone() };
                if commands.send(cmd).await.is_err() {
                    return;
                }
            }
        }
        for id in sent.keys() {
            if !current.contains_key(id)
                && commands
                    .send(LinkCommand::Remove { id: id.clone() })
                    .await
                    .is_err()
            {
                return;
            }
        }
        sent = current;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    use crate::inventory::Inventory;

    /// A publication for a function outside `fleet.allowed_functions` still gets one
    /// return per targeted device (the master waits for each), saying why.
    #[actix_rt::test]
    async fn a_refused_publication_answers_every_targeted_device() {
        let cfg = crate::config::FleetConfig {
            allowed_functions: vec!["test.*".into()],
            arbiters: 1,
            ..Default::default()
        };
        let inv = Inventory::parse(
            "[[device]]\nid = \"d1\"\nproxytype = \"dummy\"\n\
             [[device]]\nid = \"d2\"\nproxytype = \"dummy\"\n",
            Path::new("<bridge>"),
        )
        .unwrap();
        let fleet = Fleet::start(cfg, inv).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), fleet.settled())
            .await
            .unwrap();
        let (cmd_tx, _cmd_rx) = mpsc::channel(16);
        let (job_tx, job_rx) = mpsc::channel(4);
        let (ret_tx, mut ret_rx) = mpsc::channel(16);
        let bridge = tokio::spawn(run(cmd_tx, job_rx, ret_tx, fleet.clone(), false));
        let job = |fun: &str| PublishedJob {
            jid: "20261125000000000001".into(),
            tgt: Value::String("*".into()),
            tgt_type: "glob".into(),
            fun: fun.into(),
            arg: vec![Value::String("rm -rf /".into())],
            kwarg: Default::default(),
            user: None,
        };
        job_tx.send(job("cmd.run")).await.unwrap();
        let mut got = Vec::new();
        for _ in 0..2 {
            let r = tokio::time::timeout(Duration::from_secs(10), ret_rx.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(r);
        }
        got.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(got[0].id, "d1");
        assert_eq!(got[1].id, "d2");
        for r in &got {
            assert!(!r.success);
            assert_eq!(r.retcode, crate::job::RETCODE_UNAVAILABLE);
            assert_eq!(r.fun, "cmd.run");
            let msg = r.ret.as_str().unwrap();
            assert!(msg.contains("\"cmd.run\" is not allowed"), "{msg}");
        }
        // An allowed function still runs.
        job_tx.send(job("test.ping")).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), ret_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(r.success, "{r:?}");
        drop(job_tx);
        let _ = tokio::time::timeout(Duration::from_secs(5), bridge).await;
        fleet.shutdown(Duration::from_secs(1)).await;
    }
}
