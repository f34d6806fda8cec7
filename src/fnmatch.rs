//! Python's `fnmatch.fnmatchcase`, the one shell-style glob engine of the crate: Salt
//! targets, function-name globs and pillar top files all match with it. A leaf module:
//! it imports nothing from the crate, so any layer may use it.
//!
//! Semantics are CPython's `fnmatch.translate` (which `fnmatch.fnmatch` reduces to on
//! POSIX): case-sensitive, `*` and `?` also match `/` and newlines, `[...]` sets with
//! `!` negation, no backslash escapes, and a `[` without a closing `]` is a literal.

/// `fnmatch.fnmatchcase(text, pattern)`. Callers matching one pattern against many
/// texts should compile a [`Pattern`] once instead.
pub fn fnmatch(pattern: &str, text: &str) -> bool {
    Pattern::new(pattern).matches(text)
}

/// A compiled pattern: matched many times without allocating.
#[derive(Debug, Clone)]
pub struct Pattern {
    toks: Vec<GlobTok>,
    /// Set when the pattern has no wildcards: plain string equality.
    literal: Option<String>,
}

#[derive(Debug, Clone)]
enum GlobTok {
    Lit(char),
    Any,
    Star,
    Set(CharSet),
}

#[derive(Debug, Clone)]
struct CharSet {
    negated: bool,
    ranges: Vec<(char, char)>,
}

impl GlobTok {
    fn accepts(&self, c: char) -> bool {
        match self {
            GlobTok::Lit(l) => *l == c,
            GlobTok::Any | GlobTok::Star => true,
            GlobTok::Set(set) => {
                set.negated != set.ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi)
            }
        }
    }
}

impl Pattern {
    /// Compiles `pattern`; every string is a valid pattern, so this cannot fail.
    pub fn new(pattern: &str) -> Pattern {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::with_capacity(chars.len());
        let mut i = 0;
        while let Some(&c) = chars.get(i) {
            i += 1;
            match c {
                '*' => {
                    if !matches!(toks.last(), Some(GlobTok::Star)) {
                        toks.push(GlobTok::Star);
                    }
                }
                '?' => toks.push(GlobTok::Any),
                '[' => match parse_char_set(&chars, i) {
                    Some((set, next)) => {
                        toks.push(GlobTok::Set(set));
                        i = next;
                    }
                    // fnmatch treats an unclosed `[` as a literal.
                    None => toks.push(GlobTok::Lit('[')),
                },
                c => toks.push(GlobTok::Lit(c)),
            }
        }
        let literal = toks
            .iter()
            .all(|t| matches!(t, GlobTok::Lit(_)))
            .then(|| pattern.to_owned());
        Pattern { toks, literal }
    }

    /// Iterative wildcard match; backtracks only to the most recent `*`, so it
    /// is O(pattern × text) at worst and never allocates.
    pub fn matches(&self, text: &str) -> bool {
        if let Some(lit) = &self.literal {
            return lit == text;
        }
        let toks = &self.toks;
        let (mut pi, mut ti) = (0usize, 0usize);
        let mut resume: Option<(usize, usize)> = None;
        loop {
            match toks.get(pi) {
                Some(GlobTok::Star) => {
                    if pi + 1 == toks.len() {
                        return true;
                    }
                    pi += 1;
                    resume = Some((pi, ti));
                    continue;
                }
                Some(tok) => {
                    if let Some(c) = text.get(ti..).and_then(|s| s.chars().next()) {
                        if tok.accepts(c) {
                            pi += 1;
                            ti += c.len_utf8();
                            continue;
                        }
                    }
                }
                None if ti == text.len() => return true,
                None => {}
            }
            // Mismatch: let the last `*` swallow one more character.
            let Some((sp, st)) = resume else {
                return false;
            };
            let Some(c) = text.get(st..).and_then(|s| s.chars().next()) else {
                return false;
            };
            let st = st + c.len_utf8();
            resume = Some((sp, st));
            pi = sp;
            ti = st;
        }
    }
}

/// Parses a `[...]` set starting just after the `[`, the way CPython's
/// `fnmatch.translate` does: `!` negates, a leading `]` is literal, `-` between
/// two characters is a range, a reversed range matches nothing, and `^`, `\`
/// and the rest are literal. Returns the set and the index after its `]`.
fn parse_char_set(chars: &[char], start: usize) -> Option<(CharSet, usize)> {
    let mut j = start;
    let negated = chars.get(j) == Some(&'!');
    if negated {
        j += 1;
    }
    let body_start = j;
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    while chars.get(j).is_some_and(|&c| c != ']') {
        j += 1;
    }
    let body = chars.get(body_start..j)?;
    if j >= chars.len() {
        return None;
    }
    let mut ranges = Vec::with_capacity(body.len());
    let mut k = 0;
    while let Some(&lo) = body.get(k) {
        match (body.get(k + 1), body.get(k + 2)) {
            (Some('-'), Some(&hi)) => {
                if lo <= hi {
                    ranges.push((lo, hi));
                }
                k += 3;
            }
            _ => {
                ranges.push((lo, lo));
                k += 1;
            }
        }
    }
    Some((CharSet { negated, ranges }, j + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from `pillar.rs`, where the second engine lived.
    #[test]
    fn fnmatch_follows_python() {
        assert!(fnmatch("rest-*", "rest-0001"));
        assert!(fnmatch("*", ""));
        assert!(fnmatch("r?st-*1", "rest-0001"));
        assert!(!fnmatch("rest-*", "db-1"));
        assert!(fnmatch("sw[0-9]", "sw7"));
        assert!(!fnmatch("sw[!0-9]", "sw7"));
        assert!(fnmatch("sw[!0-9]", "swx"));
        assert!(fnmatch("a[]]b", "a]b"));
        assert!(fnmatch("a[b", "a[b"));
        assert!(fnmatch("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!fnmatch("*a*b*c", "xxaxxbxxcxx"));
        assert!(fnmatch("x[-a]", "x-"));
        assert!(!fnmatch("REST-*", "rest-1"));
    }
}
