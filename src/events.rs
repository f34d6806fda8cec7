//! The fleet's event bus: what flows up from devices and functions to the masters
//! (a device came up or went down, a function fired an event, a device wants a fresh
//! pillar). Events flow up, never calls: a function or the registry sends, and a
//! master link that cares subscribes. The bus is bounded; a subscriber that falls
//! behind loses the oldest events and counts them.

use std::sync::Arc;

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
}

impl Default for EventSink {
    fn default() -> EventSink {
        EventSink {
            tx: broadcast::channel(CAPACITY).0,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
