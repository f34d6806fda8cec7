//! A simulator on a thread of its own with a one-worker tokio runtime, as real devices
//! would be separate machines: the fleet under test never shares a scheduler with the
//! devices it talks to. Used by the integration tests, `drover demo` and the chaos
//! scenario.

use std::future::Future;
use std::io;
use std::sync::Arc;

/// A simulator (or several, in one struct) served from its own thread and runtime;
/// stopped, and its thread joined, when dropped.
pub struct OnThread<S: Send + Sync + 'static> {
    pub sim: Arc<S>,
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<S: Send + Sync + 'static> OnThread<S> {
    /// Starts a thread named `devsim`, builds its runtime and runs `start` on it; returns
    /// once `start` has finished. Its error, or a failure to build the thread or
    /// runtime, is returned rather than leaving a half-started thread behind.
    pub fn start<F, Fut>(start: F) -> io::Result<OnThread<S>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = io::Result<S>>,
    {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("devsim".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let handle = rt.handle().clone();
                rt.block_on(async move {
                    match start().await {
                        Ok(sim) => {
                            let sim = Arc::new(sim);
                            if tx.send(Ok((sim.clone(), handle))).is_ok() {
                                let _ = stop_rx.await;
                            }
                            // Dropped here, inside the runtime, so a simulator that
                            // cleans up with tasks still can.
                            drop(sim);
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                });
            })?;
        match rx.recv() {
            Ok(Ok((sim, handle))) => Ok(OnThread {
                sim,
                handle,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("simulator thread died while starting"))
            }
        }
    }

    /// The simulator's runtime, for its task count.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl<S: Send + Sync + 'static> Drop for OnThread<S> {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_error_is_returned_and_the_thread_is_gone() {
        let r = OnThread::<()>::start(|| async { Err(io::Error::other("no ports")) });
        let e = r.err().map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("no ports"));
    }

    #[test]
    fn runs_on_its_own_runtime_until_dropped() {
        struct Sim(tokio::runtime::Handle);
        let t = OnThread::start(|| async { Ok(Sim(tokio::runtime::Handle::current())) }).unwrap();
        assert_eq!(t.sim.0.id(), t.handle().id());
        let weak = Arc::downgrade(&t.sim);
        drop(t);
        assert!(weak.upgrade().is_none(), "the simulator is gone after drop");
    }
}
