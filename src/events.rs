//! The fleet's event bus: what flows up from devices and functions to the masters
//! (a device came up or went down, a function fired an event, a device wants a fresh
//! pillar, a function asks the master something: `mine.get`). Events flow up: a
//! function or the registry sends, and a master link that cares subscribes; a
//! request carries the channel its answer comes back on. The bus is bounded; a
//! subscriber that falls behind loses the oldest events and counts them.

use std::collections::VecDeque;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::broadcast;

/// Events kept for a subscriber that falls behind.
const CAPACITY: usize = 8192;

#[derive(Debug, Clone, PartialEq)]
pub enum FleetEvent {
    /// An event for the master's bus under `tag`, on behalf of device `id`.
    Fire {
        id: Arc<str>,
        tag: String,
        data: Value,
    },
    /// Device `id` asks its master for its pillar again (`saltutil.refresh_pillar`).
    RefreshPillar { id: Arc<str> },
    /// A request to the master on behalf of a device (`_mine`, `_mine_get`, ...).
    Request(Arc<MasterRequest>),
    /// `schedule.run_job`: run device `id`'s scheduled job `name` now.
    RunSchedule { id: Arc<str>, name: String },
    /// A scheduled job ended: its return, for the master's job cache.
    ScheduledReturn(Arc<ScheduledReturn>),
}

/// What a scheduled job returns, as a minion sends it (`schedule` names the job).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledReturn {
    pub id: Arc<str>,
    pub schedule: String,
    pub fun: String,
    pub fun_args: Vec<Value>,
    pub ret: Value,
    pub retcode: i32,
    pub success: bool,
}

/// One request for the master: `cmd` with `load`'s fields, sent as device `id`; the
/// answer (or why there is none) goes back once on the request's channel.
#[derive(Debug)]
pub struct MasterRequest {
    pub id: Arc<str>,
    pub cmd: &'static str,
    pub load: serde_json::Map<String, Value>,
    reply: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Result<Value, String>>>>,
}

impl MasterRequest {
    /// Answers the request; later answers are ignored (a broadcast bus may hand the
    /// request to more than one subscriber).
    pub fn answer(&self, result: Result<Value, String>) {
        let tx = self.reply.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
    }
}

impl PartialEq for MasterRequest {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

/// The sending side, cheap to clone; sending never blocks and never fails the caller.
#[derive(Clone)]
pub struct EventSink {
    tx: broadcast::Sender<FleetEvent>,
    /// The last few notifications of each device (SNMP traps), oldest first, for
    /// functions to read back (`snmp.traps`).
    recent: Arc<DashMap<Arc<str>, VecDeque<Value>>>,
}

impl Default for EventSink {
    fn default() -> EventSink {
        EventSink {
            tx: broadcast::channel(CAPACITY).0,
            recent: Arc::default(),
        }
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("subscribers", &self.tx.receiver_count())
            .finish()
    }
}

impl EventSink {
    /// Sends to every subscriber; with none (no master link listening) it is dropped.
    /// Returns whether anyone will see it.
    pub fn send(&self, event: FleetEvent) -> bool {
        self.tx.send(event).is_ok()
    }

    /// Whether anyone listens, so a sender can skip building an event nobody sees.
    pub fn has_subscribers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Sends `cmd` to the master as device `id`; `None` when no master listens.
    pub fn request(
        &self,
        id: Arc<str>,
        cmd: &'static str,
        load: serde_json::Map<String, Value>,
    ) -> Option<tokio::sync::oneshot::Receiver<Result<Value, String>>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = MasterRequest {
            id,
            cmd,
            load,
            reply: std::sync::Mutex::new(Some(tx)),
        };
        self.send(FleetEvent::Request(Arc::new(req))).then_some(rx)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<FleetEvent> {
        self.tx.subscribe()
    }

    /// Keeps `item` in device `id`'s ring of at most `keep` recent notifications.
    pub fn remember(&self, id: &Arc<str>, item: Value, keep: usize) {
        let mut ring = self.recent.entry(id.clone()).or_default();
        while ring.len() >= keep.max(1) {
            ring.pop_front();
        }
        ring.push_back(item);
    }

    /// Device `id`'s recent notifications, oldest first.
    pub fn recent(&self, id: &str) -> Vec<Value> {
        self.recent
            .get(id)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forgets devices that left the fleet.
    pub fn forget_recent(&self, keep: impl Fn(&str) -> bool) {
        self.recent.retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_keep_the_newest() {
        let sink = EventSink::default();
        let id: Arc<str> = "r1".into();
        for i in 0..5 {
            sink.remember(&id, Value::from(i), 3);
        }
        assert_eq!(
            sink.recent("r1"),
            vec![Value::from(2), Value::from(3), Value::from(4)]
        );
        assert!(sink.recent("r2").is_empty());
    }

    #[tokio::test]
    async fn subscribers_see_events_sent_after_they_subscribe() {
        let sink = EventSink::default();
        assert!(!sink.send(FleetEvent::RefreshPillar { id: "a".into() }));
        let mut rx = sink.subscribe();
        assert!(sink.send(FleetEvent::RefreshPillar { id: "b".into() }));
        assert_eq!(
            rx.recv().await.ok(),
            Some(FleetEvent::RefreshPillar { id: "b".into() })
        );
    }
}
