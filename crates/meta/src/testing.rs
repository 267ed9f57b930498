//! Test support (feature `testing`): a throwaway real etcd server for tests of any crate.
//!
//! The etcd binary is `$VDB_ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd` (Debian's
//! `etcd-server` package, installed by `scripts/setup.sh`). Tests that need it call
//! [`EtcdServer::start_or_skip`]: with `CI=true` a missing binary fails the test; elsewhere
//! the test prints a skip line and passes.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::conformance::StoreFactory;
use crate::MetaStore;

/// How long a fresh etcd may take to elect itself and answer `/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Attempts with fresh ports, in case another process grabbed a port we picked.
const START_ATTEMPTS: usize = 3;

/// A single-member etcd on 127.0.0.1 with free ports and a temporary data dir; killed on
/// drop.
#[derive(Debug)]
pub struct EtcdServer {
    child: Option<Child>,
    client_port: u16,
    dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Where the etcd binary is, if installed: `$VDB_ETCD_BIN` if set (and `None` if that
    /// file does not exist), else `etcd` on `PATH`, else `/usr/bin/etcd`.
    pub fn binary() -> Option<PathBuf> {
        if let Some(bin) = std::env::var_os("VDB_ETCD_BIN") {
            // An explicit choice: no fallback when it is not there.
            let bin = PathBuf::from(bin);
            return bin.is_file().then_some(bin);
        }
        let on_path = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("etcd"))
                .find(|candidate| candidate.is_file())
        });
        on_path.or_else(|| {
            let debian = Path::new("/usr/bin/etcd");
            debian.is_file().then(|| debian.to_path_buf())
        })
    }

    /// Starts etcd and waits until it answers. Blocking (about a second).
    pub fn start() -> io::Result<EtcdServer> {
        let binary = EtcdServer::binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "etcd binary not found: install Debian package etcd-server (scripts/setup.sh) \
                 or set VDB_ETCD_BIN",
            )
        })?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match EtcdServer::start_once(&binary) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// Starts etcd for test `test`, or, when the binary is missing, prints a skip line and
    /// returns `None` — except under `CI=true`, where a missing etcd panics so CI never
    /// passes without running the etcd tests. A failure to start always panics.
    pub fn start_or_skip(test: &str) -> Option<EtcdServer> {
        if EtcdServer::binary().is_none() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but the etcd binary is missing: install Debian package \
                     etcd-server (scripts/setup.sh) or set VDB_ETCD_BIN"
                );
            }
            eprintln!("skipping {test}: etcd binary not found (install etcd-server)");
            return None;
        }
        match EtcdServer::start() {
            Ok(server) => Some(server),
            Err(e) => panic!("failed to start etcd for {test}: {e}"),
        }
    }

    fn start_once(binary: &Path) -> io::Result<EtcdServer> {
        let dir = tempfile::tempdir()?;
        let (client_port, peer_port) = (free_port()?, free_port()?);
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log"))?;
        let child = Command::new(binary)
            .arg("--name=vdb-test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=vdb-test={peer_url}"))
            .arg("--initial-cluster-state=new")
            // Short raft timings: fast start, and a 1 s minimum lease TTL (etcd's minimum is
            // 1.5 election timeouts), so lease tests stay short.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = EtcdServer { child: Some(child), client_port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> io::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "etcd exited with {status}: {}",
                        self.log_tail()
                    )));
                }
            }
            if health(self.client_port).unwrap_or(false) {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(io::Error::other(format!(
                    "etcd not healthy after {READY_TIMEOUT:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let start = log.len().saturating_sub(2_000);
        log.get(start..).unwrap_or_default().to_string()
    }

    /// The metastore URL of this server: `etcd://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("etcd://127.0.0.1:{}", self.client_port)
    }

    /// The client endpoint as etcd clients write it: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// A new client of this server.
    pub async fn connect(&self) -> Result<Arc<dyn MetaStore>, crate::MetaError> {
        crate::connect(&self.url()).await
    }

    /// Kills the server with SIGKILL, like a crash; later calls to its clients fail.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait]
impl StoreFactory for EtcdServer {
    async fn client(&self) -> Arc<dyn MetaStore> {
        self.connect().await.expect("connect to the test etcd")
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether etcd's `/health` endpoint reports healthy.
fn health(port: u16) -> io::Result<bool> {
    let timeout = Duration::from_millis(500);
    let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.contains("\"health\":\"true\""))
}
