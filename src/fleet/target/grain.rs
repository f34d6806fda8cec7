//! `grain` and `grain_pcre` targets (`G@`, `P@`), and `pillar`/`pillar_pcre` (`I@`,
//! `J@`): Salt's `subdict_match` walk of a device's grains or pillar, with its split
//! points, wildcards and YAML key retries, bounded by a step budget.

use std::collections::{BTreeSet, HashMap};

use regex::Regex;
use serde_json::Value;

use super::pcre::{compile_regex, matches_at_start};
use super::{snippet, Matcher, TargetError};
use crate::fnmatch::Pattern;
use crate::pyrepr::{is_py_space, py_lower, py_str};

/// Every split point of a grain expression can get its own compiled pattern, so
/// both its length and its number of split points are capped.
const MAX_GRAIN_EXPR_LEN: usize = 4096;
const MAX_GRAIN_POSITIONS: usize = 64;

pub(super) fn grain_matcher(expr: &str, delim: char, regex: bool) -> Result<Matcher, TargetError> {
    Ok(Matcher::Grain(Box::new(GrainExpr::new(
        expr, delim, regex,
    )?)))
}

/// `pillar` and `pillar_pcre` targets (`I@`, `J@`): Salt's `pillar_match` is the
/// same `subdict_match` over the pillar.
pub(super) fn pillar_matcher(expr: &str, delim: char, regex: bool) -> Result<Matcher, TargetError> {
    Ok(Matcher::Pillar(Box::new(GrainExpr::new(
        expr, delim, regex,
    )?)))
}

/// A grain expression as `salt.utils.data.subdict_match` reads it. Salt tries
/// every split point of `key:sub:value` (deepest key first), so the value
/// pattern can be any suffix of the expression; each is compiled up front.
#[derive(Debug, Clone)]
pub(super) struct GrainExpr {
    expr: String,
    delim: char,
    /// Byte offsets of every delimiter in `expr`.
    delims: Vec<usize>,
    /// Lower-cased value pattern for each suffix `expr[pos..]`, sorted by pos.
    patterns: Vec<(usize, ValuePattern)>,
}

#[derive(Debug, Clone)]
enum ValuePattern {
    Glob(Pattern),
    /// `None`: this suffix is not a valid regex; Salt logs and treats it as no match.
    Regex(Option<Regex>),
}

impl GrainExpr {
    fn new(expr: &str, delim: char, regex: bool) -> Result<GrainExpr, TargetError> {
        if expr.len() > MAX_GRAIN_EXPR_LEN {
            return Err(TargetError::TooComplex("grain expression over 4096 bytes"));
        }
        let dl = delim.len_utf8();
        let delims: Vec<usize> = expr.match_indices(delim).map(|(i, _)| i).collect();
        if delims.is_empty() {
            return Err(TargetError::GrainDelimiter {
                expr: snippet(expr),
                delimiter: delim,
            });
        }
        let too_many = TargetError::TooComplex("grain expression has more than 64 split points");
        if delims.len() > MAX_GRAIN_POSITIONS {
            return Err(too_many);
        }
        // Patterns start after a delimiter, or after `*:` that Salt strips.
        let mut positions: BTreeSet<usize> = delims.iter().map(|d| d + dl).collect();
        for start in std::iter::once(0).chain(delims.iter().map(|d| d + dl)) {
            let mut p = start;
            // A position already seen had its own chain walked (or will have).
            while expr.get(p..).is_some_and(|s| s.starts_with("*:")) && positions.insert(p + 2) {
                p += 2;
            }
            if positions.len() > MAX_GRAIN_POSITIONS {
                return Err(too_many);
            }
        }
        let mut patterns = Vec::with_capacity(positions.len());
        let mut first_err = None;
        for p in positions {
            let Some(suffix) = expr.get(p..) else {
                continue;
            };
            // subdict_match lower-cases both sides, the pattern included.
            let lowered = suffix.to_lowercase();
            let pattern = if regex {
                match compile_regex(&lowered, suffix) {
                    Ok(re) => ValuePattern::Regex(Some(re)),
                    Err(e) => {
                        first_err.get_or_insert(e);
                        ValuePattern::Regex(None)
                    }
                }
            } else {
                ValuePattern::Glob(Pattern::new(&lowered))
            };
            patterns.push((p, pattern));
        }
        let usable = patterns
            .iter()
            .any(|(_, p)| !matches!(p, ValuePattern::Regex(None)));
        if let (false, Some(e)) = (usable, first_err) {
            return Err(e);
        }
        Ok(GrainExpr {
            expr: expr.to_owned(),
            delim,
            delims,
            patterns,
        })
    }

    pub(super) fn matches(&self, grains: &Value, budget: &mut usize) -> bool {
        let mut m = GrainMatch {
            g: self,
            memo: None,
            budget: *budget,
        };
        let hit = m.subdict(grains, 0);
        *budget = m.budget;
        hit
    }

    fn pattern_at(&self, pos: usize) -> Option<&ValuePattern> {
        let i = self.patterns.binary_search_by_key(&pos, |(p, _)| *p).ok()?;
        self.patterns.get(i).map(|(_, pattern)| pattern)
    }
}

/// One evaluation of a grain expression. Salt's recursion is exponential in
/// the number of `*:` wildcards and can loop forever with a custom delimiter;
/// memoising `_dict_match` per (node, position) keeps it polynomial, a node
/// already on the stack counts as no match, and a step budget bounds the rest.
struct GrainMatch<'g> {
    g: &'g GrainExpr,
    memo: Option<HashMap<(usize, usize), bool>>,
    budget: usize,
}

impl GrainMatch<'_> {
    /// False once the budget is spent; the match then fails.
    fn spend(&mut self) -> bool {
        match self.budget.checked_sub(1) {
            Some(left) => {
                self.budget = left;
                true
            }
            None => false,
        }
    }

    /// `subdict_match(data, expr[p..])`.
    fn subdict(&mut self, data: &Value, p: usize) -> bool {
        let g = self.g;
        let first = g.delims.partition_point(|&d| d < p);
        let delims = g.delims.get(first..).unwrap_or_default();
        let dl = g.delim.len_utf8();
        // Keys are prefixes of one another, so once a prefix is missing every
        // longer key is too: find how many segments resolve before re-walking.
        let longest = delims.last().and_then(|&q| g.expr.get(p..q)).unwrap_or("");
        let mut reach = 0;
        let mut ptr = data;
        for seg in longest.split(g.delim) {
            match step(ptr, seg) {
                Some(next) => {
                    ptr = next;
                    reach += 1;
                }
                None => break,
            }
        }
        // Deepest key first: `a:b:c` tries key `a:b` = `c`, then key `a` = `b:c`.
        for (i, &q) in delims.iter().enumerate().rev() {
            if !self.spend() {
                return false;
            }
            let Some(key) = g.expr.get(p..q) else {
                continue;
            };
            let (found, value_pos) = if key == "*" {
                (Some(data), p)
            } else if i < reach {
                (traverse(data, key, g.delim), q + dl)
            } else {
                continue;
            };
            let Some(found) = found else {
                continue;
            };
            let hit = match found {
                // An empty dict is indistinguishable from "not found" in Salt.
                Value::Object(map) if map.is_empty() => false,
                Value::Object(_) => self.dict_match(found, value_pos),
                Value::Array(items) => items.iter().any(|member| {
                    (member.is_object() && self.dict_match(member, value_pos))
                        || self.value_match(member, value_pos)
                }),
                scalar => self.value_match(scalar, value_pos),
            };
            if hit {
                return true;
            }
        }
        false
    }

    /// `_dict_match(target, expr[p..])`.
    fn dict_match(&mut self, node: &Value, p: usize) -> bool {
        let key = (std::ptr::from_ref(node) as usize, p);
        if let Some(&done) = self.memo.as_ref().and_then(|m| m.get(&key)) {
            return done;
        }
        self.memo
            .get_or_insert_with(HashMap::new)
            .insert(key, false);
        let result = self.dict_match_uncached(node, p);
        if let Some(memo) = self.memo.as_mut() {
            memo.insert(key, result);
        }
        result
    }

    fn dict_match_uncached(&mut self, node: &Value, p: usize) -> bool {
        let Value::Object(map) = node else {
            return false;
        };
        if !self.spend() {
            return false;
        }
        let g = self.g;
        let Some(mut pattern) = g.expr.get(p..) else {
            return false;
        };
        // Salt hard-codes `*:` here whatever the delimiter is.
        let wildcard = pattern.starts_with("*:");
        let p = if wildcard { p + 2 } else { p };
        if wildcard {
            pattern = pattern.get(2..).unwrap_or_default();
        }
        // `*` means "the key exists"; so does naming a key of this dict.
        if pattern == "*" || map.contains_key(pattern) || self.subdict(node, p) {
            return true;
        }
        if !wildcard {
            return false;
        }
        map.values().any(|v| match v {
            Value::Object(_) => self.dict_match(v, p),
            Value::Array(items) => items.iter().any(|item| self.value_match(item, p)),
            scalar => self.value_match(scalar, p),
        })
    }

    /// `_match(target, expr[p..])`: `str()` of the value, both sides lower-cased.
    fn value_match(&mut self, value: &Value, p: usize) -> bool {
        if !self.spend() {
            return false;
        }
        let Some(pattern) = self.g.pattern_at(p) else {
            return false;
        };
        let text = py_str(value);
        let text = py_lower(&text);
        match pattern {
            ValuePattern::Glob(glob) => glob.matches(&text),
            ValuePattern::Regex(Some(re)) => matches_at_start(re, &text),
            ValuePattern::Regex(None) => false,
        }
    }
}

/// `salt.utils.data.traverse_dict_and_list`; `None` is Salt's `default`.
fn traverse<'v>(data: &'v Value, key: &str, delim: char) -> Option<&'v Value> {
    key.split(delim).try_fold(data, step)
}

/// One level of `traverse_dict_and_list`.
fn step<'v>(ptr: &'v Value, each: &str) -> Option<&'v Value> {
    match ptr {
        Value::Array(items) => match py_int(each) {
            // Not an index: the first embedded dict holding that key.
            None => items
                .iter()
                .find_map(|x| x.as_object().and_then(|m| m.get(each))),
            // Salt looks up the int in embedded dicts first; JSON keys are
            // strings, so that never hits. Negative indexes count from the end.
            Some(idx) => py_index(items, idx?),
        },
        Value::Object(map) => match map.get(each) {
            Some(v) => Some(v),
            None => map.get(yaml_string_key(each)?.as_str()),
        },
        _ => None,
    }
}

/// Python `int(s)` in base 10: `None` if it raises, `Some(None)` if the number
/// is too large to index anything. (Non-ASCII digits are not handled.)
fn py_int(s: &str) -> Option<Option<i64>> {
    let t = s.trim_matches(is_py_space);
    let (negative, digits) = match (t.strip_prefix('-'), t.strip_prefix('+')) {
        (Some(rest), _) => (true, rest),
        (_, Some(rest)) => (false, rest),
        _ => (false, t),
    };
    let valid = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !valid {
        return None;
    }
    let mut n: i64 = 0;
    for b in digits.bytes().filter(u8::is_ascii_digit) {
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(i64::from(b - b'0')))
        {
            Some(v) => n = v,
            None => return Some(None),
        }
    }
    Some(Some(if negative { -n } else { n }))
}

fn py_index(items: &[Value], idx: i64) -> Option<&Value> {
    let len = i64::try_from(items.len()).ok()?;
    let i = if idx < 0 { idx.checked_add(len)? } else { idx };
    items.get(usize::try_from(i).ok()?)
}

/// Plain scalars PyYAML resolves to a bool or null rather than a string.
const YAML_NON_STRINGS: [&str; 22] = [
    "yes", "Yes", "YES", "no", "No", "NO", "true", "True", "TRUE", "false", "False", "FALSE", "on",
    "On", "ON", "off", "Off", "OFF", "null", "Null", "NULL", "~",
];

/// When a dict key is missing Salt retries with `yamlify_arg(key)`. Grain keys
/// are strings, so only a YAML load that yields a *different string* can hit:
/// a quoted key or one with surrounding spaces. Anything YAML would turn into
/// another type, or that this cannot be sure about, gives `None`.
fn yaml_string_key(each: &str) -> Option<String> {
    let stripped = each.trim_matches(is_py_space);
    if matches!(stripped, "" | "---" | "...")
        || each == "None"
        || each.contains(['#', '\t', '\r', '\n'])
    {
        return None;
    }
    let s = each.trim_matches(' ');
    if let Some(inner) = s
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .filter(|_| s.len() >= 2)
    {
        // '' is an escaped quote; a lone ' would be a YAML error.
        let valid = !inner.replace("''", "").contains('\'');
        let unquoted = inner.replace("''", "'");
        return (valid && unquoted != each).then_some(unquoted);
    }
    if let Some(inner) = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .filter(|_| s.len() >= 2)
    {
        return (!inner.contains(['"', '\\']) && inner != each).then(|| inner.to_owned());
    }
    let plain_string = s.chars().next().is_some_and(char::is_alphabetic)
        && !s.contains(": ")
        && !s.ends_with(':')
        && !YAML_NON_STRINGS.contains(&s);
    (plain_string && s != each).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check;
    use super::super::{Candidate, Target, TargetType};
    use serde_json::{json, Value};

    #[test]
    fn grain() {
        check(
            TargetType::Grain,
            &[
                ("os:RestExampleOS", "x", true),
                ("os:restexampleos", "x", true),
                ("os:Rest*", "x", true),
                ("os:Other", "x", false),
                ("roles:edge", "x", true),
                ("roles:E*", "x", true),
                ("roles:access", "x", false),
                // The value contains the delimiter: Salt falls back to shorter keys.
                ("hwaddr:00:11:22:33:44:55", "x", true),
                ("hwaddr:00:11:*", "x", true),
                ("vendor:name:arista", "x", true),
                ("vendor:model:series:70*", "x", true),
                ("vendor:model:series:80*", "x", false),
                // Naming a key of a dict matches, whatever its value.
                ("vendor:name", "x", true),
                ("vendor:*", "x", true),
                ("vendor:nonexistent", "x", false),
                ("num:42", "x", true),
                ("num:4?", "x", true),
                ("float:1.5", "x", true),
                ("big:1e+16", "x", true),
                ("enabled:true", "x", true),
                ("enabled:True", "x", true),
                ("nothing:none", "x", true),
                ("interfaces:name:eth1", "x", true),
                ("interfaces:0:name:eth0", "x", true),
                ("interfaces:-1:name:eth1", "x", true),
                ("interfaces:5:name:eth1", "x", false),
                ("interfaces:speed:1000", "x", true),
                // An empty dict is treated as missing, even by `*`.
                ("empty:*", "x", false),
                ("nested_list:*'b'*", "x", true),
                ("*:RestExampleOS", "x", true),
                ("*:nope", "x", false),
                // Keys are case-sensitive; values are not.
                ("mixed:x", "x", false),
                ("Mixed:x", "x", true),
                // A key holding the delimiter is not reachable at the top level.
                ("a:b:colon-key", "x", false),
                // Quoted keys are retried as YAML would load them.
                ("'os':RestExampleOS", "x", true),
                (" os :RestExampleOS", "x", true),
                ("'it''s':q", "x", true),
                ("'it's':q", "x", false),
                ("missing:x", "x", false),
            ],
        );
    }

    #[test]
    fn grain_pcre() {
        check(
            TargetType::GrainPcre,
            &[
                ("os:rest.*", "x", true),
                ("os:REST.*", "x", true),
                ("os:Example", "x", false),
                ("roles:ed.e", "x", true),
                ("vendor:model:series:\\d+", "x", true),
                ("num:4\\d", "x", true),
                ("hwaddr:00:11:.*", "x", true),
                // Salt lower-cases the pattern too, so `\D` becomes `\d`.
                ("num:\\D\\D", "x", true),
                ("os:\\D", "x", false),
                // Only some split points are valid regexes; the others never match.
                ("os:(rest|x):y", "x", false),
            ],
        );
    }

    #[test]
    fn pathological_grain_expressions_stay_fast() {
        let mut g = serde_json::Map::new();
        for i in 0..20 {
            let mut inner = serde_json::Map::new();
            for j in 0..20 {
                inner.insert(format!("k{j}"), json!({"a": {"b": "c"}, "l": ["x", "y"]}));
            }
            g.insert(format!("g{i}"), Value::Object(inner));
        }
        let g = Value::Object(g);
        let expr = format!("{}nomatch", "*:".repeat(40));
        let t = Target::parse(&expr, TargetType::Grain).unwrap();
        let c = Candidate {
            id: "x",
            grains: &g,
            pillar: &g,
            address: None,
        };
        assert!(!t.matches(&c));
        // Realistic wildcard depth still matches within the budget.
        let t = Target::parse("*:*:*:*:c", TargetType::Grain).unwrap();
        assert!(t.matches(&c));
        // The budget is per candidate, not per compound term.
        let term = format!("G@{}nomatch", "*:".repeat(60));
        let many = vec![term; 200].join(" or ");
        let t = Target::parse(&many, TargetType::Compound).unwrap();
        let started = std::time::Instant::now();
        assert!(!t.matches(&c));
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        // Running out of budget is not a "false" that `not` can flip.
        let t = Target::parse(
            &format!("not G@{}nomatch", "*:".repeat(60)),
            TargetType::Compound,
        )
        .unwrap();
        assert!(!t.matches(&c));
        // A custom delimiter makes Salt's own recursion loop; here it is no match.
        let t = Target::parse("G;@*;x", TargetType::Compound).unwrap();
        assert!(!t.matches(&c));
    }
}
