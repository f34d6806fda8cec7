//! Python `re` patterns (`pcre` targets, `E@` words and grain_pcre values): the
//! translation of Python-only syntax to the regex crate, and `re.match` semantics.

use std::borrow::Cow;

use regex::{Regex, RegexBuilder};

use super::{snippet, TargetError};

/// Per-regex compile and lazy-DFA budgets; a grain_pcre target may hold dozens.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a Python `re` pattern. `shown` is what an error message quotes.
pub(super) fn compile_regex(pattern: &str, shown: &str) -> Result<Regex, TargetError> {
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
pub(super) fn matches_at_start(re: &Regex, text: &str) -> bool {
    re.find(text).is_some_and(|m| m.start() == 0)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::check;
    use super::super::TargetType;

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
}
