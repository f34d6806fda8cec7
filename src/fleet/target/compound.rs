//! `compound` targets: the word splitter, Salt's `X@` engine prefixes and a
//! recursive-descent parser with Python's `not` > `and` > `or` precedence.

use std::iter::Peekable;

use super::cidr::IpTarget;
use super::grain::{grain_matcher, pillar_matcher};
use super::pcre::compile_regex;
use super::{list_matcher, snippet, Candidate, Matcher, TargetError, DEFAULT_DELIMITER};
use crate::fnmatch::Pattern;
use crate::pyrepr::is_py_space;

/// CPython refuses to parse deeper nesting than ~200 as well.
const MAX_PAREN_DEPTH: usize = 100;

/// Boolean structure of a compound target. Salt joins the words into a Python
/// expression and `eval`s it, so precedence is Python's: `not` > `and` > `or`.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    Leaf(Matcher),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
}

impl Expr {
    pub(super) fn eval(&self, c: &Candidate<'_>, budget: &mut usize) -> bool {
        match self {
            Expr::Leaf(m) => m.matches(c, budget),
            Expr::Not(e) => !e.eval(c, budget),
            Expr::And(es) => es.iter().all(|e| e.eval(c, budget)),
            Expr::Or(es) => es.iter().any(|e| e.eval(c, budget)),
        }
    }

    pub(super) fn uses_pillar(&self) -> bool {
        match self {
            Expr::Leaf(m) => m.uses_pillar(),
            Expr::Not(e) => e.uses_pillar(),
            Expr::And(es) | Expr::Or(es) => es.iter().any(Expr::uses_pillar),
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

pub(super) fn parse_compound(expr: &str) -> Result<Matcher, TargetError> {
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
        'I' => pillar_matcher(pattern, delim.unwrap_or(DEFAULT_DELIMITER), false),
        'J' => pillar_matcher(pattern, delim.unwrap_or(DEFAULT_DELIMITER), true),
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
    use super::super::test_support::check;
    use super::super::TargetType;

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
}
