//! Routers and whole local fleets (shard nodes + a router) for tests that go through the
//! public API.

use crate::{Http, ShardProcess};
use anyhow::{bail, Result};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// A running `vdb-router`.
pub struct RouterProcess {
    child: Option<Child>,
    pub url: String,
    pub id: String,
    args: Vec<String>,
}

impl RouterProcess {
    /// Starts a router with `--metastore metastore`, the given nodes (`id=url`) and extra
    /// `args`; health checks every 100 ms (unless `args` set them) so tests see node failures
    /// quickly.
    pub fn start(
        id: &str,
        metastore: &str,
        nodes: &[(String, String)],
        args: &[&str],
    ) -> Result<Self> {
        let mut all: Vec<String> =
            vec!["--metastore".into(), metastore.into(), "--router-id".into(), id.into()];
        if !args.iter().any(|a| a.starts_with("--health-interval-ms")) {
            all.extend(["--health-interval-ms".into(), "100".into()]);
        }
        for (node, url) in nodes {
            all.push("--node".into());
            all.push(format!("{node}={url}"));
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let (child, url) = spawn_router(&all)?;
        let p = RouterProcess { child: Some(child), url, id: id.into(), args: all };
        p.wait_ready(Duration::from_secs(30))?;
        Ok(p)
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url)
    }

    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if matches!(self.http().get("/readyz"), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("router at {} not ready after {timeout:?}", self.url);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How the process ended, when it ended by itself.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again with the same arguments (a new port).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let (child, url) = spawn_router(&self.args)?;
        self.child = Some(child);
        self.url = url;
        self.wait_ready(Duration::from_secs(30))
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn spawn_router(args: &[String]) -> Result<(Child, String)> {
    crate::spawn_binary("vdb-router", args)
}

/// `n` shard nodes and one router on a local metastore file.
pub struct Fleet {
    pub shards: Vec<ShardProcess>,
    pub router: RouterProcess,
    pub meta_dir: tempfile::TempDir,
}

impl Fleet {
    pub fn start(n: usize, shard_args: &[&str], router_args: &[&str]) -> Result<Fleet> {
        let shards = (0..n).map(|_| ShardProcess::start(shard_args)).collect::<Result<Vec<_>>>()?;
        let meta_dir = tempfile::tempdir()?;
        let meta: PathBuf = meta_dir.path().join("meta.json");
        let router = RouterProcess::start(
            "r1",
            &format!("local://{}", meta.display()),
            &Self::nodes_of(&shards),
            router_args,
        )?;
        Ok(Fleet { shards, router, meta_dir })
    }

    /// `n{i}=url` for each shard process.
    pub fn nodes_of(shards: &[ShardProcess]) -> Vec<(String, String)> {
        shards.iter().enumerate().map(|(i, s)| (format!("n{i}"), s.url.clone())).collect()
    }

    pub fn http(&self) -> Http {
        self.router.http()
    }

    /// Panics naming every process of the fleet that ended by itself, with its exit status
    /// (a crash then reads as a crash, not as a timeout further on).
    pub fn assert_alive(&mut self) {
        let mut dead: Vec<String> = self
            .shards
            .iter_mut()
            .enumerate()
            .filter_map(|(i, s)| s.exited().map(|st| format!("shard node n{i} ({}): {st}", s.url)))
            .collect();
        if let Some(st) = self.router.exited() {
            dead.push(format!("router {}: {st}", self.router.url));
        }
        assert!(dead.is_empty(), "fleet processes ended: {}", dead.join("; "));
    }
}
