//! Salt-compatible minion targeting.
//!
//! This module owns the master's target expressions: it parses `glob`, `pcre`,
//! `list`, `grain`, `grain_pcre`, `ipcidr` and `compound` expressions once into a
//! [`Target`] and matches that against one device at a time ([`Candidate`]).
//! Semantics follow Salt 3006's minion-side matchers (`salt/matchers/*_match.py`
//! and `salt.utils.data.subdict_match`). Expressions arrive from the network, so
//! parsing never panics, work is bounded, and everything is compiled up front.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::iter::Peekable;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::fnmatch::Pattern;
pub use crate::job::{TargetType, UnknownTargetType};

/// Salt's `DEFAULT_TARGET_DELIM`.
const DEFAULT_DELIMITER: char = ':';
/// Every split point of a grain expression can get its own compiled pattern, so
/// both its length and its number of split points are capped.
const MAX_GRAIN_EXPR_LEN: usize = 4096;
const MAX_GRAIN_POSITIONS: usize = 64;
/// CPython refuses to parse deeper nesting than ~200 as well.
const MAX_PAREN_DEPTH: usize = 100;
/// Per-regex compile and lazy-DFA budgets; a grain_pcre target may hold dozens.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Untrusted text echoed back in error messages is cut to this many chars.
const SNIPPET_CHARS: usize = 120;
/// Grain-matching work allowed per `Target::matches` call, shared by every
/// grain term of a compound. Real targets need at most a few thousand steps;
/// stacked `*:` wildcards (which Salt itself cannot finish) exhaust it.
const MAX_GRAIN_STEPS: usize = 100_000;
/// Python's `repr()` of absurdly nested grains is not worth a deep recursion.
const MAX_REPR_DEPTH: usize = 64;

/// What a target expression is matched against: one device.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub grains: &'a Value,
    pub address: Option<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("empty {kind} target expression")]
    Empty { kind: &'static str },
    #[error(transparent)]
    UnknownType(#[from] UnknownTargetType),
    #[error("invalid regular expression {pattern:?}")]
    Regex {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("invalid IP address or network {expr:?}")]
    BadCidr {
        expr: String,
        #[source]
        source: Option<ipnet::AddrParseError>,
    },
    #[error("invalid prefix length in network {expr:?}")]
    CidrPrefix {
        expr: String,
        #[source]
        source: ipnet::PrefixLenError,
    },
    #[error("invalid network {expr:?}: host bits are set (the network is {network})")]
    CidrHostBits { expr: String, network: IpNet },
    #[error("grain target {expr:?} has no {delimiter:?} between the grain and the value")]
    GrainDelimiter { expr: String, delimiter: char },
    #[error("target engine {engine}@ ({name}) is not supported: {word:?}")]
    UnsupportedEngine {
        engine: char,
        name: &'static str,
        word: String,
    },
    #[error("invalid compound target: {problem} at word {position} ({word:?})")]
    Compound {
        problem: &'static str,
        position: usize,
        word: String,
    },
    #[error("target expression too complex: {0}")]
    TooComplex(&'static str),
}

impl TargetError {
    /// Bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TargetError::Empty { .. } => "empty",
            TargetError::UnknownType(_) => "unknown_type",
            TargetError::Regex { .. } => "bad_regex",
            TargetError::BadCidr { .. }
            | TargetError::CidrPrefix { .. }
            | TargetError::CidrHostBits { .. } => "bad_cidr",
            TargetError::GrainDelimiter { .. } => "bad_grain",
            TargetError::UnsupportedEngine { .. } => "unsupported_engine",
            TargetError::Compound { .. } => "bad_compound",
            TargetError::TooComplex(_) => "too_complex",
        }
    }
}

/// A parsed target: compiled once, matched many times.
#[derive(Debug, Clone)]
pub struct Target {
    matcher: Matcher,
}

impl Target {
    /// Parses `expr` as a `kind` target. Grains use Salt's default `:` delimiter.
    pub fn parse(expr: &str, kind: TargetType) -> Result<Target, TargetError> {
        if expr.chars().all(is_py_space) {
            return Err(TargetError::Empty { kind: kind.name() });
        }
        let matcher = match kind {
            TargetType::Glob => Matcher::Glob(Pattern::new(expr)),
            TargetType::Pcre => Matcher::Pcre(compile_regex(expr, expr)?),
            TargetType::List => list_matcher(expr)?,
            TargetType::Grain => grain_matcher(expr, DEFAULT_DELIMITER, false)?,
            TargetType::GrainPcre => grain_matcher(expr, DEFAULT_DELIMITER, true)?,
            TargetType::Ipcidr => Matcher::Ip(IpTarget::parse(expr)?),
            TargetType::Compound => parse_compound(expr)?,
        };
        Ok(Target { matcher })
    }

    /// A list target given as a JSON array: exact ids, nothing trimmed.
    pub fn parse_list(ids: &[String]) -> Target {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        Target {
            matcher: Matcher::List(ids),
        }
    }

    /// A candidate whose grains exhaust the work budget never matches, even
    /// under `not`: Salt would not have finished evaluating it either.
    pub fn matches(&self, c: &Candidate<'_>) -> bool {
        let mut budget = MAX_GRAIN_STEPS;
        let hit = self.matcher.matches(c, &mut budget);
        hit && budget > 0
    }

    /// For a pure list target, the ids (lets callers skip a scan of all devices).
    /// Sorted and de-duplicated; `Some` only when matching is exactly membership.
    pub fn as_list(&self) -> Option<&[String]> {
        match &self.matcher {
            Matcher::List(ids) => Some(ids),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Glob(Pattern),
    Pcre(Regex),
    /// Sorted and de-duplicated, for binary search.
    List(Vec<String>),
    Grain(Box<GrainExpr>),
    Ip(IpTarget),
    Compound(Box<Expr>),
}

impl Matcher {
    /// `budget`: grain steps left for this candidate.
    fn matches(&self, c: &Candidate<'_>, budget: &mut usize) -> bool {
        match self {
            Matcher::Glob(g) => g.matches(c.id),
            Matcher::Pcre(re) => matches_at_start(re, c.id),
            Matcher::List(ids) => ids.binary_search_by(|s| s.as_str().cmp(c.id)).is_ok(),
            Matcher::Grain(g) => g.matches(c.grains, budget),
            Matcher::Ip(t) => t.matches(c.address),
            Matcher::Compound(e) => e.eval(c, budget),
        }
    }
}

/// Python's `str.isspace()`, which `str.split()` and `str.strip()` use: Unicode
/// whitespace plus the ASCII file/group/record/unit separators.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

// ---------------------------------------------------------------- glob

/// Salt's fnmatch-style glob on any text (function names, for instance), with the
/// same engine the targets use.
pub use crate::fnmatch::fnmatch as glob_matches;

// ---------------------------------------------------------------- pcre

/// Compiles a Python `re` pattern. `shown` is what an error message quotes.
fn compile_regex(pattern: &str, shown: &str) -> Result<Regex, TargetError> {
    RegexBuilder::new(&python_escapes(pattern))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|source| TargetError::Regex {
            pattern: snippet(shown),
            source,
        })
}

/// Python spells end-of-text `\Z`; the regex crate spells it `\z`.
fn python_escapes(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains("\\Z") {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\\' {
            match chars.next() {
                Some('Z') => out.push('z'),
                Some(n) => out.push(n),
                None => {}
            }
        }
    }
    Cow::Owned(out)
}

/// Python `re.match`: anchored at the start, not at the end. The leftmost match
/// starts at 0 exactly when some match does.
fn matches_at_start(re: &Regex, text: &str) -> bool {
    re.find(text).is_some_and(|m| m.start() == 0)
}

// ---------------------------------------------------------------- list

/// A comma-separated list; blanks around ids are trimmed and empty items dropped.
fn list_matcher(expr: &str) -> Result<Matcher, TargetError> {
    let mut ids: Vec<String> = expr
        .split(',')
        .map(|s| s.trim_matches(is_py_space))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return Err(TargetError::Empty { kind: "list" });
    }
    ids.sort_unstable();
    ids.dedup();
    Ok(Matcher::List(ids))
}

// ---------------------------------------------------------------- ipcidr

#[derive(Debug, Clone)]
enum IpTarget {
    Addr(IpAddr),
    Net(IpNet),
}

impl IpTarget {
    /// Python `ipaddress.ip_address`, else `ip_network` (strict: no host bits;
    /// IPv4 also accepts a netmask or hostmask after the `/`).
    fn parse(expr: &str) -> Result<IpTarget, TargetError> {
        if let Ok(addr) = expr.parse::<IpAddr>() {
            return Ok(IpTarget::Addr(addr));
        }
        let bad = || TargetError::BadCidr {
            expr: snippet(expr),
            source: expr.parse::<IpNet>().err(),
        };
        let (addr, mask) = expr.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let prefix = if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
            mask.parse::<u8>().map_err(|_| bad())?
        } else {
            match (addr, mask.parse::<Ipv4Addr>()) {
                (IpAddr::V4(_), Ok(m)) => mask_prefix(u32::from(m)).ok_or_else(bad)?,
                _ => return Err(bad()),
            }
        };
        let net = IpNet::new(addr, prefix).map_err(|source| TargetError::CidrPrefix {
            expr: snippet(expr),
            source,
        })?;
        if net.network() != addr {
            return Err(TargetError::CidrHostBits {
                expr: snippet(expr),
                network: net.trunc(),
            });
        }
        Ok(IpTarget::Net(net))
    }

    fn matches(&self, addr: Option<IpAddr>) -> bool {
        // A v4-mapped IPv6 peer is the IPv4 host Salt's ipv4 grain would list.
        let Some(addr) = addr.map(|a| a.to_canonical()) else {
            return false;
        };
        match self {
            IpTarget::Addr(t) => *t == addr,
            IpTarget::Net(n) => n.contains(&addr),
        }
    }
}

/// Prefix length of a contiguous netmask, else of a contiguous hostmask.
fn mask_prefix(bits: u32) -> Option<u8> {
    let contiguous = |x: u32| x.leading_ones() + x.trailing_zeros() == 32;
    let ones = if contiguous(bits) {
        bits.leading_ones()
    } else if contiguous(!bits) {
        (!bits).leading_ones()
    } else {
        return None;
    };
    u8::try_from(ones).ok()
}

// ---------------------------------------------------------------- grains

fn grain_matcher(expr: &str, delim: char, regex: bool) -> Result<Matcher, TargetError> {
    Ok(Matcher::Grain(Box::new(GrainExpr::new(
        expr, delim, regex,
    )?)))
}

/// A grain expression as `salt.utils.data.subdict_match` reads it. Salt tries
/// every split point of `key:sub:value` (deepest key first), so the value
/// pattern can be any suffix of the expression; each is compiled up front.
#[derive(Debug, Clone)]
struct GrainExpr {
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

    fn matches(&self, grains: &Value, budget: &mut usize) -> bool {
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

/// Python `str(value)`.
fn py_str(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => {
            let mut out = String::new();
            py_repr(other, &mut out, 0);
            Cow::Owned(out)
        }
    }
}

/// Python `str.lower()`, without allocating for text that is already lower case.
fn py_lower(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(s.to_ascii_lowercase())
        } else {
            Cow::Borrowed(s)
        }
    } else {
        Cow::Owned(s.to_lowercase())
    }
}

/// Python `repr()` of the JSON-equivalent Python value (dicts in serde_json's
/// key order, which may differ from Python's insertion order).
fn py_repr(value: &Value, out: &mut String, depth: usize) {
    if depth > MAX_REPR_DEPTH {
        out.push_str("...");
        return;
    }
    match value {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else if let Some(f) = n.as_f64() {
                py_float(f, out);
            }
        }
        Value::String(s) => py_repr_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr(item, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                py_repr_str(k, out);
                out.push_str(": ");
                py_repr(v, out, depth + 1);
            }
            out.push('}');
        }
    }
}

/// Python `repr(float)`: shortest round-trip digits, scientific notation
/// outside 1e-4 <= |x| < 1e16, always a `.0` or an exponent.
fn py_float(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
        return;
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        out.push_str(&sci);
        return;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if mantissa.starts_with('-') {
        out.push('-');
    }
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if (-4..16).contains(&exp) {
        if let Ok(exp) = usize::try_from(exp) {
            let int_len = exp + 1;
            match (digits.get(..int_len), digits.get(int_len..)) {
                (Some(int), Some(frac)) if !frac.is_empty() => {
                    let _ = write!(out, "{int}.{frac}");
                }
                _ => {
                    let _ = write!(out, "{digits:0<int_len$}.0");
                }
            }
        } else {
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            let _ = write!(out, "0.{}{digits}", "0".repeat(zeros));
        }
    } else {
        let (lead, rest) = digits.split_at(digits.len().min(1));
        out.push_str(lead);
        if !rest.is_empty() {
            let _ = write!(out, ".{rest}");
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    }
}

/// Python `repr(str)`; `isprintable()` is approximated without Unicode tables.
fn py_repr_str(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                let _ = if n < 0x100 {
                    write!(out, "\\x{n:02x}")
                } else if n < 0x10000 {
                    write!(out, "\\u{n:04x}")
                } else {
                    write!(out, "\\U{n:08x}")
                };
            }
        }
    }
    out.push(quote);
}

fn py_printable(c: char) -> bool {
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            '\u{ad}'
                | '\u{200b}'..='\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{feff}'
                | '\u{e000}'..='\u{f8ff}'
        ))
}

// ---------------------------------------------------------------- compound

/// Boolean structure of a compound target. Salt joins the words into a Python
/// expression and `eval`s it, so precedence is Python's: `not` > `and` > `or`.
#[derive(Debug, Clone)]
enum Expr {
    Leaf(Matcher),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    fn eval(&self, c: &Candidate<'_>, budget: &mut usize) -> bool {
        match self {
            Expr::Leaf(m) => m.matches(c, budget),
            Expr::Not(e) => !e.eval(c, budget),
            Expr::And(es) => es.iter().all(|e| e.eval(c, budget)),
            Expr::Or(es) => es.iter().any(|e| e.eval(c, budget)),
        }
    }
}

enum Tok {
    And,
    Or,
    Not,
    Open,
    Close,
    Leaf(Matcher),
}

fn compound_error(problem: &'static str, position: usize, word: &str) -> TargetError {
    TargetError::Compound {
        problem,
        position,
        word: snippet(word),
    }
}

fn parse_compound(expr: &str) -> Result<Matcher, TargetError> {
    // Python `str.split()`: operators and parentheses must be separate words.
    let words: Vec<&str> = expr.split(is_py_space).filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return Err(TargetError::Empty { kind: "compound" });
    }
    let mut toks: Vec<(Tok, usize)> = Vec::with_capacity(words.len() + 1);
    for (i, &word) in words.iter().enumerate() {
        let pos = i + 1;
        let op = match word {
            "and" => Tok::And,
            "or" => Tok::Or,
            "not" => Tok::Not,
            "(" => Tok::Open,
            ")" => Tok::Close,
            _ => {
                toks.push((Tok::Leaf(compound_leaf(word)?), pos));
                continue;
            }
        };
        match toks.last() {
            None if !matches!(op, Tok::Not | Tok::Open) => {
                return Err(compound_error(
                    "expression starts with an operator",
                    pos,
                    word,
                ));
            }
            Some((Tok::Open, _)) if matches!(op, Tok::And | Tok::Or) => {
                return Err(compound_error("binary operator right after '('", pos, word));
            }
            // Salt turns `a not b` into `a and not b`.
            Some((last, _))
                if matches!(op, Tok::Not) && !matches!(last, Tok::And | Tok::Or | Tok::Open) =>
            {
                toks.push((Tok::And, pos));
            }
            _ => {}
        }
        toks.push((op, pos));
    }
    let mut parser = Parser {
        toks: toks.into_iter().peekable(),
        words: &words,
        depth: 0,
    };
    let tree = parser.or()?;
    match parser.toks.next() {
        None => {}
        Some((Tok::Close, pos)) => return Err(parser.error("unbalanced ')'", pos)),
        Some((_, pos)) => return Err(parser.error("missing operator between operands", pos)),
    }
    Ok(match tree {
        Expr::Leaf(m) => m,
        tree => Matcher::Compound(Box::new(tree)),
    })
}

/// Salt's `TARGET_REX`: `X@pattern`, or `Xd@pattern` with a one-character
/// delimiter for G/P/I/J; anything else (including `X@` alone) is a glob.
fn split_engine(word: &str) -> Option<(char, Option<char>, &str)> {
    let mut chars = word.chars();
    let engine = chars.next().filter(|e| "GPIJLNSER".contains(*e))?;
    let rest = chars.as_str();
    if "GPIJ".contains(engine) {
        let mut r = rest.chars();
        if let (Some(delim), Some('@')) = (r.next(), r.next()) {
            if !r.as_str().is_empty() {
                return Some((engine, Some(delim), r.as_str()));
            }
        }
    }
    let pattern = rest.strip_prefix('@').filter(|p| !p.is_empty())?;
    Some((engine, None, pattern))
}

fn compound_leaf(word: &str) -> Result<Matcher, TargetError> {
    let Some((engine, delim, pattern)) = split_engine(word) else {
        return Ok(Matcher::Glob(Pattern::new(word)));
    };
    let unsupported = |name| TargetError::UnsupportedEngine {
        engine,
        name,
        word: snippet(word),
    };
    match engine {
        'G' => grain_matcher(pattern, delim.unwrap_or(DEFAULT_DELIMITER), false),
        'P' => grain_matcher(pattern, delim.unwrap_or(DEFAULT_DELIMITER), true),
        'L' => list_matcher(pattern),
        'S' => Ok(Matcher::Ip(IpTarget::parse(pattern)?)),
        'E' => Ok(Matcher::Pcre(compile_regex(pattern, pattern)?)),
        'I' => Err(unsupported("pillar")),
        'J' => Err(unsupported("pillar_pcre")),
        'N' => Err(unsupported("nodegroup")),
        _ => Err(unsupported("range")),
    }
}

/// Recursive descent over Python's `or` / `and` / `not` / atom grammar.
struct Parser<'w> {
    toks: Peekable<std::vec::IntoIter<(Tok, usize)>>,
    words: &'w [&'w str],
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, problem: &'static str, pos: usize) -> TargetError {
        let word = pos
            .checked_sub(1)
            .and_then(|i| self.words.get(i))
            .copied()
            .unwrap_or_default();
        compound_error(problem, pos, word)
    }

    fn next_is(&mut self, f: fn(&Tok) -> bool) -> bool {
        self.toks.peek().is_some_and(|(t, _)| f(t))
    }

    fn enter(&mut self) -> Result<(), TargetError> {
        self.depth += 1;
        if self.depth > MAX_PAREN_DEPTH {
            return Err(TargetError::TooComplex(
                "parentheses nested deeper than 100",
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, TargetError> {
        let first = self.and()?;
        if !self.next_is(|t| matches!(t, Tok::Or)) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.next_is(|t| matches!(t, Tok::Or)) {
            self.toks.next();
            terms.push(self.and()?);
        }
        Ok(Expr::Or(terms))
    }

    fn and(&mut self) -> Result<Expr, TargetError> {
        let first = self.not()?;
        if !self.next_is(|t| matches!(t, Tok::And)) {
            return Ok(first);
        }
        let mut terms = vec![first];
        while self.next_is(|t| matches!(t, Tok::And)) {
            self.toks.next();
            terms.push(self.not()?);
        }
        Ok(Expr::And(terms))
    }

    fn not(&mut self) -> Result<Expr, TargetError> {
        if !self.next_is(|t| matches!(t, Tok::Not)) {
            return self.atom();
        }
        self.toks.next();
        self.enter()?;
        let inner = self.not()?;
        self.depth -= 1;
        Ok(Expr::Not(Box::new(inner)))
    }

    fn atom(&mut self) -> Result<Expr, TargetError> {
        match self.toks.next() {
            Some((Tok::Leaf(m), _)) => Ok(Expr::Leaf(m)),
            Some((Tok::Open, pos)) => {
                // Python would evaluate `( )` to an empty tuple; that is never meant.
                if self.next_is(|t| matches!(t, Tok::Close)) {
                    return Err(self.error("empty parentheses", pos));
                }
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.toks.next() {
                    Some((Tok::Close, _)) => Ok(inner),
                    Some((_, p)) => Err(self.error("missing operator between operands", p)),
                    None => Err(self.error("'(' is never closed", pos)),
                }
            }
            Some((Tok::Close, pos)) => Err(self.error("')' where an operand was expected", pos)),
            Some((_, pos)) => Err(self.error("operator where an operand was expected", pos)),
            None => Err(self.error("expression ends with an operator", self.words.len())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn grains() -> Value {
        json!({
            "os": "RestExampleOS",
            "os_family": "Cisco",
            "roles": ["core", "edge"],
            "hwaddr": "00:11:22:33:44:55",
            "vendor": {"name": "Arista", "model": {"series": "7050"}},
            "num": 42,
            "float": 1.5,
            "big": 1e16,
            "enabled": true,
            "nothing": null,
            "interfaces": [{"name": "eth0", "speed": 1000}, {"name": "eth1"}],
            "empty": {},
            "nested_list": [["a", "b"]],
            "a:b": "colon-key",
            "Mixed": "X",
            "it's": "q"
        })
    }

    fn check(kind: TargetType, cases: &[(&str, &str, bool)]) {
        let g = grains();
        for &(expr, id, want) in cases {
            let t = Target::parse(expr, kind)
                .unwrap_or_else(|e| panic!("{kind:?} {expr:?} failed to parse: {e}"));
            let c = Candidate {
                id,
                grains: &g,
                address: "10.1.2.3".parse().ok(),
            };
            assert_eq!(t.matches(&c), want, "{kind:?} {expr:?} against {id:?}");
        }
    }

    #[test]
    fn glob() {
        check(
            TargetType::Glob,
            &[
                ("web*", "web01", true),
                ("web*", "db01", false),
                ("*", "anything", true),
                ("web?", "web1", true),
                ("web?", "web12", false),
                ("WEB*", "web1", false),
                ("web[0-9]", "web5", true),
                ("web[!0-9]", "web5", false),
                ("web[!0-9]", "webx", true),
                ("*.example.com", "sw1.example.com", true),
                ("*.example.com", "sw1.example.org", false),
                ("*a*b*", "xaybz", true),
                ("*a*b", "xaybz", false),
                ("[a", "[a", true),
                ("[]]", "]", true),
                ("[]-a]", "_", true),
                ("[z-a]", "z", false),
                ("[!z-a]", "q", true),
                ("[^a]", "^", true),
                ("[^a]", "b", false),
                ("[a-]", "-", true),
                ("a\\*", "a\\xyz", true),
                ("sw-ü?", "sw-üx", true),
                ("exact", "exact", true),
                ("exact", "exactly", false),
            ],
        );
    }

    #[test]
    fn pcre() {
        check(
            TargetType::Pcre,
            &[
                ("web\\d+", "web12", true),
                ("web", "web12", true),
                ("eb", "web", false),
                ("web$", "web1", false),
                ("web\\d\\Z", "web1", true),
                ("(?i)WEB", "web1", true),
                ("a|b", "bx", true),
                (".*core", "dc1-core", true),
            ],
        );
    }

    #[test]
    fn list() {
        check(
            TargetType::List,
            &[
                ("a,b, c", "c", true),
                ("a,b, c", "b", true),
                ("a,b", "ab", false),
                ("web01", "web01", true),
                (",,web01,", "web01", true),
            ],
        );
        let t = Target::parse("b, a ,b", TargetType::List).unwrap();
        assert_eq!(t.as_list(), Some(&["a".to_string(), "b".to_string()][..]));
        let t = Target::parse_list(&["x y".to_string(), "a".to_string()]);
        assert_eq!(t.as_list().map(<[String]>::len), Some(2));
        let g = json!({});
        let c = |id| Candidate {
            id,
            grains: &g,
            address: None,
        };
        assert!(t.matches(&c("x y")));
        assert!(!t.matches(&c("x")));
        assert!(Target::parse("web*", TargetType::Glob)
            .unwrap()
            .as_list()
            .is_none());
        // A compound that is only a list is still a list.
        let t = Target::parse("L@a,b", TargetType::Compound).unwrap();
        assert_eq!(t.as_list().map(<[String]>::len), Some(2));
    }

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
    fn ipcidr() {
        let g = json!({});
        let cases: &[(&str, Option<&str>, bool)] = &[
            ("10.0.0.0/8", Some("10.1.2.3"), true),
            ("10.1.2.3", Some("10.1.2.3"), true),
            ("10.1.2.3/32", Some("10.1.2.3"), true),
            ("10.1.2.4", Some("10.1.2.3"), false),
            ("192.168.0.0/16", Some("10.1.2.3"), false),
            ("10.0.0.0/255.0.0.0", Some("10.1.2.3"), true),
            ("10.0.0.0/0.255.255.255", Some("10.1.2.3"), true),
            ("0.0.0.0/0", Some("10.1.2.3"), true),
            ("10.0.0.0/8", Some("::ffff:10.1.2.3"), true),
            ("10.0.0.0/8", None, false),
            ("2001:db8::/32", Some("2001:db8::1"), true),
            ("2001:db8::1", Some("2001:db8::1"), true),
            ("2001:db8::/32", Some("2001:db9::1"), false),
            ("2001:db8::/32", Some("10.1.2.3"), false),
            ("10.0.0.0/8", Some("2001:db8::1"), false),
        ];
        for &(expr, addr, want) in cases {
            let t = Target::parse(expr, TargetType::Ipcidr).unwrap();
            let c = Candidate {
                id: "x",
                grains: &g,
                address: addr.and_then(|a| a.parse().ok()),
            };
            assert_eq!(t.matches(&c), want, "{expr:?} against {addr:?}");
        }
    }

    #[test]
    fn compound() {
        check(
            TargetType::Compound,
            &[
                ("web* and G@os:RestExampleOS", "web01", true),
                ("web* and G@os:Other", "web01", false),
                // `and` binds tighter than `or`.
                ("web* or db* and G@os:Other", "web01", true),
                ("db* and G@os:Other or web*", "web01", true),
                ("( web* or db* ) and G@os:Other", "web01", false),
                ("web* or ( db* and G@os:Other )", "web01", true),
                // `not` binds tighter than both.
                ("not db*", "web01", true),
                ("not web*", "web01", false),
                ("not web* or web*", "web01", true),
                ("not web* and web*", "web01", false),
                ("not ( db* or web* )", "web01", false),
                ("not ( db* and web* )", "web01", true),
                // Salt inserts `and` before a `not` that follows an operand.
                ("web* not db*", "web01", true),
                ("web* not web*", "web01", false),
                ("( web* ) not db*", "web01", true),
                (
                    "E@web\\d+ and L@a,web01,b and S@10.0.0.0/8 and P@os:rest.*",
                    "web01",
                    true,
                ),
                ("G@roles:edge and not G@roles:access", "web01", true),
                ("G;@vendor;name;arista", "web01", true),
                ("P;@vendor;model;series;7\\d+", "web01", true),
                ("S@192.168.0.0/16 or L@web01", "web01", true),
                // Unknown letters and a bare `X@` are plain globs in Salt 3006.
                ("T@x", "T@x", true),
                ("G@", "G@", true),
                // Parentheses must be separate words; otherwise they are glob text.
                ("(web* or db*)", "web01", false),
                ("(web* or db*)", "(web01", true),
            ],
        );
    }

    #[test]
    fn errors() {
        let cases: &[(&str, TargetType, &str)] = &[
            ("", TargetType::Glob, "empty"),
            ("   ", TargetType::Compound, "empty"),
            ("", TargetType::Pcre, "empty"),
            (" , ,", TargetType::List, "empty"),
            ("web(", TargetType::Pcre, "bad_regex"),
            ("(?<=x)y", TargetType::Pcre, "bad_regex"),
            ("os:(", TargetType::GrainPcre, "bad_regex"),
            ("os", TargetType::Grain, "bad_grain"),
            ("os", TargetType::GrainPcre, "bad_grain"),
            ("10.0.0.1/8", TargetType::Ipcidr, "bad_cidr"),
            ("10.0.0.0/33", TargetType::Ipcidr, "bad_cidr"),
            ("10.0.0.0/255.0.255.0", TargetType::Ipcidr, "bad_cidr"),
            ("010.0.0.0/8", TargetType::Ipcidr, "bad_cidr"),
            ("not-an-ip", TargetType::Ipcidr, "bad_cidr"),
            ("2001:db8::1/32", TargetType::Ipcidr, "bad_cidr"),
            ("I@role:core", TargetType::Compound, "unsupported_engine"),
            ("J@role:c.*", TargetType::Compound, "unsupported_engine"),
            (
                "web* and N@group",
                TargetType::Compound,
                "unsupported_engine",
            ),
            ("R@%cluster", TargetType::Compound, "unsupported_engine"),
            ("E@web( or a", TargetType::Compound, "bad_regex"),
            ("S@10.0.0.1/8", TargetType::Compound, "bad_cidr"),
            ("G@os", TargetType::Compound, "bad_grain"),
            ("L@,", TargetType::Compound, "empty"),
            ("and web*", TargetType::Compound, "bad_compound"),
            (") web*", TargetType::Compound, "bad_compound"),
            ("web* and", TargetType::Compound, "bad_compound"),
            ("web* or", TargetType::Compound, "bad_compound"),
            ("not", TargetType::Compound, "bad_compound"),
            ("web* and or db*", TargetType::Compound, "bad_compound"),
            ("web* and and db*", TargetType::Compound, "bad_compound"),
            ("not not web*", TargetType::Compound, "bad_compound"),
            ("( web*", TargetType::Compound, "bad_compound"),
            ("( ( web* )", TargetType::Compound, "bad_compound"),
            ("web* )", TargetType::Compound, "bad_compound"),
            ("( web* ) )", TargetType::Compound, "bad_compound"),
            ("( )", TargetType::Compound, "bad_compound"),
            ("( and web* )", TargetType::Compound, "bad_compound"),
            ("web* db*", TargetType::Compound, "bad_compound"),
            ("web* ( db* )", TargetType::Compound, "bad_compound"),
            ("( web* ) ( db* )", TargetType::Compound, "bad_compound"),
        ];
        for &(expr, kind, want) in cases {
            match Target::parse(expr, kind) {
                Ok(t) => panic!("{kind:?} {expr:?} parsed: {t:?}"),
                Err(e) => assert_eq!(e.kind(), want, "{kind:?} {expr:?}: {e}"),
            }
        }
        let deep = format!("{}web*{}", "( ".repeat(150), " )".repeat(150));
        let err = Target::parse(&deep, TargetType::Compound).unwrap_err();
        assert_eq!(err.kind(), "too_complex");
        let long = format!("a{}:b", ":x".repeat(100));
        let err = Target::parse(&long, TargetType::Grain).unwrap_err();
        assert_eq!(err.kind(), "too_complex");
    }

    #[test]
    fn error_messages_name_the_bad_part() {
        let msg = |expr: &str, kind| Target::parse(expr, kind).unwrap_err().to_string();
        assert!(msg("web* and or db*", TargetType::Compound).contains("word 3 (\"or\")"));
        assert!(msg("( web*", TargetType::Compound).contains("never closed"));
        assert!(msg("I@role:core", TargetType::Compound).contains("pillar"));
        assert!(msg("N@group", TargetType::Compound).contains("nodegroup"));
        assert!(msg("10.0.0.1/8", TargetType::Ipcidr).contains("10.0.0.0/8"));
        assert!(msg("E@x(", TargetType::Compound).contains("x("));
        let e = Target::parse("web(", TargetType::Pcre).unwrap_err();
        assert!(std::error::Error::source(&e).is_some());
        let e = Target::parse("bogus", TargetType::Ipcidr).unwrap_err();
        assert!(std::error::Error::source(&e).is_some());
        let huge = "x".repeat(10_000);
        assert!(msg(&format!("{huge}("), TargetType::Pcre).len() < 1_000);
    }

    #[test]
    fn python_value_strings() {
        let cases: &[(Value, &str)] = &[
            (json!(1.5), "1.5"),
            (json!(1.0), "1.0"),
            (json!(1e16), "1e+16"),
            (json!(1e15), "1000000000000000.0"),
            (json!(1.5e-5), "1.5e-05"),
            (json!(0.0001), "0.0001"),
            (json!(-0.0), "-0.0"),
            (json!(42), "42"),
            (json!(u64::MAX), "18446744073709551615"),
            (json!(null), "None"),
            (json!(false), "False"),
            (json!(["a", 1, true]), "['a', 1, True]"),
            (json!({"k": "it's"}), "{'k': \"it's\"}"),
            (json!(["tab\there"]), "['tab\\there']"),
        ];
        for (v, want) in cases {
            assert_eq!(py_str(v), *want, "{v}");
        }
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

    #[test]
    fn glob_over_many_ids() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("sw{i:05}.dc1")).collect();
        let t = Target::parse("sw0*[13].dc?", TargetType::Glob).unwrap();
        let g = json!({});
        let n = ids
            .iter()
            .filter(|id| {
                t.matches(&Candidate {
                    id,
                    grains: &g,
                    address: None,
                })
            })
            .count();
        assert_eq!(n, 2_000);
    }

    const KINDS: [TargetType; 7] = [
        TargetType::Glob,
        TargetType::Pcre,
        TargetType::List,
        TargetType::Grain,
        TargetType::GrainPcre,
        TargetType::Ipcidr,
        TargetType::Compound,
    ];

    fn parse_and_match_everything(expr: &str) {
        let g = grains();
        let c = Candidate {
            id: "web01",
            grains: &g,
            address: "10.1.2.3".parse().ok(),
        };
        for kind in KINDS {
            if let Ok(t) = Target::parse(expr, kind) {
                let _ = t.matches(&c);
            }
        }
    }

    fn compound_words() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            Just("and".to_string()),
            Just("or".to_string()),
            Just("not".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            "[GPIJLNSERT]?[;:]?@[a-z0-9:*.;,/()\\[\\]!-]{0,8}",
            "[a-z*?\\[\\]!]{1,6}",
        ];
        prop::collection::vec(word, 0..16).prop_map(|w| w.join(" "))
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_any_string(expr in any::<String>()) {
            parse_and_match_everything(&expr);
        }

        #[test]
        fn parse_never_panics_on_targetish_strings(
            expr in "[ a-zA-Z0-9*?!@:;,./|()\\[\\]\\\\^$+{}-]{0,48}"
        ) {
            parse_and_match_everything(&expr);
        }

        #[test]
        fn parse_never_panics_on_compound_words(expr in compound_words()) {
            parse_and_match_everything(&expr);
        }
    }
}
