//! The baseline: USearch in-process, with the shard's index parameters, built and searched by
//! `threads` OS threads.

use crate::data::{recall, Dataset, K};
use crate::report::{Accuracy, LatencyLog, Rate, Timed};
use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// HNSW parameters shared by both sides of the benchmark.
#[derive(Clone, Copy, Debug)]
pub struct Hnsw {
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
}

/// Rows handed to a builder thread at a time: small enough to balance, large enough that the
/// shared counter is not contended.
const BUILD_CHUNK: usize = 64;

/// Builds the index with `threads` threads adding concurrently; returns it with the build rate.
pub fn build(data: &Dataset, hnsw: Hnsw, threads: usize) -> Result<(Index, Rate)> {
    let options = IndexOptions {
        dimensions: data.dim,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: hnsw.m,
        expansion_add: hnsw.ef_construction,
        expansion_search: hnsw.ef_search,
        multi: false,
    };
    let index = Index::new(&options).map_err(|e| anyhow!("usearch index: {e}"))?;
    // USearch keeps one search context per thread slot; concurrent callers beyond the slots
    // reserved here would share a context, so reserve one per thread we are about to start.
    index
        .reserve_capacity_and_threads(data.len(), threads)
        .map_err(|e| anyhow!("usearch reserve: {e}"))?;
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let from = next.fetch_add(BUILD_CHUNK, Ordering::Relaxed);
                        if from >= data.len() {
                            return Ok(());
                        }
                        for id in from..(from + BUILD_CHUNK).min(data.len()) {
                            index
                                .add(id as u64, data.vector(id))
                                .map_err(|e| anyhow!("usearch add {id}: {e}"))?;
                        }
                    }
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| w.join().map_err(|_| anyhow!("builder panicked"))?)
    })?;
    let rate = Rate::new(data.len(), start.elapsed());
    anyhow::ensure!(index.size() == data.len(), "index holds {} of {}", index.size(), data.len());
    Ok((index, rate))
}

/// One search, plain or restricted to query `q`'s section.
fn search_one(index: &Index, data: &Dataset, q: usize, filtered: bool) -> Result<Vec<u64>> {
    let query = data.query(q);
    let matches = if filtered {
        let section = data.query_section[q];
        index.filtered_search(query, K, |key| data.doc_section[key as usize] == section)
    } else {
        index.search(query, K)
    }
    .map_err(|e| anyhow!("usearch search: {e}"))?;
    Ok(matches.keys)
}

/// Mean recall@K over every query at `ef`, split across `threads` threads (it is untimed;
/// threads only make slow filtered passes bearable). It also warms the caches.
pub fn accuracy(
    index: &Index,
    data: &Dataset,
    ef: usize,
    filtered: bool,
    threads: usize,
) -> Result<Accuracy> {
    index.change_expansion_search(ef);
    let truth = if filtered { &data.filtered_gt } else { &data.gt };
    let per_thread = truth.len().div_ceil(threads);
    let sum = std::thread::scope(|s| -> Result<f64> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || -> Result<f64> {
                    let range =
                        (t * per_thread).min(truth.len())..((t + 1) * per_thread).min(truth.len());
                    range
                        .map(|q| Ok(recall(&truth[q], &search_one(index, data, q, filtered)?)))
                        .sum()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|_| anyhow!("recall thread panicked"))?).sum()
    })?;
    Ok(Accuracy { recall: sum / truth.len().max(1) as f64, plans: Default::default() })
}

/// All queries cycled at `ef` for `duration` across `threads` threads.
pub fn timed(
    index: &Index,
    data: &Dataset,
    ef: usize,
    filtered: bool,
    threads: usize,
    duration: Duration,
) -> Result<Timed> {
    index.change_expansion_search(ef);
    let nq = data.num_queries();
    let barrier = Barrier::new(threads + 1);
    let (logs, elapsed) = std::thread::scope(|s| -> Result<(Vec<LatencyLog>, Duration)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || -> Result<LatencyLog> {
                    let mut log = LatencyLog::with_capacity(duration);
                    // Threads start at different queries so they do not walk in lockstep.
                    let mut q = t * nq / threads;
                    barrier.wait();
                    let deadline = Instant::now() + duration;
                    loop {
                        let sent = Instant::now();
                        if sent >= deadline {
                            return Ok(log);
                        }
                        search_one(index, data, q, filtered)?;
                        log.record(sent.elapsed());
                        q = (q + 1) % nq;
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let logs = workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow!("search thread panicked"))?)
            .collect::<Result<Vec<_>>>()?;
        Ok((logs, start.elapsed()))
    })?;
    Ok(Timed { log: LatencyLog::merge(logs), elapsed, errors: 0, cpu: None })
}
