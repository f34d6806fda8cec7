//! The `schedule` module: `schedule.list`, `add`, `delete`, `run_job`,
//! `enable_job` and `disable_job`, with the returns and comments of Salt's
//! `salt/modules/schedule.py`. Jobs added here are saved per device (Salt's
//! `_schedule.conf`); pillar jobs are read-only, as in Salt. The fleet's scheduler
//! ([`crate::fleet::scheduler`]) runs them.

use serde_json::{Map, Value};

use super::{ArgReader, Call, FunctionError, Output};
use crate::events::FleetEvent;
use crate::minion_state::Doc;
use crate::schedule;

/// The item keys `schedule.list` shows (Salt's `SCHEDULE_CONF`).
const SHOWN: &[&str] = &[
    "name",
    "maxrunning",
    "function",
    "splay",
    "range",
    "when",
    "once",
    "once_fmt",
    "returner",
    "jid_include",
    "args",
    "kwargs",
    "seconds",
    "minutes",
    "hours",
    "days",
    "enabled",
    "return_job",
    "metadata",
    "cron",
    "until",
    "after",
    "return_config",
    "return_kwargs",
    "run_on_start",
    "skip_during_range",
    "run_after_skip_range",
];

pub(super) fn run(name: &str, call: &Call) -> Result<Output, FunctionError> {
    let args = ArgReader::new(call);
    let saved = call.minions.get(&call.id, Doc::Schedule);
    let all = schedule::jobs(&call.pillar, &saved);
    let kwargs: Map<String, Value> = call
        .job
        .args
        .kwarg
        .iter()
        .filter(|(k, _)| !k.starts_with("__"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let test = args.flag(usize::MAX, "test", false)?;
    match name {
        "list" => {
            let show_all = args.flag(0, "show_all", false)?;
            let show_disabled = args.flag(1, "show_disabled", true)?;
            let return_yaml = args.flag(3, "return_yaml", true)?;
            let mut out = Map::new();
            for (job, item) in &all {
                if job.starts_with("__") && !show_all {
                    continue;
                }
                let Value::Object(item) = item else {
                    continue;
                };
                let mut shown: Map<String, Value> = item
                    .iter()
                    .filter(|(k, v)| SHOWN.contains(&k.as_str()) && !v.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let enabled = shown.entry("enabled").or_insert(Value::Bool(true));
                if *enabled == Value::Bool(false) && !show_disabled {
                    continue;
                }
                if return_yaml {
                    shown.insert("saved".into(), Value::Bool(saved.contains_key(job)));
                }
                out.insert(job.clone(), Value::Object(shown));
            }
            if !return_yaml {
                return Ok(Value::Object(out).into());
            }
            let mut doc = Map::new();
            doc.insert("schedule".into(), Value::Object(out));
            let text =
                yaml_serde::to_string(&Value::Object(doc)).map_err(|e| FunctionError::Raised {
                    class: "CommandExecutionError",
                    message: e.to_string(),
                })?;
            Ok(Value::String(text).into())
        }
        "add" => {
            let job = args.string(0, "name")?;
            if all.contains_key(&job) {
                return Ok(result(
                    format!("Job {job} already exists in schedule."),
                    false,
                    Some(Map::new()),
                ));
            }
            let item = match schedule::build_item(&job, &kwargs) {
                Ok(i) => i,
                Err(why) if why.starts_with("KeyError") => {
                    return Err(FunctionError::Raised {
                        class: "KeyError",
                        message: "'function'".into(),
                    })
                }
                Err(why) => return Ok(result(why, false, None)),
            };
            if test {
                return Ok(result(
                    format!("Job: {job} would be added to schedule."),
                    true,
                    Some(Map::new()),
                ));
            }
            let mut next = (*saved).clone();
            next.insert(job.clone(), Value::Object(item));
            save(call, next)?;
            Ok(result(
                format!("Added job: {job} to schedule."),
                true,
                Some(changes(&job, "added")),
            ))
        }
        "delete" => {
            let job = args.string(0, "name")?;
            if test {
                return Ok(result(
                    format!("Job: {job} would be deleted from schedule."),
                    true,
                    Some(Map::new()),
                ));
            }
            if saved.contains_key(&job) {
                let mut next = (*saved).clone();
                next.remove(&job);
                save(call, next)?;
                return Ok(result(
                    format!("Deleted Job {job} from schedule."),
                    true,
                    Some(changes(&job, "removed")),
                ));
            }
            if all.contains_key(&job) {
                // A pillar job: the pillar owns it.
                return Ok(result(
                    format!("Failed to delete job {job} from schedule."),
                    false,
                    Some(Map::new()),
                ));
            }
            Ok(result(
                format!("Job {job} does not exist."),
                false,
                Some(Map::new()),
            ))
        }
        "run_job" => {
            let job = args.string(0, "name")?;
            let force = args.flag(1, "force", false)?;
            let Some(item) = all.get(&job) else {
                return Ok(result(format!("Job {job} does not exist."), false, None));
            };
            if item.get("enabled") == Some(&Value::Bool(false)) && !force {
                return Ok(result(format!("Job {job} is disabled."), true, None));
            }
            let sent = call.events.send(FleetEvent::RunSchedule {
                id: call.id.clone(),
                name: job.clone(),
            });
            Ok(if sent {
                result(format!("Scheduling Job {job} on minion."), true, None)
            } else {
                result(format!("Failed to run job {job} on minion."), false, None)
            })
        }
        "enable_job" | "disable_job" => {
            let job = args.string(0, "name")?;
            let enable = name == "enable_job";
            let verb = if enable { "enable" } else { "disable" };
            if test {
                return Ok(result(
                    format!("Job: {job} would be {verb}d in schedule."),
                    true,
                    Some(Map::new()),
                ));
            }
            let Some(Value::Object(item)) = saved.get(&job) else {
                let comment = if all.contains_key(&job) {
                    format!("Failed to {verb} job {job} in schedule.")
                } else {
                    format!("Job {job} does not exist.")
                };
                return Ok(result(comment, false, Some(Map::new())));
            };
            let mut item = item.clone();
            item.insert("enabled".into(), Value::Bool(enable));
            let mut next = (*saved).clone();
            next.insert(job.clone(), Value::Object(item));
            save(call, next)?;
            let past = if enable { "Enabled" } else { "Disabled" };
            Ok(result(
                format!("{past} Job {job} in schedule."),
                true,
                Some(changes(&job, &format!("{verb}d"))),
            ))
        }
        _ => Err(FunctionError::NotAvailable(format!("schedule.{name}"))),
    }
}

fn changes(job: &str, what: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(job.to_owned(), Value::String(what.to_owned()));
    m
}

/// Salt's `{"comment", "result"[, "changes"]}`.
fn result(comment: String, ok: bool, changes: Option<Map<String, Value>>) -> Output {
    let mut m = Map::new();
    m.insert("comment".into(), Value::String(comment));
    m.insert("result".into(), Value::Bool(ok));
    if let Some(c) = changes {
        m.insert("changes".into(), Value::Object(c));
    }
    let mut out = Output::from(Value::Object(m));
    if !ok {
        out.retcode = 1;
    }
    out
}

fn save(call: &Call, schedule: Map<String, Value>) -> Result<(), FunctionError> {
    call.minions
        .set(&call.id, Doc::Schedule, schedule)
        .map_err(|e| FunctionError::Raised {
            class: "CommandExecutionError",
            message: e.to_string(),
        })
}
