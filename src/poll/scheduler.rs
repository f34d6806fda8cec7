//! The poll schedule: when each device's module is next due (a random first offset
//! within the interval, then the interval with jitter), and which devices and
//! modules are due at a given instant. Pure bookkeeping, so it is tested without a
//! clock; the poller (`poll::run`) drives it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Due {
    at: Instant,
    running: bool,
}

#[derive(Debug, Default)]
pub struct Schedule {
    due: HashMap<(Arc<str>, Arc<str>), Due>,
    jitter: f64,
}

impl Schedule {
    pub fn new(jitter: f64) -> Schedule {
        Schedule {
            due: HashMap::new(),
            jitter: jitter.clamp(0.0, 1.0),
        }
    }

    /// Whether `(id, module)` should be polled now. A pair seen for the first time
    /// is given a random start within one interval, so a fleet that starts together
    /// does not poll together.
    pub fn is_due(
        &mut self,
        id: &Arc<str>,
        module: &Arc<str>,
        interval: Duration,
        now: Instant,
    ) -> bool {
        let d = self
            .due
            .entry((id.clone(), module.clone()))
            .or_insert_with(|| Due {
                at: now + interval.mul_f64(rand::random::<f64>()),
                running: false,
            });
        !d.running && now >= d.at
    }

    /// A poll started: the next one is an interval (± jitter) later.
    pub fn started(&mut self, id: &Arc<str>, module: &Arc<str>, interval: Duration, now: Instant) {
        let spread = self.jitter * (2.0 * rand::random::<f64>() - 1.0);
        let next = interval.mul_f64((1.0 + spread).max(0.05));
        if let Some(d) = self.due.get_mut(&(id.clone(), module.clone())) {
            d.at = now + next;
            d.running = true;
        }
    }

    pub fn finished(&mut self, id: &Arc<str>, module: &Arc<str>) {
        if let Some(d) = self.due.get_mut(&(id.clone(), module.clone())) {
            d.running = false;
        }
    }

    /// Forgets devices that left the fleet.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.due.retain(|(id, _), _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_spread_over_one_interval_then_every_interval() {
        let mut s = Schedule::new(0.1);
        let every = Duration::from_secs(60);
        let t0 = Instant::now();
        let m: Arc<str> = "if_mib".into();
        let ids: Vec<Arc<str>> = (0..200).map(|i| Arc::from(format!("d{i}"))).collect();
        let due_now = ids.iter().filter(|id| s.is_due(id, &m, every, t0)).count();
        // The chance that a random start lands at exactly t0 is nil.
        assert_eq!(due_now, 0);
        let half = ids
            .iter()
            .filter(|id| s.is_due(id, &m, every, t0 + every / 2))
            .count();
        assert!(
            (40..=160).contains(&half),
            "{half} of 200 due after half an interval"
        );
        let t1 = t0 + every;
        assert!(ids.iter().all(|id| s.is_due(id, &m, every, t1)));

        // While a poll runs it is not due again; after it, one interval ± 10 % later.
        let id = &ids[0];
        s.started(id, &m, every, t1);
        assert!(!s.is_due(id, &m, every, t1 + every * 2));
        s.finished(id, &m);
        assert!(!s.is_due(id, &m, every, t1 + every.mul_f64(0.89)));
        assert!(s.is_due(id, &m, every, t1 + every.mul_f64(1.11)));

        s.retain(|id| id == "d1");
        assert_eq!(s.len(), 1);
    }
}
