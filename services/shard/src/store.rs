//! [`PointStore`]: the id map and the payloads of one local shard.
//!
//! Every stored point has an internal `u64` key, the key its vector has in the HNSW index.
//! An upsert of an existing id gets a fresh key (the old vector is removed), so a key names
//! exactly one version of a point and a search can never see a half-replaced one.
//! `by_id` is ordered, which gives scroll its stable order.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use vdb_api::{Payload, PointId};

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: PointId,
    pub payload: Payload,
}

#[derive(Debug, Default)]
pub struct PointStore {
    by_id: BTreeMap<PointId, u64>,
    entries: HashMap<u64, Entry>,
    /// The key the next new vector gets; persisted in snapshots so replay is deterministic.
    pub next_key: u64,
    payload_bytes: u64,
}

impl PointStore {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn key_of(&self, id: &PointId) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    pub fn get(&self, key: u64) -> Option<&Entry> {
        self.entries.get(&key)
    }

    pub fn get_mut(&mut self, key: u64) -> Option<&mut Entry> {
        self.entries.get_mut(&key)
    }

    /// Stores `entry` under `key`; returns the key and entry it replaced, if the id existed.
    pub fn insert(&mut self, key: u64, entry: Entry) -> Option<(u64, Entry)> {
        self.payload_bytes += approx_bytes(&entry.payload);
        let old_key = self.by_id.insert(entry.id, key);
        self.entries.insert(key, entry);
        let old = old_key.and_then(|k| self.entries.remove(&k).map(|e| (k, e)));
        if let Some((_, e)) = &old {
            self.payload_bytes = self.payload_bytes.saturating_sub(approx_bytes(&e.payload));
        }
        old
    }

    pub fn remove(&mut self, id: &PointId) -> Option<(u64, Entry)> {
        let key = self.by_id.remove(id)?;
        let entry = self.entries.remove(&key)?;
        self.payload_bytes = self.payload_bytes.saturating_sub(approx_bytes(&entry.payload));
        Some((key, entry))
    }

    /// Replaces a payload in place, keeping the byte estimate right.
    pub fn set_payload(&mut self, key: u64, payload: Payload) -> Option<Payload> {
        let entry = self.entries.get_mut(&key)?;
        self.payload_bytes += approx_bytes(&payload);
        let old = std::mem::replace(&mut entry.payload, payload);
        self.payload_bytes = self.payload_bytes.saturating_sub(approx_bytes(&old));
        Some(old)
    }

    /// Points in id order, starting at `from` (inclusive).
    pub fn iter_from(&self, from: Option<&PointId>) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        let lower = from.map_or(Bound::Unbounded, Bound::Included);
        self.by_id.range((lower, Bound::Unbounded)).map(|(_, &k)| (k, &self.entries[&k]))
    }

    /// Every point, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> + '_ {
        self.entries.iter().map(|(&k, e)| (k, e))
    }

    pub fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }
}

/// A cheap estimate of a payload's size (its JSON text would be about this long).
fn approx_bytes(payload: &Payload) -> u64 {
    fn value(v: &serde_json::Value) -> u64 {
        match v {
            serde_json::Value::Null | serde_json::Value::Bool(_) => 5,
            serde_json::Value::Number(_) => 8,
            serde_json::Value::String(s) => s.len() as u64 + 2,
            serde_json::Value::Array(a) => 2 + a.iter().map(value).sum::<u64>(),
            serde_json::Value::Object(o) => object(o),
        }
    }
    fn object(o: &Payload) -> u64 {
        2 + o.iter().map(|(k, v)| k.len() as u64 + 3 + value(v)).sum::<u64>()
    }
    object(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payload(v: serde_json::Value) -> Payload {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn replacing_an_id_hands_back_the_old_key() {
        let mut s = PointStore::default();
        let id = PointId::Num(7);
        assert!(s.insert(1, Entry { id, payload: payload(json!({"a": 1})) }).is_none());
        let (old_key, old) = s.insert(2, Entry { id, payload: payload(json!({"a": 2})) }).unwrap();
        assert_eq!((old_key, old.payload["a"].as_i64()), (1, Some(1)));
        assert_eq!(s.len(), 1);
        assert_eq!(s.key_of(&id), Some(2));
        assert!(s.get(1).is_none());
    }

    #[test]
    fn iterates_in_id_order_from_a_cursor() {
        let mut s = PointStore::default();
        for (key, id) in [(1, 30u64), (2, 10), (3, 20)] {
            s.insert(key, Entry { id: PointId::Num(id), payload: Payload::new() });
        }
        let ids: Vec<_> = s.iter_from(Some(&PointId::Num(20))).map(|(_, e)| e.id).collect();
        assert_eq!(ids, vec![PointId::Num(20), PointId::Num(30)]);
        s.remove(&PointId::Num(20));
        assert_eq!(s.iter_from(None).count(), 2);
        assert!(s.payload_bytes() > 0);
    }
}
