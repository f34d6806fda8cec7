//! Salt-compatible minion targeting.
//!
//! This module owns the master's target expressions: it parses `glob`, `pcre`,
//! `list`, `grain`, `grain_pcre`, `ipcidr` and `compound` expressions once into a
//! [`Target`] and matches that against one device at a time ([`Candidate`]).
//! Semantics follow Salt 3006's minion-side matchers (`salt/matchers/*_match.py`
//! and `salt.utils.data.subdict_match`). Expressions arrive from the network, so
//! parsing never panics, work is bounded, and everything is compiled up front.
//! `pillar` and `pillar_pcre` (`I@`, `J@`) are the grain walk over the device's
//! pillar instead of its grains, as Salt's `pillar_match` is.
//!
//! This file holds the [`Target`] type, the dispatch to one matcher per target type
//! and the `list` matcher; each other matcher has its own file. Globs are
//! [`crate::fnmatch`], the crate's one fnmatch engine.

mod cidr;
mod compound;
mod grain;
mod pcre;

use std::net::IpAddr;

use ipnet::IpNet;
use regex::Regex;
use serde_json::Value;

use crate::fnmatch::Pattern;
pub use crate::job::{TargetType, UnknownTargetType};
use crate::pyrepr::is_py_space;
use cidr::IpTarget;
use compound::{parse_compound, Expr};
use grain::{grain_matcher, pillar_matcher, GrainExpr};
use pcre::{compile_regex, matches_at_start};

/// Salt's `DEFAULT_TARGET_DELIM`.
const DEFAULT_DELIMITER: char = ':';
/// Untrusted text echoed back in error messages is cut to this many chars.
const SNIPPET_CHARS: usize = 120;
/// Grain-matching work allowed per `Target::matches` call, shared by every
/// grain term of a compound. Real targets need at most a few thousand steps;
/// stacked `*:` wildcards (which Salt itself cannot finish) exhaust it.
const MAX_GRAIN_STEPS: usize = 100_000;

/// What a target expression is matched against: one device.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a str,
    pub grains: &'a Value,
    /// The device's pillar; only read when [`Target::uses_pillar`] says so, so
    /// callers may pass [`NO_PILLAR`] for other targets.
    pub pillar: &'a Value,
    pub address: Option<IpAddr>,
}

/// What a candidate without a pillar (or not needing one) carries.
pub static NO_PILLAR: Value = Value::Null;

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
            TargetType::Pillar => pillar_matcher(expr, DEFAULT_DELIMITER, false)?,
            TargetType::PillarPcre => pillar_matcher(expr, DEFAULT_DELIMITER, true)?,
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

    /// Whether matching reads [`Candidate::pillar`]: lets callers skip fetching
    /// every device's pillar for the common targets that never look at it.
    pub fn uses_pillar(&self) -> bool {
        self.matcher.uses_pillar()
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
    /// The same walk as `Grain`, over the pillar.
    Pillar(Box<GrainExpr>),
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
            Matcher::Pillar(g) => g.matches(c.pillar, budget),
            Matcher::Ip(t) => t.matches(c.address),
            Matcher::Compound(e) => e.eval(c, budget),
        }
    }
}

impl Matcher {
    fn uses_pillar(&self) -> bool {
        match self {
            Matcher::Pillar(_) => true,
            Matcher::Compound(e) => e.uses_pillar(),
            _ => false,
        }
    }
}

fn snippet(s: &str) -> String {
    match s.char_indices().nth(SNIPPET_CHARS) {
        Some((end, _)) => format!("{}…", s.get(..end).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// Salt's fnmatch-style glob on any text (function names, for instance), with the
/// same engine the targets use.
pub use crate::fnmatch::fnmatch as glob_matches;

// The `list` matcher is small enough to live with the dispatch.

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

/// Shared by the matcher files' tests: one device's grains and a table checker.
#[cfg(test)]
mod test_support {
    use super::*;
    use serde_json::json;

    pub(super) fn grains() -> Value {
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

    /// A pillar that shares no key with [`grains`], so a hit shows which was read.
    pub(super) fn pillar() -> Value {
        json!({
            "role": "core",
            "site": {"name": "lab-1", "racks": [7, 9]},
            "vlans": {"10": "users"}
        })
    }

    pub(super) fn check(kind: TargetType, cases: &[(&str, &str, bool)]) {
        let g = grains();
        for &(expr, id, want) in cases {
            let t = Target::parse(expr, kind)
                .unwrap_or_else(|e| panic!("{kind:?} {expr:?} failed to parse: {e}"));
            let p = pillar();
            let c = Candidate {
                id,
                grains: &g,
                pillar: &p,
                address: "10.1.2.3".parse().ok(),
            };
            assert_eq!(t.matches(&c), want, "{kind:?} {expr:?} against {id:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{check, grains, pillar};
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

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
            pillar: &NO_PILLAR,
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
            ("I@role", TargetType::Compound, "bad_grain"),
            ("J@role:c(", TargetType::Compound, "bad_regex"),
            ("role", TargetType::Pillar, "bad_grain"),
            ("", TargetType::PillarPcre, "empty"),
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
    fn pillar_targets_read_the_pillar_not_the_grains() {
        check(
            TargetType::Pillar,
            &[
                ("role:core", "x", true),
                ("role:c*", "x", true),
                ("role:edge", "x", false),
                ("site:name:lab-*", "x", true),
                ("site:racks:9", "x", true),
                ("site:racks:8", "x", false),
                ("vlans:10:users", "x", true),
                // A grain is not a pillar key.
                ("os:RestExampleOS", "x", false),
            ],
        );
        check(
            TargetType::PillarPcre,
            &[
                ("role:c.re", "x", true),
                ("site:name:lab-\\d", "x", true),
                ("role:edge|core", "x", true),
                ("os:Rest.*", "x", false),
            ],
        );
        check(
            TargetType::Compound,
            &[
                ("I@role:core and G@os:RestExampleOS", "x", true),
                ("I@os:RestExampleOS", "x", false),
                ("G@role:core", "x", false),
                ("J@site:name:lab-\\d+ and not I@role:edge", "x", true),
                ("I;@site;name;lab-1", "x", true),
            ],
        );
        for (expr, kind, uses) in [
            ("role:core", TargetType::Pillar, true),
            ("role:core", TargetType::Grain, false),
            (
                "web* or ( G@a:b and not I@role:core )",
                TargetType::Compound,
                true,
            ),
            ("web* or G@a:b", TargetType::Compound, false),
        ] {
            assert_eq!(
                Target::parse(expr, kind).unwrap().uses_pillar(),
                uses,
                "{expr}"
            );
        }
        // A device with no pillar yet matches no pillar target.
        let g = grains();
        let t = Target::parse("role:*", TargetType::Pillar).unwrap();
        assert!(!t.matches(&Candidate {
            id: "x",
            grains: &g,
            pillar: &NO_PILLAR,
            address: None,
        }));
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
                    pillar: &NO_PILLAR,
                    address: None,
                })
            })
            .count();
        assert_eq!(n, 2_000);
    }

    fn parse_and_match_everything(expr: &str) {
        let g = grains();
        let p = pillar();
        let c = Candidate {
            id: "web01",
            grains: &g,
            pillar: &p,
            address: "10.1.2.3".parse().ok(),
        };
        for kind in TargetType::ALL {
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
