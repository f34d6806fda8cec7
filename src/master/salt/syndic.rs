//! Syndic mode: the whole fleet behind one Salt id, as a salt-syndic presents its
//! lower master's minions to a master of masters (`order_masters: True`). One
//! `_auth` instead of one per device, and returns gathered into `_syndic_return`
//! loads (one item per job, `{device: entry}` inside) instead of one `_return`
//! request each. This module owns the shapes: the loads, the expected-minions
//! event, the syndic start events and what the syndic id answers for itself.
//! See `salt-protocol-addendum.md` §A8 for the master's side.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rmpv::Value;
use serde_json::json;

use super::envelope::{from_json, map};
use super::fleet_events::{asctime, load_data};
use super::SaltReturn;
use crate::fleet::target::{Candidate, Target, TargetType, NO_PILLAR};

/// Most returns in one `_syndic_return` load: a bound on the master's work per
/// request (it stores every return before it answers) and on the message size.
pub(super) const MAX_BATCH: usize = 500;

/// The `load` list of one `_syndic_return`: one item per (jid, function), each
/// carrying its devices' returns. Item-level `fun` and `out` apply to every entry
/// (the master copies them over each entry); entries keep their own `fun_args`,
/// `user` and schedule fields. No `sig`: the master would check it against the
/// device's key, which it does not have.
pub(super) fn return_items(syndic_id: &str, returns: Vec<SaltReturn>) -> Value {
    // A scheduled job's jid is "req": the master gives each return its own jid, so
    // grouping them by function keeps `fun` right for every entry.
    let mut items: BTreeMap<(String, String), Vec<(Value, Value)>> = BTreeMap::new();
    for r in returns {
        let mut entry = vec![
            ("return", from_json(&r.ret)),
            ("retcode", Value::from(r.retcode)),
            ("success", Value::Boolean(r.success)),
            ("fun_args", from_json(&serde_json::Value::Array(r.fun_args))),
        ];
        if let Some(u) = &r.user {
            entry.push(("user", Value::from(u.as_str())));
        }
        if let Some(s) = &r.schedule {
            entry.push(("schedule", Value::from(s.as_str())));
            entry.push(("pid", Value::from(std::process::id())));
        }
        items
            .entry((r.jid, r.fun))
            .or_default()
            .push((Value::from(r.id), map(entry)));
    }
    Value::Array(
        items
            .into_iter()
            .map(|((jid, fun), entries)| {
                let mut item = vec![
                    ("id", Value::from(syndic_id)),
                    ("jid", Value::from(jid.as_str())),
                    ("fun", Value::from(fun.as_str())),
                    ("return", Value::Map(entries)),
                ];
                // The CLI picks its outputter from `out` (`highstate` for states).
                if let Some(out) = crate::functions::outputter(&fun) {
                    item.push(("out", Value::from(out)));
                }
                map(item)
            })
            .collect(),
    )
}

/// The event that tells the master's CLI which devices a job went to: fired as
/// `syndic/<syndic id>/<jid>` (pretag `syndic/<syndic id>`), which the CLI of an
/// `order_masters` master listens for; `jid` in the data also makes the master
/// store the list in its job cache.
pub(super) fn expected_event(jid: &str, minions: &[String]) -> (String, serde_json::Value) {
    (jid.to_owned(), json!({"jid": jid, "minions": minions}))
}

/// The pretag of the syndic's events.
pub(super) fn pretag(syndic_id: &str) -> String {
    format!("syndic/{syndic_id}")
}

/// `syndic_start` (the legacy tag) and `salt/syndic/<id>/start`, as a salt-syndic
/// fires them once connected.
pub(super) fn start_events(syndic_id: &str, now: SystemTime) -> Vec<(String, serde_json::Value)> {
    let text = format!("Syndic {syndic_id} started at {}", asctime(now));
    [
        "syndic_start".to_owned(),
        format!("salt/syndic/{syndic_id}/start"),
    ]
    .into_iter()
    .map(|tag| {
        let data = load_data(syndic_id, &tag, serde_json::Value::String(text.clone()));
        (tag, data)
    })
    .collect()
}

/// Whether the master counts the syndic id among a publication's targets, so the
/// CLI waits for its return: the master matches the id's key, and has no grains or
/// pillar cached for it (it never sends `_pillar`), so grain and pillar terms do not
/// match it.
pub(super) fn targets_syndic(syndic_id: &str, tgt: &serde_json::Value, tgt_type: &str) -> bool {
    let Ok(kind) = tgt_type.parse::<TargetType>() else {
        return false;
    };
    let target = match tgt {
        serde_json::Value::String(s) => match Target::parse(s, kind) {
            Ok(t) => t,
            Err(_) => return false,
        },
        serde_json::Value::Array(ids) => Target::parse_list(
            &ids.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect::<Vec<_>>(),
        ),
        _ => return false,
    };
    let no_grains = serde_json::Value::Object(serde_json::Map::new());
    target.matches(&Candidate {
        id: syndic_id,
        grains: &no_grains,
        pillar: &NO_PILLAR,
        address: None,
    })
}

/// What the syndic id answers for itself, as the minion a syndic host runs beside
/// it would: `test.ping` is true; anything else is not run there (the devices run
/// it under their own ids), in Salt's shape for a function a minion does not have.
pub(super) fn own_answer(fun: &str) -> (serde_json::Value, i32, bool) {
    match fun {
        "test.ping" => (json!(true), 0, true),
        // The CLI iterates `sys.doc` returns as dicts.
        "sys.doc" => (json!({}), 0, true),
        _ => (
            json!(format!(
                "'{fun}' is not available on the Drover syndic id; its devices answer under their own ids."
            )),
            crate::job::RETCODE_UNAVAILABLE,
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::salt::envelope::to_json;

    fn ret(id: &str, jid: &str, fun: &str, v: serde_json::Value) -> SaltReturn {
        SaltReturn {
            id: id.into(),
            jid: jid.into(),
            fun: fun.into(),
            fun_args: vec![json!("a")],
            ret: v,
            retcode: 0,
            success: true,
            user: Some("root".into()),
            schedule: None,
        }
    }

    /// One item per job, every device's entry inside, in the shape the master's
    /// `_syndic_return` turns back into per-device `_return` loads.
    #[test]
    fn returns_are_grouped_per_job() {
        let items = return_items(
            "drover",
            vec![
                ret("d1", "1", "test.ping", json!(true)),
                ret("d2", "2", "state.apply", json!({})),
                ret("d3", "1", "test.ping", json!(true)),
            ],
        );
        let items = to_json(&items);
        assert_eq!(items.as_array().map(Vec::len), Some(2));
        assert_eq!(
            items[0],
            json!({
                "id": "drover", "jid": "1", "fun": "test.ping",
                "return": {
                    "d1": {"return": true, "retcode": 0, "success": true, "fun_args": ["a"], "user": "root"},
                    "d3": {"return": true, "retcode": 0, "success": true, "fun_args": ["a"], "user": "root"},
                }
            })
        );
        assert_eq!(items[1]["out"], json!("highstate"));
        assert_eq!(items[1]["return"]["d2"]["return"], json!({}));
    }

    #[test]
    fn scheduled_returns_keep_their_function() {
        let mut a = ret("d1", "req", "test.ping", json!(true));
        a.schedule = Some("job1".into());
        let b = ret("d1", "req", "grains.items", json!({}));
        let items = to_json(&return_items("s", vec![a, b]));
        assert_eq!(items.as_array().map(Vec::len), Some(2));
        let ping = items
            .as_array()
            .and_then(|a| a.iter().find(|i| i["fun"] == json!("test.ping")))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ping["return"]["d1"]["schedule"], json!("job1"));
    }

    #[test]
    fn the_syndic_id_is_targeted_as_the_master_matches_it() {
        assert!(targets_syndic("drover", &json!("*"), "glob"));
        assert!(targets_syndic("drover", &json!("dro*"), "glob"));
        assert!(!targets_syndic("drover", &json!("rest-*"), "glob"));
        assert!(targets_syndic("drover", &json!(["a", "drover"]), "list"));
        assert!(targets_syndic("drover", &json!("^dro"), "pcre"));
        // No grains cached for it on the master.
        assert!(!targets_syndic("drover", &json!("os:*"), "grain"));
        assert!(targets_syndic(
            "drover",
            &json!("* and not G@os:x"),
            "compound"
        ));
        assert!(!targets_syndic("drover", &json!("x"), "nodegroup"));
        assert!(!targets_syndic("drover", &json!(3), "glob"));
    }

    #[test]
    fn expected_and_start_events() {
        let (tag, data) = expected_event("2026", &["d1".to_owned()]);
        assert_eq!(tag, "2026");
        assert_eq!(data, json!({"jid": "2026", "minions": ["d1"]}));
        assert_eq!(pretag("s1"), "syndic/s1");
        let ev = start_events("s1", std::time::UNIX_EPOCH);
        let tags: Vec<&str> = ev.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, ["syndic_start", "salt/syndic/s1/start"]);
        assert_eq!(
            ev[1].1["data"],
            json!("Syndic s1 started at Thu Jan  1 00:00:00 1970")
        );
    }

    #[test]
    fn the_syndic_id_answers_ping_and_nothing_else() {
        assert_eq!(own_answer("test.ping"), (json!(true), 0, true));
        let (v, code, ok) = own_answer("cmd.run");
        assert!(v
            .as_str()
            .is_some_and(|s| s.starts_with("'cmd.run' is not available")));
        assert_eq!(code, crate::job::RETCODE_UNAVAILABLE);
        assert!(!ok);
    }
}
