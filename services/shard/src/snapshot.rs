//! Snapshot files of one local shard.
//!
//! A snapshot is a directory `snapshots/<lsn, 20 digits>/` holding
//! - `index.usearch`: the HNSW index as USearch serialises it,
//! - `points.bin`: the id map, payloads and payload index definitions (bincode),
//! - `meta.json`: the LSN covered (and the epoch of that record) plus the length and CRC32C of
//!   both files.
//!
//! It is written into `<lsn>.tmp/`, every file fsynced, then renamed into place and the
//! parent directory fsynced, so a crash leaves either the old snapshot or the new one. On
//! load, lengths and checksums are verified; a damaged snapshot is refused, never loaded.

use crate::error::{Result, ShardError};
use crate::ops::{StoredId, StoredIndexKind};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

const FORMAT: u32 = 1;

/// The non-vector half of a snapshot.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct PointsImage {
    pub next_key: u64,
    /// (key, id, payload as JSON text)
    pub points: Vec<(u64, StoredId, String)>,
    pub indexes: Vec<(String, StoredIndexKind)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    format: u32,
    lsn: u64,
    /// The epoch of the record at `lsn` (0 for snapshots written before epochs were kept).
    #[serde(default)]
    epoch: u64,
    index_len: u64,
    index_crc32c: u32,
    points_len: u64,
    points_crc32c: u32,
}

/// A snapshot read back from disk.
pub struct Loaded {
    pub lsn: u64,
    pub epoch: u64,
    pub index: Vec<u8>,
    pub points: PointsImage,
    pub size_bytes: u64,
}

/// Writes a snapshot covering `lsn` (whose record was written in `epoch`) under `dir` and
/// removes older ones. Returns its size.
pub fn write(dir: &Path, lsn: u64, epoch: u64, index: &[u8], points: &PointsImage) -> Result<u64> {
    let points = bincode::serialize(points)
        .map_err(|e| ShardError::Corrupt(format!("encoding snapshot points: {e}")))?;
    write_encoded(dir, lsn, epoch, index, &points)
}

fn write_encoded(dir: &Path, lsn: u64, epoch: u64, index: &[u8], points: &[u8]) -> Result<u64> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{lsn:020}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp)?;
    write_synced(&tmp.join("index.usearch"), index)?;
    write_synced(&tmp.join("points.bin"), points)?;
    let meta = Meta {
        format: FORMAT,
        lsn,
        epoch,
        index_len: index.len() as u64,
        index_crc32c: crc32c::crc32c(index),
        points_len: points.len() as u64,
        points_crc32c: crc32c::crc32c(points),
    };
    let meta = serde_json::to_vec_pretty(&meta).expect("meta serialises");
    write_synced(&tmp.join("meta.json"), &meta)?;
    File::open(&tmp)?.sync_all()?;
    let target = dir.join(format!("{lsn:020}"));
    if target.exists() {
        fs::remove_dir_all(&target)?;
    }
    fs::rename(&tmp, &target)?;
    File::open(dir)?.sync_all()?;
    for old in list(dir)? {
        if old.0 < lsn {
            fs::remove_dir_all(&old.1)?;
        }
    }
    Ok((index.len() + points.len() + meta.len()) as u64)
}

/// Loads the newest complete snapshot, if any. Leftover temporary directories from a crash
/// are removed.
pub fn load_latest(dir: &Path) -> Result<Option<Loaded>> {
    let Some(raw) = read_latest(dir)? else { return Ok(None) };
    let size_bytes = (raw.index.len() + raw.points.len()) as u64;
    let points: PointsImage = bincode::deserialize(&raw.points)
        .map_err(|e| ShardError::Corrupt(format!("snapshot {}: points.bin: {e}", raw.lsn)))?;
    Ok(Some(Loaded { lsn: raw.lsn, epoch: raw.epoch, index: raw.index, points, size_bytes }))
}

/// A snapshot's files as they are on disk, checksums verified: what a primary sends a replica
/// that its log no longer reaches (see [`Transfer::encode`]).
pub struct Transfer {
    pub lsn: u64,
    pub epoch: u64,
    pub index: Vec<u8>,
    pub points: Vec<u8>,
}

impl Transfer {
    /// `[meta length: u32 LE][meta.json][index.usearch][points.bin]`.
    pub fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&Meta {
            format: FORMAT,
            lsn: self.lsn,
            epoch: self.epoch,
            index_len: self.index.len() as u64,
            index_crc32c: crc32c::crc32c(&self.index),
            points_len: self.points.len() as u64,
            points_crc32c: crc32c::crc32c(&self.points),
        })
        .expect("meta serialises");
        let mut out = Vec::with_capacity(4 + meta.len() + self.index.len() + self.points.len());
        out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.index);
        out.extend_from_slice(&self.points);
        out
    }

    /// The inverse of [`Transfer::encode`]; lengths and checksums are verified, so a damaged
    /// transfer is refused (400) before anything is replaced.
    pub fn decode(bytes: &[u8]) -> Result<Transfer> {
        let bad = |what: &str| ShardError::invalid(format!("snapshot transfer: {what}"));
        let meta_len = bytes.get(..4).ok_or_else(|| bad("too short"))?;
        let meta_len = u32::from_le_bytes(meta_len.try_into().expect("4 bytes")) as usize;
        let meta = bytes.get(4..4 + meta_len).ok_or_else(|| bad("truncated meta"))?;
        let meta: Meta = serde_json::from_slice(meta).map_err(|e| bad(&format!("meta: {e}")))?;
        if meta.format != FORMAT {
            return Err(bad(&format!("unknown format {}", meta.format)));
        }
        let rest = &bytes[4 + meta_len..];
        if rest.len() as u64 != meta.index_len + meta.points_len {
            return Err(bad("length differs from its meta"));
        }
        let (index, points) = rest.split_at(meta.index_len as usize);
        if crc32c::crc32c(index) != meta.index_crc32c
            || crc32c::crc32c(points) != meta.points_crc32c
        {
            return Err(bad("checksum mismatch"));
        }
        Ok(Transfer {
            lsn: meta.lsn,
            epoch: meta.epoch,
            index: index.to_vec(),
            points: points.to_vec(),
        })
    }

    /// Installs it as the newest snapshot under `dir` (removing older ones).
    pub fn install(&self, dir: &Path) -> Result<u64> {
        write_encoded(dir, self.lsn, self.epoch, &self.index, &self.points)
    }
}

/// The newest complete snapshot's files, verified. Leftover temporary directories from a
/// crash are removed.
pub fn read_latest(dir: &Path) -> Result<Option<Transfer>> {
    if !dir.exists() {
        return Ok(None);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "tmp") {
            tracing::info!(path = %path.display(), "removing unfinished snapshot");
            fs::remove_dir_all(&path)?;
        }
    }
    let Some((lsn, path)) = list(dir)?.into_iter().max_by_key(|(lsn, _)| *lsn) else {
        return Ok(None);
    };
    let corrupt =
        |what: String| ShardError::Corrupt(format!("snapshot {}: {what}", path.display()));
    let meta: Meta = serde_json::from_slice(&fs::read(path.join("meta.json"))?)
        .map_err(|e| corrupt(format!("meta.json: {e}")))?;
    if meta.format != FORMAT || meta.lsn != lsn {
        return Err(corrupt(format!("unexpected format {} or lsn {}", meta.format, meta.lsn)));
    }
    let index = fs::read(path.join("index.usearch"))?;
    let points = fs::read(path.join("points.bin"))?;
    if index.len() as u64 != meta.index_len || crc32c::crc32c(&index) != meta.index_crc32c {
        return Err(corrupt("index.usearch fails its checksum".into()));
    }
    if points.len() as u64 != meta.points_len || crc32c::crc32c(&points) != meta.points_crc32c {
        return Err(corrupt("points.bin fails its checksum".into()));
    }
    Ok(Some(Transfer { lsn, epoch: meta.epoch, index, points }))
}

fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Ok(lsn) = name.parse::<u64>() {
            out.push((lsn, path));
        }
    }
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> PointsImage {
        PointsImage {
            next_key: 3,
            points: vec![(1, StoredId::Num(5), "{\"a\":1}".into())],
            indexes: vec![("a".into(), StoredIndexKind::Integer)],
        }
    }

    #[test]
    fn round_trips_and_keeps_only_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 5, 1, b"index-v1", &image()).unwrap();
        write(dir.path(), 9, 2, b"index-v2", &image()).unwrap();
        let loaded = load_latest(dir.path()).unwrap().unwrap();
        assert_eq!((loaded.lsn, loaded.epoch, loaded.index.as_slice()), (9, 2, &b"index-v2"[..]));
        assert_eq!(loaded.points.next_key, 3);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_damaged_snapshot_and_ignores_unfinished_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 7, 1, b"index", &image()).unwrap();
        fs::create_dir(dir.path().join(format!("{:020}.tmp", 8))).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap().unwrap().lsn, 7);
        let file = dir.path().join(format!("{:020}", 7)).join("index.usearch");
        fs::write(&file, b"indey").unwrap();
        assert!(matches!(load_latest(dir.path()), Err(ShardError::Corrupt(_))));
    }

    #[test]
    fn transfers_round_trip_and_refuse_damage() {
        let from = tempfile::tempdir().unwrap();
        write(from.path(), 12, 3, b"index", &image()).unwrap();
        let bytes = read_latest(from.path()).unwrap().unwrap().encode();
        let to = tempfile::tempdir().unwrap();
        Transfer::decode(&bytes).unwrap().install(to.path()).unwrap();
        let loaded = load_latest(to.path()).unwrap().unwrap();
        assert_eq!((loaded.lsn, loaded.epoch, loaded.points.next_key), (12, 3, 3));
        let mut damaged = bytes.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(matches!(Transfer::decode(&damaged), Err(ShardError::Invalid(..))));
        assert!(Transfer::decode(&bytes[..bytes.len() - 1]).is_err());
        assert!(Transfer::decode(&[1, 0]).is_err());
    }
}
