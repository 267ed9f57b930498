//! The real `vdb-embedder` with the torch backend on the exported model, for tests that need
//! text turned into vectors. It is the feature build of the embedder tier, found through
//! `VDB_EMBEDDER_BIN` and `VDB_EMBEDDER_MODEL_DIR` (`scripts/setup-embedder.sh`, then
//! `source ~/.cache/vdb/embedder.env`). Missing, it is a skip outside CI and a failure under
//! `CI=true`.

use crate::Http;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// A running `vdb-embedder`.
pub struct EmbedderProcess {
    child: Option<Child>,
    pub url: String,
    /// The model it serves, as its `/info` reports it.
    pub model: String,
}

impl EmbedderProcess {
    /// Starts the embedder (torch backend, CPU) on the exported model with extra `args`, and
    /// waits until it is ready; `None` with a skip line when the binary or the model is
    /// missing outside CI.
    pub fn start_or_skip(test: &str, args: &[&str]) -> Option<EmbedderProcess> {
        let bin = std::env::var_os("VDB_EMBEDDER_BIN").map(PathBuf::from);
        let model = std::env::var_os("VDB_EMBEDDER_MODEL_DIR").map(PathBuf::from);
        let missing = match (&bin, &model) {
            (Some(b), _) if !b.exists() => Some(format!("no binary at {}", b.display())),
            (_, Some(m)) if !m.join("embedder.json").exists() => {
                Some(format!("no exported model in {}", m.display()))
            }
            (Some(_), Some(_)) => None,
            _ => Some("VDB_EMBEDDER_BIN / VDB_EMBEDDER_MODEL_DIR are not set".to_string()),
        };
        if let Some(why) = missing {
            let why = format!(
                "{test} needs the feature-built vdb-embedder and the exported model: {why} \
                 (scripts/test-embedder.sh, or scripts/setup-embedder.sh and the feature build, \
                 then source ~/.cache/vdb/embedder.env)"
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
            eprintln!("skipping {why}");
            return None;
        }
        Some(Self::start(&bin.unwrap(), &model.unwrap(), args).expect("embedder starts"))
    }

    pub fn start(bin: &Path, model_dir: &Path, args: &[&str]) -> Result<EmbedderProcess> {
        let mut all: Vec<String> = ["--backend", "torch", "--device", "cpu", "--model-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.push(model_dir.display().to_string());
        all.extend(args.iter().map(|s| s.to_string()));
        let (child, url) = crate::spawn_path(bin, &all)?;
        let mut p = EmbedderProcess { child: Some(child), url, model: String::new() };
        let http = Http::new(&p.url);
        let deadline = Instant::now() + Duration::from_secs(180);
        while !matches!(http.get("/readyz"), Ok((200, _))) {
            if Instant::now() > deadline {
                bail!("embedder at {} not ready after 180 s", p.url);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, info) = http.get("/info")?;
        if status != 200 {
            bail!("embedder /info answered {status}: {info}");
        }
        p.model = info["model"].as_str().unwrap_or_default().to_string();
        Ok(p)
    }

    /// SIGKILL: the embedder is gone, its port refuses connections.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EmbedderProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
