//! Salt's `tgt_type`: the names of the target matchers a job request may ask for. Part
//! of the job vocabulary so every layer can name a target type; the matchers
//! themselves live in `fleet::target`.

use std::fmt;

/// Untrusted text echoed back in the error is cut to this many chars.
const SNIPPET_CHARS: usize = 120;

/// Salt's `tgt_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    #[default]
    Glob,
    Pcre,
    List,
    Grain,
    GrainPcre,
    Ipcidr,
    Compound,
    Pillar,
    PillarPcre,
}

impl TargetType {
    /// Every target type, for code that must cover them all (tests, fuzzing).
    pub const ALL: [TargetType; 9] = [
        TargetType::Glob,
        TargetType::Pcre,
        TargetType::List,
        TargetType::Grain,
        TargetType::GrainPcre,
        TargetType::Ipcidr,
        TargetType::Compound,
        TargetType::Pillar,
        TargetType::PillarPcre,
    ];

    /// Salt's name for the type, as sent on the wire.
    pub fn name(self) -> &'static str {
        match self {
            TargetType::Glob => "glob",
            TargetType::Pcre => "pcre",
            TargetType::List => "list",
            TargetType::Grain => "grain",
            TargetType::GrainPcre => "grain_pcre",
            TargetType::Ipcidr => "ipcidr",
            TargetType::Compound => "compound",
            TargetType::Pillar => "pillar",
            TargetType::PillarPcre => "pillar_pcre",
        }
    }
}

impl fmt::Display for TargetType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for TargetType {
    type Err = UnknownTargetType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "glob" => TargetType::Glob,
            "pcre" => TargetType::Pcre,
            "list" => TargetType::List,
            "grain" => TargetType::Grain,
            "grain_pcre" => TargetType::GrainPcre,
            "ipcidr" => TargetType::Ipcidr,
            "compound" => TargetType::Compound,
            "pillar" => TargetType::Pillar,
            "pillar_pcre" => TargetType::PillarPcre,
            _ => return Err(UnknownTargetType::new(s)),
        })
    }
}

/// A `tgt_type` that is none of Salt's names this crate matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown target type {0:?} (expected glob, pcre, list, grain, grain_pcre, pillar, pillar_pcre, ipcidr or compound)"
)]
pub struct UnknownTargetType(String);

impl UnknownTargetType {
    fn new(name: &str) -> UnknownTargetType {
        // The name arrives from the network; an error message must stay small.
        let shown = match name.char_indices().nth(SNIPPET_CHARS) {
            Some((end, _)) => format!("{}…", name.get(..end).unwrap_or_default()),
            None => name.to_owned(),
        };
        UnknownTargetType(shown)
    }

    /// Bounded label for metrics and logs (the same as `TargetError::kind`).
    pub fn kind(&self) -> &'static str {
        "unknown_type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_type_names() {
        for kind in TargetType::ALL {
            assert_eq!(kind.name().parse::<TargetType>().unwrap(), kind);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.name()));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert_eq!(TargetType::default(), TargetType::Glob);
        assert_eq!(
            "nodegroup".parse::<TargetType>().unwrap_err().kind(),
            "unknown_type"
        );
    }

    #[test]
    fn unknown_names_are_cut_short() {
        let long = "x".repeat(10_000);
        let msg = long.parse::<TargetType>().unwrap_err().to_string();
        assert!(msg.len() < 1_000);
    }
}
