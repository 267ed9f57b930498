//! Snapshot files of one local shard.
//!
//! A snapshot is a directory `snapshots/<lsn, 20 digits>/` holding
//! - `index.usearch`: the HNSW index as USearch serialises it,
//! - `points.bin`: the id map, payloads and payload index definitions (bincode),
//! - `meta.json`: the LSN covered plus the length and CRC32C of both files.
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
    index_len: u64,
    index_crc32c: u32,
    points_len: u64,
    points_crc32c: u32,
}

/// A snapshot read back from disk.
pub struct Loaded {
    pub lsn: u64,
    pub index: Vec<u8>,
    pub points: PointsImage,
    pub size_bytes: u64,
}

/// Writes a snapshot covering `lsn` under `dir` and removes older ones. Returns its size.
pub fn write(dir: &Path, lsn: u64, index: &[u8], points: &PointsImage) -> Result<u64> {
    fs::create_dir_all(dir)?;
    let points = bincode::serialize(points)
        .map_err(|e| ShardError::Corrupt(format!("encoding snapshot points: {e}")))?;
    let tmp = dir.join(format!("{lsn:020}.tmp"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir(&tmp)?;
    write_synced(&tmp.join("index.usearch"), index)?;
    write_synced(&tmp.join("points.bin"), &points)?;
    let meta = Meta {
        format: FORMAT,
        lsn,
        index_len: index.len() as u64,
        index_crc32c: crc32c::crc32c(index),
        points_len: points.len() as u64,
        points_crc32c: crc32c::crc32c(&points),
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
    let size_bytes = (index.len() + points.len()) as u64;
    let points: PointsImage =
        bincode::deserialize(&points).map_err(|e| corrupt(format!("points.bin: {e}")))?;
    Ok(Some(Loaded { lsn, index, points, size_bytes }))
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
        write(dir.path(), 5, b"index-v1", &image()).unwrap();
        write(dir.path(), 9, b"index-v2", &image()).unwrap();
        let loaded = load_latest(dir.path()).unwrap().unwrap();
        assert_eq!((loaded.lsn, loaded.index.as_slice()), (9, &b"index-v2"[..]));
        assert_eq!(loaded.points.next_key, 3);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn refuses_a_damaged_snapshot_and_ignores_unfinished_ones() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 7, b"index", &image()).unwrap();
        fs::create_dir(dir.path().join(format!("{:020}.tmp", 8))).unwrap();
        assert_eq!(load_latest(dir.path()).unwrap().unwrap().lsn, 7);
        let file = dir.path().join(format!("{:020}", 7)).join("index.usearch");
        fs::write(&file, b"indey").unwrap();
        assert!(matches!(load_latest(dir.path()), Err(ShardError::Corrupt(_))));
    }
}
