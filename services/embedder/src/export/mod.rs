//! Training-data export: embed a JSON-lines file of texts and labels with the served model and
//! write the vectors as a `torch.load`-able tensor (plus a `.labels` file, one label per line,
//! same order) and/or a TFRecord of `tf.train.Example` (`embedding`, `label`).
//!
//! `vdb-embedder export --input docs.jsonl --label-field section --torch out.pt --tfrecord out.tfrecord`
//! runs the model in-process through the same tokenizer, batcher and backend as the server.

pub mod tfrecord;
pub mod torch_file;

use crate::config::Config;
use crate::service::Embedder;
use anyhow::{bail, ensure, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Clone, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub config: Config,
    /// JSON lines, one object per text.
    #[arg(long)]
    pub input: PathBuf,
    /// The field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// The field holding the label (a string or a number).
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// Only the first N lines.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Write a [N, dimension] float32 tensor here (`torch.load(path)`), and the labels next to
    /// it with the extension `.labels`.
    #[arg(long)]
    pub torch: Option<PathBuf>,
    /// Write a TFRecord of tf.train.Example (embedding, label) here.
    #[arg(long)]
    pub tfrecord: Option<PathBuf>,
    /// Refuse texts over the model's input limit instead of cutting them.
    #[arg(long)]
    pub no_truncate: bool,
    /// Texts sent to the model per request.
    #[arg(long, default_value_t = 512)]
    pub chunk: usize,
}

/// The `.labels` file that goes with a tensor file: `train.pt` → `train.labels`.
pub fn labels_path(tensor: &Path) -> PathBuf {
    tensor.with_extension("labels")
}

/// Reads `(text, label)` pairs from JSON lines.
pub fn read_pairs(
    path: &Path,
    text_field: &str,
    label_field: &str,
    limit: Option<usize>,
) -> Result<(Vec<String>, Vec<String>)> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (mut texts, mut labels) = (Vec::new(), Vec::new());
    for (n, line) in BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|l| texts.len() >= l) {
            break;
        }
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let text = v[text_field]
            .as_str()
            .with_context(|| format!("{}:{}: no string {text_field:?}", path.display(), n + 1))?;
        let label = match &v[label_field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(x) => x.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => bail!("{}:{}: no string or number {label_field:?}", path.display(), n + 1),
        };
        ensure!(
            !label.contains(['\n', '\r']),
            "{}:{}: a label has a line break",
            path.display(),
            n + 1
        );
        texts.push(text.to_string());
        labels.push(label);
    }
    Ok((texts, labels))
}

/// Writes the tensor file and its `.labels` file.
pub fn write_torch(path: &Path, dim: usize, vectors: &[Vec<f32>], labels: &[String]) -> Result<()> {
    let flat: Vec<f32> = vectors.iter().flatten().copied().collect();
    let out = BufWriter::new(File::create(path)?);
    torch_file::write_f32_matrix(out, vectors.len(), dim, &flat)?;
    let mut l = BufWriter::new(File::create(labels_path(path))?);
    for label in labels {
        writeln!(l, "{label}")?;
    }
    l.flush()?;
    Ok(())
}

/// Writes one `tf.train.Example` per vector.
pub fn write_tfrecord(path: &Path, vectors: &[Vec<f32>], labels: &[String]) -> Result<()> {
    let mut w = tfrecord::TfRecordWriter::new(BufWriter::new(File::create(path)?));
    for (v, label) in vectors.iter().zip(labels) {
        w.write_example(v, label.as_bytes())?;
    }
    w.into_inner().flush()?;
    Ok(())
}

/// The `export` command.
pub async fn run(args: ExportArgs) -> Result<()> {
    ensure!(args.torch.is_some() || args.tfrecord.is_some(), "give --torch and/or --tfrecord");
    ensure!(args.chunk > 0, "--chunk must be positive");
    let (texts, labels) = read_pairs(&args.input, &args.text_field, &args.label_field, args.limit)?;
    let mut config = args.config.clone();
    config.max_client_batch = config.max_client_batch.max(args.chunk);
    config.max_queue = config.max_queue.max(args.chunk);
    let factory = crate::backend::factory(&config)?;
    let (embedder, ready) = Embedder::start(config, factory)?;
    let info = ready.await.context("the model thread ended")??;
    let started = std::time::Instant::now();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(args.chunk) {
        let out = embedder.embed(chunk.to_vec(), !args.no_truncate, true, "export").await?;
        vectors.extend(out.vectors);
    }
    tracing::info!(texts = texts.len(), seconds = started.elapsed().as_secs_f64(), "embedded");
    if let Some(path) = &args.torch {
        write_torch(path, info.dimension, &vectors, &labels)?;
    }
    if let Some(path) = &args.tfrecord {
        write_tfrecord(path, &vectors, &labels)?;
    }
    println!(
        "{}",
        serde_json::json!({"texts": vectors.len(), "dimension": info.dimension,
                           "torch": args.torch, "tfrecord": args.tfrecord})
    );
    Ok(())
}
