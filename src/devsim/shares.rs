//! What both simulators share when they write an inventory and hand out faults:
//! TOML string quoting, and seeded, disjoint shares of a fleet per fault kind.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// A TOML basic string (quoted and escaped).
pub(super) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How many of `count` devices a share (0.0..=1.0) is; NaN and negatives are none.
pub(super) fn share_count(share: f64, count: usize) -> usize {
    if share.is_nan() || share <= 0.0 {
        return 0;
    }
    // The float round trip is exact for any realistic fleet size.
    (share.min(1.0) * count as f64).round() as usize
}

/// Gives each kind its share of `count` devices, disjoint and in the order listed,
/// over a shuffle drawn from `rng`; devices left over keep `none`. `on_assign` sees
/// each assignment as it is made, for kinds that draw more per-device randomness.
pub(super) fn assign_shares<F: Clone>(
    count: usize,
    rng: &mut StdRng,
    kinds: &[(f64, F)],
    none: F,
    mut on_assign: impl FnMut(usize, &F, &mut StdRng),
) -> Vec<F> {
    let mut order: Vec<usize> = (0..count).collect();
    order.shuffle(rng);
    let mut out = vec![none; count];
    let mut next = 0;
    for (share, kind) in kinds {
        let take = share_count(*share, count).min(count - next);
        for &dev in order.get(next..next + take).unwrap_or(&[]) {
            on_assign(dev, kind, rng);
            if let Some(slot) = out.get_mut(dev) {
                *slot = kind.clone();
            }
        }
        next += take;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn toml_strings_escape_quotes_and_controls() {
        assert_eq!(toml_string("a\u{1}b\n"), r#""a\u0001b\n""#);
        assert_eq!(toml_string("a\"b\\"), "\"a\\\"b\\\\\"");
        let parsed: toml::Value =
            toml::from_str(&format!("k = {}", toml_string("x\"\\\t\u{7f}y"))).expect("valid toml");
        assert_eq!(parsed["k"].as_str(), Some("x\"\\\t\u{7f}y"));
    }

    #[test]
    fn shares_are_disjoint_capped_and_seeded() {
        let kinds = [(0.5, 1u8), (0.3, 2), (0.9, 3)];
        let a = assign_shares(10, &mut StdRng::seed_from_u64(1), &kinds, 0, |_, _, _| {});
        assert_eq!(a.iter().filter(|k| **k == 1).count(), 5);
        assert_eq!(a.iter().filter(|k| **k == 2).count(), 3);
        // The last kind gets only what is left.
        assert_eq!(a.iter().filter(|k| **k == 3).count(), 2);
        assert_eq!(
            a,
            assign_shares(10, &mut StdRng::seed_from_u64(1), &kinds, 0, |_, _, _| {})
        );
        assert_ne!(
            a,
            assign_shares(10, &mut StdRng::seed_from_u64(2), &kinds, 0, |_, _, _| {})
        );
        assert_eq!(share_count(f64::NAN, 10), 0);
        assert_eq!(share_count(-1.0, 10), 0);
        assert_eq!(share_count(7.0, 10), 10);
    }
}
