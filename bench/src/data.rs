//! Loads the `debian-minilm` dataset (texmex `.fvecs`/`.ivecs` and JSON lines) into flat
//! arrays, optionally cut down to a subset with its exact ground truth recomputed.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How many neighbours recall is measured at.
pub const K: usize = 10;

/// The subdirectory of the data dir holding the dataset.
pub const DATASET: &str = "debian-minilm";

pub use vdb_dataset::Doc;
use vdb_dataset::{read_ivecs, read_jsonl};

/// Everything both sides of the benchmark need, in memory.
pub struct Dataset {
    pub dir: PathBuf,
    pub dim: usize,
    /// Document vectors, row-major: row `i` is document id `i`.
    pub base: Vec<f32>,
    pub docs: Vec<Doc>,
    /// Each document's section as an index into `sections` (cheap to test in a predicate).
    pub doc_section: Vec<u16>,
    pub sections: Vec<String>,
    /// Query vectors, row-major.
    pub queries: Vec<f32>,
    /// The exact top ids per query (at least [`K`] of them).
    pub gt: Vec<Vec<u32>>,
    /// The section index each filtered query is restricted to.
    pub query_section: Vec<u16>,
    /// The exact top ids per query among the documents of its section.
    pub filtered_gt: Vec<Vec<u32>>,
}

impl Dataset {
    /// Loads `<data_dir>/debian-minilm`. With `docs`/`queries` limits, keeps the first
    /// documents and queries and recomputes the exact ground truth over that subset by brute
    /// force (the shipped one refers to the whole corpus).
    pub fn load(data_dir: &Path, docs: Option<usize>, queries: Option<usize>) -> Result<Self> {
        let dir = data_dir.join(DATASET);
        if !dir.join("base.fvecs").is_file() {
            bail!(
                "dataset missing: no {}/base.fvecs (pass --data-dir or set VDB_DATA_DIR to the \
                 directory holding {DATASET}/)",
                dir.display()
            );
        }
        let (dim, mut base) = read_fvecs(&dir.join("base.fvecs"))?;
        let mut doc_rows: Vec<Doc> = read_jsonl(&dir.join("docs.jsonl"))?;
        let n_full = base.len() / dim;
        ensure!(doc_rows.len() == n_full, "base.fvecs has {n_full} rows, docs.jsonl {}", {
            doc_rows.len()
        });
        for (row, doc) in doc_rows.iter().enumerate() {
            ensure!(doc.id == row as u64, "docs.jsonl line {} has id {}", row + 1, doc.id);
        }
        let (qdim, mut query_vecs) = read_fvecs(&dir.join("queries.fvecs"))?;
        ensure!(qdim == dim, "queries have dimension {qdim}, documents {dim}");
        let mut gt = read_ivecs(&dir.join("queries.gt.ivecs"))?;
        #[derive(Deserialize)]
        struct Filtered {
            section: String,
        }
        let mut filter_sections: Vec<String> =
            read_jsonl::<Filtered>(&dir.join("queries.filtered.jsonl"))?
                .into_iter()
                .map(|f| f.section)
                .collect();
        let mut filtered_gt = read_ivecs(&dir.join("queries.filtered.gt.ivecs"))?;
        let n_queries_full = query_vecs.len() / dim;
        ensure!(
            gt.len() == n_queries_full
                && filter_sections.len() == n_queries_full
                && filtered_gt.len() == n_queries_full,
            "query files disagree on the number of queries"
        );

        let n = docs.unwrap_or(n_full).min(n_full);
        let nq = queries.unwrap_or(n_queries_full).min(n_queries_full);
        base.truncate(n * dim);
        doc_rows.truncate(n);
        query_vecs.truncate(nq * dim);
        gt.truncate(nq);
        filter_sections.truncate(nq);
        filtered_gt.truncate(nq);

        let mut sections: Vec<String> = Vec::new();
        let mut index: HashMap<String, u16> = HashMap::new();
        let mut intern = |s: &str| -> u16 {
            *index.entry(s.to_string()).or_insert_with(|| {
                sections.push(s.to_string());
                (sections.len() - 1) as u16
            })
        };
        let doc_section: Vec<u16> = doc_rows.iter().map(|d| intern(&d.section)).collect();
        let query_section: Vec<u16> = filter_sections.iter().map(|s| intern(s)).collect();

        let mut data = Dataset {
            dir,
            dim,
            base,
            docs: doc_rows,
            doc_section,
            sections,
            queries: query_vecs,
            gt,
            query_section,
            filtered_gt,
        };
        if n < n_full {
            data.recompute_ground_truth();
        }
        Ok(data)
    }

    pub fn len(&self) -> usize {
        self.docs.len()
    }

    pub fn num_queries(&self) -> usize {
        self.query_section.len()
    }

    pub fn vector(&self, id: usize) -> &[f32] {
        &self.base[id * self.dim..(id + 1) * self.dim]
    }

    pub fn query(&self, q: usize) -> &[f32] {
        &self.queries[q * self.dim..(q + 1) * self.dim]
    }

    /// Exact top-[`K`] by dot product (the vectors are normalised, so it ranks as cosine),
    /// plain and restricted to each query's section.
    fn recompute_ground_truth(&mut self) {
        let n = self.len();
        let mut gt = Vec::with_capacity(self.num_queries());
        let mut filtered = Vec::with_capacity(self.num_queries());
        for q in 0..self.num_queries() {
            let query = self.query(q);
            let scores: Vec<f32> = (0..n).map(|i| dot(query, self.vector(i))).collect();
            gt.push(top_k(&scores, |_| true));
            let section = self.query_section[q];
            filtered.push(top_k(&scores, |i| self.doc_section[i] == section));
        }
        self.gt = gt;
        self.filtered_gt = filtered;
    }
}

/// Recall@K of `found` against the first K ids of `truth` (fewer when the truth holds fewer,
/// e.g. a section with under K documents in a subset).
pub fn recall(truth: &[u32], found: &[u64]) -> f64 {
    let truth = &truth[..truth.len().min(K)];
    if truth.is_empty() {
        return 1.0;
    }
    let hits = found.iter().take(K).filter(|&&id| truth.iter().any(|&t| u64::from(t) == id));
    hits.count() as f64 / truth.len() as f64
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Ids of the K best scores among rows that pass `keep`, best first, ties by id.
fn top_k(scores: &[f32], keep: impl Fn(usize) -> bool) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..scores.len()).filter(|&i| keep(i)).map(|i| i as u32).collect();
    let by_score = |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]);
    if ids.len() > K {
        ids.select_nth_unstable_by(K, by_score);
        ids.truncate(K);
    }
    ids.sort_by(|a, b| by_score(a, b).then(a.cmp(b)));
    ids
}

/// Reads an `.fvecs` file into (dimension, row-major floats).
fn read_fvecs(path: &Path) -> Result<(usize, Vec<f32>)> {
    let rows = vdb_dataset::read_fvecs(path)?;
    let dim = rows.first().map(Vec::len).with_context(|| format!("{} is empty", path.display()))?;
    ensure!(rows.iter().all(|r| r.len() == dim), "{} mixes dimensions", path.display());
    Ok((dim, rows.concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score_then_id() {
        let scores = [0.1, 0.9, 0.5, 0.9, 0.2];
        assert_eq!(top_k(&scores, |_| true)[..4], [1, 3, 2, 4]);
        assert_eq!(top_k(&scores, |i| i % 2 == 0), vec![2, 4, 0]);
    }

    #[test]
    fn recall_counts_overlap_with_the_top_k() {
        let truth: Vec<u32> = (0..20).collect();
        let found: Vec<u64> = (5..15).collect();
        assert_eq!(recall(&truth, &found), 0.5);
        assert_eq!(recall(&[3, 4], &[4, 3, 9]), 1.0);
    }

    #[test]
    fn reads_texmex_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.fvecs");
        let mut bytes = Vec::new();
        for row in [[1.0f32, 2.0], [3.0, 4.5]] {
            bytes.extend_from_slice(&2i32.to_le_bytes());
            row.iter().for_each(|x| bytes.extend_from_slice(&x.to_le_bytes()));
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_fvecs(&path).unwrap(), (2, vec![1.0, 2.0, 3.0, 4.5]));
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(read_fvecs(&path).is_err());
    }
}
