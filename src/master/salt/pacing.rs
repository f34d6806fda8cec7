//! Start-up pacing towards the master: how many ids may be in their start sequence
//! (`_auth`, `_pillar`, start events) at once, which id goes next, and how long an
//! `_auth` may wait.
//!
//! A master handles start-ups at its own pace (about 13 ids per second for 3006.30
//! with 5 workers on 2 cores). With a fixed 32 ids in flight and a fixed 10 s `_auth`
//! timeout, the master's queue outgrew the timeout: `_auth` requests timed out that
//! the master still processed later, and were sent again (100 ids: 13 timeouts, 1.13
//! `_auth` per id). Here the number in flight follows the master's latency
//! (additive increase while replies come back faster than [`TARGET`], a quarter off
//! at most once per [`TARGET`] when slower or timed out), and the `_auth` timeout is
//! never shorter than three times the latency seen lately.
//!
//! Ids wait in arrival order, except those a published job targets: at 13 ids per
//! second a 10,000-id start takes minutes, and a user's job for a few devices should
//! not wait behind all of it. [`Pacer::promote`] moves them to the front. A tokio
//! `Semaphore` is strictly first-come, so the queue here is the pacer's own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// Replies slower than this mean the master's queue is growing.
pub const TARGET: Duration = Duration::from_secs(2);
/// Never fewer ids in flight: the master has several workers to keep busy.
const MIN_LIMIT: usize = 2;
/// Where the window starts (below the configured ceiling when that is larger).
const START_LIMIT: usize = 8;
/// Weight of the newest sample in the latency average.
const EWMA_WEIGHT: f64 = 0.2;
/// Ids remembered as wanted before they wait for a turn (in backoff, say); beyond
/// this a promotion of an id not yet waiting is forgotten.
const MAX_WANTED: usize = 65_536;

/// The window of ids in their start sequence, the ids waiting for it, and the
/// master's recent latency.
pub struct Pacer {
    inner: Arc<Inner>,
}

struct Inner {
    max: usize,
    base_timeout: Duration,
    ceiling_timeout: Duration,
    state: Mutex<State>,
}

struct State {
    limit: usize,
    /// Turns handed out and not yet over.
    out: usize,
    /// Average `_auth` latency, seconds.
    ewma: f64,
    last_decrease: Option<Instant>,
    next_seq: u64,
    /// Waiting ids in arrival order.
    queue: BTreeMap<u64, Waiter>,
    /// Waiting ids a job targets, served before `queue`, in promotion order.
    urgent: BTreeMap<u64, Waiter>,
    /// Where each id in `queue` sits.
    queued: HashMap<String, u64>,
    /// Promoted ids not waiting yet: they go to `urgent` when they ask.
    wanted: HashSet<String>,
}

struct Waiter {
    id: String,
    tx: oneshot::Sender<Turn>,
}

/// One id's turn; its start sequence is over when it is dropped.
pub struct Turn {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.armed {
            let mut s = lock(&self.inner.state);
            s.out = s.out.saturating_sub(1);
            self.inner.hand_out(&mut s);
        }
    }
}

impl Inner {
    /// Gives free turns to waiting ids, promoted ones first. A waiter that gave up
    /// (its task ended) is skipped and its turn goes to the next.
    fn hand_out(self: &Arc<Self>, s: &mut State) {
        while s.out < s.limit {
            let next = match s.urgent.pop_first() {
                Some((_, w)) => w,
                None => match s.queue.pop_first() {
                    Some((seq, w)) => {
                        if s.queued.get(&w.id) == Some(&seq) {
                            s.queued.remove(&w.id);
                        }
                        w
                    }
                    None => return,
                },
            };
            s.out += 1;
            let turn = Turn {
                inner: self.clone(),
                armed: true,
            };
            if let Err(mut turn) = next.tx.send(turn) {
                // Not dropped armed: that would lock the state again.
                turn.armed = false;
                s.out -= 1;
            }
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
            inner: Arc::new(Inner {
                max,
                base_timeout: base_timeout.min(ceiling_timeout),
                ceiling_timeout,
                state: Mutex::new(State {
                    limit,
                    out: 0,
                    ewma: 0.0,
                    last_decrease: None,
                    next_seq: 0,
                    queue: BTreeMap::new(),
                    urgent: BTreeMap::new(),
                    queued: HashMap::new(),
                    wanted: HashSet::new(),
                }),
            }),
        }
    }

    /// Waits for `id`'s turn; `None` if the pacer went away first.
    pub async fn turn(&self, id: &str) -> Option<Turn> {
        let rx = {
            let mut s = lock(&self.inner.state);
            let promoted = s.wanted.remove(id);
            if s.out < s.limit && s.queue.is_empty() && s.urgent.is_empty() {
                s.out += 1;
                return Some(Turn {
                    inner: self.inner.clone(),
                    armed: true,
                });
            }
            let (tx, rx) = oneshot::channel();
            let seq = s.next_seq;
            s.next_seq += 1;
            let w = Waiter {
                id: id.to_owned(),
                tx,
            };
            if promoted {
                s.urgent.insert(seq, w);
            } else {
                s.queued.insert(id.to_owned(), seq);
                s.queue.insert(seq, w);
            }
            rx
        };
        rx.await.ok()
    }

    /// Moves these ids ahead of the others waiting; an id not waiting yet goes
    /// ahead when it asks. Returns how many were waiting.
    pub fn promote<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> usize {
        let mut s = lock(&self.inner.state);
        let mut moved = 0;
        for id in ids {
            match s.queued.remove(id) {
                Some(seq) => {
                    if let Some(w) = s.queue.remove(&seq) {
                        // Promotion order, after those promoted before.
                        let at = s.next_seq;
                        s.next_seq += 1;
                        s.urgent.insert(at, w);
                        moved += 1;
                    }
                }
                None => {
                    if s.wanted.len() < MAX_WANTED {
                        s.wanted.insert(id.to_owned());
                    }
                }
            }
        }
        moved
    }

    /// Ids waiting for a turn.
    pub fn waiting(&self) -> usize {
        let s = lock(&self.inner.state);
        s.queue.len() + s.urgent.len()
    }

    /// Forgets a promotion that no turn will take (the id was accepted another way,
    /// or removed).
    pub fn forget(&self, id: &str) {
        lock(&self.inner.state).wanted.remove(id);
    }

    /// How long the next `_auth` may wait for its reply.
    pub fn auth_timeout(&self) -> Duration {
        let ewma = lock(&self.inner.state).ewma;
        Duration::from_secs_f64(ewma * 3.0)
            .max(self.inner.base_timeout)
            .min(self.inner.ceiling_timeout)
    }

    /// Records how one `_auth` went: its latency, or `None` when it timed out.
    pub fn record(&self, latency: Option<Duration>) {
        // A timeout counts as the time waited (read before the state is locked).
        let waited = self.auth_timeout();
        let mut s = lock(&self.inner.state);
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
            // Turns out beyond the new limit finish; none starts until below it.
            let cut = (s.limit / 4).max(1).min(s.limit.saturating_sub(MIN_LIMIT));
            s.limit -= cut;
            if cut > 0 {
                s.last_decrease = Some(now);
            }
        } else if s.limit < self.inner.max {
            s.limit += 1;
            self.inner.hand_out(&mut s);
        }
    }

    /// Ids allowed in their start sequence at once, now.
    #[cfg(test)]
    fn limit(&self) -> usize {
        lock(&self.inner.state).limit
    }

    /// Turns out now.
    #[cfg(test)]
    fn out(&self) -> usize {
        lock(&self.inner.state).out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pacer(max: usize) -> Arc<Pacer> {
        Arc::new(Pacer::new(
            max,
            Duration::from_secs(10),
            Duration::from_secs(60),
        ))
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

    /// Spawns a task that waits for `id`'s turn, reports it, then keeps the turn
    /// until `release` fires.
    fn waiter(
        p: &Arc<Pacer>,
        id: &'static str,
        got: &tokio::sync::mpsc::UnboundedSender<&'static str>,
        hold: bool,
    ) -> tokio::task::JoinHandle<()> {
        let (p, got) = (p.clone(), got.clone());
        tokio::spawn(async move {
            let turn = p.turn(id).await.expect("turn");
            let _ = got.send(id);
            if hold {
                std::future::pending::<()>().await;
            }
            drop(turn);
        })
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn turns_follow_the_limit_even_when_all_are_taken() {
        let p = pacer(8);
        let mut turns = Vec::new();
        for i in 0..8 {
            turns.push(p.turn(&format!("t{i}")).await.expect("turn"));
        }
        let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let _w = waiter(&p, "late", &tx, true);
        settle().await;
        assert_eq!(p.waiting(), 1);
        // All eight are out: the cut takes effect as turns end.
        p.record(None);
        assert_eq!(p.limit(), 6);
        turns.truncate(6);
        settle().await;
        assert!(got.try_recv().is_err(), "six out, limit six: no turn free");
        turns.truncate(5);
        settle().await;
        assert_eq!(got.try_recv().ok(), Some("late"));
        assert_eq!(p.out(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn ids_a_job_waits_for_go_first() {
        let p = pacer(1);
        assert_eq!(p.limit(), 1);
        let first = p.turn("a").await.expect("turn");
        let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for id in ["b", "c", "d"] {
            tasks.push(waiter(&p, id, &tx, false));
            settle().await;
        }
        // "e" is not waiting yet (in backoff, say): it goes ahead when it asks.
        assert_eq!(p.promote(["d", "e"]), 1);
        tasks.push(waiter(&p, "e", &tx, false));
        settle().await;
        assert_eq!(p.waiting(), 4);
        drop(first);
        for t in tasks {
            t.await.expect("waiter");
        }
        let order: Vec<_> = std::iter::from_fn(|| got.try_recv().ok()).collect();
        assert_eq!(order, ["d", "e", "b", "c"]);
        assert_eq!(p.out(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gave_up_does_not_keep_a_turn() {
        let p = pacer(1);
        let first = p.turn("a").await.expect("turn");
        let (tx, mut got) = tokio::sync::mpsc::unbounded_channel();
        let gone = waiter(&p, "gone", &tx, true);
        settle().await;
        let next = waiter(&p, "next", &tx, true);
        settle().await;
        gone.abort();
        settle().await;
        drop(first);
        settle().await;
        assert_eq!(got.try_recv().ok(), Some("next"));
        assert_eq!(p.out(), 1);
        next.abort();
        settle().await;
        assert_eq!(p.out(), 0, "an aborted holder's turn comes back");
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
