//! Salt's `highstate` outputter for `drover cmd`: each state as an ID / Function /
//! Result / Comment / Started / Duration / Changes block in `__run_num__` order, then
//! the per-device summary (succeeded, changed, failed, total run time).

use std::fmt::Write;

use serde_json::{Map, Value};

/// One device's state run, as `salt` prints it.
pub(super) fn render(out: &mut String, id: &str, ret: &Map<String, Value>) {
    let _ = writeln!(out, "{id}:");
    let mut chunks: Vec<(&String, &Value)> = ret.iter().collect();
    chunks.sort_by_key(|(_, v)| v["__run_num__"].as_u64().unwrap_or(u64::MAX));
    let (mut ok, mut changed, mut failed, mut total_ms) = (0, 0, 0, 0.0);
    for (tag, v) in chunks {
        let parts: Vec<&str> = tag.split("_|-").collect();
        let (module, sid, name, fun) = match parts.as_slice() {
            [m, i, n, f] => (*m, *i, *n, *f),
            _ => (tag.as_str(), "", "", ""),
        };
        let result = match v.get("result") {
            Some(Value::Bool(true)) => "True",
            Some(Value::Bool(false)) => "False",
            _ => "None",
        };
        let changes = v.get("changes").and_then(Value::as_object);
        let has_changes = changes.is_some_and(|c| !c.is_empty());
        match v.get("result") {
            Some(Value::Bool(false)) => failed += 1,
            _ => {
                ok += 1;
                if has_changes {
                    changed += 1;
                }
            }
        }
        let ms = v["duration"].as_f64().unwrap_or(0.0);
        total_ms += ms;
        let _ = writeln!(out, "----------");
        let _ = writeln!(out, "          ID: {sid}");
        let _ = writeln!(out, "    Function: {module}.{fun}");
        if name != sid {
            let _ = writeln!(out, "        Name: {name}");
        }
        let _ = writeln!(out, "      Result: {result}");
        let comment = v["comment"].as_str().unwrap_or_default();
        for (i, line) in comment.lines().enumerate() {
            let label = if i == 0 {
                "     Comment: "
            } else {
                "              "
            };
            let _ = writeln!(out, "{label}{line}");
        }
        let _ = writeln!(
            out,
            "     Started: {}",
            v["start_time"].as_str().unwrap_or_default()
        );
        let _ = writeln!(out, "    Duration: {ms} ms");
        let _ = writeln!(out, "     Changes:");
        if let Some(c) = changes.filter(|c| !c.is_empty()) {
            super::output::nested(out, &Value::Object(c.clone()), 14);
        }
    }
    let _ = writeln!(out, "\nSummary for {id}\n------------");
    let with_changes = if changed > 0 {
        format!(" (changed={changed})")
    } else {
        String::new()
    };
    let _ = writeln!(out, "Succeeded: {ok}{with_changes}");
    let _ = writeln!(out, "Failed:    {failed}");
    let _ = writeln!(out, "------------");
    let _ = writeln!(out, "Total states run:     {}", ok + failed);
    let _ = writeln!(out, "Total run time: {:>8.3} ms", total_ms);
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn blocks_in_run_order_then_the_summary() {
        let ret = json!({
            "test_|-b_|-b_|-nop": {"result": false, "comment": "Failure!", "changes": {}, "__run_num__": 1, "duration": 1.5, "start_time": "10:00:00.000001"},
            "pkg_|-a_|-vim_|-installed": {"result": true, "comment": "installed", "changes": {"vim": {"new": "1", "old": ""}}, "__run_num__": 0, "duration": 2.0, "start_time": "10:00:00.000000"},
        });
        let mut out = String::new();
        render(&mut out, "sw-1", ret.as_object().unwrap());
        let a = out.find("ID: a").unwrap();
        let b = out.find("ID: b").unwrap();
        assert!(a < b, "{out}");
        assert!(out.contains("        Name: vim\n"), "{out}");
        assert!(
            out.contains("Succeeded: 1 (changed=1)\nFailed:    1\n"),
            "{out}"
        );
        assert!(out.contains("Total states run:     2"), "{out}");
    }
}
