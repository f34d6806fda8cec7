//! The executor: runs compiled chunks in order for one device, checking each one's
//! requisites against the results so far, and builds Salt's highstate return
//! (`<state>_|-<id>_|-<name>_|-<fun>` → result, changes, comment, `__run_num__`, ...)
//! and its retcode (2 when a state failed).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::compile::{Chunk, Compiled, ReqKind};
use super::modules::{self, Ctx, StateRet};
use super::{Host, Opts};

/// A run's return and Salt's retcode for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub ret: Value,
    pub retcode: i32,
}

/// Salt's `start_time`: the time of day, `HH:MM:SS.ffffff` (UTC here).
fn time_of_day() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let s = d.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        d.subsec_micros()
    )
}

/// What the requisites say about one chunk.
enum Verdict {
    Run { watch_fired: bool },
    Fail(Vec<usize>),
    Skip(&'static str),
}

fn result_of(results: &[Option<Map<String, Value>>], i: usize) -> Option<bool> {
    results
        .get(i)
        .and_then(Option::as_ref)
        .and_then(|r| r.get("result"))
        .and_then(Value::as_bool)
}

fn changed(results: &[Option<Map<String, Value>>], i: usize) -> bool {
    results
        .get(i)
        .and_then(Option::as_ref)
        .and_then(|r| r.get("changes"))
        .is_some_and(|c| c.as_object().is_some_and(|m| !m.is_empty()))
}

fn verdict(c: &Chunk, results: &[Option<Map<String, Value>>], has_mod_watch: bool) -> Verdict {
    let failed = |t: &usize| result_of(results, *t) == Some(false);
    let mut fails = Vec::new();
    let mut onfail: Option<bool> = None;
    let mut onchanges: Option<bool> = None;
    let mut watch_fired = false;
    for (kind, targets) in &c.reqs {
        match kind {
            ReqKind::Require => fails.extend(targets.iter().filter(|t| failed(t))),
            ReqKind::RequireAny if targets.iter().all(failed) => fails.extend(targets.iter()),
            ReqKind::Watch | ReqKind::WatchAny => {
                let bad: Vec<usize> = targets.iter().copied().filter(failed).collect();
                let all = bad.len() == targets.len();
                if (*kind == ReqKind::Watch && !bad.is_empty())
                    || (*kind == ReqKind::WatchAny && all)
                {
                    fails.extend(bad);
                }
                watch_fired |= has_mod_watch && targets.iter().any(|t| changed(results, *t));
            }
            ReqKind::Onchanges | ReqKind::OnchangesAny => {
                let hit = targets.iter().any(|t| !failed(t) && changed(results, *t));
                onchanges = Some(onchanges.unwrap_or(false) || hit);
            }
            ReqKind::Onfail | ReqKind::OnfailAny => {
                let hit = targets.iter().any(|t| result_of(results, *t) != Some(true));
                onfail = Some(onfail.unwrap_or(false) || hit);
            }
            ReqKind::OnfailAll => {
                let hit = targets.iter().all(|t| result_of(results, *t) != Some(true));
                onfail = Some(onfail.unwrap_or(false) || hit);
            }
            ReqKind::RequireAny | ReqKind::Prereq => {}
        }
    }
    if !fails.is_empty() {
        fails.sort_unstable();
        fails.dedup();
        return Verdict::Fail(fails);
    }
    if onfail == Some(false) {
        return Verdict::Skip("State was not run because onfail req did not change");
    }
    if onchanges == Some(false) {
        return Verdict::Skip("State was not run because none of the onchanges reqs changed");
    }
    Verdict::Run { watch_fired }
}

fn not_run(c: &Chunk, result: bool, comment: String) -> StateRet {
    StateRet {
        name: c.name.clone(),
        result: Some(result),
        changes: Map::new(),
        comment,
        extra: Map::from_iter([("__state_ran__".to_owned(), Value::Bool(false))]),
    }
}

fn failed_reqs(chunks: &[Chunk], idx: &[usize]) -> String {
    let names: Vec<String> = idx
        .iter()
        .filter_map(|i| chunks.get(*i))
        .map(|t| format!("{}.{}", t.sls, t.id))
        .collect();
    format!("One or more requisite failed: {}", names.join(", "))
}

/// Runs every chunk; never fails as a whole: a state that cannot run is a failed
/// state in the return.
pub(crate) async fn run(host: &dyn Host, compiled: &Compiled, opts: &Opts) -> Outcome {
    let chunks = &compiled.chunks;
    let mut results: Vec<Option<Map<String, Value>>> = vec![None; chunks.len()];
    let mut out = Map::new();
    let ctx = Ctx {
        host,
        test: opts.test,
    };
    for (i, c) in chunks.iter().enumerate() {
        let started = Instant::now();
        let start_time = time_of_day();
        let mut ret = match verdict(c, &results, modules::has_mod_watch(&c.state)) {
            Verdict::Fail(idx) => not_run(c, false, failed_reqs(chunks, &idx)),
            Verdict::Skip(why) => not_run(c, true, why.to_owned()),
            Verdict::Run { watch_fired } => match prereq(&ctx, chunks, c).await {
                Some(r) => r,
                None => {
                    let mut r = modules::call(&ctx, c).await;
                    if watch_fired && r.changes.is_empty() && r.result != Some(false) {
                        r = modules::mod_watch(&ctx, c).await;
                    }
                    r
                }
            },
        };
        let stop = !opts.test && ret.result == Some(false) && (c.failhard || opts.failhard);
        let mut m = std::mem::take(&mut ret.extra);
        m.insert("name".into(), Value::String(ret.name));
        m.insert("result".into(), ret.result.map_or(Value::Null, Value::Bool));
        m.insert("changes".into(), Value::Object(ret.changes));
        m.insert("comment".into(), Value::String(ret.comment));
        m.insert("__id__".into(), Value::String(c.id.clone()));
        m.insert(
            "__sls__".into(),
            if c.sls.is_empty() {
                Value::Null
            } else {
                Value::String(c.sls.clone())
            },
        );
        m.insert("__run_num__".into(), json!(i));
        m.insert("start_time".into(), Value::String(start_time));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        m.insert("duration".into(), json!((ms * 1000.0).round() / 1000.0));
        out.insert(c.tag(), Value::Object(m.clone()));
        results[i] = Some(m);
        if stop {
            break;
        }
    }
    let retcode = retcode(chunks, &results);
    Outcome {
        ret: Value::Object(out),
        retcode,
    }
}

/// Prereq: each target runs first in test mode; a pending change lets this state run
/// (the target runs for real later), none skips it, a failure fails it.
async fn prereq(ctx: &Ctx<'_>, chunks: &[Chunk], c: &Chunk) -> Option<StateRet> {
    let targets: Vec<&Chunk> = c
        .reqs
        .iter()
        .filter(|(k, _)| *k == ReqKind::Prereq)
        .flat_map(|(_, t)| t.iter().filter_map(|i| chunks.get(*i)))
        .collect();
    if targets.is_empty() {
        return None;
    }
    let probe = Ctx {
        host: ctx.host,
        test: true,
    };
    let mut pending = false;
    for t in targets {
        let r = modules::call(&probe, t).await;
        match r.result {
            Some(false) => {
                return Some(not_run(
                    c,
                    false,
                    format!("One or more requisite failed: {}.{}", t.sls, t.id),
                ))
            }
            None => pending = true,
            Some(true) => pending |= !r.changes.is_empty(),
        }
    }
    if pending {
        None
    } else {
        Some(not_run(c, true, "No changes detected".into()))
    }
}

/// 0, or 2 when a state failed (unless an `onfail` handler for it succeeded) or
/// nothing ran at all, as `modules/state.py: _set_retcode` and `check_onfail_requisites`.
fn retcode(chunks: &[Chunk], results: &[Option<Map<String, Value>>]) -> i32 {
    if results.iter().all(Option::is_none) {
        return 2;
    }
    for (i, _) in chunks.iter().enumerate() {
        if result_of(results, i) != Some(false) {
            continue;
        }
        let handled = chunks.iter().enumerate().any(|(j, h)| {
            h.reqs.iter().any(|(k, t)| {
                matches!(k, ReqKind::Onfail | ReqKind::OnfailAny | ReqKind::OnfailAll)
                    && t.contains(&i)
            }) && result_of(results, j) == Some(true)
                && results[j].as_ref().and_then(|r| r.get("__state_ran__"))
                    != Some(&Value::Bool(false))
        });
        if !handled {
            return 2;
        }
    }
    0
}
