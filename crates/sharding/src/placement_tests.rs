//! Unit and property tests of replica placement and rebalancing.

use super::*;
use proptest::prelude::*;

fn nodes(names: &[&str]) -> Vec<NodeLoad> {
    names.iter().map(|n| NodeLoad { node: (*n).to_owned(), shards: 0 }).collect()
}

fn node_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("node-{i:02}")).collect()
}

/// Replicas per node in `placement`, every node of `all` included (0 when it hosts none).
fn counts(placement: &Placement, all: &[String]) -> BTreeMap<String, usize> {
    let mut c: BTreeMap<String, usize> = all.iter().map(|n| (n.clone(), 0)).collect();
    for replicas in placement.values() {
        for n in replicas {
            *c.entry(n.clone()).or_default() += 1;
        }
    }
    c
}

fn primaries(placement: &Placement, all: &[String]) -> BTreeMap<String, usize> {
    let mut c: BTreeMap<String, usize> = all.iter().map(|n| (n.clone(), 0)).collect();
    for replicas in placement.values() {
        *c.entry(replicas[0].clone()).or_default() += 1;
    }
    c
}

fn spread(c: &BTreeMap<String, usize>) -> usize {
    c.values().max().unwrap() - c.values().min().unwrap()
}

/// Each node's load as `rebalance` expects it: the replicas of `placement` it hosts.
fn loads_of(placement: &Placement, live: &[String]) -> Vec<NodeLoad> {
    counts(placement, live)
        .into_iter()
        .filter(|(n, _)| live.contains(n))
        .map(|(node, shards)| NodeLoad { node, shards })
        .collect()
}

fn all_distinct(placement: &Placement) -> bool {
    placement.values().all(|r| r.iter().collect::<BTreeSet<_>>().len() == r.len())
}

#[test]
fn place_errors() {
    let three = nodes(&["a", "b", "c"]);
    assert_eq!(place(&[0], 1, &[]), Err(PlacementError::NoNodes));
    assert_eq!(place(&[0], 0, &three), Err(PlacementError::ZeroReplicationFactor));
    let err = place(&[0], 4, &three).unwrap_err();
    assert_eq!(err, PlacementError::NotEnoughNodes { replication_factor: 4, nodes: 3 });
    assert_eq!(err.to_string(), "replication_factor 4 needs as many nodes, but only 3 are live");
    assert_eq!(
        place(&[0], 1, &nodes(&["a", "b", "a"])),
        Err(PlacementError::DuplicateNode("a".into()))
    );
    assert_eq!(place(&[3, 1, 3], 1, &three), Err(PlacementError::DuplicateShard(3)));
    assert_eq!(rebalance(&Placement::new(), 1, &[]), Err(PlacementError::NoNodes));
    assert_eq!(place(&[], 2, &three), Ok(Placement::new()));
}

#[test]
fn place_prefers_least_loaded_and_spreads_primaries() {
    let loaded = vec![
        NodeLoad { node: "a".into(), shards: 5 },
        NodeLoad { node: "b".into(), shards: 0 },
        NodeLoad { node: "c".into(), shards: 1 },
    ];
    let p = place(&[10, 20], 2, &loaded).unwrap();
    // b and c are lighter; after shard 10 (primary b) both have 2, so 20 goes to b,c again
    // with c as primary (fewer primaries).
    assert_eq!(p[&10], vec!["b".to_owned(), "c".to_owned()]);
    assert_eq!(p[&20], vec!["c".to_owned(), "b".to_owned()]);

    let all = node_names(4);
    let four: Vec<NodeLoad> = all.iter().map(|n| NodeLoad { node: n.clone(), shards: 0 }).collect();
    let p = place(&[7, 1, 100, 42], 3, &four).unwrap();
    assert_eq!(spread(&counts(&p, &all)), 0);
    assert_eq!(spread(&primaries(&p, &all)), 0);
    assert!(all_distinct(&p));
}

#[test]
fn rebalance_replaces_a_lost_node_keeping_survivor_as_primary() {
    let p: Placement = [
        (0, vec!["a".to_owned(), "b".to_owned()]),
        (1, vec!["b".to_owned(), "c".to_owned()]),
        (2, vec!["c".to_owned(), "a".to_owned()]),
    ]
    .into();
    let live = vec![
        NodeLoad { node: "b".into(), shards: 2 },
        NodeLoad { node: "c".into(), shards: 2 },
        NodeLoad { node: "d".into(), shards: 0 },
    ];
    let moves = rebalance(&p, 2, &live).unwrap();
    assert_eq!(
        moves,
        vec![
            Move { shard: 0, from: Some("a".into()), to: "d".into() },
            Move { shard: 2, from: Some("a".into()), to: "d".into() },
        ]
    );
    let after = apply_moves(&p, &moves);
    assert_eq!(after[&0], vec!["b".to_owned(), "d".to_owned()]);
    let live_after = ["b", "c", "d"].map(String::from);
    assert_eq!(rebalance(&after, 2, &loads_of(&after, &live_after)), Ok(vec![]));
}

#[test]
fn rebalance_tops_up_replication_and_is_idle_when_balanced() {
    let p: Placement = [(0, vec!["a".to_owned()]), (1, vec!["b".to_owned()])].into();
    let live =
        vec![NodeLoad { node: "a".into(), shards: 1 }, NodeLoad { node: "b".into(), shards: 1 }];
    assert_eq!(rebalance(&p, 1, &live).unwrap(), vec![]);
    let moves = rebalance(&p, 2, &live).unwrap();
    assert_eq!(
        moves,
        vec![
            Move { shard: 0, from: None, to: "b".into() },
            Move { shard: 1, from: None, to: "a".into() },
        ]
    );
}

#[test]
fn rebalance_moves_secondaries_before_primaries() {
    // Node a holds everything; b is new. Moving a secondary of "a" needs none: a is primary
    // of shards 0 and 1, secondary of 2 and 3.
    let s = |v: &[&str]| v.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    let p: Placement =
        [(0, s(&["a"])), (1, s(&["a"])), (2, s(&["c", "a"])), (3, s(&["c", "a"]))].into();
    let live = loads_of(&p, &s(&["a", "b", "c"]));
    let moves = rebalance(&p, 1, &live).unwrap();
    assert_eq!(moves[0], Move { shard: 2, from: Some("a".into()), to: "b".into() });
    let after = apply_moves(&p, &moves);
    assert!(spread(&counts(&after, &s(&["a", "b", "c"]))) <= 1);
}

/// `(shards, replication_factor, nodes)` with `nodes - spare >= replication_factor`.
fn cluster_with_spare(spare: usize) -> impl Strategy<Value = (Vec<ShardId>, usize, usize)> {
    (1 + spare..10).prop_flat_map(move |n| {
        (
            prop::collection::btree_set(any::<u32>(), 0..64)
                .prop_map(|s| s.into_iter().collect::<Vec<_>>()),
            1..=n - spare,
            Just(n),
        )
    })
}

fn cluster() -> impl Strategy<Value = (Vec<ShardId>, usize, usize)> {
    cluster_with_spare(0)
}

proptest! {
    #[test]
    fn place_is_distinct_and_balanced((shards, rf, n) in cluster()) {
        let all = node_names(n);
        let empty: Vec<NodeLoad> = all.iter().map(|node| NodeLoad { node: node.clone(), shards: 0 }).collect();
        let p = place(&shards, rf, &empty).unwrap();
        prop_assert_eq!(p.len(), shards.len());
        prop_assert!(p.values().all(|r| r.len() == rf));
        prop_assert!(all_distinct(&p));
        prop_assert!(spread(&counts(&p, &all)) <= 1);
        prop_assert!(spread(&primaries(&p, &all)) <= 1);
        prop_assert_eq!(&p, &place(&shards, rf, &empty).unwrap());
    }

    #[test]
    fn rebalance_after_losing_a_node(
        (shards, rf, n) in cluster_with_spare(1),
        lost in any::<prop::sample::Index>(),
    ) {
        let all = node_names(n);
        let empty: Vec<NodeLoad> = all.iter().map(|node| NodeLoad { node: node.clone(), shards: 0 }).collect();
        let p = place(&shards, rf, &empty).unwrap();
        let lost = all[lost.index(n)].clone();
        let live: Vec<String> = all.iter().filter(|x| **x != lost).cloned().collect();
        let moves = rebalance(&p, rf, &loads_of(&p, &live)).unwrap();
        prop_assert!(moves.iter().all(|m| m.to != lost));
        let after = apply_moves(&p, &moves);
        prop_assert!(after.values().all(|r| r.len() == rf && !r.contains(&lost)));
        prop_assert!(all_distinct(&after));
        prop_assert!(spread(&counts(&after, &live)) <= 1);
        // Surviving primaries stay primaries unless spreading moved them off their node.
        for (s, r) in &p {
            let moved = moves.iter().any(|m| m.shard == *s && m.from.as_ref() == Some(&r[0]));
            if r[0] != lost && !moved {
                prop_assert_eq!(&after[s][0], &r[0]);
            }
        }
        prop_assert_eq!(moves, rebalance(&p, rf, &loads_of(&p, &live)).unwrap());
    }

    #[test]
    fn rebalance_after_adding_a_node((shards, rf, n) in cluster()) {
        let all = node_names(n);
        let empty: Vec<NodeLoad> = all.iter().map(|node| NodeLoad { node: node.clone(), shards: 0 }).collect();
        let p = place(&shards, rf, &empty).unwrap();
        let grown = node_names(n + 1);
        let newcomer = grown[n].clone();
        let moves = rebalance(&p, rf, &loads_of(&p, &grown)).unwrap();
        let after = apply_moves(&p, &moves);
        prop_assert!(moves.iter().all(|m| m.to == newcomer && m.from.is_some()));
        prop_assert!(after.values().all(|r| r.len() == rf));
        prop_assert!(all_distinct(&after));
        let c = counts(&after, &grown);
        prop_assert!(spread(&c) <= 1);
        // With at least two replicas per node on average, the newcomer gets some.
        if shards.len() * rf >= 2 * (n + 1) {
            prop_assert!(c[&newcomer] > 0);
        }
    }
}
