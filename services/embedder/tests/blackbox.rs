//! The real `vdb-embedder` binary with each compiled backend and the exported model: it starts
//! on port 0, reports itself on `/info`, serves the dataset's vectors over HTTP, refuses long
//! input with 422, exits cleanly on SIGTERM, and fails at startup (not later) on a device it
//! cannot use. Skipped without the model unless `CI=true`.
#![cfg(any(feature = "torch", feature = "tensorflow"))]

use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vdb_client::embedder::{EmbedError, EmbedderClient};
use vdb_dataset::{read_fvecs, read_jsonl, Doc};

fn model_dir() -> Option<PathBuf> {
    let mut c = vdb_embedder::Config::for_model("", vdb_embedder::config::BackendKind::Torch);
    c.model_dir = std::env::var_os("VDB_EMBEDDER_MODEL_DIR").map(PathBuf::from);
    let dir = c.model_dir();
    if dir.join("embedder.json").exists() {
        return Some(dir);
    }
    let msg = format!("no exported model at {} (run scripts/setup-embedder.sh)", dir.display());
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("skipping: {msg}");
    None
}

fn command(dir: &PathBuf, backend: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vdb-embedder"));
    cmd.args(["--listen", "127.0.0.1:0", "--backend", backend])
        .arg("--model-dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serves(backend: &str) {
    let Some(dir) = model_dir() else { return };
    let mut child = Proc(command(&dir, backend, &["--device", "cpu"]).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: serde_json::Value = serde_json::from_str(&line).unwrap();
    let url = format!("http://{}", addr["listening"].as_str().unwrap());
    let client = EmbedderClient::new(&url).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !client.ready().await.unwrap_or(false) {
        assert!(Instant::now() < deadline, "not ready after 120 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let info = client.info().await.unwrap();
    assert_eq!(
        (info.backend.as_str(), info.device.as_str(), info.dtype.as_str()),
        (backend, "cpu", "f32")
    );
    assert_eq!((info.dimension, info.max_input_tokens), (384, 256));

    let data = vdb_dataset::dir();
    let docs: Vec<Doc> = read_jsonl(&data.join("docs.jsonl")).unwrap();
    let base = read_fvecs(&data.join("base.fvecs")).unwrap();
    let picked = [0, 12_345, 40_000];
    let texts: Vec<&str> = picked.iter().map(|&i| docs[i].text.as_str()).collect();
    let got = client.embed(&texts, true).await.unwrap();
    for (v, &i) in got.iter().zip(&picked) {
        let cos: f32 = v.iter().zip(&base[i]).map(|(a, b)| a * b).sum();
        assert!(cos >= 0.999, "{backend}: doc {i} cosine {cos}");
    }

    let long = "debian ".repeat(300);
    let err = client.embed(&[long.as_str()], false).await.unwrap_err();
    assert!(matches!(err, EmbedError::Refused { .. }), "{err:?}");
    assert_eq!(client.embed(&[long.as_str()], true).await.unwrap()[0].len(), 384);

    let http = reqwest::Client::new();
    let r: serde_json::Value = http
        .post(format!("{url}/v1/embeddings"))
        .json(&json!({"input": ["a vector database"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"][0]["embedding"].as_array().unwrap().len(), 384);
    assert_eq!(r["model"], "all-MiniLM-L6-v2");

    let pid = child.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// A device the library cannot use stops the process at startup with the reason.
fn refuses(backend: &str, extra: &[&str], needle: &str) {
    let Some(dir) = model_dir() else { return };
    let out = command(&dir, backend, extra).output().unwrap();
    assert!(!out.status.success(), "{backend} {extra:?} started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(needle), "{backend} {extra:?}: {stderr}");
}

#[cfg(feature = "torch")]
#[tokio::test]
async fn torch_binary_serves() {
    serves("torch").await;
}

#[cfg(feature = "torch")]
#[test]
fn torch_refuses_unusable_devices() {
    refuses("torch", &["--device", "cpu", "--dtype", "f16"], "f16 needs a GPU");
    if !std::path::Path::new("/dev/nvidia0").exists() {
        refuses("torch", &["--device", "cuda:0"], "cuda:0 requested");
    }
}

#[cfg(feature = "tensorflow")]
#[tokio::test]
async fn tensorflow_binary_serves() {
    serves("tensorflow").await;
}

#[cfg(feature = "tensorflow")]
#[test]
fn tensorflow_refuses_unusable_devices() {
    refuses(
        "tensorflow",
        &["--device", "cpu", "--dtype", "f16"],
        "f16 is offered by the torch backend only",
    );
    if !std::path::Path::new("/dev/nvidia0").exists() {
        refuses("tensorflow", &["--device", "cuda:0"], "sees no GPU");
    }
}
