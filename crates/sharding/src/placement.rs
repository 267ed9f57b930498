//! Placement of shard replicas on nodes: where a new collection's replicas go, and which
//! replicas to move when nodes leave, join, or are unevenly loaded.
//!
//! Pure and deterministic: the same inputs give the same placement on every router. Loads
//! are counted in local shards (replicas), one per replica, whatever the collection.

use crate::{NodeId, ShardId};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// Replicas of each shard, primary first. Never two replicas of a shard on one node.
pub type Placement = BTreeMap<ShardId, Vec<NodeId>>;

/// A live node and how many local shards it hosts now, across all collections (including the
/// replicas of the placement being rebalanced, if any).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeLoad {
    /// The node.
    pub node: NodeId,
    /// Local shards it hosts.
    pub shards: usize,
}

/// One replica of `shard` to create on `to`, copied from the shard's surviving replicas, and
/// then to drop from `from` (`None`: a new replica, the shard had fewer than it should).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Move {
    /// The shard whose replica moves.
    pub shard: ShardId,
    /// The node losing the replica (possibly gone already); `None` for an added replica.
    pub from: Option<NodeId>,
    /// The node gaining the replica.
    pub to: NodeId,
}

/// Why replicas could not be placed.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PlacementError {
    /// No live node.
    #[error("there is no live node to place shards on")]
    NoNodes,
    /// A replication factor of 0.
    #[error("replication_factor must be at least 1")]
    ZeroReplicationFactor,
    /// Fewer live nodes than replicas per shard.
    #[error(
        "replication_factor {replication_factor} needs as many nodes, but only {nodes} are live"
    )]
    NotEnoughNodes {
        /// The replication factor asked for.
        replication_factor: usize,
        /// Live nodes.
        nodes: usize,
    },
    /// The same node is listed twice.
    #[error("node {0} is listed more than once")]
    DuplicateNode(NodeId),
    /// The same shard is listed twice.
    #[error("shard {0} is listed more than once")]
    DuplicateShard(ShardId),
}

/// Places `replication_factor` replicas of every shard on distinct nodes.
///
/// Shards are placed in ascending id order; each takes the least-loaded nodes (fewest local
/// shards, then fewest primaries given so far, then node id), and of those the one with the
/// fewest primaries becomes the primary. Starting from equally loaded nodes, shard counts end
/// within one of each other.
pub fn place(
    shards: &[ShardId],
    replication_factor: usize,
    nodes: &[NodeLoad],
) -> Result<Placement, PlacementError> {
    validate(replication_factor, nodes)?;
    let mut sorted = shards.to_vec();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(PlacementError::DuplicateShard(w[0]));
    }
    // node -> (local shards, primaries placed here)
    let mut loads: BTreeMap<&str, (usize, usize)> =
        nodes.iter().map(|n| (n.node.as_str(), (n.shards, 0))).collect();
    let mut placement = Placement::new();
    for shard in sorted {
        let mut order: Vec<(usize, usize, &str)> =
            loads.iter().map(|(&n, &(t, p))| (t, p, n)).collect();
        order.sort_unstable();
        let mut chosen: Vec<&str> = order[..replication_factor].iter().map(|c| c.2).collect();
        let primary = (0..chosen.len())
            .min_by_key(|&i| {
                let (t, p) = loads[chosen[i]];
                (p, t, chosen[i])
            })
            .expect("replication_factor >= 1");
        chosen[..=primary].rotate_right(1);
        for (i, &node) in chosen.iter().enumerate() {
            let load = loads.get_mut(node).expect("chosen from loads");
            load.0 += 1;
            load.1 += usize::from(i == 0);
        }
        placement.insert(shard, chosen.into_iter().map(str::to_owned).collect());
    }
    balance_primaries(&mut placement, nodes);
    Ok(placement)
}

/// Evens out primaries: while some node has two more primaries than another node it can
/// reach, hands primaries along the path (`u` primary of a shard that `v` also holds, `v`
/// primary of a shard that `w` holds, ...), which takes one from `u` and gives one to the end
/// node without changing anyone else's count or any replica set.
fn balance_primaries(placement: &mut Placement, nodes: &[NodeLoad]) {
    loop {
        let mut count: BTreeMap<&str, usize> = nodes.iter().map(|n| (n.node.as_str(), 0)).collect();
        for r in placement.values() {
            *count.get_mut(r[0].as_str()).expect("placed on known nodes") += 1;
        }
        let max = count.values().copied().max().unwrap_or(0);
        let path = count
            .iter()
            .filter(|&(_, &c)| c == max)
            .find_map(|(&u, _)| primary_path(placement, &count, u, max));
        let Some(path) = path else {
            return;
        };
        for (shard, to) in path {
            let r = placement.get_mut(&shard).expect("path shards are placed");
            let i = r.iter().position(|n| *n == to).expect("path nodes hold the shard");
            r[..=i].rotate_right(1);
        }
    }
}

/// Breadth-first search from `start` for a node with at most `max - 2` primaries; returns the
/// hand-overs `(shard, new primary)` along the path, or `None`.
fn primary_path(
    placement: &Placement,
    count: &BTreeMap<&str, usize>,
    start: &str,
    max: usize,
) -> Option<Vec<(ShardId, NodeId)>> {
    // node -> (shard, previous node) it was reached through
    let mut via: BTreeMap<&str, Option<(ShardId, &str)>> = BTreeMap::from([(start, None)]);
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(x) = queue.pop_front() {
        for (&shard, r) in placement.iter().filter(|(_, r)| r[0] == x) {
            for v in &r[1..] {
                if via.contains_key(v.as_str()) {
                    continue;
                }
                via.insert(v, Some((shard, x)));
                if count[v.as_str()] + 2 <= max {
                    let mut path = Vec::new();
                    let mut at = v.as_str();
                    while let Some(&Some((shard, prev))) = via.get(at) {
                        path.push((shard, at.to_owned()));
                        at = prev;
                    }
                    // Apply from the start so each hand-over finds its primary in place.
                    path.reverse();
                    return Some(path);
                }
                queue.push_back(v);
            }
        }
    }
    None
}

/// The moves that repair and even out `current` over `live_nodes`, in the order to apply
/// them (see [`apply_moves`]).
///
/// 1. Every replica on a node missing from `live_nodes` is replaced by one on the
///    least-loaded live node that does not hold the shard yet; shards with fewer than
///    `replication_factor` replicas get new ones (`from: None`) the same way.
/// 2. While two live nodes differ by two or more local shards, a replica of this placement
///    moves from the most loaded to the least loaded node that does not hold that shard,
///    preferring non-primary replicas and low shard ids. When all load comes from `current`,
///    this ends with the max-min spread of shards per node ≤ 1.
///
/// Replicas beyond `replication_factor` are left alone. Deterministic.
pub fn rebalance(
    current: &Placement,
    replication_factor: usize,
    live_nodes: &[NodeLoad],
) -> Result<Vec<Move>, PlacementError> {
    validate(replication_factor, live_nodes)?;
    let mut loads: BTreeMap<NodeId, usize> =
        live_nodes.iter().map(|n| (n.node.clone(), n.shards)).collect();
    let mut working = current.clone();
    let mut moves = Vec::new();

    for (&shard, replicas) in working.iter_mut() {
        let gone: Vec<NodeId> =
            replicas.iter().filter(|n| !loads.contains_key(*n)).cloned().collect();
        for from in gone {
            let Some(to) = least_loaded(&loads, replicas) else {
                break;
            };
            push_move(&mut moves, &mut loads, replicas, shard, Some(from), to);
        }
        while replicas.iter().filter(|n| loads.contains_key(*n)).count() < replication_factor {
            let Some(to) = least_loaded(&loads, replicas) else {
                break;
            };
            push_move(&mut moves, &mut loads, replicas, shard, None, to);
        }
    }

    while let Some((shard, from, to)) = next_spreading_move(&working, &loads) {
        let replicas = working.get_mut(&shard).expect("found in working");
        push_move(&mut moves, &mut loads, replicas, shard, Some(from), to);
    }
    Ok(moves)
}

/// `placement` after `moves`: each move drops `from` from the shard's replicas (if present)
/// and appends `to` last, so a lost primary is succeeded by the next surviving replica
/// rather than by the fresh, still empty copy.
pub fn apply_moves(placement: &Placement, moves: &[Move]) -> Placement {
    let mut out = placement.clone();
    for m in moves {
        let replicas = out.entry(m.shard).or_default();
        apply(replicas, m.from.as_deref(), &m.to);
    }
    out
}

fn apply(replicas: &mut Vec<NodeId>, from: Option<&str>, to: &str) {
    if let Some(from) = from {
        replicas.retain(|n| n != from);
    }
    replicas.push(to.to_owned());
}

fn push_move(
    moves: &mut Vec<Move>,
    loads: &mut BTreeMap<NodeId, usize>,
    replicas: &mut Vec<NodeId>,
    shard: ShardId,
    from: Option<NodeId>,
    to: NodeId,
) {
    apply(replicas, from.as_deref(), &to);
    if let Some(load) = from.as_ref().and_then(|f| loads.get_mut(f)) {
        *load = load.saturating_sub(1);
    }
    *loads.get_mut(&to).expect("targets are live") += 1;
    moves.push(Move { shard, from, to });
}

/// The least-loaded live node (ties by id) that does not hold any of `replicas`.
fn least_loaded(loads: &BTreeMap<NodeId, usize>, replicas: &[NodeId]) -> Option<NodeId> {
    loads
        .iter()
        .filter(|(n, _)| !replicas.contains(n))
        .min_by_key(|&(n, &load)| (load, n))
        .map(|(n, _)| n.clone())
}

/// A replica move from a node at least two shards above the target, most loaded source and
/// least loaded target first; `None` when no such move exists.
fn next_spreading_move(
    placement: &Placement,
    loads: &BTreeMap<NodeId, usize>,
) -> Option<(ShardId, NodeId, NodeId)> {
    let mut order: Vec<(usize, &NodeId)> = loads.iter().map(|(n, &l)| (l, n)).collect();
    order.sort_unstable();
    for &(high, src) in order.iter().rev() {
        for &(low, dst) in order.iter().take_while(|&&(low, _)| low + 2 <= high) {
            debug_assert!(low + 2 <= high);
            // Secondaries first: moving a primary means a leadership hand-over.
            let candidate = placement
                .iter()
                .filter_map(|(&shard, r)| {
                    let at = r.iter().position(|n| n == src)?;
                    (!r.contains(dst)).then_some((at == 0, shard))
                })
                .min();
            if let Some((_, shard)) = candidate {
                return Some((shard, src.clone(), dst.clone()));
            }
        }
    }
    None
}

fn validate(replication_factor: usize, nodes: &[NodeLoad]) -> Result<(), PlacementError> {
    if nodes.is_empty() {
        return Err(PlacementError::NoNodes);
    }
    if replication_factor == 0 {
        return Err(PlacementError::ZeroReplicationFactor);
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = nodes.iter().find(|n| !seen.insert(n.node.as_str())) {
        return Err(PlacementError::DuplicateNode(dup.node.clone()));
    }
    if replication_factor > nodes.len() {
        return Err(PlacementError::NotEnoughNodes { replication_factor, nodes: nodes.len() });
    }
    Ok(())
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
