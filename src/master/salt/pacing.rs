//! Start-up pacing towards the master: how many ids may be in their start sequence
//! (`_auth`, `_pillar`, start events) at once, and how long an `_auth` may wait.
//!
//! A master handles start-ups at its own pace (about 13 ids per second for 3006.30
//! with 5 workers on 2 cores). With a fixed 32 ids in flight and a fixed 10 s `_auth`
//! timeout, the master's queue outgrew the timeout: `_auth` requests timed out that
//! the master still processed later, and were sent again (100 ids: 13 timeouts, 1.13
//! `_auth` per id). Here the number in flight follows the master's latency
//! (additive increase while replies come back faster than [`TARGET`], a quarter off
//! at most once per [`TARGET`] when slower or timed out), and the `_auth` timeout is
//! never shorter than three times the latency seen lately.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// Replies slower than this mean the master's queue is growing.
pub const TARGET: Duration = Duration::from_secs(2);
/// Never fewer ids in flight: the master has several workers to keep busy.
const MIN_LIMIT: usize = 2;
/// Where the window starts (below the configured ceiling when that is larger).
const START_LIMIT: usize = 8;
/// Weight of the newest sample in the latency average.
const EWMA_WEIGHT: f64 = 0.2;

/// The window of ids in their start sequence, and the master's recent latency.
pub struct Pacer {
    sem: Semaphore,
    max: usize,
    base_timeout: Duration,
    ceiling_timeout: Duration,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    /// Permits to take back as they are returned (a decrease never waits).
    owed: usize,
    /// Average `_auth` latency, seconds.
    ewma: f64,
    last_decrease: Option<Instant>,
}

/// One id's turn; dropped when its start sequence is over.
pub struct Turn<'a> {
    pacer: &'a Pacer,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut s = lock(&self.pacer.state);
        if s.owed > 0 {
            s.owed -= 1;
            permit.forget();
        }
    }
}

impl Pacer {
    /// `max`: the configured ceiling (`master.auth_concurrency`); `base_timeout`: the
    /// shortest `_auth` timeout; `ceiling_timeout`: the longest (the request timeout).
    pub fn new(max: usize, base_timeout: Duration, ceiling_timeout: Duration) -> Pacer {
        let max = max.max(1);
        let limit = START_LIMIT.clamp(MIN_LIMIT.min(max), max);
        Pacer {
            sem: Semaphore::new(limit),
            max,
            base_timeout: base_timeout.min(ceiling_timeout),
            ceiling_timeout,
            state: Mutex::new(State {
                limit,
                owed: 0,
                ewma: 0.0,
                last_decrease: None,
            }),
        }
    }

    /// Waits for a turn; `None` once the pacer is closed.
    pub async fn turn(&self) -> Option<Turn<'_>> {
        let permit = self.sem.acquire().await.ok()?;
        Some(Turn {
            pacer: self,
            permit: Some(permit),
        })
    }

    /// How long the next `_auth` may wait for its reply.
    pub fn auth_timeout(&self) -> Duration {
        let ewma = lock(&self.state).ewma;
        Duration::from_secs_f64(ewma * 3.0)
            .max(self.base_timeout)
            .min(self.ceiling_timeout)
    }

    /// Records how one `_auth` went: its latency, or `None` when it timed out.
    pub fn record(&self, latency: Option<Duration>) {
        // A timeout counts as the time waited (read before the state is locked).
        let waited = self.auth_timeout();
        let mut s = lock(&self.state);
        let seconds = latency.unwrap_or(waited).as_secs_f64();
        s.ewma = if s.ewma == 0.0 {
            seconds
        } else {
            s.ewma * (1.0 - EWMA_WEIGHT) + seconds * EWMA_WEIGHT
        };
        let slow = latency.is_none_or(|l| l > TARGET);
        if slow {
            let now = Instant::now();
            if s.last_decrease
                .is_some_and(|t| now.duration_since(t) < TARGET)
            {
                return;
            }
            let cut = (s.limit / 4).max(1).min(s.limit.saturating_sub(MIN_LIMIT));
            if cut == 0 {
                return;
            }
            s.limit -= cut;
            s.last_decrease = Some(now);
            // Take back what is free now; the rest as turns end.
            let mut left = cut;
            while left > 0 {
                match self.sem.try_acquire() {
                    Ok(p) => {
                        p.forget();
                        left -= 1;
                    }
                    Err(_) => break,
                }
            }
            s.owed += left;
        } else if s.limit < self.max {
            s.limit += 1;
            if s.owed > 0 {
                s.owed -= 1;
            } else {
                self.sem.add_permits(1);
            }
        }
    }

    /// Ids allowed in their start sequence at once, now.
    #[cfg(test)]
    fn limit(&self) -> usize {
        lock(&self.state).limit
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(max: usize) -> Pacer {
        Pacer::new(max, Duration::from_secs(10), Duration::from_secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_grows_while_fast_and_shrinks_when_slow() {
        let p = pacer(32);
        assert_eq!(p.limit(), START_LIMIT);
        for _ in 0..40 {
            p.record(Some(Duration::from_millis(300)));
        }
        assert_eq!(p.limit(), 32, "grows to the ceiling, not past it");
        p.record(Some(Duration::from_secs(5)));
        assert_eq!(p.limit(), 24);
        // Within one TARGET of a decrease, more slow replies (the same queue) do not
        // cut again.
        p.record(None);
        assert_eq!(p.limit(), 24);
        tokio::time::advance(TARGET).await;
        p.record(None);
        assert_eq!(p.limit(), 18);
        for _ in 0..20 {
            tokio::time::advance(TARGET).await;
            p.record(None);
        }
        assert_eq!(p.limit(), MIN_LIMIT, "never below the floor");
    }

    #[tokio::test(start_paused = true)]
    async fn turns_follow_the_limit_even_when_all_are_taken() {
        let p = pacer(8);
        let mut turns = Vec::new();
        for _ in 0..8 {
            turns.push(p.turn().await.expect("turn"));
        }
        assert!(p.sem.try_acquire().is_err());
        // All eight are out: the cut is owed and taken back as turns end.
        p.record(None);
        assert_eq!(p.limit(), 6);
        turns.truncate(5);
        assert_eq!(
            p.sem.available_permits(),
            1,
            "two of three returned were kept"
        );
        drop(turns);
        assert_eq!(p.sem.available_permits(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn the_auth_timeout_follows_the_latency() {
        let p = pacer(8);
        assert_eq!(p.auth_timeout(), Duration::from_secs(10));
        for _ in 0..30 {
            p.record(Some(Duration::from_secs(8)));
        }
        let t = p.auth_timeout();
        assert!(t > Duration::from_secs(20), "{t:?}");
        for _ in 0..30 {
            p.record(Some(Duration::from_secs(40)));
        }
        assert_eq!(p.auth_timeout(), Duration::from_secs(60), "capped");
    }
}
