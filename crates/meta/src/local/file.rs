//! The local backend's file: its JSON format, atomic replacement and the process lock.
//!
//! The whole store is one JSON document, rewritten on every mutation: written to
//! `<file>.tmp`, fsynced, renamed over `<file>`, and the directory fsynced, so after a crash
//! the file holds either the old or the new state, never a mix. A leftover `.tmp` is a write
//! that never got renamed; it is ignored and removed on open. `<file>.lock` carries an
//! exclusive `flock` for as long as the store is open, so a second process (or a second open
//! in the same process) fails instead of overwriting the first one's writes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::{MetaError, Revision};

/// Version of the file layout, checked on open.
const FORMAT: u32 = 1;

/// A stored key as the backend keeps it in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) value: Vec<u8>,
    pub(crate) mod_revision: Revision,
    pub(crate) lease: Option<i64>,
}

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
struct Image {
    format: u32,
    revision: Revision,
    keys: Vec<ImageKey>,
}

/// One key in the file. UTF-8 values (the router's JSON records) are stored as `text` so the
/// file stays readable; anything else as `bytes`.
#[derive(Debug, Serialize, Deserialize)]
struct ImageKey {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<Vec<u8>>,
    mod_revision: Revision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<i64>,
}

/// The open, locked metastore file.
#[derive(Debug)]
pub(crate) struct MetaFile {
    path: PathBuf,
    tmp_path: PathBuf,
    /// Holds the `flock` while open. Writes hold this mutex, and [`MetaFile::close`] takes the
    /// file out, so once `close` returns no write is in flight or can start, and the lock is
    /// free for the next opener.
    lock: Mutex<Option<File>>,
}

/// The state read back from the file.
pub(crate) struct Loaded {
    pub(crate) revision: Revision,
    pub(crate) kvs: BTreeMap<String, Stored>,
}

impl MetaFile {
    /// Locks and reads the file at `path` (an empty store if it does not exist yet).
    pub(crate) fn open(path: &Path) -> Result<(MetaFile, Loaded), MetaError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)?;
        }
        let lock_path = with_suffix(path, ".lock");
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        match flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                return Err(MetaError::InUse(path.to_path_buf()))
            }
            Err(e) => return Err(MetaError::Io(e.into())),
        }
        let tmp_path = with_suffix(path, ".tmp");
        match fs::remove_file(&tmp_path) {
            Ok(()) => {
                tracing::warn!(path = %tmp_path.display(), "removed an unfinished metastore write")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let loaded = match fs::read(path) {
            Ok(bytes) => decode(&bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Loaded { revision: 0, kvs: BTreeMap::new() }
            }
            Err(e) => return Err(e.into()),
        };
        let file = MetaFile { path: path.to_path_buf(), tmp_path, lock: Mutex::new(Some(lock)) };
        Ok((file, loaded))
    }

    /// Replaces the file's content atomically and durably. Blocking.
    pub(crate) fn replace(&self, bytes: &[u8]) -> io::Result<()> {
        let lock = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if lock.is_none() {
            return Err(io::Error::other("metastore is closed"));
        }
        let mut tmp = File::create(&self.tmp_path)?;
        tmp.write_all(bytes)?;
        tmp.sync_all()?;
        drop(tmp);
        fs::rename(&self.tmp_path, &self.path)?;
        let dir = match self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => dir,
            None => Path::new("."),
        };
        File::open(dir)?.sync_all()
    }

    /// Waits for a write in flight, then releases the lock; later writes fail. Blocking (at
    /// most one write).
    pub(crate) fn close(&self) {
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Serializes the whole store.
pub(crate) fn encode(revision: Revision, kvs: &BTreeMap<String, Stored>) -> Vec<u8> {
    let keys = kvs
        .iter()
        .map(|(key, s)| {
            let (text, bytes) = match std::str::from_utf8(&s.value) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => (None, Some(s.value.clone())),
            };
            ImageKey { key: key.clone(), text, bytes, mod_revision: s.mod_revision, lease: s.lease }
        })
        .collect();
    let image = Image { format: FORMAT, revision, keys };
    // Serializing plain structs of strings and integers cannot fail.
    serde_json::to_vec_pretty(&image).expect("metastore image serializes")
}

fn decode(bytes: &[u8]) -> Result<Loaded, MetaError> {
    let image: Image =
        serde_json::from_slice(bytes).map_err(|e| MetaError::Corrupt(e.to_string()))?;
    if image.format != FORMAT {
        return Err(MetaError::Corrupt(format!(
            "unknown file format {} (expected {FORMAT})",
            image.format
        )));
    }
    let mut kvs = BTreeMap::new();
    for k in image.keys {
        let value = match (k.text, k.bytes) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(bytes)) => bytes,
            _ => return Err(MetaError::Corrupt(format!("key {:?} has no value", k.key))),
        };
        if k.mod_revision <= 0 || k.mod_revision > image.revision {
            return Err(MetaError::Corrupt(format!(
                "key {:?} has revision {} outside 1..={}",
                k.key, k.mod_revision, image.revision
            )));
        }
        let stored = Stored { value, mod_revision: k.mod_revision, lease: k.lease };
        kvs.insert(k.key, stored);
    }
    Ok(Loaded { revision: image.revision, kvs })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trips_text_and_binary_values() {
        let mut kvs = BTreeMap::new();
        let text = Stored { value: b"{\"a\":1}".to_vec(), mod_revision: 3, lease: None };
        let binary = Stored { value: vec![0xff, 0, 1], mod_revision: 5, lease: Some(9) };
        kvs.insert("a".to_string(), text);
        kvs.insert("b".to_string(), binary);
        let loaded = decode(&encode(7, &kvs)).unwrap();
        assert_eq!(loaded.revision, 7);
        assert_eq!(loaded.kvs, kvs);
    }

    #[test]
    fn decode_rejects_garbage_and_bad_revisions() {
        assert!(matches!(decode(b"{\"format\":1,"), Err(MetaError::Corrupt(_))));
        let bad = br#"{"format":1,"revision":2,"keys":[{"key":"k","text":"v","mod_revision":3}]}"#;
        assert!(matches!(decode(bad), Err(MetaError::Corrupt(_))));
        let future = br#"{"format":2,"revision":0,"keys":[]}"#;
        assert!(matches!(decode(future), Err(MetaError::Corrupt(_))));
    }
}
