//! The threads reads run on: started on demand, reused newest-idle-first, and ended after
//! a second idle, so that an idle server keeps about one.
//!
//! Reads used to run on tokio's blocking pool. Its idle threads wait on one condition
//! variable and are woken oldest-first, so a trickle of reads (an idle control plane does
//! a few a second: leases, controllers' resyncs) passes through every thread in turn and
//! none ever reaches the pool's 10 s idle limit: the 2–9 threads started by the start-up
//! burst stayed for good, with ~270 kB of allocator pages and stack each. Here the thread
//! that went idle last takes the next read, and the others end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a thread waits for another read before it ends.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

type Job = Box<dyn FnOnce() + Send>;

/// Idle threads, the one that went idle last at the end: each waits on its own channel.
pub(super) struct Threads {
    idle: Mutex<Vec<(u64, mpsc::Sender<Job>)>>,
    next_id: AtomicU64,
    keep_alive: Duration,
}

impl Default for Threads {
    fn default() -> Self {
        Threads::new(KEEP_ALIVE)
    }
}

impl Threads {
    fn new(keep_alive: Duration) -> Self {
        Threads { idle: Mutex::new(Vec::new()), next_id: AtomicU64::new(0), keep_alive }
    }

    /// Runs `job` on the idle thread that went idle last, or on a new one when none is idle
    /// (the caller bounds how many run at once).
    pub(super) fn run(self: &Arc<Self>, job: Job) -> std::io::Result<()> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let job = match idle {
            // Taken off the list under the lock: that thread now waits for this job (`wait`).
            Some((_, tx)) => match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::SendError(job)) => job,
            },
            None => job,
        };
        let threads = self.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new().name("store-reader".into()).spawn(move || threads.serve(id, job))?;
        Ok(())
    }

    fn serve(&self, id: u64, first: Job) {
        let (tx, rx) = mpsc::channel::<Job>();
        let mut job = first;
        loop {
            job();
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push((id, tx.clone()));
            match self.wait(id, &rx) {
                Some(next) => job = next,
                None => return,
            }
        }
    }

    /// The next job of idle thread `id`, or None when it should end.
    fn wait(&self, id: u64, rx: &mpsc::Receiver<Job>) -> Option<Job> {
        match rx.recv_timeout(self.keep_alive) {
            Ok(job) => Some(job),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                match idle.iter().position(|(i, _)| *i == id) {
                    Some(at) => {
                        idle.remove(at);
                        None
                    }
                    // Taken off the list just now: its job is on the way.
                    None => {
                        drop(idle);
                        rx.recv().ok()
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Barrier;

    use super::*;

    #[test]
    fn a_trickle_of_jobs_is_served_by_the_thread_idle_last() {
        let threads = Arc::new(Threads::new(Duration::from_secs(3600)));
        // A burst: four threads at once.
        let (done_tx, done_rx) = mpsc::channel();
        let gate = Arc::new(Barrier::new(4));
        for _ in 0..4 {
            let (done, gate) = (done_tx.clone(), gate.clone());
            threads
                .run(Box::new(move || {
                    gate.wait();
                    done.send(std::thread::current().id()).unwrap();
                }))
                .unwrap();
        }
        let burst: HashSet<_> = (0..4).map(|_| done_rx.recv().unwrap()).collect();
        assert_eq!(burst.len(), 4);
        let idle = |n: usize| wait_until(|| threads.idle.lock().unwrap().len() == n);
        idle(4);
        // A trickle: one thread takes every job.
        let mut used = HashSet::new();
        for _ in 0..5 {
            let done = done_tx.clone();
            threads.run(Box::new(move || done.send(std::thread::current().id()).unwrap())).unwrap();
            used.insert(done_rx.recv().unwrap());
            idle(4);
        }
        assert_eq!(used.len(), 1, "one thread serves a trickle");
    }

    #[test]
    fn idle_threads_end() {
        let threads = Arc::new(Threads::new(Duration::from_millis(10)));
        let (done_tx, done_rx) = mpsc::channel();
        let gate = Arc::new(Barrier::new(3));
        for _ in 0..3 {
            let (done, gate) = (done_tx.clone(), gate.clone());
            threads.run(Box::new(move || done.send(gate.wait().is_leader()).unwrap())).unwrap();
        }
        assert_eq!((0..3).filter(|_| done_rx.recv().unwrap()).count(), 1);
        wait_until(|| threads.idle.lock().unwrap().is_empty());
        // A job after that starts a thread again.
        threads.run(Box::new(move || done_tx.send(true).unwrap())).unwrap();
        assert!(done_rx.recv().unwrap());
    }

    /// Polls `cond` (a loaded machine may take a while to run the threads).
    fn wait_until(cond: impl Fn() -> bool) {
        let start = std::time::Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(60), "condition not reached");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}
