//! The vocabulary of one job, shared by masters, the fleet and functions: job ids,
//! what a master asks for ([`JobRequest`]), what each device answers ([`Return`]) and
//! how that answer ended ([`Outcome`]). It sits below all three layers so none of them
//! has to import upwards.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod target_type;

pub use target_type::{TargetType, UnknownTargetType};

/// A Salt-style job id: `YYYYMMDDhhmmssffffff`, unique within this process.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(transparent)]
pub struct Jid(pub String);

static LAST_JID_MICROS: AtomicU64 = AtomicU64::new(0);

impl Jid {
    /// A new jid from the wall clock. Two calls in the same microsecond get
    /// different ids because the counter only moves forward.
    pub fn generate() -> Jid {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        let mut prev = LAST_JID_MICROS.load(Ordering::Relaxed);
        let micros = loop {
            let next = now.max(prev + 1);
            match LAST_JID_MICROS.compare_exchange_weak(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next,
                Err(p) => prev = p,
            }
        };
        Jid(format_jid(micros))
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Formats microseconds since the epoch as Salt's 20-digit UTC jid.
fn format_jid(micros: u64) -> String {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}{frac:06}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// How many targeted devices may run at once within one job, as Salt's `--batch-size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Count(usize),
    Percent(u8),
}

impl Batch {
    /// The window size for `targets` devices; never zero.
    pub fn window(&self, targets: usize) -> usize {
        match *self {
            Batch::Count(n) => n.max(1),
            Batch::Percent(p) => ((targets * p as usize).div_ceil(100)).max(1),
        }
    }
}

impl std::str::FromStr for Batch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            match p.trim().parse::<u8>() {
                Ok(v) if (1..=100).contains(&v) => Ok(Batch::Percent(v)),
                _ => Err(format!("batch {s:?}: a percentage must be 1% to 100%")),
            }
        } else {
            match s.parse::<usize>() {
                Ok(v) if v > 0 => Ok(Batch::Count(v)),
                _ => Err(format!(
                    "batch {s:?}: expected a positive count or a percentage like 10%"
                )),
            }
        }
    }
}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Batch::Count(n) => s.serialize_str(&n.to_string()),
            Batch::Percent(p) => s.serialize_str(&format!("{p}%")),
        }
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => n
                .as_u64()
                .filter(|v| *v > 0)
                .map(|v| Batch::Count(v as usize))
                .ok_or_else(|| serde::de::Error::custom("batch must be a positive integer")),
            Value::String(s) => s.parse().map_err(serde::de::Error::custom),
            _ => Err(serde::de::Error::custom(
                "batch must be a count or a percentage string",
            )),
        }
    }
}

/// Who the job is for: a Salt target expression and its type.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Tgt {
    Expr(String),
    List(Vec<String>),
}

/// What a master asks the fleet to run. The same shape arrives from the local HTTP
/// API and (decoded) from a Salt publication.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    pub tgt: Tgt,
    #[serde(default)]
    pub tgt_type: TargetType,
    pub fun: String,
    #[serde(default)]
    pub arg: Vec<Value>,
    #[serde(default)]
    pub kwarg: Map<String, Value>,
    #[serde(default)]
    pub batch: Option<Batch>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Set by a master that already has one (Salt); generated otherwise.
    #[serde(default)]
    pub jid: Option<Jid>,
}

/// The arguments of a call as a device function sees them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Args {
    pub arg: Vec<Value>,
    pub kwarg: Map<String, Value>,
}

/// One job as it travels from the dispatcher to device actors: shared, immutable.
#[derive(Debug)]
pub struct Job {
    pub jid: Jid,
    pub fun: String,
    pub args: Args,
}

/// How one device's part of a job ended. `kind()` is a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The function ran and reported success.
    Success,
    /// The function ran, or tried to, and failed (bad arguments, device error).
    Failed,
    /// The device is down, backing off or gone: answered at once.
    Unreachable,
    /// No answer before the job's deadline.
    Timeout,
    /// Not attempted: a queue was full or the fleet is shutting down.
    Rejected,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
            Outcome::Timeout => "timeout",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Salt's retcode for a function that does not exist or failed to run.
pub const RETCODE_ERROR: i32 = 1;
/// Salt's retcode when the minion could not run the job at all.
pub const RETCODE_UNAVAILABLE: i32 = 254;

/// One device's answer to one job: exactly one per targeted device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Return {
    pub id: String,
    pub jid: Jid,
    pub fun: String,
    #[serde(rename = "return")]
    pub ret: Value,
    pub retcode: i32,
    pub success: bool,
    pub outcome: Outcome,
    /// Time from admission to answer, in milliseconds.
    pub duration_ms: u64,
}

/// Approximate heap bytes of a JSON value: its strings plus a rough per-node cost.
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) | Value::Number(_) => 16,
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(value_bytes).sum::<usize>(),
        Value::Object(m) => {
            48 + m
                .iter()
                .map(|(k, v)| 32 + k.len() + value_bytes(v))
                .sum::<usize>()
        }
    }
}

impl Return {
    /// Approximate heap bytes this return holds (for the job history's bound).
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Return>()
            + self.id.len()
            + self.jid.0.len()
            + self.fun.len()
            + value_bytes(&self.ret)
    }

    pub fn ok(id: &str, job: &Job, ret: Value, duration: Duration) -> Return {
        Return {
            id: id.to_owned(),
            jid: job.jid.clone(),
            fun: job.fun.clone(),
            ret,
            retcode: 0,
            success: true,
            outcome: Outcome::Success,
            duration_ms: duration.as_millis() as u64,
        }
    }

    /// A function's own retcode (`test.retcode`, a dict with `result: False`): as on
    /// a Salt minion, `success` is whether it is 0.
    pub fn with_retcode(mut self, retcode: i32) -> Return {
        if retcode != 0 {
            self.retcode = retcode;
            self.success = false;
            self.outcome = Outcome::Failed;
        }
        self
    }

    pub fn error(
        id: &str,
        job: &Job,
        outcome: Outcome,
        message: impl Into<String>,
        duration: Duration,
    ) -> Return {
        Return {
            id: id.to_owned(),
            jid: job.jid.clone(),
            fun: job.fun.clone(),
            ret: Value::String(message.into()),
            retcode: if outcome == Outcome::Failed {
                RETCODE_ERROR
            } else {
                RETCODE_UNAVAILABLE
            },
            success: false,
            outcome,
            duration_ms: duration.as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jid_has_salt_shape_and_is_unique() {
        let a = Jid::generate();
        let b = Jid::generate();
        assert_eq!(a.0.len(), 20);
        assert!(a.0.chars().all(|c| c.is_ascii_digit()));
        assert!(b > a);
    }

    #[test]
    fn jid_formats_known_instant() {
        // 2024-02-29 12:34:56.123456 UTC
        assert_eq!(format_jid(1_709_210_096_123_456), "20240229123456123456");
    }

    #[test]
    fn batch_parses_and_sizes() {
        assert_eq!("10".parse::<Batch>(), Ok(Batch::Count(10)));
        assert_eq!("25%".parse::<Batch>(), Ok(Batch::Percent(25)));
        assert!("0".parse::<Batch>().is_err());
        assert!("101%".parse::<Batch>().is_err());
        assert!("x".parse::<Batch>().is_err());
        assert_eq!(Batch::Percent(10).window(1000), 100);
        assert_eq!(Batch::Percent(10).window(5), 1);
        assert_eq!(Batch::Count(3).window(2), 3);
    }

    #[test]
    fn job_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<JobRequest>(r#"{"tgt":"*","fun":"test.ping","bogus":1}"#);
        assert!(err.is_err());
        let ok: JobRequest = serde_json::from_str(
            r#"{"tgt":"a*","tgt_type":"glob","fun":"test.ping","batch":"10%","timeout":"5s"}"#,
        )
        .unwrap();
        assert_eq!(ok.batch, Some(Batch::Percent(10)));
        assert_eq!(ok.timeout, Some(Duration::from_secs(5)));
    }
}
