//! The golden test: both backends reproduce the vectors sentence-transformers made for the
//! debian-minilm documents (`base.fvecs`, all-MiniLM-L6-v2), cosine >= 0.999 for every
//! document checked. Needs the exported model (`scripts/setup-embedder.sh`) and a build with
//! the backend's feature; under `CI=true` a missing model or dataset fails, elsewhere it skips.
//!
//! `VDB_GOLDEN_DOCS` (default 1000) documents are taken evenly across the dataset.
#![cfg(any(feature = "torch", feature = "tensorflow"))]

use std::path::PathBuf;
use std::time::Instant;
use vdb_dataset::{read_fvecs, read_jsonl, Doc};
use vdb_embedder::config::{BackendKind, Config};
use vdb_embedder::Embedder;

fn model_dir() -> Option<PathBuf> {
    let mut defaults = Config::for_model("", BackendKind::Torch);
    defaults.model_dir = std::env::var_os("VDB_EMBEDDER_MODEL_DIR").map(PathBuf::from);
    let dir = defaults.model_dir();
    if dir.join("embedder.json").exists() {
        return Some(dir);
    }
    let msg = format!("no exported model at {} (run scripts/setup-embedder.sh)", dir.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("skipping: {msg}");
    None
}

/// `n` documents spread evenly over the dataset, with their reference vectors.
fn sample(n: usize) -> (Vec<String>, Vec<Vec<f32>>) {
    let dir = vdb_dataset::dir();
    let base =
        read_fvecs(&dir.join("base.fvecs")).expect("debian-minilm base.fvecs (VDB_DATA_DIR)");
    let docs: Vec<Doc> = read_jsonl(&dir.join("docs.jsonl")).expect("debian-minilm docs.jsonl");
    assert_eq!(base.len(), docs.len());
    let step = (docs.len() / n).max(1);
    let picked: Vec<usize> = (0..docs.len()).step_by(step).take(n).collect();
    (
        picked.iter().map(|&i| docs[i].text.clone()).collect(),
        picked.iter().map(|&i| base[i].clone()).collect(),
    )
}

async fn golden(backend: BackendKind) {
    let Some(dir) = model_dir() else { return };
    let n: usize =
        std::env::var("VDB_GOLDEN_DOCS").ok().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let (texts, reference) = sample(n);
    let mut config = Config::for_model(dir, backend);
    config.device = vdb_embedder::config::DeviceChoice::Cpu;
    config.max_client_batch = texts.len();
    config.max_queue = texts.len();
    let factory = vdb_embedder::backend::factory(&config).unwrap();
    let (embedder, ready) = Embedder::start(config, factory).unwrap();
    let info = ready.await.unwrap().unwrap();
    assert_eq!(info.dimension, reference[0].len());
    let start = Instant::now();
    let got = embedder.embed(texts.clone(), true, true, "golden").await.unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let mut worst = (f32::MAX, 0);
    for (i, (a, b)) in got.vectors.iter().zip(&reference).enumerate() {
        let cos: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        if cos < worst.0 {
            worst = (cos, i);
        }
    }
    println!(
        "golden {}: {} docs, min cosine {:.6} (doc {:?}), {:.0} texts/s",
        backend.as_str(),
        texts.len(),
        worst.0,
        &texts[worst.1].chars().take(60).collect::<String>(),
        texts.len() as f64 / seconds
    );
    assert!(texts.len() >= n.min(1000), "too few documents checked");
    assert!(worst.0 >= 0.999, "document {} differs: cosine {}", worst.1, worst.0);
}

#[cfg(feature = "torch")]
#[tokio::test(flavor = "multi_thread")]
async fn torchscript_matches_sentence_transformers() {
    golden(BackendKind::Torch).await;
}

#[cfg(feature = "tensorflow")]
#[tokio::test(flavor = "multi_thread")]
async fn savedmodel_matches_sentence_transformers() {
    golden(BackendKind::Tensorflow).await;
}
