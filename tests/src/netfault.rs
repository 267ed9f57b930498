//! Partitions between processes on one machine, made with nftables: a rule in the `output`
//! hook drops every TCP packet a given user id sends to given ports. Each process that takes
//! part runs as a user id of its own ([`ShardProcess::start_with_uid`]), so the rule cuts
//! exactly the links named (say, a primary to its replicas) and leaves every other caller of
//! the same ports (the router, clients) alone. Dropping rather than refusing models a real
//! partition: connections hang until their timeouts.
//!
//! Needs root and `nft` (installed by `scripts/setup.sh`); [`unavailable`] says why not, and
//! tests skip then, except under CI where it is a failure.
//!
//! [`ShardProcess::start_with_uid`]: crate::ShardProcess::start_with_uid

use anyhow::{bail, Context, Result};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Why partitions cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    // `id -u` rather than geteuid(2) keeps this crate free of unsafe code.
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout).unwrap_or_default();
    if String::from_utf8_lossy(&uid).trim() != "0" {
        return Some("partitions with nftables need root".into());
    }
    match Command::new("nft").arg("--version").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("nft is missing (scripts/setup.sh installs nftables)".into()),
    }
}

/// Skips the calling test (returns true) when partitions cannot be made, except under CI,
/// where that fails the test.
pub fn skip() -> bool {
    let Some(why) = unavailable() else { return false };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true: {why}");
    }
    eprintln!("skipped: {why}");
    true
}

/// A fresh user id for a process of this test run: distinct across the tests of one run and
/// across test binaries running at once (no account needs to exist for it).
pub fn fresh_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    200_000 + (std::process::id() % 10_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed) % 100
}

/// A set of drop rules, in an nftables table of its own; removed (healed) on drop.
pub struct Partition {
    table: String,
}

impl Partition {
    /// Drops every TCP packet that processes running as `uid` send to any of `ports`, for
    /// each `(uid, ports)`.
    pub fn cut(links: &[(u32, Vec<u16>)]) -> Result<Partition> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let table =
            format!("vdb_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut script = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority 0;\n"
        );
        for (uid, ports) in links {
            if ports.is_empty() {
                continue;
            }
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            script += &format!("    meta skuid {uid} tcp dport {{ {} }} drop\n", ports.join(", "));
        }
        script += "  }\n}\n";
        nft(&["-f", "-"], Some(&script)).context("adding the partition's rules")?;
        Ok(Partition { table })
    }

    /// Removes the rules: packets flow again (connections that timed out meanwhile are gone).
    pub fn heal(self) {}
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Err(e) = nft(&["delete", "table", "inet", &self.table], None) {
            eprintln!("healing partition {}: {e:#}", self.table);
        }
    }
}

fn nft(args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft")?;
    if let Some(text) = stdin {
        child.stdin.take().context("nft stdin")?.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
