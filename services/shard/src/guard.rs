//! The write guard a router installs on a source shard while its points move elsewhere
//! (resharding, shard moves), and where it is kept.
//!
//! Rules, checked under the writer lock before anything is logged:
//! - a write by ids (upsert, delete, payload by ids) naming an id this shard has handed over
//!   (it owned the id under `from`, and is cut over) is refused whole with 409 `wrong_shard`,
//!   the message naming the id and its owner: the router's map is stale. Ids owned under `from`
//!   by *other* shards are accepted: they are copies arriving while this shard is also a target
//!   of the resharding (e.g. a hash map losing a shard). An id no map can route is refused;
//! - with `frozen`, a write touching an id this shard owns under `from` but not under `to` is
//!   refused with 503 `unavailable` and `Retry-After: 0`: the point is being handed off;
//! - a write by filter applies only to the matching points this shard owns (the others are
//!   skipped, not refused), and is refused like the above when frozen and one of them is being
//!   handed off;
//! - a read routed with a map older than the guard's is refused with 409 `wrong_shard`, so the
//!   router reloads its map and asks again ([`Guard::check_read`]): without this, a read that
//!   raced a cut-over could miss the points this shard handed over (and later deleted).
//!
//! Persistence: `<shard dir>/guard.json`, written to a temporary file, fsynced, renamed over the
//! old one and the directory fsynced; removing the guard deletes the file and fsyncs the
//! directory. It is loaded with the shard, so a guard survives restarts; an unreadable guard
//! file refuses the shard rather than let writes through unguarded. The guard is not logged
//! in the WAL: it is a property of this copy of the shard, not of its data.

use crate::error::{Result, ShardError};
use crate::ops::{StoredId, WalOp};
use crate::ownership::Owner;
use crate::shard::LocalShard;
use std::path::Path;
use std::sync::Arc;
use vdb_api::{Ownership, PointId, WriteGuard, WriteResult};

const FILE: &str = "guard.json";

pub struct Guard {
    pub spec: WriteGuard,
    owner: Owner,
}

impl Guard {
    /// Validates the guard's ownership (400 when it is not a valid rule).
    pub fn new(spec: WriteGuard) -> Result<Self> {
        let owner = Owner::new(&spec.ownership)?;
        Ok(Guard { spec, owner })
    }

    /// Checks a write naming `ids`: refused whole if any was handed over already, or (frozen)
    /// if any is being handed off. Wrong-shard ids are looked for first: retrying cannot fix
    /// them.
    pub fn check_ids<'a>(&self, ids: impl Iterator<Item = &'a PointId> + Clone) -> Result<()> {
        let shard = self.owner.shard();
        for id in ids.clone() {
            match self.owner.owner(id) {
                Ok(_) => {
                    if let Some(other) = self.owner.given_away_to(id) {
                        return Err(ShardError::WrongShard(format!(
                            "point {id} belongs to shard {other}, not to shard {shard}"
                        )));
                    }
                }
                Err(e) => {
                    return Err(ShardError::WrongShard(format!(
                        "point {id} belongs to no shard during this resharding: {e}"
                    )))
                }
            }
        }
        if self.spec.frozen {
            if let Some(id) = ids.into_iter().find(|id| self.owner.handed_off_to(id).is_some()) {
                return Err(handing_off(id));
            }
        }
        Ok(())
    }

    /// Keeps the ids this shard owns, for a write by filter; refused (frozen) if one of them is
    /// being handed off.
    pub fn keep_owned(&self, ids: Vec<StoredId>) -> Result<Vec<StoredId>> {
        let kept: Vec<StoredId> =
            ids.into_iter().filter(|&id| self.owner.owns(&PointId::from(id))).collect();
        if self.spec.frozen {
            if let Some(&id) =
                kept.iter().find(|&&id| self.owner.handed_off_to(&PointId::from(id)).is_some())
            {
                return Err(handing_off(&PointId::from(id)));
            }
        }
        Ok(kept)
    }
}

impl Guard {
    /// Refuses a read routed with a map older than this guard's (409 `wrong_shard`):
    /// - its ownership is for the same resharding but misses a source this guard knows is cut
    ///   over;
    /// - it carries no ownership (the router routes by a plain map) while this shard has
    ///   handed over everything it had (a moved copy, a removed shard).
    ///
    /// A read routed with a *newer* map than the guard's is served: the guard is installed
    /// after the metastore records the cut-over. Ownership rules of other reshardings are not
    /// ordered (a shard added, then removed, gives back an earlier map), so they are served;
    /// a router's view never lags a whole resharding behind, which the controller's grace
    /// periods ensure.
    pub fn check_read(&self, read: Option<&Ownership>) -> Result<()> {
        let g = &self.spec.ownership;
        let stale = match read {
            Some(r) if r.from == g.from && r.to == g.to => {
                g.cut_over.iter().any(|s| !r.cut_over.contains(s))
            }
            Some(_) => false,
            None => g.cut_over.contains(&g.shard) && !g.to.shards.contains(&g.shard),
        };
        if stale {
            return Err(ShardError::WrongShard(format!(
                "shard {} was read with an outdated shard map (its points moved since); reload \
                 the collection's map",
                g.shard
            )));
        }
        Ok(())
    }
}

impl LocalShard {
    /// Refuses a read routed with an outdated map (see [`Guard::check_read`]). Call it with
    /// the data lock held: a clean-up that follows the guard's installation then either has
    /// not started or is refused to this read.
    pub(crate) fn check_read_routing(&self, read: Option<&Ownership>) -> Result<()> {
        let guard = self.guard.read().clone();
        guard.map_or(Ok(()), |g| g.check_read(read))
    }

    /// The installed guard, if any.
    pub fn guard(&self) -> Option<WriteGuard> {
        self.guard.read().as_ref().map(|g| g.spec.clone())
    }

    /// Installs (or replaces) the write guard, durably, between two writes.
    pub fn install_guard(&self, spec: WriteGuard) -> Result<()> {
        let guard = Guard::new(spec)?;
        let _writer = self.writer.lock();
        save(&self.dir, &guard.spec)?;
        *self.guard.write() = Some(Arc::new(guard));
        tracing::info!(shard = %self.name, "write guard installed");
        Ok(())
    }

    /// Removes the write guard (nothing to do when there is none).
    pub fn remove_guard(&self) -> Result<()> {
        let _writer = self.writer.lock();
        remove(&self.dir)?;
        if self.guard.write().take().is_some() {
            tracing::info!(shard = %self.name, "write guard removed");
        }
        Ok(())
    }

    /// Deletes, as one logged write, every point this shard does not own under `ownership`
    /// (the clean-up after its points were copied to their new owners). The write guard does
    /// not apply: this is how a guarded source sheds the points it no longer owns.
    pub fn delete_not_owned(&self, ownership: &Ownership) -> Result<WriteResult> {
        let owner = Owner::new(ownership)?;
        let mut writer = self.writer.lock();
        let ids: Vec<StoredId> = {
            let data = self.data.read();
            data.store
                .iter_from(None)
                .filter(|(_, e)| !owner.owns(&e.id))
                .map(|(_, e)| e.id.into())
                .collect()
        };
        if ids.is_empty() {
            return Ok(WriteResult { lsn: self.last_lsn(), affected: 0 });
        }
        let n = ids.len() as u64;
        self.log_and_apply(&mut writer, WalOp::Delete { ids }, n)
    }
}

fn handing_off(id: &PointId) -> ShardError {
    ShardError::HandingOff(format!(
        "points are being handed off; retry (point {id} is moving to another shard)"
    ))
}

/// The guard stored in `dir`, if any.
pub fn load(dir: &Path) -> Result<Option<Guard>> {
    let bytes = match std::fs::read(dir.join(FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let spec: WriteGuard = serde_json::from_slice(&bytes)
        .map_err(|e| ShardError::Corrupt(format!("{}: {FILE}: {e}", dir.display())))?;
    let guard = Guard::new(spec)
        .map_err(|e| ShardError::Corrupt(format!("{}: {FILE}: {e}", dir.display())))?;
    Ok(Some(guard))
}

/// Stores `spec` in `dir` atomically and durably.
pub fn save(dir: &Path, spec: &WriteGuard) -> Result<()> {
    write_durably(dir, FILE, &serde_json::to_vec_pretty(spec).expect("guards serialise"))
}

/// Replaces `dir/file` with `bytes` atomically and durably: a temporary file, fsynced, renamed
/// over the old one, and the directory fsynced.
pub fn write_durably(dir: &Path, file: &str, bytes: &[u8]) -> Result<()> {
    let tmp = dir.join(format!("{file}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, dir.join(file))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Removes the stored guard (nothing to do when there is none).
pub fn remove(dir: &Path) -> Result<()> {
    match std::fs::remove_file(dir.join(FILE)) {
        Ok(()) => Ok(std::fs::File::open(dir)?.sync_all()?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vdb_api::{Ownership, ShardMapSpec, Sharding};

    fn guard_cut(frozen: bool, cut_over: Vec<u32>) -> Guard {
        let spec =
            |shards: &[u32]| ShardMapSpec { sharding: Sharding::Hash, shards: shards.into() };
        let ownership = Ownership { from: spec(&[0, 1]), to: spec(&[0, 1, 2]), cut_over, shard: 0 };
        Guard::new(WriteGuard { ownership, frozen }).unwrap()
    }

    fn guard(frozen: bool) -> Guard {
        guard_cut(frozen, vec![])
    }

    #[test]
    fn reads_routed_before_the_guards_cut_over_are_refused() {
        let cut = guard_cut(false, vec![0]);
        let read = |cut_over: Vec<u32>| Ownership { cut_over, ..cut.spec.ownership.clone() };
        let stale = cut.check_read(Some(&read(vec![])));
        assert!(matches!(stale, Err(ShardError::WrongShard(_))), "{:?}", stale.err());
        cut.check_read(Some(&read(vec![0]))).unwrap();
        cut.check_read(Some(&read(vec![0, 1]))).unwrap(); // newer than the guard
                                                          // Shard 0 stays in the new map: a plain read is a router that saw the resharding end.
        cut.check_read(None).unwrap();
        // Another resharding's rule is not ordered against this one: served.
        let other = Ownership { to: cut.spec.ownership.from.clone(), ..read(vec![]) };
        cut.check_read(Some(&other)).unwrap();
        guard(true).check_read(Some(&read(vec![]))).unwrap();
    }

    #[test]
    fn plain_reads_of_a_shard_that_handed_everything_over_are_refused() {
        let spec =
            |shards: &[u32]| ShardMapSpec { sharding: Sharding::Hash, shards: shards.into() };
        let moved = |cut_over: Vec<u32>| {
            let ownership =
                Ownership { from: spec(&[3]), to: spec(&[u32::MAX]), cut_over, shard: 3 };
            Guard::new(WriteGuard { ownership, frozen: false }).unwrap()
        };
        moved(vec![]).check_read(None).unwrap(); // still serving while it hands off
        assert!(matches!(moved(vec![3]).check_read(None), Err(ShardError::WrongShard(_))));
    }

    #[test]
    fn handed_over_ids_are_refused_before_hand_offs_and_incoming_ones_pass() {
        let ids: Vec<PointId> = (0..500u64).map(PointId::Num).collect();
        let g = guard(true);
        let mine: Vec<PointId> = ids.iter().copied().filter(|id| g.owner.owns(id)).collect();
        let staying: Vec<PointId> =
            mine.iter().copied().filter(|id| g.owner.handed_off_to(id).is_none()).collect();
        let leaving = *mine.iter().find(|id| g.owner.handed_off_to(id).is_some()).unwrap();
        // Owned by shard 1 under `from`: a copy arriving here would be fine.
        let incoming = *ids.iter().find(|id| !g.owner.owns(id)).unwrap();
        g.check_ids(staying.iter()).unwrap();
        g.check_ids([incoming].iter()).unwrap();
        assert!(matches!(g.check_ids([leaving].iter()), Err(ShardError::HandingOff(_))));
        guard(false).check_ids(mine.iter()).unwrap();
        // Once shard 0 is cut over, what it handed over is refused, before any hand-off check.
        let cut = guard_cut(true, vec![0]);
        match cut.check_ids([leaving].iter()) {
            Err(ShardError::WrongShard(m)) => {
                assert!(m.contains(&format!("point {leaving} ")), "{m}")
            }
            other => panic!("{:?}", other.err()),
        }
        cut.check_ids(staying.iter().chain([incoming].iter())).unwrap();
    }

    #[test]
    fn filter_writes_keep_owned_ids() {
        let g = guard(false);
        let ids: Vec<StoredId> = (0..500u64).map(StoredId::Num).collect();
        let kept = g.keep_owned(ids.clone()).unwrap();
        assert!(!kept.is_empty() && kept.len() < ids.len());
        assert!(kept.iter().all(|&id| g.owner.owns(&id.into())));
        assert!(matches!(guard(true).keep_owned(ids), Err(ShardError::HandingOff(_))));
    }

    #[test]
    fn guards_persist_and_go() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let g = guard(true);
        save(dir.path(), &g.spec).unwrap();
        assert_eq!(load(dir.path()).unwrap().unwrap().spec, g.spec);
        remove(dir.path()).unwrap();
        remove(dir.path()).unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        std::fs::write(dir.path().join(FILE), b"{").unwrap();
        assert!(matches!(load(dir.path()), Err(ShardError::Corrupt(_))));
    }
}
