//! Test harness: starts the real release binaries on random loopback ports and talks to them
//! over HTTP, as users and routers do.
//!
//! - [`ShardProcess`]: a `vdb-shard` process with its own data directory; kill it (SIGKILL),
//!   stop it (SIGTERM) and start it again on the same data.
//! - [`Http`]: raw JSON requests, for tests that must send what a typed client cannot
//!   (malformed bodies, wrong types).
//! - [`fleet`]: routers and whole fleets; [`embedder::EmbedderProcess`]: the feature-built
//!   `vdb-embedder` on the real model; [`data`]: the debian-minilm dataset; [`history`]: client
//!   histories of replicated collections and their checker; [`proxy`]: a TCP proxy that
//!   partitions a process from its callers; [`netfault`]: nftables rules that drop the
//!   packets one process sends to others (a partition between shard nodes).
//!
//! Binaries come from `target/release` (built by `make test` before the tests run), or from
//! `VDB_BIN_DIR`.

pub mod copies;
pub mod data;
pub mod embedder;
pub mod fleet;
pub mod history;
pub mod netfault;
pub mod ownership;
pub mod proxy;

use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the release binaries are.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("VDB_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

/// A running `vdb-shard`.
pub struct ShardProcess {
    child: Option<Child>,
    pub data_dir: PathBuf,
    pub url: String,
    pub args: Vec<String>,
    /// The user id the process runs as (`None`: the test's own), so network rules can pick
    /// out its packets ([`netfault`]).
    pub uid: Option<u32>,
    _tmp: Option<tempfile::TempDir>,
}

impl ShardProcess {
    /// Starts a shard node on a fresh temporary data directory with extra `args`.
    pub fn start(args: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut p = Self::start_on(&dir, args)?;
        p._tmp = Some(tmp);
        Ok(p)
    }

    /// Starts a shard node on `data_dir` (kept after the process ends).
    pub fn start_on(data_dir: &Path, args: &[&str]) -> Result<Self> {
        Self::start_as(data_dir, None, args)
    }

    /// [`ShardProcess::start`] as user `uid` (the test must run as root), which is given the
    /// fresh data directory.
    pub fn start_with_uid(uid: u32, args: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        std::os::unix::fs::chown(tmp.path(), Some(uid), Some(uid))
            .with_context(|| format!("giving {} to uid {uid}", tmp.path().display()))?;
        let mut p = Self::start_as(tmp.path(), Some(uid), args)?;
        p._tmp = Some(tmp);
        Ok(p)
    }

    fn start_as(data_dir: &Path, uid: Option<u32>, args: &[&str]) -> Result<Self> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(data_dir, uid, &args)?;
        let p = ShardProcess {
            child: Some(child),
            data_dir: data_dir.into(),
            url,
            args,
            uid,
            _tmp: None,
        };
        p.wait_ready(Duration::from_secs(120))?;
        Ok(p)
    }

    /// The port the node listens on.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("url ends in a port")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Polls `/readyz` until it answers 200.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let http = self.http();
        loop {
            if matches!(http.get("/readyz"), Ok((200, _))) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("shard at {} not ready after {timeout:?}", self.url);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process dies at once, nothing is flushed.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How the process ended, when it ended by itself (`None` while it runs or after
    /// [`ShardProcess::kill9`]).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGSTOP: the process stays alive but answers nothing (a hung node).
    pub fn pause(&self) {
        signal(self.pid(), libc::SIGSTOP);
    }

    /// SIGCONT after [`ShardProcess::pause`].
    pub fn resume(&self) {
        signal(self.pid(), libc::SIGCONT);
    }

    /// SIGTERM, then waits for a clean exit; returns its exit status code.
    pub fn terminate(&mut self) -> Result<Option<i32>> {
        let Some(mut c) = self.child.take() else { return Ok(None) };
        signal(c.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = c.try_wait()? {
                return Ok(status.code());
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                bail!("shard did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts the process again on the same data directory (after kill9 or terminate).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let (child, url) = spawn(&self.data_dir, self.uid, &self.args)?;
        self.child = Some(child);
        self.url = url;
        self.wait_ready(Duration::from_secs(300))
    }

    pub fn http(&self) -> Http {
        Http::new(&self.url)
    }
}

impl Drop for ShardProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn signal(pid: u32, sig: i32) {
    // kill(1) keeps this crate free of unsafe code.
    let name = match sig {
        libc::SIGTERM => "TERM",
        libc::SIGKILL => "KILL",
        libc::SIGSTOP => "STOP",
        libc::SIGCONT => "CONT",
        _ => "TERM",
    };
    let _ = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).status();
}

fn spawn(data_dir: &Path, uid: Option<u32>, args: &[String]) -> Result<(Child, String)> {
    let mut all: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
    all.extend(args.iter().cloned());
    let bin = binary("vdb-shard")?;
    let mut command = Command::new(&bin);
    if let Some(uid) = uid {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(uid);
    }
    spawn_command(command, &bin, &all)
}

/// Starts release binary `name` on a free loopback port with `args`, and reads the address
/// it bound from its first stdout line (`{"listening": "127.0.0.1:PORT"}`).
pub fn spawn_binary(name: &str, args: &[String]) -> Result<(Child, String)> {
    spawn_path(&binary(name)?, args)
}

fn binary(name: &str) -> Result<PathBuf> {
    let bin = bin_dir().join(name);
    if !bin.exists() {
        bail!("{} is missing: build it with `cargo build --release -p {name}`", bin.display());
    }
    Ok(bin)
}

/// [`spawn_binary`] for a binary at any path.
pub fn spawn_path(bin: &Path, args: &[String]) -> Result<(Child, String)> {
    spawn_command(Command::new(bin), bin, args)
}

fn spawn_command(mut command: Command, bin: &Path, args: &[String]) -> Result<(Child, String)> {
    let mut child = command
        .arg("--listen")
        .arg("127.0.0.1:0")
        .args(args)
        .env("RUST_LOG", std::env::var("VDB_TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let v: serde_json::Value =
        serde_json::from_str(line.trim()).with_context(|| format!("first line {line:?}"))?;
    let addr = v["listening"].as_str().context("no listening address")?;
    Ok((child, format!("http://{addr}")))
}

/// Raw JSON over HTTP, blocking (tests drive the servers from plain threads).
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::blocking::Client,
}

/// A status code and the parsed JSON body (`Value::Null` when the body is not JSON).
pub type Reply = (u16, serde_json::Value);

impl Http {
    pub fn new(base: &str) -> Self {
        Self::with_timeout(base, Duration::from_secs(120))
    }

    /// A client whose requests give up after `timeout` (for polling while a node hangs).
    pub fn with_timeout(base: &str, timeout: Duration) -> Self {
        let client =
            reqwest::blocking::Client::builder().timeout(timeout).build().expect("http client");
        Http { base: base.to_string(), client }
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        reply(self.client.get(format!("{}{path}", self.base)).send()?)
    }

    pub fn delete(&self, path: &str) -> Result<Reply> {
        reply(self.client.delete(format!("{}{path}", self.base)).send()?)
    }

    pub fn post(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        reply(self.client.post(format!("{}{path}", self.base)).json(body).send()?)
    }

    pub fn patch(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        reply(self.client.patch(format!("{}{path}", self.base)).json(body).send()?)
    }

    pub fn put(&self, path: &str, body: &serde_json::Value) -> Result<Reply> {
        reply(self.client.put(format!("{}{path}", self.base)).json(body).send()?)
    }

    /// Sends `body` as-is with a JSON content type (for malformed input).
    pub fn send_raw(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        reply(
            self.client
                .request(method, format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body)
                .send()?,
        )
    }

    /// The text of `/metrics`.
    pub fn metrics(&self) -> Result<String> {
        Ok(self.client.get(format!("{}/metrics", self.base)).send()?.text()?)
    }
}

fn reply(r: reqwest::blocking::Response) -> Result<Reply> {
    let status = r.status().as_u16();
    let text = r.text()?;
    Ok((status, serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)))
}

/// Asserts a JSON error reply: the status and the error code.
#[track_caller]
pub fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.0, status, "unexpected reply {reply:?}");
    assert_eq!(reply.1["error"]["code"], code, "unexpected reply {reply:?}");
    assert!(reply.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
}
