//! The fleet's event bus: what flows up from devices and functions to the masters
//! (a device came up or went down, a function fired an event, a device wants a fresh
//! pillar). Events flow up, never calls: a function or the registry sends, and a
//! master link that cares subscribes. The bus is bounded; a subscriber that falls
//! behind loses the oldest events and counts them.

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
