//! `GET /snmp?target=<id>&module=<a,b>`: a device's cached modules in the text
//! format, with snmp_exporter's `snmp_scrape_*` families and the poll's age. It never
//! talks to the device: a module not polled yet, or whose latest poll failed, is an
//! error (HTTP 503, so Prometheus's `up` says so and the series go stale) unless the
//! caller asks for stale values.

use std::fmt::Write;
use std::time::SystemTime;

use super::cache::{Entry, PollCache};
use super::module::Modules;
use crate::fleet::registry::Registry;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScrapeError {
    #[error("'target' parameter must be specified once")]
    NoTarget,
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    #[error("Unknown module '{0}'")]
    UnknownModule(String),
    #[error("module {module} of {target} has not been polled yet")]
    NotYet { target: String, module: String },
    /// The latest poll failed; the message carries the cached values' age.
    #[error("module {module} of {target} is stale: {error}")]
    Stale {
        target: String,
        module: String,
        error: String,
    },
}

impl ScrapeError {
    /// 400 for a bad request, 503 for a device that has nothing fresh to show.
    pub fn status(&self) -> u16 {
        match self {
            ScrapeError::NoTarget
            | ScrapeError::UnknownTarget(_)
            | ScrapeError::UnknownModule(_) => 400,
            ScrapeError::NotYet { .. } | ScrapeError::Stale { .. } => 503,
        }
    }
}

/// The answer for `target` and the comma-separated `modules` (snmp_exporter's
/// default is `if_mib`). With `allow_stale`, a failed module's last values are
/// served with `drover_poll_stale 1`.
pub fn scrape(
    cache: &PollCache,
    modules: &Modules,
    registry: &Registry,
    target: &str,
    module_param: &str,
    allow_stale: bool,
) -> Result<String, ScrapeError> {
    if target.is_empty() {
        return Err(ScrapeError::NoTarget);
    }
    if registry.get(target).is_none() {
        return Err(ScrapeError::UnknownTarget(target.to_owned()));
    }
    let names: Vec<&str> = module_param
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let names = if names.is_empty() {
        vec!["if_mib"]
    } else {
        names
    };
    let mut got: Vec<(&str, Entry)> = Vec::with_capacity(names.len());
    for n in &names {
        if modules.get(n).is_none() {
            return Err(ScrapeError::UnknownModule((*n).to_owned()));
        }
        let entry = cache.get(target, n).unwrap_or_default();
        if entry.last_ok.is_none() {
            return Err(match entry.last_error {
                Some((_, e)) => ScrapeError::Stale {
                    target: target.to_owned(),
                    module: (*n).to_owned(),
                    error: format!("{e}; no values yet"),
                },
                None => ScrapeError::NotYet {
                    target: target.to_owned(),
                    module: (*n).to_owned(),
                },
            });
        }
        if entry.stale && !allow_stale {
            let age = entry
                .last_ok
                .as_ref()
                .map(|s| age(s.polled_at))
                .unwrap_or_default();
            let why = entry.last_error.map(|(_, e)| e).unwrap_or_default();
            return Err(ScrapeError::Stale {
                target: target.to_owned(),
                module: (*n).to_owned(),
                error: format!("{why}; last values are {age:.0}s old"),
            });
        }
        got.push((n, entry));
    }
    let mut out = String::new();
    for (_, e) in &got {
        if let Some(s) = &e.last_ok {
            out.push_str(&s.body);
        }
    }
    let families: [(&str, &str); 7] = [
        (
            "snmp_scrape_walk_duration_seconds",
            "Time SNMP walk/bulkwalk took.",
        ),
        (
            "snmp_scrape_duration_seconds",
            "Total SNMP time scrape took (walk and processing).",
        ),
        (
            "snmp_scrape_pdus_returned",
            "PDUs returned from get, bulkget, and walk.",
        ),
        (
            "snmp_scrape_packets_sent",
            "Packets sent for get, bulkget, and walk; including retries.",
        ),
        (
            "drover_poll_age_seconds",
            "Seconds since the values were polled (Drover answers from its cache).",
        ),
        (
            "drover_poll_timestamp_seconds",
            "Unix time the values were polled.",
        ),
        (
            "drover_poll_stale",
            "1 when the latest poll failed and these are the last good values.",
        ),
    ];
    for (i, (name, help)) in families.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (m, e) in &got {
            let Some(s) = &e.last_ok else { continue };
            let v = match i {
                0 => s.walk.as_secs_f64().to_string(),
                1 => s.total.as_secs_f64().to_string(),
                2 => s.pdus.to_string(),
                3 => s.requests.to_string(),
                4 => format!("{:.3}", age(s.polled_at)),
                5 => format!(
                    "{:.3}",
                    s.polled_at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or_default()
                ),
                _ => u8::from(e.stale).to_string(),
            };
            let _ = writeln!(out, "{name}{{module=\"{m}\"}} {v}");
        }
    }
    Ok(out)
}

fn age(t: SystemTime) -> f64 {
    t.elapsed().map(|d| d.as_secs_f64()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PollConfig;
    use crate::inventory::Inventory;
    use crate::poll::cache::Sample;
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn answers_from_cache_and_refuses_stale_or_missing_values() {
        let inv = Inventory::parse(
            "[[device]]\nid = \"r1\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\n",
            Path::new("<test>"),
        )
        .unwrap();
        let reg = Registry::new();
        for d in &inv.devices {
            reg.upsert(d.clone(), 1, None);
        }
        let mods = Modules::from_config(&PollConfig::default()).unwrap();
        let cache = PollCache::new();
        let id: Arc<str> = "r1".into();
        let e = scrape(&cache, &mods, &reg, "r1", "", false).unwrap_err();
        assert_eq!(e.status(), 503, "{e}");
        assert_eq!(
            scrape(&cache, &mods, &reg, "r9", "", false).unwrap_err(),
            ScrapeError::UnknownTarget("r9".into())
        );
        assert_eq!(
            scrape(&cache, &mods, &reg, "r1", "nope", false)
                .unwrap_err()
                .status(),
            400
        );
        cache.store(
            &id,
            "if_mib",
            Sample {
                body: "# HELP ifNumber n\n# TYPE ifNumber gauge\nifNumber 2\n".into(),
                polled_at: SystemTime::now(),
                walk: Duration::from_millis(3),
                total: Duration::from_millis(4),
                pdus: 126,
                requests: 2,
            },
        );
        let out = scrape(&cache, &mods, &reg, "r1", "if_mib", false).unwrap();
        assert!(out.starts_with("# HELP ifNumber n\n"), "{out}");
        assert!(
            out.contains("snmp_scrape_pdus_returned{module=\"if_mib\"} 126\n"),
            "{out}"
        );
        assert!(
            out.contains("drover_poll_stale{module=\"if_mib\"} 0\n"),
            "{out}"
        );
        cache.fail(&id, "if_mib", "timeout".into());
        let e = scrape(&cache, &mods, &reg, "r1", "if_mib", false).unwrap_err();
        assert_eq!(e.status(), 503);
        assert!(e.to_string().contains("timeout"), "{e}");
        let out = scrape(&cache, &mods, &reg, "r1", "if_mib", true).unwrap();
        assert!(
            out.contains("drover_poll_stale{module=\"if_mib\"} 1\n"),
            "{out}"
        );
    }
}
