//! [`VectorIndex`]: one USearch HNSW index, made safe to share between threads.
//!
//! USearch supports concurrent adds and searches, but only as many at once as it has
//! per-thread contexts (`reserve_capacity_and_threads`), and growing its capacity must not
//! race with anything. So:
//! - every add/search/get holds the read side of an `RwLock`; `reserve` holds the write side;
//! - the node limits concurrent index operations to the number of contexts reserved here
//!   (search permits + insert threads), so USearch never runs out of contexts;
//! - USearch keeps `ef` (expansion_search) index-wide, not per query. [`EfGate`] lets all
//!   searches with the same `ef` run together and switches `ef` only between them.
//!
//! - USearch's graph walk (`stats`, and `memory_usage`, which walks too) reads node slots that
//!   a concurrent add may not have filled yet (a null node: SIGSEGV). It runs only with writes
//!   excluded ([`VectorIndex::walk_graph`], under the shard's writer lock); everyone else reads
//!   the figures it left.
//!
//! Scores: USearch returns distances (`1 - cos`, `1 - dot`, squared L2); we convert them to
//! what users expect: cosine similarity, dot product, Euclidean distance.

use crate::shard::Writer;
use parking_lot::{Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};
use vdb_api::{HnswConfig, IndexStats, Metric, ScalarType};

#[derive(Debug, thiserror::Error)]
#[error("usearch: {0}")]
pub struct IndexError(pub String);

impl From<cxx::Exception> for IndexError {
    fn from(e: cxx::Exception) -> Self {
        IndexError(e.what().to_string())
    }
}

pub struct VectorIndex {
    index: RwLock<Index>,
    metric: Metric,
    dimension: usize,
    threads: usize,
    ef: EfGate,
    graph: Mutex<GraphFigures>,
}

/// What the last graph walk counted.
#[derive(Default)]
struct GraphFigures {
    nodes: u64,
    edges: u64,
    memory_bytes: u64,
    /// When the last walk ran, and how long it took.
    walked: Option<(Instant, Duration)>,
}

impl VectorIndex {
    /// A new, empty index. `threads` is how many operations may run on it at once.
    pub fn new(
        dimension: usize,
        metric: Metric,
        scalar: ScalarType,
        hnsw: &HnswConfig,
        threads: usize,
    ) -> Result<Self, IndexError> {
        let options = IndexOptions {
            dimensions: dimension,
            metric: metric_kind(metric),
            quantization: scalar_kind(scalar),
            connectivity: hnsw.m,
            expansion_add: hnsw.ef_construction,
            expansion_search: hnsw.ef_search,
            multi: false,
        };
        let index = Index::new(&options)?;
        index.reserve_capacity_and_threads(1024, threads)?;
        Ok(Self::wrap(index, metric, dimension, hnsw.ef_search, threads))
    }

    /// Loads an index saved with [`VectorIndex::save_to_vec`].
    pub fn load(
        bytes: &[u8],
        metric: Metric,
        hnsw: &HnswConfig,
        threads: usize,
    ) -> Result<Self, IndexError> {
        let index = Index::restore_from_buffer(bytes)?;
        let dimension = index.dimensions();
        index.change_expansion_search(hnsw.ef_search);
        index.change_expansion_add(hnsw.ef_construction);
        let capacity = (index.size() + 1024).max(index.capacity());
        index.reserve_capacity_and_threads(capacity, threads)?;
        Ok(Self::wrap(index, metric, dimension, hnsw.ef_search, threads))
    }

    fn wrap(index: Index, metric: Metric, dimension: usize, ef: usize, threads: usize) -> Self {
        VectorIndex {
            index: RwLock::new(index),
            metric,
            dimension,
            threads,
            ef: EfGate::new(ef),
            graph: Mutex::new(GraphFigures::default()),
        }
    }

    pub fn dimension(&self) -> usize {
        self.dimension
    }

    /// Makes room for `additional` more vectors (grows by at least half to amortise).
    pub fn reserve_for(&self, additional: usize) -> Result<(), IndexError> {
        {
            let index = self.index.read();
            if index.size() + additional <= index.capacity() {
                return Ok(());
            }
        }
        let index = self.index.write();
        let needed = index.size() + additional;
        if needed > index.capacity() {
            let target = needed.max(index.capacity() + index.capacity() / 2);
            index.reserve_capacity_and_threads(target, self.threads)?;
        }
        Ok(())
    }

    /// Adds a vector; the caller reserved room first.
    pub fn add(&self, key: u64, vector: &[f32]) -> Result<(), IndexError> {
        Ok(self.index.read().add(key, vector)?)
    }

    pub fn remove(&self, key: u64) -> Result<(), IndexError> {
        self.index.read().remove(key)?;
        Ok(())
    }

    /// The stored vector (dequantised to f32), if the key is present.
    pub fn get(&self, key: u64, buf: &mut Vec<f32>) -> Result<bool, IndexError> {
        buf.resize(self.dimension, 0.0);
        let found = self.index.read().get(key, buf.as_mut_slice())?;
        Ok(found > 0)
    }

    /// Approximate top-`k` with candidate list `ef`; keys with their scores.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
    ) -> Result<Vec<(u64, f32)>, IndexError> {
        let _ef = self.ef.enter(ef, &self.index);
        let matches = self.index.read().search(query, k)?;
        Ok(self.scored(matches))
    }

    /// Approximate top-`k` among the keys `allow` accepts.
    pub fn filtered_search(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        allow: impl Fn(u64) -> bool,
    ) -> Result<Vec<(u64, f32)>, IndexError> {
        let _ef = self.ef.enter(ef, &self.index);
        let matches = self.index.read().filtered_search(query, k, allow)?;
        Ok(self.scored(matches))
    }

    fn scored(&self, m: usearch::ffi::Matches) -> Vec<(u64, f32)> {
        m.keys.into_iter().zip(m.distances).map(|(k, d)| (k, self.score(d))).collect()
    }

    /// Converts a USearch distance to the user-facing score.
    pub fn score(&self, distance: f32) -> f32 {
        match self.metric {
            Metric::Cosine | Metric::Dot => 1.0 - distance,
            Metric::L2 => distance.max(0.0).sqrt(),
        }
    }

    /// Serialises the whole index (for a snapshot). Concurrent searches may go on; the caller
    /// keeps writers out.
    pub fn save_to_vec(&self) -> Result<Vec<u8>, IndexError> {
        let index = self.index.read();
        let mut buf = vec![0u8; index.serialized_length()];
        index.save_to_buffer(&mut buf)?;
        Ok(buf)
    }

    /// The index described: live vectors and capacity now, graph figures from the last walk.
    pub fn stats(&self) -> IndexStats {
        let (vectors, capacity) = {
            let index = self.index.read();
            (index.size() as u64, index.capacity() as u64)
        };
        let graph = self.graph.lock();
        IndexStats {
            vectors,
            capacity,
            memory_bytes: graph.memory_bytes,
            nodes: graph.nodes,
            edges: graph.edges,
        }
    }

    /// Bytes the index holds, as of the last walk.
    pub fn memory_bytes(&self) -> u64 {
        self.graph.lock().memory_bytes
    }

    /// Counts the graph's nodes, edges and bytes. Nothing may add or remove meanwhile: the
    /// caller holds the shard's writer lock, which every change takes (`_writes` is it). A walk
    /// is O(vectors), so it runs again only once ten times its own duration (and at least a
    /// second) has passed, and writes pay at most a tenth of their time for it.
    pub(crate) fn walk_graph(&self, _writes: &Writer) {
        let mut graph = self.graph.lock();
        if let Some((at, took)) = graph.walked {
            if at.elapsed() < (took * 10).max(Duration::from_secs(1)) {
                return;
            }
        }
        let started = Instant::now();
        let index = self.index.read();
        let stats = index.stats();
        graph.nodes = stats.nodes as u64;
        graph.edges = stats.edges as u64;
        graph.memory_bytes = index.memory_usage() as u64;
        graph.walked = Some((started, started.elapsed()));
    }
}

/// The score of `a` against `b` computed here (for brute force), consistent with
/// [`VectorIndex::score`].
pub fn exact_score(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::Dot => dot(a, b),
        Metric::Cosine => {
            let (na, nb) = (dot(a, a), dot(b, b));
            if na == 0.0 || nb == 0.0 {
                0.0
            } else {
                dot(a, b) / (na.sqrt() * nb.sqrt())
            }
        }
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt(),
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight accumulators let the compiler vectorise without -ffast-math.
    let mut acc = [0.0f32; 8];
    let chunks_a = a.chunks_exact(8);
    let chunks_b = b.chunks_exact(8);
    let (ra, rb) = (chunks_a.remainder(), chunks_b.remainder());
    for (ca, cb) in chunks_a.zip(chunks_b) {
        for i in 0..8 {
            acc[i] += ca[i] * cb[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn metric_kind(metric: Metric) -> MetricKind {
    match metric {
        Metric::Cosine => MetricKind::Cos,
        Metric::L2 => MetricKind::L2sq,
        Metric::Dot => MetricKind::IP,
    }
}

fn scalar_kind(scalar: ScalarType) -> ScalarKind {
    match scalar {
        ScalarType::F32 => ScalarKind::F32,
        ScalarType::F16 => ScalarKind::F16,
        ScalarType::I8 => ScalarKind::I8,
    }
}

/// Lets searches that use the same `ef` share the index while a different `ef` waits for
/// them to finish (USearch's `ef` is index-wide).
struct EfGate {
    state: Mutex<EfState>,
    idle: Condvar,
}

struct EfState {
    ef: usize,
    active: usize,
}

struct EfGuard<'a> {
    gate: &'a EfGate,
}

impl EfGate {
    fn new(ef: usize) -> Self {
        EfGate { state: Mutex::new(EfState { ef, active: 0 }), idle: Condvar::new() }
    }

    fn enter<'a>(&'a self, ef: usize, index: &RwLock<Index>) -> EfGuard<'a> {
        let mut state = self.state.lock();
        while state.active > 0 && state.ef != ef {
            self.idle.wait(&mut state);
        }
        if state.ef != ef {
            index.read().change_expansion_search(ef);
            state.ef = ef;
        }
        state.active += 1;
        EfGuard { gate: self }
    }
}

impl Drop for EfGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.gate.state.lock();
        state.active -= 1;
        if state.active == 0 {
            self.gate.idle.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(metric: Metric) -> VectorIndex {
        VectorIndex::new(4, metric, ScalarType::F32, &HnswConfig::default(), 4).unwrap()
    }

    #[test]
    fn scores_match_brute_force_for_every_metric() {
        for metric in [Metric::Cosine, Metric::Dot, Metric::L2] {
            let idx = index(metric);
            let vs = [[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 2.0, 1.0]];
            idx.reserve_for(vs.len()).unwrap();
            for (i, v) in vs.iter().enumerate() {
                idx.add(i as u64, v).unwrap();
            }
            let q = [0.9, 0.1, 0.2, 0.0];
            let hits = idx.search(&q, 3, 16).unwrap();
            assert_eq!(hits.len(), 3);
            for (key, score) in hits {
                let want = exact_score(metric, &q, &vs[key as usize]);
                assert!((score - want).abs() < 1e-4, "{metric:?}: {score} vs {want}");
            }
        }
    }

    #[test]
    fn grows_past_initial_capacity_and_round_trips() {
        let idx = index(Metric::Cosine);
        idx.reserve_for(3000).unwrap();
        for i in 0..3000u64 {
            idx.add(i, &[i as f32 + 1.0, 1.0, (i % 7) as f32, 0.5]).unwrap();
        }
        let bytes = idx.save_to_vec().unwrap();
        let back = VectorIndex::load(&bytes, Metric::Cosine, &HnswConfig::default(), 4).unwrap();
        assert_eq!(back.stats().vectors, 3000);
        let mut buf = Vec::new();
        assert!(back.get(42, &mut buf).unwrap());
        assert_eq!(buf[0], 43.0);
        back.remove(42).unwrap();
        assert!(!back.get(42, &mut buf).unwrap());
    }

    #[test]
    fn ef_gate_switches_between_searches() {
        let idx = std::sync::Arc::new(index(Metric::L2));
        idx.reserve_for(100).unwrap();
        for i in 0..100u64 {
            idx.add(i, &[i as f32, 0.0, 0.0, 0.0]).unwrap();
        }
        std::thread::scope(|s| {
            for t in 0..4 {
                let idx = idx.clone();
                s.spawn(move || {
                    for j in 0..200 {
                        let hits =
                            idx.search(&[5.0, 0.0, 0.0, 0.0], 3, 8 + (t + j) % 3 * 32).unwrap();
                        assert_eq!(hits[0].0, 5);
                    }
                });
            }
        });
    }
}
