//! Minimal target matching used only for the link's own answers (`saltutil.find_job`,
//! `saltutil.running`): glob, list and simple grain targets. Job targeting for devices
//! is the integrator's business.

/// Shell-style glob (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`).
pub fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    glob_at(&p, &t)
}

fn glob_at(p: &[char], t: &[char]) -> bool {
    // Iterative with backtracking on the last `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ti));
                    pi += 1;
                    continue;
                }
                '?' => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                '[' => {
                    if let Some((ok, len)) = class(&p[pi..], t[ti]) {
                        if ok {
                            pi += len;
                            ti += 1;
                            continue;
                        }
                    } else if t[ti] == '[' {
                        pi += 1;
                        ti += 1;
                        continue;
                    }
                }
                c if c == t[ti] => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, st)) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Matches a `[...]` class at the start of `p`; returns (matched, pattern length).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(p.get(1), Some('!') | Some('^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == ']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if i + 2 < p.len() && p[i + 1] == '-' && p[i + 2] != ']' {
            if p[i] <= c && c <= p[i + 2] {
                matched = true;
            }
            i += 3;
        } else {
            if p[i] == c {
                matched = true;
            }
            i += 1;
        }
    }
    None
}

/// Whether `id` (with `grains`) is targeted. `None` when the target type is not
/// supported here (compound, pcre, pillar, ...).
pub fn matches(
    tgt: &serde_json::Value,
    tgt_type: &str,
    id: &str,
    grains: &serde_json::Value,
) -> Option<bool> {
    match (tgt_type, tgt) {
        ("glob", serde_json::Value::String(p)) => Some(glob(p, id)),
        ("list", serde_json::Value::Array(ids)) => Some(ids.iter().any(|v| v.as_str() == Some(id))),
        ("list", serde_json::Value::String(s)) => Some(s.split(',').any(|x| x.trim() == id)),
        ("grain", serde_json::Value::String(expr)) => Some(grain_match(expr, grains)),
        _ => None,
    }
}

fn grain_match(expr: &str, grains: &serde_json::Value) -> bool {
    let Some((path, pattern)) = expr.rsplit_once(':') else {
        return false;
    };
    let mut cur = grains;
    for part in path.split(':') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return false,
        }
    }
    value_matches(cur, pattern)
}

fn value_matches(v: &serde_json::Value, pattern: &str) -> bool {
    match v {
        serde_json::Value::String(s) => glob(&pattern.to_lowercase(), &s.to_lowercase()),
        serde_json::Value::Array(a) => a.iter().any(|x| value_matches(x, pattern)),
        serde_json::Value::Null | serde_json::Value::Object(_) => false,
        other => glob(pattern, &other.to_string()),
    }
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
        assert!(glob("", ""));
    }

    #[test]
    fn targets() {
        let g = json!({"os": "Fake", "roles": ["a", "b"], "net": {"site": "x1"}});
        assert_eq!(matches(&json!("d*"), "glob", "d1", &g), Some(true));
        assert_eq!(matches(&json!(["d1", "d2"]), "list", "d2", &g), Some(true));
        assert_eq!(matches(&json!("os:Fake"), "grain", "d1", &g), Some(true));
        assert_eq!(matches(&json!("roles:b"), "grain", "d1", &g), Some(true));
        assert_eq!(
            matches(&json!("net:site:x*"), "grain", "d1", &g),
            Some(true)
        );
        assert_eq!(matches(&json!("os:Other"), "grain", "d1", &g), Some(false));
        assert_eq!(matches(&json!("G@os:Fake"), "compound", "d1", &g), None);
    }
}
