//! Dynamic batching on a dedicated model thread.
//!
//! Requests arrive as jobs (already tokenized) on a channel; the model thread owns the backend
//! and loops: take what is queued (when idle, wait up to `max_wait` for more), pick a batch,
//! run it, hand each job its vectors through a oneshot once all its inputs are done.
//!
//! Picking a batch ([`pick`]): the waiting inputs are sorted by length and split into the
//! cheapest groups (padded tokens plus a per-pass overhead), each within `max_batch_size`
//! inputs and `max_batch_tokens` padded tokens (inputs × longest); the group holding the
//! oldest input runs (no starvation). Inputs that queued while the model was busy thus share
//! batches with inputs of similar length, which keeps padding low.
//!
//! The queue is bounded in texts: a job that would take it over `max_queue` is refused at once
//! ([`EmbedError::Overloaded`], 429). Inference never runs on the async runtime.

use crate::backend::Factory;
use crate::error::{EmbedError, StartError};
use crate::metrics::EmbedderMetrics;
use crate::model::Batch;
use crate::tokenize::Encoded;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use vdb_api::embed::Pooling;

/// Bounds on batches and on the queue.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_batch_tokens: usize,
    pub max_batch_size: usize,
    pub max_wait: Duration,
    pub max_queue: usize,
}

/// What the warm-up pass found out about the loaded model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub dimension: usize,
    pub device: String,
    pub dtype: String,
}

type Reply = oneshot::Sender<Result<Vec<Vec<f32>>, EmbedError>>;

struct Job {
    results: Mutex<Vec<Vec<f32>>>,
    remaining: AtomicUsize,
    reply: Mutex<Option<Reply>>,
}

impl Job {
    fn cancelled(&self) -> bool {
        self.reply.lock().as_ref().is_none_or(|r| r.is_closed())
    }

    fn fail(&self, e: EmbedError) {
        if let Some(reply) = self.reply.lock().take() {
            let _ = reply.send(Err(e));
        }
    }
}

struct Item {
    job: Arc<Job>,
    slot: usize,
    input: Encoded,
    enqueued: Instant,
}

/// The handle requests use. Dropping every clone stops the model thread after it has finished
/// what is queued.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Vec<Item>>,
    queued: Arc<AtomicUsize>,
    /// Requests announced (being tokenized) but not queued yet.
    arriving: Arc<AtomicUsize>,
    info: Arc<OnceLock<ModelInfo>>,
    limits: Limits,
    metrics: Arc<EmbedderMetrics>,
}

impl Batcher {
    /// Starts the model thread: it builds the backend with `factory`, runs `warmup` once to
    /// learn the output dimension, then serves. The receiver tells when it is ready or why it
    /// could not start.
    pub fn spawn(
        factory: Factory,
        warmup: Encoded,
        pooling: Pooling,
        limits: Limits,
        metrics: Arc<EmbedderMetrics>,
    ) -> std::io::Result<(Self, oneshot::Receiver<Result<ModelInfo, StartError>>)> {
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let info = Arc::new(OnceLock::new());
        let queued = Arc::new(AtomicUsize::new(0));
        let arriving = Arc::new(AtomicUsize::new(0));
        let batcher = Batcher {
            tx,
            queued: queued.clone(),
            arriving: arriving.clone(),
            info: info.clone(),
            limits,
            metrics,
        };
        let m = batcher.metrics.clone();
        std::thread::Builder::new().name("vdb-model".into()).spawn(move || {
            let loaded = match factory() {
                Ok(l) => l,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            let mut backend = loaded.backend;
            let batch = Batch::pad(std::iter::once((&warmup.ids[..], &warmup.type_ids[..])));
            let dimension = match backend.forward(&batch) {
                Ok(out) => out.dim(),
                Err(e) => {
                    return drop(ready_tx.send(Err(StartError::Backend(format!("warm-up: {e}")))))
                }
            };
            let model = ModelInfo { dimension, device: loaded.device, dtype: loaded.dtype };
            let overhead = if model.device == "cpu" {
                CPU_BATCH_OVERHEAD_TOKENS
            } else {
                GPU_BATCH_OVERHEAD_TOKENS
            };
            tracing::info!(dimension, device = %model.device, dtype = %model.dtype, "model ready");
            let _ = info.set(model.clone());
            m.ready.set(1.0);
            let _ = ready_tx.send(Ok(model));
            let pending = Vec::new();
            Worker {
                backend,
                rx,
                queued,
                arriving,
                limits,
                pooling,
                metrics: m,
                pending,
                overhead,
            }
            .run();
        })?;
        Ok((batcher, ready_rx))
    }

    /// The model's description once it has warmed up.
    pub fn info(&self) -> Option<&ModelInfo> {
        self.info.get()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Texts waiting for the model.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Announces a request that will be queued soon (it is being tokenized): an idle model
    /// waits up to `max_wait` for announced requests, and not at all when there are none, so
    /// a lone client pays no batching delay. Pass the ticket to [`Batcher::embed`].
    pub fn announce(&self) -> Arrival {
        self.arriving.fetch_add(1, Ordering::AcqRel);
        Arrival(self.arriving.clone())
    }

    /// Queues `inputs` and waits for their vectors (pooled, not normalised), in order.
    pub async fn embed(
        &self,
        inputs: Vec<Encoded>,
        arrival: Arrival,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        if self.info.get().is_none() {
            return Err(EmbedError::Unavailable);
        }
        let n = inputs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limits.max_queue {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.metrics.rejected.with_label_values(&["queue_full"]).inc();
            return Err(EmbedError::Overloaded);
        }
        self.metrics.queue_texts.set((before + n) as i64);
        let (reply, answer) = oneshot::channel();
        let job = Arc::new(Job {
            results: Mutex::new(vec![Vec::new(); n]),
            remaining: AtomicUsize::new(n),
            reply: Mutex::new(Some(reply)),
        });
        let now = Instant::now();
        let items = inputs
            .into_iter()
            .enumerate()
            .map(|(slot, input)| Item { job: job.clone(), slot, input, enqueued: now })
            .collect();
        if self.tx.send(items).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            return Err(EmbedError::Unavailable);
        }
        drop(arrival);
        answer.await.unwrap_or(Err(EmbedError::Unavailable))
    }
}

/// A request on its way to the queue (see [`Batcher::announce`]); dropping it withdraws it.
pub struct Arrival(Arc<AtomicUsize>);

impl Drop for Arrival {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The model thread's state.
struct Worker {
    backend: Box<dyn crate::backend::Backend>,
    rx: mpsc::Receiver<Vec<Item>>,
    queued: Arc<AtomicUsize>,
    arriving: Arc<AtomicUsize>,
    limits: Limits,
    pooling: Pooling,
    metrics: Arc<EmbedderMetrics>,
    /// Waiting inputs, oldest first.
    pending: Vec<Item>,
    /// The cost of a forward pass beyond its tokens (see [`pick`]).
    overhead: usize,
}

impl Worker {
    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                // Idle: block for work, then give requests already on their way up to
                // `max_wait` to join the batch.
                match self.rx.recv() {
                    Ok(items) => self.pending.extend(items),
                    Err(_) => break,
                }
                let deadline = Instant::now() + self.limits.max_wait;
                while !self.full() && self.arriving.load(Ordering::Acquire) > 0 {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.rx.recv_timeout(left.min(Duration::from_micros(200))) {
                        Ok(items) => self.pending.extend(items),
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
            }
            while let Ok(items) = self.rx.try_recv() {
                self.pending.extend(items);
            }
            let before = self.pending.len();
            self.pending.retain(|item| !item.job.cancelled());
            let dropped = before - self.pending.len();
            if dropped > 0 {
                self.queued.fetch_sub(dropped, Ordering::AcqRel);
                self.metrics.cancelled.inc_by(dropped as u64);
            }
            if self.pending.is_empty() {
                continue;
            }
            let lens: Vec<usize> = self.pending.iter().map(|i| i.input.len()).collect();
            let limits = self.limits;
            let picked = pick(&lens, limits.max_batch_size, limits.max_batch_tokens, self.overhead);
            let batch = take(&mut self.pending, picked);
            let left = self.queued.fetch_sub(batch.len(), Ordering::AcqRel) - batch.len();
            self.metrics.queue_texts.set(left as i64);
            self.run_batch(batch);
        }
        for item in self.pending.drain(..) {
            item.job.fail(EmbedError::Unavailable);
        }
        tracing::info!("model thread stopped");
    }

    /// Whether the pending inputs already fill a batch.
    fn full(&self) -> bool {
        let longest = self.pending.iter().map(|i| i.input.len()).max().unwrap_or(0);
        self.pending.len() >= self.limits.max_batch_size
            || self.pending.len() * longest >= self.limits.max_batch_tokens
    }

    fn run_batch(&mut self, items: Vec<Item>) {
        let start = Instant::now();
        for item in &items {
            self.metrics.queue_seconds.observe((start - item.enqueued).as_secs_f64());
        }
        let batch = Batch::pad(items.iter().map(|i| (&i.input.ids[..], &i.input.type_ids[..])));
        let real = batch.real_tokens();
        self.metrics.batch_size.observe(batch.size as f64);
        self.metrics.batch_tokens.observe((batch.size * batch.len) as f64);
        self.metrics.tokens.inc_by(real as u64);
        self.metrics.padding_tokens.inc_by((batch.size * batch.len - real) as u64);
        let result = self.backend.forward(&batch);
        self.metrics.inference_seconds.observe(start.elapsed().as_secs_f64());
        let vectors = match result {
            Ok(out) => out.pool(&batch, self.pooling),
            Err(e) => {
                tracing::error!(error = %e, inputs = batch.size, tokens = batch.len, "inference failed");
                self.metrics.batches_failed.inc();
                for item in &items {
                    item.job.fail(EmbedError::Inference);
                }
                return;
            }
        };
        for (item, v) in items.into_iter().zip(vectors) {
            item.job.results.lock()[item.slot] = v;
            if item.job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(reply) = item.job.reply.lock().take() {
                    let _ = reply.send(Ok(std::mem::take(&mut *item.job.results.lock())));
                }
            }
        }
    }
}

/// What one forward pass costs beyond its padded tokens, in token-equivalents: small on a
/// CPU (compute grows with the tokens; a pass costs little else), large on a GPU (kernel
/// launches and transfers dominate small batches, so fewer, fuller batches win).
pub const CPU_BATCH_OVERHEAD_TOKENS: usize = 64;
pub const GPU_BATCH_OVERHEAD_TOKENS: usize = 4096;

/// Indices (into `lens`, oldest first) of the next batch. The waiting inputs, sorted by
/// length, are split into consecutive groups at the least total cost (`overhead` per group
/// plus its padded tokens, size x longest), each within `max_size` inputs and `max_tokens`
/// padded tokens; the group holding index 0 (the oldest input) runs next. So inputs of similar
/// length share a batch, the oldest never waits behind younger ones, and padding stays low.
pub fn pick(lens: &[usize], max_size: usize, max_tokens: usize, overhead: usize) -> Vec<usize> {
    let n = lens.len();
    if n == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (lens[i], i));
    let sorted: Vec<usize> = order.iter().map(|&i| lens[i]).collect();
    // best[i]: least cost of the first i sorted inputs; start[i]: where its last group begins.
    let mut best = vec![usize::MAX; n + 1];
    let mut start = vec![0; n + 1];
    best[0] = 0;
    for i in 1..=n {
        let longest = sorted[i - 1];
        for j in (i.saturating_sub(max_size.max(1))..i).rev() {
            let size = i - j;
            if size > 1 && size * longest > max_tokens {
                break;
            }
            let cost = best[j].saturating_add(overhead + size * longest);
            if cost < best[i] {
                best[i] = cost;
                start[i] = j;
            }
        }
    }
    let at = order.iter().position(|&i| i == 0).expect("index 0 is in the order");
    let mut end = n;
    loop {
        let begin = start[end];
        if begin <= at {
            let mut picked = order[begin..end].to_vec();
            picked.sort_unstable();
            return picked;
        }
        end = begin;
    }
}

/// Removes the items at `picked` (sorted) from `pending`, keeping the rest in order.
fn take(pending: &mut Vec<Item>, picked: Vec<usize>) -> Vec<Item> {
    let mut out = Vec::with_capacity(picked.len());
    let mut keep = Vec::with_capacity(pending.len() - picked.len());
    let mut next = picked.into_iter().peekable();
    for (i, item) in pending.drain(..).enumerate() {
        if next.peek() == Some(&i) {
            next.next();
            out.push(item);
        } else {
            keep.push(item);
        }
    }
    *pending = keep;
    out
}

#[cfg(test)]
mod tests {
    use super::{pick, CPU_BATCH_OVERHEAD_TOKENS as CPU, GPU_BATCH_OVERHEAD_TOKENS as GPU};

    #[test]
    fn the_oldest_is_always_picked() {
        assert_eq!(pick(&[500], 8, 100, CPU), vec![0], "even alone over the budget");
        assert_eq!(pick(&[10, 10, 10], 1, 1000, CPU), vec![0]);
        assert_eq!(pick(&[100, 10, 10], 8, 1000, CPU), vec![0], "the short ones can go next");
    }

    #[test]
    fn similar_lengths_go_together() {
        // The oldest has 10 tokens; the 9 and 11 share its batch, the 100s get their own.
        let lens = [10, 100, 9, 100, 11, 100];
        assert_eq!(pick(&lens, 64, 10_000, CPU), vec![0, 2, 4]);
        assert_eq!(pick(&lens, 2, 10_000, CPU), vec![0, 2], "at most two per batch");
        // When a pass costs much more than its tokens (a GPU), one full batch is cheaper.
        assert_eq!(pick(&lens, 64, 10_000, GPU), vec![0, 1, 2, 3, 4, 5]);
        // The token budget holds even then.
        assert_eq!(pick(&lens, 64, 100, GPU), vec![0, 2, 4]);
    }

    #[test]
    fn budgets_hold() {
        let lens: Vec<usize> = (0..200).map(|i| 5 + (i * 37) % 120).collect();
        for (size, tokens) in [(1, 1), (8, 512), (64, 2048), (32, 100_000)] {
            let p = pick(&lens, size, tokens, GPU);
            assert!(p.contains(&0));
            let longest = p.iter().map(|&i| lens[i]).max().unwrap();
            assert!(p.len() <= size);
            assert!(p.len() == 1 || p.len() * longest <= tokens, "{size} {tokens}: {p:?}");
        }
    }
}
