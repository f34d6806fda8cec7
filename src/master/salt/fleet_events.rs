//! The fleet's events on their way to the master: gathered from the fleet's bus into
//! bounded batches (at most [`MAX_BATCH`] events, or what arrives within
//! [`LINGER`] of the first), so a fleet coming up sends a few `_minion_event` loads
//! with an `events` list instead of one request per device. Pillar refresh requests
//! in a batch are de-duplicated. Also the start events' data, as a salt-minion
//! writes it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::events::FleetEvent;
use crate::telemetry;

/// Most events in one `_minion_event` load.
pub(super) const MAX_BATCH: usize = 200;
/// How long a batch waits for more events after its first.
pub(super) const LINGER: Duration = Duration::from_millis(100);

#[derive(Debug, Default, PartialEq)]
pub(super) struct Batch {
    /// `(device id, tag, data)` in arrival order.
    pub fire: Vec<(Arc<str>, String, Value)>,
    pub refresh: BTreeSet<Arc<str>>,
    /// Requests to send as they are, each answered on its own channel.
    pub requests: Vec<Arc<crate::events::MasterRequest>>,
    /// Scheduled jobs' returns, each sent as a `_return`.
    pub returns: Vec<Arc<crate::events::ScheduledReturn>>,
}

/// The next batch, or `None` when the bus is closed.
pub(super) async fn next_batch(rx: &mut broadcast::Receiver<FleetEvent>) -> Option<Batch> {
    let mut batch = Batch::default();
    let first = loop {
        match rx.recv().await {
            Ok(e) => break e,
            Err(RecvError::Lagged(n)) => lagged(n),
            Err(RecvError::Closed) => return None,
        }
    };
    add(&mut batch, first);
    let deadline = tokio::time::Instant::now() + LINGER;
    while batch.fire.len() < MAX_BATCH {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(e)) => add(&mut batch, e),
            Ok(Err(RecvError::Lagged(n))) => lagged(n),
            Ok(Err(RecvError::Closed)) | Err(_) => break,
        }
    }
    Some(batch)
}

fn add(batch: &mut Batch, e: FleetEvent) {
    match e {
        FleetEvent::Fire { id, tag, data } => batch.fire.push((id, tag, data)),
        FleetEvent::RefreshPillar { id } => {
            batch.refresh.insert(id);
        }
        FleetEvent::Request(r) => batch.requests.push(r),
        FleetEvent::ScheduledReturn(r) => batch.returns.push(r),
        // For the fleet's scheduler, not the master.
        FleetEvent::RunSchedule { .. } => {}
    }
}

fn lagged(n: u64) {
    metrics::counter!(telemetry::MASTER_EVENTS, "outcome" => "lagged").increment(n);
    tracing::warn!(
        lost = n,
        "Fleet events lost: the Salt link fell behind the fleet's bus."
    );
}

/// The data a master fires for a minion's single `_minion_event` load: the load
/// itself without its token.
pub(super) fn load_data(id: &str, tag: &str, data: Value) -> Value {
    json!({"cmd": "_minion_event", "id": id, "pretag": null, "tag": tag, "data": data})
}

/// `minion_start` (the legacy tag, on by default in Salt) and
/// `salt/minion/<id>/start`, each with the data a salt-minion's load carries.
pub(super) fn start_events(id: &str, now: SystemTime) -> Vec<(String, Value)> {
    let text = format!("Minion {id} started at {}", asctime(now));
    ["minion_start".to_owned(), format!("salt/minion/{id}/start")]
        .into_iter()
        .map(|tag| {
            let data = load_data(id, &tag, Value::String(text.clone()));
            (tag, data)
        })
        .collect()
}

/// Python's `time.asctime()` in UTC: `Tue Nov 24 21:05:38 2026`.
pub(super) fn asctime(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let mon = MONTHS[(month - 1) as usize];
    format!("{weekday} {mon} {day:2} {h:02}:{m:02}:{s:02} {year}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asctime_matches_python() {
        // time.asctime(time.gmtime(1795554338)) == 'Tue Nov 24 21:05:38 2026'
        let t = UNIX_EPOCH + Duration::from_secs(1_795_554_338);
        assert_eq!(asctime(t), "Tue Nov 24 21:05:38 2026");
        assert_eq!(asctime(UNIX_EPOCH), "Thu Jan  1 00:00:00 1970");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(asctime(t), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn start_events_carry_the_minion_load() {
        let ev = start_events("dev-01", UNIX_EPOCH);
        let tags: Vec<&str> = ev.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(tags, ["minion_start", "salt/minion/dev-01/start"]);
        assert_eq!(ev[1].1["id"], json!("dev-01"));
        assert_eq!(ev[1].1["tag"], json!("salt/minion/dev-01/start"));
        assert_eq!(
            ev[1].1["data"],
            json!("Minion dev-01 started at Thu Jan  1 00:00:00 1970")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn batches_are_bounded_and_refreshes_deduplicated() {
        let sink = crate::events::EventSink::default();
        let mut rx = sink.subscribe();
        for i in 0..(MAX_BATCH + 5) {
            sink.send(FleetEvent::Fire {
                id: "a".into(),
                tag: format!("t/{i}"),
                data: json!(i),
            });
        }
        sink.send(FleetEvent::RefreshPillar { id: "a".into() });
        sink.send(FleetEvent::RefreshPillar { id: "a".into() });
        let first = next_batch(&mut rx).await.unwrap_or_default();
        assert_eq!(first.fire.len(), MAX_BATCH);
        let second = next_batch(&mut rx).await.unwrap_or_default();
        assert_eq!(second.fire.len(), 5);
        assert_eq!(second.refresh.len(), 1);
    }
}
