//! An in-memory model for tests: each token id maps to a fixed pseudo-random vector, so a
//! text's embedding does not depend on the batch it ran in. Records every batch it sees and
//! can hold batches back (a gate) to fill the queue on purpose.

use super::{Backend, Loaded};
use crate::model::{Batch, Output};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;

/// Shared with the test that created the backend.
#[derive(Default)]
pub struct Probe {
    /// (inputs, padded length) of every batch run.
    pub batches: Mutex<Vec<(usize, usize)>>,
    gate: Mutex<bool>,
    opened: Condvar,
    held: std::sync::atomic::AtomicUsize,
}

impl Probe {
    /// Holds every following forward pass until [`Probe::open`].
    pub fn close(&self) {
        *self.gate.lock() = true;
    }

    /// Forward passes waiting at the gate right now.
    pub fn held(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn open(&self) {
        *self.gate.lock() = false;
        self.opened.notify_all();
    }
}

pub struct Fake {
    pub dim: usize,
    pub probe: Arc<Probe>,
}

impl Fake {
    /// A loaded fake model reporting to `probe` (call it inside the backend factory).
    pub fn loaded(dim: usize, probe: Arc<Probe>) -> Loaded {
        Loaded { backend: Box::new(Fake { dim, probe }), device: "cpu".into(), dtype: "f32".into() }
    }
}

/// A deterministic value in [-1, 1) for (token id, coordinate).
fn value(id: i64, d: usize) -> f32 {
    let mut x = (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (d as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

impl Backend for Fake {
    fn forward(&mut self, batch: &Batch) -> Result<Output, String> {
        {
            let mut closed = self.probe.gate.lock();
            self.probe.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            while *closed {
                self.probe.opened.wait(&mut closed);
            }
            self.probe.held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.probe.batches.lock().push((batch.size, batch.len));
        let mut values = Vec::with_capacity(batch.input_ids.len() * self.dim);
        for &id in &batch.input_ids {
            values.extend((0..self.dim).map(|d| value(id, d)));
        }
        Ok(Output::Tokens { dim: self.dim, values })
    }
}
