//! Checks of leader election: one leader at a time, handover, loss and takeover.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};

use crate::conformance::{StoreFactory, PATIENCE};
use crate::{Election, Leadership, MetaError};

const TTL: Duration = Duration::from_secs(2);
const NAME: &str = "controller";

async fn spawn_candidate(
    factory: &dyn StoreFactory,
    id: usize,
) -> JoinHandle<Result<Leadership, MetaError>> {
    let store = factory.client().await;
    tokio::spawn(async move { Election::campaign(store, NAME, &format!("router-{id}"), TTL).await })
}

/// Waits for the first of `pending` campaigns to win; returns it and the rest.
async fn first_elected(
    mut pending: Vec<JoinHandle<Result<Leadership, MetaError>>>,
) -> (Leadership, Vec<JoinHandle<Result<Leadership, MetaError>>>) {
    let started = Instant::now();
    loop {
        if let Some(at) = pending.iter().position(|t| t.is_finished()) {
            let done = pending.remove(at);
            let leadership = done.await.unwrap().unwrap();
            return (leadership, pending);
        }
        assert!(started.elapsed() < PATIENCE, "no candidate elected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// N concurrent candidates: exactly one leads while it renews; when it resigns exactly one
/// other takes over, and so on down the line. `leader()` follows the holder throughout.
pub async fn election_single_leader(factory: &dyn StoreFactory) {
    let observer = factory.client().await;
    let mut pending = Vec::new();
    for id in 0..4 {
        pending.push(spawn_candidate(factory, id).await);
    }
    let mut seen = Vec::new();
    while !pending.is_empty() {
        let (leader, rest) = first_elected(pending).await;
        pending = rest;
        // Over more than a TTL, with renewals going on, nobody else may win.
        let hold_until = Instant::now() + TTL * 5 / 4;
        while Instant::now() < hold_until {
            assert!(leader.is_leader(), "{leader:?} lost leadership while renewing");
            let finished = pending.iter().filter(|t| t.is_finished()).count();
            assert_eq!(finished, 0, "a second candidate was elected");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let holder = Election::leader(&*observer, NAME).await.unwrap();
        assert_eq!(holder.as_deref(), Some(leader.candidate()));
        assert!(!seen.contains(&leader.candidate().to_string()));
        seen.push(leader.candidate().to_string());
        leader.resign().await.unwrap();
    }
    assert_eq!(seen.len(), 4);
    assert_eq!(Election::leader(&*observer, NAME).await.unwrap(), None);
}

/// A resigning leader hands over at once (well within the TTL), and fencing revisions grow.
pub async fn election_resign_hands_over(factory: &dyn StoreFactory) {
    let first = Election::campaign(factory.client().await, NAME, "a", TTL).await.unwrap();
    let waiting = spawn_candidate(factory, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished(), "elected while the leader holds");
    let resigned = Instant::now();
    let first_revision = first.revision();
    first.resign().await.unwrap();
    let second = timeout(PATIENCE, waiting).await.unwrap().unwrap().unwrap();
    assert!(
        resigned.elapsed() < TTL,
        "handover took {:?}, as long as an expiry",
        resigned.elapsed()
    );
    assert!(second.is_leader());
    assert!(second.revision() > first_revision);
    let observer = factory.client().await;
    let holder = Election::leader(&*observer, NAME).await.unwrap();
    assert_eq!(holder.as_deref(), Some("router-1"));
    second.resign().await.unwrap();
}

/// A leader whose lease is revoked behind its back observes `lost` promptly, and another
/// candidate can then be elected.
pub async fn election_lost_when_lease_revoked(factory: &dyn StoreFactory) {
    let leader = Election::campaign(factory.client().await, NAME, "a", TTL).await.unwrap();
    let mut flag = leader.subscribe();
    assert!(*flag.borrow_and_update());
    let outsider = factory.client().await;
    outsider.revoke_lease(leader.lease()).await.unwrap();
    timeout(TTL, leader.lost()).await.expect("lost fires after the lease was revoked");
    assert!(!leader.is_leader());
    timeout(PATIENCE, flag.wait_for(|leading| !*leading)).await.unwrap().unwrap();
    let next =
        timeout(PATIENCE, Election::campaign(outsider, NAME, "b", TTL)).await.unwrap().unwrap();
    assert!(next.is_leader());
    assert!(!leader.is_leader());
    next.resign().await.unwrap();
}

/// A leader that dies without resigning (stops renewing) is replaced once its lease runs
/// out, not before.
pub async fn election_takeover_after_crash(factory: &dyn StoreFactory) {
    let crashed = Election::campaign(factory.client().await, NAME, "a", TTL).await.unwrap();
    let waiting = spawn_candidate(factory, 1).await;
    let died = Instant::now();
    drop(crashed);
    let next = timeout(PATIENCE, waiting).await.unwrap().unwrap().unwrap();
    let after = died.elapsed();
    assert!(after >= TTL / 2, "taken over after {after:?}, before the lease could expire");
    assert!(next.is_leader());
    assert_eq!(next.candidate(), "router-1");
    next.resign().await.unwrap();
}

/// `leader()` reports nobody, then the holder, then nobody after it resigns.
pub async fn leader_reports_holder(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    assert_eq!(Election::leader(&*store, NAME).await.unwrap(), None);
    let leadership = Election::campaign(store.clone(), NAME, "router-a", TTL).await.unwrap();
    assert_eq!(Election::leader(&*store, NAME).await.unwrap().as_deref(), Some("router-a"));
    assert_eq!(
        Election::leader(&*store, "other").await.unwrap(),
        None,
        "elections are independent"
    );
    leadership.resign().await.unwrap();
    assert_eq!(Election::leader(&*store, NAME).await.unwrap(), None);
}
