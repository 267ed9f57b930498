//! Reads the `debian-minilm` benchmark dataset: document vectors and payloads, queries, their
//! filters and exact ground truth (see the dataset's README).
//!
//! The directory comes from `VDB_DATA_DIR` (default `../shared/data` from the repository
//! root). Under CI (`CI=true`) a missing dataset is an error for the caller to fail on, never
//! a reason to skip.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One document's fields (its payload in VDB).
#[derive(Clone, Debug, Deserialize)]
pub struct Doc {
    pub id: u64,
    pub package: String,
    pub section: String,
    pub priority: String,
    pub installed_size: i64,
    pub text: String,
}

impl Doc {
    /// The payload VDB stores for this document (the text is left out to keep it small).
    pub fn payload(&self) -> serde_json::Value {
        serde_json::json!({
            "package": self.package,
            "section": self.section,
            "priority": self.priority,
            "installed_size": self.installed_size,
        })
    }
}

pub struct Dataset {
    pub dir: PathBuf,
    pub dim: usize,
    pub base: Vec<Vec<f32>>,
    pub docs: Vec<Doc>,
    pub queries: Vec<Vec<f32>>,
    /// Exact top-100 ids per query.
    pub gt: Vec<Vec<u32>>,
    /// The `section` each filtered query is restricted to.
    pub filter_sections: Vec<String>,
    /// Exact top-100 ids per query among the documents of its section.
    pub filtered_gt: Vec<Vec<u32>>,
}

/// The dataset directory: `$VDB_DATA_DIR/debian-minilm`, default `<repo>/../shared/data`.
pub fn dir() -> PathBuf {
    let root = std::env::var("VDB_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    root.join("debian-minilm")
}

impl Dataset {
    /// Loads everything; `limit` keeps only the first documents (ground truth is then not
    /// valid for recall — use [`Dataset::ground_truth_within`]).
    pub fn load(limit: Option<usize>) -> Result<Self> {
        let dir = dir();
        if !dir.join("base.fvecs").exists() {
            bail!(
                "dataset missing at {}: set VDB_DATA_DIR or rebuild it with scripts/make-dataset.sh",
                dir.display()
            );
        }
        let mut base = read_fvecs(&dir.join("base.fvecs"))?;
        let mut docs = read_jsonl::<Doc>(&dir.join("docs.jsonl"))?;
        ensure!(base.len() == docs.len(), "base.fvecs and docs.jsonl disagree on length");
        if let Some(n) = limit {
            base.truncate(n);
            docs.truncate(n);
        }
        let dim = base.first().map(Vec::len).context("empty base.fvecs")?;
        let queries = read_fvecs(&dir.join("queries.fvecs"))?;
        let gt = read_ivecs(&dir.join("queries.gt.ivecs"))?;
        #[derive(Deserialize)]
        struct Filtered {
            section: String,
        }
        let filter_sections = read_jsonl::<Filtered>(&dir.join("queries.filtered.jsonl"))?
            .into_iter()
            .map(|f| f.section)
            .collect();
        let filtered_gt = read_ivecs(&dir.join("queries.filtered.gt.ivecs"))?;
        Ok(Dataset { dir, dim, base, docs, queries, gt, filter_sections, filtered_gt })
    }

    /// Recall@k of `found` against the first `k` ids of `truth`.
    pub fn recall_at(k: usize, truth: &[u32], found: &[u64]) -> f64 {
        let truth: std::collections::HashSet<u64> =
            truth.iter().take(k).map(|&t| t as u64).collect();
        found.iter().take(k).filter(|id| truth.contains(id)).count() as f64 / k as f64
    }
}

pub fn read_fvecs(path: &Path) -> Result<Vec<Vec<f32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_vecs(&bytes, f32::from_le_bytes)
}

pub fn read_ivecs(path: &Path) -> Result<Vec<Vec<u32>>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    read_vecs(&bytes, u32::from_le_bytes)
}

/// texmex layout: per vector an i32 dimension, then that many 4-byte little-endian values.
fn read_vecs<T>(bytes: &[u8], decode: impl Fn([u8; 4]) -> T) -> Result<Vec<Vec<T>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        ensure!(at + 4 <= bytes.len(), "truncated header at byte {at}");
        let dim = i32::from_le_bytes(bytes[at..at + 4].try_into()?) as usize;
        at += 4;
        ensure!(at + 4 * dim <= bytes.len(), "truncated vector at byte {at}");
        out.push(
            bytes[at..at + 4 * dim]
                .chunks_exact(4)
                .map(|c| decode(c.try_into().expect("4 bytes")))
                .collect(),
        );
        at += 4 * dim;
    }
    Ok(out)
}

pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_texmex_vectors() {
        let mut bytes = Vec::new();
        for v in [[1.0f32, 2.0], [3.0, 4.5]] {
            bytes.extend_from_slice(&2i32.to_le_bytes());
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let vs = read_vecs(&bytes, f32::from_le_bytes).unwrap();
        assert_eq!(vs, vec![vec![1.0, 2.0], vec![3.0, 4.5]]);
        assert!(read_vecs(&bytes[..bytes.len() - 1], f32::from_le_bytes).is_err());
    }

    #[test]
    fn recall_counts_overlap_in_the_top_k() {
        assert_eq!(Dataset::recall_at(2, &[1, 2, 3], &[2, 9]), 0.5);
    }
}
