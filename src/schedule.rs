//! A device's Salt schedule: the `schedule:` dict of its pillar, overridden per job
//! name by the jobs added with `schedule.add` (saved per device), plus Salt's hidden
//! `__mine_interval` job when the pillar has `mine_functions`. Items are read the
//! way Salt's `salt/utils/schedule.py` reads them; what Drover cannot run (`when`,
//! `cron`, `once`, `range`) is refused by name.

use std::time::Duration;

use serde_json::{Map, Value};

/// Top-level keys of a schedule that are settings, not jobs.
pub const GLOBAL_KEYS: [&str; 4] = ["enabled", "skip_function", "skip_during_range", "splay"];

/// Salt's default `mine_interval`, in minutes.
const MINE_INTERVAL_MINUTES: u64 = 60;

/// Every job of a device: pillar jobs, then saved ones over them (Salt's minion
/// config wins over pillar), then `__mine_interval`.
pub fn jobs(pillar: &Value, saved: &Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(Value::Object(p)) = pillar.get("schedule") {
        for (k, v) in p {
            if !GLOBAL_KEYS.contains(&k.as_str()) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    for (k, v) in saved {
        out.insert(k.clone(), v.clone());
    }
    if pillar.get("mine_functions").is_some_and(|m| !m.is_null()) {
        let minutes = pillar
            .get("mine_interval")
            .and_then(Value::as_u64)
            .unwrap_or(MINE_INTERVAL_MINUTES);
        let mut item = Map::new();
        item.insert("function".into(), Value::from("mine.update"));
        item.insert("minutes".into(), Value::from(minutes));
        item.insert("jid_include".into(), Value::Bool(true));
        item.insert("maxrunning".into(), Value::from(2));
        item.insert("run_on_start".into(), Value::Bool(true));
        item.insert("return_job".into(), Value::Bool(false));
        out.insert("__mine_interval".into(), Value::Object(item));
    }
    out
}

/// Whether the pillar's schedule is switched off as a whole (`enabled: False`).
pub fn globally_disabled(pillar: &Value) -> bool {
    pillar
        .get("schedule")
        .and_then(|s| s.get("enabled"))
        .is_some_and(is_false)
}

fn is_false(v: &Value) -> bool {
    matches!(v, Value::Bool(false)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("false"))
}

/// One job as the scheduler runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub function: String,
    pub args: Vec<Value>,
    pub kwargs: Map<String, Value>,
    pub every: Duration,
    pub enabled: bool,
    pub run_on_start: bool,
    /// Up to this many seconds added at random to each run.
    pub splay: u64,
    pub return_job: bool,
    pub maxrunning: u64,
}

impl Item {
    /// The item, or why it cannot run (named keys, no values).
    pub fn parse(item: &Value) -> Result<Item, String> {
        let Value::Object(m) = item else {
            return Err("a schedule item must be a dict".into());
        };
        let function = ["function", "func", "fun"]
            .iter()
            .find_map(|k| m.get(*k).and_then(Value::as_str))
            .ok_or("no function")?
            .to_owned();
        for k in ["when", "cron", "once", "range"] {
            if m.contains_key(k) {
                return Err(format!("{k:?} schedules are not supported by Drover"));
            }
        }
        let unit = |k: &str, secs: u64| -> Result<u64, String> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    .map(|n| n.saturating_mul(secs))
                    .ok_or_else(|| format!("{k} must be a number")),
            }
        };
        let secs = unit("seconds", 1)?
            .saturating_add(unit("minutes", 60)?)
            .saturating_add(unit("hours", 3600)?)
            .saturating_add(unit("days", 86400)?);
        if secs == 0 {
            return Err("no seconds, minutes, hours or days".into());
        }
        let args = match m.get("args").or_else(|| m.get("job_args")) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(v) => vec![v.clone()],
        };
        let kwargs = match m.get("kwargs").or_else(|| m.get("job_kwargs")) {
            Some(Value::Object(k)) => k.clone(),
            _ => Map::new(),
        };
        let flag = |k: &str, default: bool| match m.get(k) {
            None | Some(Value::Null) => default,
            Some(v) => !is_false(v),
        };
        Ok(Item {
            function,
            args,
            kwargs,
            every: Duration::from_secs(secs),
            enabled: flag("enabled", true),
            run_on_start: flag("run_on_start", false),
            splay: m.get("splay").and_then(Value::as_u64).unwrap_or(0),
            return_job: flag("return_job", true),
            maxrunning: m
                .get("maxrunning")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1),
        })
    }
}

/// Salt's `build_schedule_item` for `schedule.add`: the item (keys sorted, as
/// `schedule.list` prints them), or Salt's message for a bad `job_args`/`job_kwargs`.
pub fn build_item(name: &str, kwargs: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut item = Map::new();
    let function = kwargs
        .get("function")
        .cloned()
        .ok_or_else(|| "KeyError: 'function'".to_owned())?;
    item.insert("function".into(), function);
    for k in [
        "seconds",
        "minutes",
        "hours",
        "days",
        "return_job",
        "metadata",
    ] {
        if let Some(v) = kwargs.get(k).filter(|v| !v.is_null()) {
            item.insert(k.into(), v.clone());
        }
    }
    if let Some(a) = kwargs.get("job_args") {
        if !a.is_array() {
            return Err("job_args is not a list. please correct and try again.".into());
        }
        item.insert("args".into(), a.clone());
    }
    if let Some(k) = kwargs.get("job_kwargs") {
        if !k.is_object() {
            return Err("job_kwargs is not a dict. please correct and try again.".into());
        }
        item.insert("kwargs".into(), k.clone());
    }
    item.insert(
        "maxrunning".into(),
        kwargs.get("maxrunning").cloned().unwrap_or(Value::from(1)),
    );
    item.insert(
        "name".into(),
        kwargs
            .get("name")
            .cloned()
            .unwrap_or_else(|| Value::from(name)),
    );
    item.insert(
        "enabled".into(),
        kwargs.get("enabled").cloned().unwrap_or(Value::Bool(true)),
    );
    item.insert(
        "jid_include".into(),
        kwargs
            .get("jid_include")
            .cloned()
            .unwrap_or(Value::Bool(true)),
    );
    for k in [
        "splay",
        "range",
        "when",
        "once",
        "once_fmt",
        "cron",
        "returner",
        "after",
        "return_config",
        "return_kwargs",
        "until",
        "run_on_start",
        "skip_during_range",
    ] {
        if let Some(v) = kwargs.get(k).filter(|v| !v.is_null()) {
            item.insert(k.into(), v.clone());
        }
    }
    Ok(item)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn saved_jobs_win_over_pillar_and_mine_adds_its_job() {
        let pillar = json!({
            "schedule": {"enabled": true, "a": {"function": "test.ping", "seconds": 2}, "b": {"function": "test.true", "minutes": 1}},
            "mine_functions": {"grains.items": []},
            "mine_interval": 5,
        });
        let saved = json!({"b": {"function": "test.false", "seconds": 7}});
        let jobs = jobs(&pillar, saved.as_object().unwrap());
        assert_eq!(jobs.len(), 3, "{jobs:?}");
        assert_eq!(jobs["b"]["function"], json!("test.false"));
        let mine = Item::parse(&jobs["__mine_interval"]).unwrap();
        assert_eq!(mine.every, Duration::from_secs(300));
        assert!(mine.run_on_start && !mine.return_job);
        let a = Item::parse(&jobs["a"]).unwrap();
        assert_eq!(
            (a.function.as_str(), a.every),
            ("test.ping", Duration::from_secs(2))
        );
        assert!(!globally_disabled(&pillar));
    }

    #[test]
    fn unrunnable_items_say_why() {
        assert!(Item::parse(&json!({"function": "test.ping"})).is_err());
        assert!(Item::parse(&json!({"seconds": 3})).is_err());
        let e = Item::parse(&json!({"function": "test.ping", "cron": "* * * * *"})).unwrap_err();
        assert!(e.contains("cron"));
        assert_eq!(
            build_item(
                "j",
                json!({"function": "test.ping", "job_args": "x"})
                    .as_object()
                    .unwrap()
            ),
            Err("job_args is not a list. please correct and try again.".into())
        );
        let item = build_item(
            "j",
            json!({"function": "test.ping", "seconds": 60})
                .as_object()
                .unwrap(),
        )
        .unwrap();
        let keys: Vec<&str> = item.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "enabled",
                "function",
                "jid_include",
                "maxrunning",
                "name",
                "seconds"
            ]
        );
    }
}
