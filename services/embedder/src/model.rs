//! What every backend shares: the exported model's manifest (`embedder.json`), a padded
//! [`Batch`] of token ids, the model's [`Output`], and pooling + L2 normalisation.

use crate::error::StartError;
use serde::Deserialize;
use std::path::Path;
use vdb_api::embed::Pooling;

/// `embedder.json`, written by `scripts/export_models.py` next to the model files.
#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub name: String,
    /// Longest input in tokens, special tokens included.
    pub max_input_tokens: usize,
    /// How token embeddings are pooled when the model returns them.
    pub pooling: Pooling,
    #[serde(default = "yes")]
    pub normalize: bool,
}

fn yes() -> bool {
    true
}

impl Manifest {
    pub fn read(model_dir: &Path) -> Result<Self, StartError> {
        let path = model_dir.join("embedder.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StartError::Model(format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| StartError::Model(format!("{} is not valid: {e}", path.display())))
    }
}

/// Inputs of one forward pass, padded to the longest: row-major `[size, len]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub size: usize,
    pub len: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

impl Batch {
    /// Pads `inputs` (token ids and type ids per input) with zeros to the longest.
    pub fn pad<'a>(inputs: impl ExactSizeIterator<Item = (&'a [u32], &'a [u32])> + Clone) -> Self {
        let size = inputs.len();
        let len = inputs.clone().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let mut b = Batch {
            size,
            len,
            input_ids: vec![0; size * len],
            attention_mask: vec![0; size * len],
            token_type_ids: vec![0; size * len],
        };
        for (row, (ids, types)) in inputs.enumerate() {
            let at = row * len;
            for (i, (&id, &ty)) in ids.iter().zip(types.iter()).enumerate() {
                b.input_ids[at + i] = i64::from(id);
                b.token_type_ids[at + i] = i64::from(ty);
                b.attention_mask[at + i] = 1;
            }
        }
        b
    }

    /// Tokens that carry input (not padding).
    pub fn real_tokens(&self) -> usize {
        self.attention_mask.iter().filter(|&&m| m != 0).count()
    }
}

/// What a model returns for a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Token embeddings, row-major `[size, len, dim]`: pooled by the service.
    Tokens { dim: usize, values: Vec<f32> },
    /// One vector per input, row-major `[size, dim]`: the model pooled already.
    Pooled { dim: usize, values: Vec<f32> },
}

impl Output {
    pub fn dim(&self) -> usize {
        match self {
            Output::Tokens { dim, .. } | Output::Pooled { dim, .. } => *dim,
        }
    }

    /// One vector per input of `batch`, pooled as `pooling` says when the model gave tokens.
    pub fn pool(&self, batch: &Batch, pooling: Pooling) -> Vec<Vec<f32>> {
        match self {
            Output::Pooled { dim, values } => values.chunks(*dim).map(<[f32]>::to_vec).collect(),
            Output::Tokens { dim, values } => {
                let (dim, len) = (*dim, batch.len);
                (0..batch.size)
                    .map(|row| {
                        let tokens = &values[row * len * dim..(row + 1) * len * dim];
                        let mask = &batch.attention_mask[row * len..(row + 1) * len];
                        match pooling {
                            Pooling::Cls => tokens[..dim].to_vec(),
                            Pooling::Mean => mean_pool(tokens, mask, dim),
                        }
                    })
                    .collect()
            }
        }
    }
}

/// The mean of the token vectors whose mask is set, accumulated in f64.
fn mean_pool(tokens: &[f32], mask: &[i64], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f64; dim];
    let mut n = 0usize;
    for (t, &m) in tokens.chunks(dim).zip(mask) {
        if m != 0 {
            n += 1;
            for (s, &v) in sum.iter_mut().zip(t) {
                *s += f64::from(v);
            }
        }
    }
    let n = n.max(1) as f64;
    sum.into_iter().map(|s| (s / n) as f32).collect()
}

/// Scales `v` to unit length (a zero vector stays zero). The norm is computed in f64.
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_and_masks() {
        let (a, b) = ([101u32, 7, 102], [101u32, 102]);
        let (ta, tb) = ([0u32; 3], [0u32; 2]);
        let batch = Batch::pad([(&a[..], &ta[..]), (&b[..], &tb[..])].into_iter());
        assert_eq!((batch.size, batch.len), (2, 3));
        assert_eq!(batch.input_ids, vec![101, 7, 102, 101, 102, 0]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 1, 1, 0]);
        assert_eq!(batch.real_tokens(), 5);
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let (a, b) = ([1u32, 2], [1u32]);
        let t = [0u32; 2];
        let batch = Batch::pad([(&a[..], &t[..]), (&b[..], &t[..1])].into_iter());
        // dim 2: row 0 tokens (1,1),(3,3); row 1 token (5,5) and a padded (100,100).
        let out = Output::Tokens { dim: 2, values: vec![1., 1., 3., 3., 5., 5., 100., 100.] };
        assert_eq!(out.pool(&batch, Pooling::Mean), vec![vec![2., 2.], vec![5., 5.]]);
        assert_eq!(out.pool(&batch, Pooling::Cls), vec![vec![1., 1.], vec![5., 5.]]);
        let pooled = Output::Pooled { dim: 2, values: vec![1., 2., 3., 4.] };
        assert_eq!(pooled.pool(&batch, Pooling::Mean), vec![vec![1., 2.], vec![3., 4.]]);
    }

    #[test]
    fn normalisation() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
