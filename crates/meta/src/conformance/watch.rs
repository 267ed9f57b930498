//! Checks of watches: the list-then-watch handover and replays from past revisions.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::conformance::{assert_no_event, next_event, StoreFactory};
use crate::{Revision, WatchEvent};

/// A `list` followed by `watch(prefix, listing.revision)` while another client keeps
/// writing: the events are exactly the writes after the listing, in revision order, none
/// lost or repeated, none outside the prefix; applied to the listing they give the final
/// state.
pub async fn watch_after_list_loses_nothing(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let writer = factory.client().await;
    store.put("w/initial", b"0".to_vec(), None).await.unwrap();
    store.put("other/initial", b"0".to_vec(), None).await.unwrap();

    let (halfway_tx, halfway_rx) = tokio::sync::oneshot::channel();
    let writes = tokio::spawn(async move {
        let mut halfway = Some(halfway_tx);
        let mut puts: Vec<(String, Revision)> = Vec::new();
        let mut deleted = Vec::new();
        for i in 0..60u32 {
            let key = format!("w/{i:02}");
            let rev = writer.put(&key, i.to_be_bytes().to_vec(), None).await.unwrap();
            puts.push((key, rev));
            if i % 3 == 2 {
                let victim = format!("w/{:02}", i - 1);
                assert!(writer.delete(&victim, None).await.unwrap());
                deleted.push(victim);
            }
            writer.put(&format!("other/{i}"), vec![1], None).await.unwrap();
            if i == 20 {
                if let Some(tx) = halfway.take() {
                    let _ = tx.send(());
                }
            }
        }
        (puts, deleted)
    });

    halfway_rx.await.unwrap();
    let listing = store.list("w/").await.unwrap();
    let mut stream = store.watch("w/", listing.revision).await.unwrap();
    let (puts, deleted) = writes.await.unwrap();

    let listed: HashSet<&str> = listing.kvs.iter().map(|kv| kv.key.as_str()).collect();
    let mut expected_puts: Vec<_> =
        puts.iter().filter(|(_, rev)| *rev > listing.revision).collect();
    let put_after: HashSet<&str> = expected_puts.iter().map(|(k, _)| k.as_str()).collect();
    let mut expected_deletes: Vec<&String> = deleted
        .iter()
        .filter(|k| listed.contains(k.as_str()) || put_after.contains(k.as_str()))
        .collect();
    let expected_count = expected_puts.len() + expected_deletes.len();
    assert!(expected_count > 0, "the writer kept writing after the listing");

    let mut state: BTreeMap<String, Vec<u8>> =
        listing.kvs.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
    let mut last = listing.revision;
    for _ in 0..expected_count {
        let event = next_event(&mut stream).await;
        assert!(event.key().starts_with("w/"), "event outside the prefix: {event:?}");
        assert!(event.mod_revision() > last, "events in revision order: {event:?} after {last}");
        last = event.mod_revision();
        match event {
            WatchEvent::Put(kv) => {
                let at = expected_puts
                    .iter()
                    .position(|(k, rev)| *k == kv.key && *rev == kv.mod_revision)
                    .unwrap_or_else(|| panic!("unexpected put {kv:?}"));
                expected_puts.remove(at);
                state.insert(kv.key, kv.value);
            }
            WatchEvent::Delete { key, .. } => {
                let at = expected_deletes
                    .iter()
                    .position(|k| **k == key)
                    .unwrap_or_else(|| panic!("unexpected delete of {key}"));
                expected_deletes.remove(at);
                assert!(state.remove(&key).is_some(), "delete of a key not present");
            }
        }
    }
    assert_no_event(&mut stream, Duration::from_millis(300)).await;
    let now = store.list("w/").await.unwrap();
    let now: BTreeMap<String, Vec<u8>> = now.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(state, now, "listing + events = current state");
}

/// A watch from a past revision replays the history after it, then continues live.
pub async fn watch_replays_history(factory: &dyn StoreFactory) {
    let store = factory.client().await;
    let start = store.list("").await.unwrap().revision;
    let a = store.put("h/a", b"a".to_vec(), None).await.unwrap();
    store.put("x/noise", b"n".to_vec(), None).await.unwrap();
    let b = store.put("h/b", b"b".to_vec(), None).await.unwrap();
    assert!(store.delete("h/a", None).await.unwrap());
    let c = store.put("h/c", b"c".to_vec(), None).await.unwrap();

    let mut all = store.watch("h/", start).await.unwrap();
    let first = next_event(&mut all).await;
    assert!(matches!(&first, WatchEvent::Put(kv) if kv.key == "h/a" && kv.mod_revision == a));
    let second = next_event(&mut all).await;
    assert!(matches!(&second, WatchEvent::Put(kv) if kv.key == "h/b" && kv.value == b"b"));
    let third = next_event(&mut all).await;
    assert!(
        matches!(&third, WatchEvent::Delete { key, mod_revision } if key == "h/a" && *mod_revision > b && *mod_revision < c),
        "{third:?}"
    );
    let fourth = next_event(&mut all).await;
    assert_eq!(fourth.mod_revision(), c);

    let mut later = store.watch("h/", b).await.unwrap();
    let replayed = next_event(&mut later).await;
    assert!(matches!(replayed, WatchEvent::Delete { ref key, .. } if key == "h/a"));
    assert_eq!(next_event(&mut later).await.mod_revision(), c);

    let mut current = store.watch("h/", c).await.unwrap();
    assert_no_event(&mut current, Duration::from_millis(200)).await;
    let d = store.put("h/d", b"d".to_vec(), None).await.unwrap();
    for stream in [&mut all, &mut later, &mut current] {
        let live = next_event(stream).await;
        assert!(matches!(live, WatchEvent::Put(ref kv) if kv.key == "h/d" && kv.mod_revision == d));
    }

    // A watch may start in the future: nothing at or below `after` is delivered.
    let mut future = store.watch("h/", d + 2).await.unwrap();
    assert_eq!(store.put("h/e", vec![], None).await.unwrap(), d + 1);
    assert_eq!(store.put("h/f", vec![], None).await.unwrap(), d + 2);
    let g = store.put("h/g", vec![], None).await.unwrap();
    let first_future = next_event(&mut future).await;
    assert_eq!((first_future.key(), first_future.mod_revision()), ("h/g", g));
}
