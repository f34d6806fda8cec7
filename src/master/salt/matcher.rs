//! Which of the link's own ids a publication targets, for the answers the link gives
//! itself (`saltutil.find_job`, `saltutil.running`, `saltutil.is_running`). It is
//! the fleet's Salt matcher (`fleet::target`), so these answers agree with which
//! devices the dispatcher runs a job on.

use crate::fleet::target::{Candidate, Target, TargetType};

/// Shell-style glob (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`).
pub fn glob(pattern: &str, text: &str) -> bool {
    crate::fleet::target::glob_matches(pattern, text)
}

/// `Some(matched)` when the target can be evaluated here, `None` when it cannot
/// (an unknown or unparsable target, or one that needs the device address).
pub fn matches(
    tgt: &serde_json::Value,
    tgt_type: &str,
    id: &str,
    grains: &serde_json::Value,
) -> Option<bool> {
    let kind: TargetType = tgt_type.parse().ok()?;
    if kind == TargetType::Ipcidr {
        return None;
    }
    let target = match tgt {
        serde_json::Value::String(s) => Target::parse(s, kind).ok()?,
        serde_json::Value::Array(ids) => {
            let ids: Vec<String> = ids
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            Target::parse_list(&ids)
        }
        _ => return None,
    };
    Some(target.matches(&Candidate {
        id,
        grains,
        address: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs() {
        assert!(glob("*", "dev-1"));
        assert!(glob("dev-?", "dev-1"));
        assert!(glob("dev-[0-9]*", "dev-12"));
        assert!(!glob("dev-[!0-9]", "dev-1"));
        assert!(glob("*-1", "a-b-1"));
        assert!(!glob("dev", "dev-1"));
        assert!(glob("test.*", "test.sleep"));
    }

    #[test]
    fn targets() {
        let g = json!({"os": "Fake", "roles": ["a", "b"], "net": {"site": "x1"}});
        assert_eq!(matches(&json!("d*"), "glob", "d1", &g), Some(true));
        assert_eq!(matches(&json!(["d1", "d2"]), "list", "d2", &g), Some(true));
        assert_eq!(matches(&json!("d1,d2"), "list", "d3", &g), Some(false));
        assert_eq!(matches(&json!("os:Fake"), "grain", "d1", &g), Some(true));
        assert_eq!(matches(&json!("roles:b"), "grain", "d1", &g), Some(true));
        assert_eq!(
            matches(&json!("net:site:x*"), "grain", "d1", &g),
            Some(true)
        );
        assert_eq!(matches(&json!("os:Other"), "grain", "d1", &g), Some(false));
        assert_eq!(
            matches(&json!("G@os:Fake and d*"), "compound", "d1", &g),
            Some(true)
        );
        assert_eq!(
            matches(&json!("G@os:Fake and not d1"), "compound", "d1", &g),
            Some(false)
        );
        assert_eq!(matches(&json!("10.0.0.0/8"), "ipcidr", "d1", &g), None);
        assert_eq!(matches(&json!("x"), "nodegroup", "d1", &g), None);
    }
}
