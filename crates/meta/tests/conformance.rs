//! The conformance suite against both backends: a fresh local store in a temp dir, and a
//! fresh real etcd (skipped outside CI when etcd is not installed; see `EtcdServer`).

use std::sync::Arc;

use vdb_meta::conformance;
use vdb_meta::testing::EtcdServer;
use vdb_meta::{LocalStore, MetaStore};

macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod local {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let dir = tempfile::tempdir().unwrap();
                    let store: Arc<dyn MetaStore> =
                        Arc::new(LocalStore::open(dir.path().join("meta.json")).await.unwrap());
                    conformance::$check(&store).await;
                }
            )*
        }
        mod etcd {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let Some(server) = EtcdServer::start_or_skip(stringify!($check)) else {
                        return;
                    };
                    conformance::$check(&server).await;
                }
            )*
        }
    };
}

suite!(
    get_put_list,
    revisions_increase,
    compare_and_swap,
    cas_create_race,
    delete,
    watch_after_list_loses_nothing,
    watch_replays_history,
    lease_expiry_deletes_keys,
    keep_alive_extends,
    revoke_deletes_keys,
    election_single_leader,
    election_resign_hands_over,
    election_lost_when_lease_revoked,
    election_takeover_after_crash,
    leader_reports_holder,
);
