//! [`WorkPool`]: a fixed set of named OS threads running blocking jobs from a bounded queue,
//! answering through oneshot channels. Reads (searches above all) run here.
//!
//! Why not tokio's blocking pool behind a semaphore, as writes do: there a job reaches a
//! blocking thread only once a permit is free, so a blocking thread goes to sleep after every
//! job and must be woken for the next one, and the freed permit must first wake the waiting
//! task on an async worker, which then hands the job over. Each search paid those extra
//! wake-ups (context switches, on a machine whose cores are busy searching), and a core idled
//! between one search's end and the next one's start. Here queued jobs wait for the threads,
//! and a thread that finishes one takes the next at once: under load the threads do not sleep
//! at all. `docs/benchmarks.md` has the numbers.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub struct WorkPool {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

struct Shared {
    queue: Mutex<Queue>,
    available: Condvar,
    max_queued: usize,
}

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job (a submit wakes one only when some wait).
    idle: usize,
    closed: bool,
}

/// The queue is full: the caller should answer 429.
#[derive(Debug)]
pub struct Full;

impl WorkPool {
    /// Starts `threads` threads named `<name>-<i>`; at most `max_queued` jobs wait for one
    /// (0: a job is taken only when a thread is free).
    pub fn new(name: &str, threads: usize, max_queued: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue { jobs: VecDeque::new(), idle: 0, closed: false }),
            available: Condvar::new(),
            max_queued,
        });
        let threads = (0..threads.max(1))
            .map(|i| {
                let shared = shared.clone();
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || shared.work())
            })
            .collect::<std::io::Result<_>>()?;
        Ok(WorkPool { shared, threads })
    }

    /// Queues `work`; its result arrives on the receiver (which errs if `work` panicked).
    pub fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Full> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A closed receiver means the request went away; nothing to tell.
            let _ = tx.send(work());
        });
        let mut queue = self.shared.queue.lock();
        // Jobs that idle threads are about to take do not count as waiting.
        if queue.closed || queue.jobs.len() >= self.shared.max_queued + queue.idle {
            return Err(Full);
        }
        queue.jobs.push_back(job);
        let wake = queue.idle > 0;
        drop(queue);
        if wake {
            self.shared.available.notify_one();
        }
        Ok(rx)
    }
}

impl Shared {
    fn work(&self) {
        loop {
            let job = {
                let mut queue = self.queue.lock();
                loop {
                    if let Some(job) = queue.jobs.pop_front() {
                        break job;
                    }
                    if queue.closed {
                        return;
                    }
                    queue.idle += 1;
                    self.available.wait(&mut queue);
                    queue.idle -= 1;
                }
            };
            // A panicking job drops its sender (the caller sees an internal error); the thread
            // lives on for the next one.
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                tracing::error!("a pooled job panicked");
            }
        }
    }
}

impl Drop for WorkPool {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.available.notify_all();
        for thread in self.threads.drain(..) {
            // A pool dropped from one of its own jobs cannot wait for itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn runs_jobs_and_answers() {
        let pool = WorkPool::new("test", 2, 16).unwrap();
        let answers: Vec<_> = (0..10).map(|i| pool.submit(move || i * 2).unwrap()).collect();
        for (i, rx) in answers.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap(), i * 2);
        }
    }

    #[tokio::test]
    async fn refuses_beyond_the_queue_and_survives_panics() {
        let pool = WorkPool::new("test", 1, 2).unwrap();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let started = Arc::new(AtomicUsize::new(0));
        let s = started.clone();
        let blocker = pool
            .submit(move || {
                s.fetch_add(1, Ordering::SeqCst);
                hold.recv().unwrap();
            })
            .unwrap();
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let queued: Vec<_> = (0..2).map(|i| pool.submit(move || i).unwrap()).collect();
        assert!(pool.submit(|| 9).is_err(), "the third waiting job is refused");
        release.send(()).unwrap();
        blocker.await.unwrap();
        for (i, rx) in queued.into_iter().enumerate() {
            assert_eq!(rx.await.unwrap(), i);
        }
        let panicked = pool.submit(|| -> usize { panic!("boom") }).unwrap();
        assert!(panicked.await.is_err(), "a panic answers as a dropped sender");
        assert_eq!(pool.submit(|| 7).unwrap().await.unwrap(), 7, "the thread survived");
    }

    #[tokio::test]
    async fn without_a_queue_takes_jobs_only_when_a_thread_is_free() {
        let pool = WorkPool::new("test", 1, 0).unwrap();
        // Wait for the thread to be idle, then it takes one job and refuses the next.
        while pool.shared.queue.lock().idle == 0 {
            tokio::task::yield_now().await;
        }
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = pool.submit(move || hold.recv().unwrap()).unwrap();
        assert!(pool.submit(|| ()).is_err());
        release.send(()).unwrap();
        busy.await.unwrap();
    }
}
