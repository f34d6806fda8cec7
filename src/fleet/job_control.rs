//! Salt's job-control functions, answered by the dispatcher without waiting on the
//! device (which may be busy with the very job being killed):
//! `saltutil.kill_job`, `term_job`, `signal_job`, `kill_all_jobs` and
//! `term_all_jobs`, with the returns of Salt's `salt/modules/saltutil.py`. Killing a
//! job ends that device's part at once with an error return (the dispatcher still
//! gives exactly one return per device); an operation already sent to the device
//! finishes there, as a device request cannot be taken back.

use serde_json::Value;

use super::running::RunningJobs;
use crate::job::Job;

/// The functions answered here.
pub const FUNCTIONS: [&str; 5] = [
    "saltutil.kill_job",
    "saltutil.term_job",
    "saltutil.signal_job",
    "saltutil.kill_all_jobs",
    "saltutil.term_all_jobs",
];

/// The return for `job` on device `id`, or `None` when `job` is not one of these
/// functions. An argument that cannot be read is an error text, as Salt's is.
pub fn answer(job: &Job, id: &str, running: &RunningJobs) -> Option<Result<Value, String>> {
    let fun = job.fun.as_str();
    if !FUNCTIONS.contains(&fun) {
        return None;
    }
    let jid_arg = || -> Result<String, String> {
        match job.args.arg.first().or_else(|| job.args.kwarg.get("jid")) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(format!(
                "Passed invalid arguments: {fun}() missing 1 required positional argument: 'jid'"
            )),
        }
    };
    let signal = |jid: &str, sig: i64| -> String {
        if running.kill(id, jid).is_empty() {
            String::new()
        } else {
            format!(
                "Signal {sig} sent to job {jid} at pid {}",
                std::process::id()
            )
        }
    };
    Some(match fun {
        "saltutil.kill_job" => jid_arg().map(|jid| Value::String(signal(&jid, 9))),
        "saltutil.term_job" => jid_arg().map(|jid| Value::String(signal(&jid, 15))),
        "saltutil.signal_job" => jid_arg().and_then(|jid| {
            let sig = job
                .args
                .arg
                .get(1)
                .or_else(|| job.args.kwarg.get("sig"))
                .and_then(|v| v.as_i64().or_else(|| v.as_str()?.trim().parse().ok()))
                .ok_or_else(|| {
                    "Passed invalid arguments: signal_job() missing 1 required positional argument: 'sig'"
                        .to_owned()
                })?;
            Ok(Value::String(signal(&jid, sig)))
        }),
        _ => {
            let sig = if fun == "saltutil.kill_all_jobs" { 9 } else { 15 };
            let jids: Vec<String> = running
                .for_device(id)
                .into_iter()
                .map(|j| j.job.jid.0.clone())
                .filter(|j| *j != job.jid.0)
                .collect();
            Ok(Value::Array(
                jids.iter()
                    .map(|jid| Value::String(signal(jid, sig)))
                    .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
                    .collect(),
            ))
        }
    })
}
