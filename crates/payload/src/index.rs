//! Payload indexes: per-field inverted indexes that turn filter conditions into candidate keys.
//!
//! One index per field (a dotted path, reached the same way the filter reaches it, so every
//! value found through arrays indexes the point):
//! - `keyword`: string → keys; answers `match` value/any on keywords.
//! - `integer`: integral number (`5` and `5.0` alike) → keys, ordered; answers `match`
//!   value/any on integers and `range`. Numbers it cannot key exactly (`2.5`, integers past
//!   `i64::MAX`) go to a side list that every range answer includes, so ranges stay a superset.
//! - `float`: every number as `f64` → keys, ordered; answers `range` and integer matches.
//!
//! [`PayloadIndexes::candidates`] intersects the answers of the usable `must` conditions
//! (nested filters recurse; a `should` list counts only when every one of its conditions is
//! usable, as the union of their answers). The result is a superset of the matching keys and
//! the caller checks each candidate with [`crate::matches()`], so correctness never depends on
//! the index: it may skip any condition that would cost more to intersect than it saves.
//!
//! Persistence: indexes are not serialised. They are cheap to rebuild from the points in one
//! pass ([`PayloadIndexes::build`]), so a snapshot records only [`PayloadIndexes::fields`].
//!
//! Consistency: `insert` and `remove` must be given the payload the point had when it was
//! indexed; an update is `remove(old)` then `insert(new)` ([`PayloadIndexes::update`]).

use crate::filter::{exact_i64, for_each_value};
use crate::part::{int_interval, interval, Part};
use crate::posting::{intersect, Candidates, OrdF64, Posting};
use serde_json::Value;
use std::borrow::Borrow;
use std::collections::BTreeMap;
use vdb_api::filter::{Condition, FieldCondition, Filter, Match, MatchValue, Range};
use vdb_api::{Payload, PayloadIndexKind, PointId};

/// A condition answered by at most this many posting lists filters candidates by lookup.
const LOOKUP_SOURCES: usize = 16;
/// A larger answer is intersected only if it is at most this many times the current set;
/// beyond that, materialising it costs more than the caller re-checking the extra candidates.
const INTERSECT_RATIO: u64 = 8;

/// The payload indexes of one shard.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PayloadIndexes {
    fields: BTreeMap<String, FieldIndex>,
}

#[derive(Clone, Debug, PartialEq)]
enum FieldIndex {
    Keyword(BTreeMap<String, Posting>),
    Integer { values: BTreeMap<i64, Posting>, others: Posting },
    Float(BTreeMap<OrdF64, Posting>),
}

impl PayloadIndexes {
    /// Indexes of `fields`, built in one pass over `points` (how a shard restores its indexes
    /// from a snapshot).
    pub fn build<'a>(
        fields: &BTreeMap<String, PayloadIndexKind>,
        points: impl IntoIterator<Item = (u64, &'a Payload)>,
    ) -> Self {
        let mut indexes = PayloadIndexes {
            fields: fields.iter().map(|(f, &k)| (f.clone(), FieldIndex::new(k))).collect(),
        };
        for (key, payload) in points {
            indexes.insert(key, payload);
        }
        indexes
    }

    /// Indexes `field` (a dotted path the caller has validated) as `kind` over `points`,
    /// replacing any index the field had.
    pub fn create<'a>(
        &mut self,
        field: &str,
        kind: PayloadIndexKind,
        points: impl IntoIterator<Item = (u64, &'a Payload)>,
    ) {
        let mut index = FieldIndex::new(kind);
        for (key, payload) in points {
            for_each_value(payload, field, |v| index.add(key, v));
        }
        self.fields.insert(field.to_string(), index);
    }

    /// Drops the index of `field`; false when there was none.
    pub fn drop(&mut self, field: &str) -> bool {
        self.fields.remove(field).is_some()
    }

    /// The indexed fields and their kinds.
    pub fn fields(&self) -> BTreeMap<String, PayloadIndexKind> {
        self.fields.iter().map(|(f, i)| (f.clone(), i.kind())).collect()
    }

    /// The kind of index on `field`, if any.
    pub fn kind(&self, field: &str) -> Option<PayloadIndexKind> {
        self.fields.get(field).map(FieldIndex::kind)
    }

    /// True when no field is indexed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Indexes a point stored under `key`.
    pub fn insert(&mut self, key: u64, payload: &Payload) {
        for (field, index) in &mut self.fields {
            for_each_value(payload, field, |v| index.add(key, v));
        }
    }

    /// Unindexes a point; `payload` must be the one it was indexed with.
    pub fn remove(&mut self, key: u64, payload: &Payload) {
        for (field, index) in &mut self.fields {
            for_each_value(payload, field, |v| index.del(key, v));
        }
    }

    /// A point's payload changed from `old` to `new`.
    pub fn update(&mut self, key: u64, old: &Payload, new: &Payload) {
        self.remove(key, old);
        self.insert(key, new);
    }

    /// Approximate heap bytes held by the indexes.
    pub fn approx_bytes(&self) -> u64 {
        // Per map entry: key, 32-byte posting header and B-tree node overhead (~16 bytes).
        let entry = |key: usize, p: &Posting| (key + 48 + p.heap_bytes()) as u64;
        self.fields
            .iter()
            .map(|(field, index)| {
                let values: u64 = match index {
                    FieldIndex::Keyword(m) => m.iter().map(|(s, p)| entry(24 + s.len(), p)).sum(),
                    FieldIndex::Integer { values, others } => {
                        values.values().map(|p| entry(8, p)).sum::<u64>() + entry(0, others)
                    }
                    FieldIndex::Float(m) => m.values().map(|p| entry(8, p)).sum(),
                };
                (field.len() + 64) as u64 + values
            })
            .sum()
    }

    /// A superset of the keys matching `filter`, when some index helps (see the module docs);
    /// `None` when none does. `has_id` conditions are not used: see
    /// [`Self::candidates_with_ids`].
    pub fn candidates(&self, filter: &Filter) -> Option<Candidates> {
        self.candidates_impl(filter, None).map(Candidates::from_sorted)
    }

    /// Like [`Self::candidates`], also answering `has_id` conditions through `key_of`, which
    /// maps a point id to its key (`None` when absent).
    pub fn candidates_with_ids(
        &self,
        filter: &Filter,
        key_of: impl Fn(&PointId) -> Option<u64>,
    ) -> Option<Candidates> {
        self.candidates_impl(filter, Some(&key_of)).map(Candidates::from_sorted)
    }

    /// An upper bound on the points matching `filter` from index sizes and `has_id` lists,
    /// without building the candidate set; `None` when nothing bounds it.
    pub fn cardinality_bound(&self, filter: &Filter) -> Option<u64> {
        let must = filter.must.iter().filter_map(|c| self.condition_bound(c)).min();
        let should = if filter.should.is_empty() {
            None
        } else {
            filter.should.iter().map(|c| self.condition_bound(c)).sum::<Option<u64>>()
        };
        must.into_iter().chain(should).min()
    }

    fn condition_bound(&self, c: &Condition) -> Option<u64> {
        match c {
            Condition::Field(f) => self.field_part(f).map(|p| p.bound),
            Condition::HasId(h) => Some(h.has_id.len() as u64),
            Condition::IsEmpty(_) => None,
            Condition::Filter(inner) => self.cardinality_bound(inner),
        }
    }

    /// Sorted, deduplicated candidate keys.
    fn candidates_impl(&self, filter: &Filter, key_of: Option<&KeyOf<'_>>) -> Option<Vec<u64>> {
        let mut parts: Vec<Part<'_>> =
            filter.must.iter().filter_map(|c| self.condition_part(c, key_of)).collect();
        if !filter.should.is_empty() {
            let union = filter.should.iter().try_fold(Part::default(), |mut union, c| {
                union.absorb(self.condition_part(c, key_of)?);
                Some(union)
            });
            parts.extend(union);
        }
        // Smallest first: it seeds the set, and every later step can only shrink it.
        parts.sort_by_key(|p| p.bound);
        let mut parts = parts.into_iter();
        let mut keys = parts.next()?.into_sorted();
        for part in parts {
            if keys.is_empty() {
                break;
            }
            if part.sources() <= LOOKUP_SOURCES {
                keys.retain(|&k| part.contains(k));
            } else if part.bound <= INTERSECT_RATIO * keys.len() as u64 {
                keys = intersect(&keys, &part.into_sorted());
            }
        }
        Some(keys)
    }

    fn condition_part(&self, c: &Condition, key_of: Option<&KeyOf<'_>>) -> Option<Part<'_>> {
        match c {
            Condition::Field(f) => self.field_part(f),
            Condition::HasId(h) => {
                let key_of = key_of?;
                let keys: Vec<u64> = h.has_id.iter().filter_map(key_of).collect();
                Some(Part::list(Candidates::from_keys(keys).into_vec()))
            }
            Condition::IsEmpty(_) => None,
            Condition::Filter(inner) => self.candidates_impl(inner, key_of).map(Part::list),
        }
    }

    fn field_part(&self, f: &FieldCondition) -> Option<Part<'_>> {
        let index = self.fields.get(&f.key)?;
        // With both `match` and `range` (rejected by validation) either answer is a superset.
        f.r#match
            .as_ref()
            .and_then(|m| index.match_part(m))
            .or_else(|| f.range.as_ref().and_then(|r| index.range_part(r)))
    }
}

type KeyOf<'f> = dyn Fn(&PointId) -> Option<u64> + 'f;

impl FieldIndex {
    fn new(kind: PayloadIndexKind) -> Self {
        match kind {
            PayloadIndexKind::Keyword => FieldIndex::Keyword(BTreeMap::new()),
            PayloadIndexKind::Integer => {
                FieldIndex::Integer { values: BTreeMap::new(), others: Posting::Small(Vec::new()) }
            }
            PayloadIndexKind::Float => FieldIndex::Float(BTreeMap::new()),
        }
    }

    fn kind(&self) -> PayloadIndexKind {
        match self {
            FieldIndex::Keyword(_) => PayloadIndexKind::Keyword,
            FieldIndex::Integer { .. } => PayloadIndexKind::Integer,
            FieldIndex::Float(_) => PayloadIndexKind::Float,
        }
    }

    fn add(&mut self, key: u64, v: &Value) {
        match (self, v) {
            (FieldIndex::Keyword(m), Value::String(s)) => add(m, s.as_str(), key),
            (FieldIndex::Integer { values, others }, Value::Number(n)) => match exact_i64(n) {
                Some(i) => add(values, &i, key),
                None => others.insert(key),
            },
            (FieldIndex::Float(m), Value::Number(n)) => {
                if let Some(f) = n.as_f64() {
                    add(m, &OrdF64::new(f), key);
                }
            }
            _ => {}
        }
    }

    fn del(&mut self, key: u64, v: &Value) {
        match (self, v) {
            (FieldIndex::Keyword(m), Value::String(s)) => del(m, s.as_str(), key),
            (FieldIndex::Integer { values, others }, Value::Number(n)) => match exact_i64(n) {
                Some(i) => del(values, &i, key),
                None => others.remove(key),
            },
            (FieldIndex::Float(m), Value::Number(n)) => {
                if let Some(f) = n.as_f64() {
                    del(m, &OrdF64::new(f), key);
                }
            }
            _ => {}
        }
    }

    /// Keys that may satisfy `match` value/any; `None` for `except` and for values of a type
    /// the index does not hold (a keyword index cannot rule out integer matches).
    fn match_part(&self, m: &Match) -> Option<Part<'_>> {
        let values = match m {
            Match::Value { value } => std::slice::from_ref(value),
            Match::Any { any } => any.as_slice(),
            Match::Except { .. } => return None,
        };
        let mut part = Part::default();
        for value in values {
            let posting = match (self, value) {
                (FieldIndex::Keyword(m), MatchValue::Keyword(s)) => m.get(s.as_str()),
                (FieldIndex::Integer { values, .. }, MatchValue::Integer(i)) => values.get(i),
                // Every number equal to `i` has `i as f64` as its f64 value (see `exact_i64`).
                (FieldIndex::Float(m), MatchValue::Integer(i)) => m.get(&OrdF64::new(*i as f64)),
                _ => return None,
            };
            part.extend(posting);
        }
        Some(part)
    }

    /// Keys that may satisfy `range`; `None` for a keyword index or a range too wide to scan.
    fn range_part(&self, r: &Range) -> Option<Part<'_>> {
        let mut part = Part::default();
        let bounds = interval(r);
        match self {
            FieldIndex::Keyword(_) => return None,
            FieldIndex::Integer { values, others } => {
                if let Some(ints) = bounds.and_then(|(lo, hi)| int_interval(lo, hi)) {
                    let hits = values.range(ints).filter(|(i, _)| r.contains(**i as f64));
                    part.extend_limited(hits.map(|(_, p)| p))?;
                }
                // Values the map cannot key may lie anywhere in the range.
                if !others.is_empty() {
                    part.push(others);
                }
            }
            FieldIndex::Float(m) => {
                if let Some((lo, hi)) = bounds {
                    let hits =
                        m.range(OrdF64::new(lo)..=OrdF64::new(hi)).filter(|(v, _)| r.contains(v.0));
                    part.extend_limited(hits.map(|(_, p)| p))?;
                }
            }
        }
        Some(part)
    }
}

fn add<K, Q>(map: &mut BTreeMap<K, Posting>, value: &Q, key: u64)
where
    K: Ord + Borrow<Q>,
    Q: Ord + ToOwned<Owned = K> + ?Sized,
{
    // Look up before inserting so that an existing keyword is not copied.
    match map.get_mut(value) {
        Some(p) => p.insert(key),
        None => {
            map.insert(value.to_owned(), Posting::single(key));
        }
    }
}

fn del<K, Q>(map: &mut BTreeMap<K, Posting>, value: &Q, key: u64)
where
    K: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    if let Some(p) = map.get_mut(value) {
        p.remove(key);
        // Dropping empty lists keeps memory bounded by the live values.
        if p.is_empty() {
            map.remove(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn points() -> Vec<(u64, Payload)> {
        let raw = [
            json!({"color": "red", "n": 1, "price": 1.5, "tags": ["a", "b"]}),
            json!({"color": "blue", "n": 2.0, "price": 10, "tags": ["b"]}),
            json!({"color": ["red", "green"], "n": 2.5, "price": -0.0}),
            json!({"color": 3, "n": "2", "meta": {"n": [4, {"x": 1}]}}),
            json!({"n": u64::MAX, "price": 100.25}),
            json!({}),
        ];
        raw.into_iter()
            .enumerate()
            .map(|(i, v)| (i as u64 * 10, serde_json::from_value(v).unwrap()))
            .collect()
    }

    fn indexes(pts: &[(u64, Payload)]) -> PayloadIndexes {
        let fields = BTreeMap::from([
            ("color".to_string(), PayloadIndexKind::Keyword),
            ("n".to_string(), PayloadIndexKind::Integer),
            ("price".to_string(), PayloadIndexKind::Float),
            ("meta.n".to_string(), PayloadIndexKind::Integer),
        ]);
        PayloadIndexes::build(&fields, pts.iter().map(|(k, p)| (*k, p)))
    }

    fn cands(ix: &PayloadIndexes, f: serde_json::Value) -> Option<Vec<u64>> {
        let f: Filter = serde_json::from_value(f).unwrap();
        ix.candidates(&f).map(Candidates::into_vec)
    }

    #[test]
    fn answers_each_index_kind() {
        let ix = indexes(&points());
        let m = |k: &str, v: serde_json::Value| json!({"must": [{"key": k, "match": v}]});
        let r = |k: &str, v: serde_json::Value| json!({"must": [{"key": k, "range": v}]});
        assert_eq!(cands(&ix, m("color", json!({"value": "red"}))), Some(vec![0, 20]));
        assert_eq!(cands(&ix, m("color", json!({"any": ["blue", "green"]}))), Some(vec![10, 20]));
        assert_eq!(cands(&ix, m("color", json!({"value": 3}))), None);
        assert_eq!(cands(&ix, m("color", json!({"except": ["red"]}))), None);
        assert_eq!(cands(&ix, m("n", json!({"value": 2}))), Some(vec![10]));
        assert_eq!(cands(&ix, m("n", json!({"value": "2"}))), None);
        assert_eq!(cands(&ix, m("meta.n", json!({"value": 4}))), Some(vec![30]));
        // Non-integral and oversized numbers are in every integer range answer.
        assert_eq!(cands(&ix, r("n", json!({"gte": 2}))), Some(vec![10, 20, 40]));
        assert_eq!(cands(&ix, r("n", json!({"lt": 1}))), Some(vec![20, 40]));
        assert_eq!(cands(&ix, r("price", json!({"gte": 0, "lt": 10}))), Some(vec![0, 20]));
        assert_eq!(cands(&ix, r("price", json!({"gt": 0}))), Some(vec![0, 10, 40]));
        assert_eq!(cands(&ix, r("price", json!({"lte": -0.0}))), Some(vec![20]));
        assert_eq!(cands(&ix, r("price", json!({"gte": 0, "lte": 0}))), Some(vec![20]));
        assert_eq!(cands(&ix, r("price", json!({"gt": 5, "lt": 5}))), Some(vec![]));
        assert_eq!(cands(&ix, m("price", json!({"value": 10}))), Some(vec![10]));
        assert_eq!(cands(&ix, r("color", json!({"gt": 0}))), None);
        assert_eq!(cands(&ix, m("tags", json!({"value": "a"}))), None);
    }

    #[test]
    fn combines_conditions() {
        let ix = indexes(&points());
        let red = json!({"key": "color", "match": {"value": "red"}});
        let cheap = json!({"key": "price", "range": {"lt": 5}});
        let tag = json!({"key": "tags", "match": {"value": "a"}});
        assert_eq!(cands(&ix, json!({"must": [red, cheap]})), Some(vec![0, 20]));
        assert_eq!(cands(&ix, json!({"must": [red, tag]})), Some(vec![0, 20]));
        assert_eq!(cands(&ix, json!({"must": [tag]})), None);
        assert_eq!(
            cands(&ix, json!({"should": [red, {"key": "n", "match": {"value": 2}}]})),
            Some(vec![0, 10, 20])
        );
        assert_eq!(cands(&ix, json!({"should": [red, tag]})), None);
        assert_eq!(cands(&ix, json!({"must_not": [red]})), None);
        assert_eq!(
            cands(&ix, json!({"must": [{"must": [red]}, {"should": [cheap]}]})),
            Some(vec![0, 20])
        );
        assert_eq!(cands(&ix, json!({"must": [{"has_id": [1]}]})), None);
        let f: Filter =
            serde_json::from_value(json!({"must": [red, {"has_id": [2, 5, 99]}]})).unwrap();
        let got = ix.candidates_with_ids(&f, |id| match id {
            PointId::Num(n) if *n < 10 => Some(n * 10),
            _ => None,
        });
        assert_eq!(got.map(Candidates::into_vec), Some(vec![20]));
    }

    #[test]
    fn bounds() {
        let ix = indexes(&points());
        let f = |v: serde_json::Value| -> Filter { serde_json::from_value(v).unwrap() };
        let red = json!({"key": "color", "match": {"value": "red"}});
        let tag = json!({"key": "tags", "match": {"value": "a"}});
        assert_eq!(ix.cardinality_bound(&f(json!({"must": [red, tag]}))), Some(2));
        assert_eq!(ix.cardinality_bound(&f(json!({"must": [tag]}))), None);
        assert_eq!(ix.cardinality_bound(&f(json!({"must": [{"has_id": [1, 2, 3]}]}))), Some(3));
        assert_eq!(ix.cardinality_bound(&f(json!({"should": [red, {"has_id": [1]}]}))), Some(3));
        assert_eq!(ix.cardinality_bound(&f(json!({"should": [red, tag]}))), None);
    }

    #[test]
    fn stays_in_sync_and_drops_empty_lists() {
        let pts = points();
        let mut ix = indexes(&[]);
        for (k, p) in &pts {
            ix.insert(*k, p);
        }
        assert_eq!(ix, indexes(&pts));
        let before = ix.approx_bytes();
        let new: Payload = serde_json::from_value(json!({"color": "teal", "n": 7})).unwrap();
        ix.update(0, &pts[0].1, &new);
        let mut changed = pts.clone();
        changed[0].1 = new;
        assert_eq!(ix, indexes(&changed));
        for (k, p) in &changed {
            ix.remove(*k, p);
        }
        assert_eq!(ix, indexes(&[]));
        assert!(ix.approx_bytes() < before);
    }

    #[test]
    fn create_drop_and_fields() {
        let pts = points();
        let mut ix = PayloadIndexes::default();
        assert!(ix.is_empty());
        ix.create("color", PayloadIndexKind::Keyword, pts.iter().map(|(k, p)| (*k, p)));
        ix.create("n", PayloadIndexKind::Float, pts.iter().map(|(k, p)| (*k, p)));
        ix.create("n", PayloadIndexKind::Integer, pts.iter().map(|(k, p)| (*k, p)));
        assert_eq!(ix.kind("n"), Some(PayloadIndexKind::Integer));
        assert_eq!(ix.fields().len(), 2);
        assert!(ix.drop("color"));
        assert!(!ix.drop("color"));
        assert_eq!(ix.fields(), BTreeMap::from([("n".to_string(), PayloadIndexKind::Integer)]));
        assert!(ix.approx_bytes() > 0);
    }

    #[test]
    fn intersects_answers_with_many_lists() {
        // Unique values: each range answer is one posting list per point.
        let pts: Vec<(u64, Payload)> = (0..200u64)
            .map(|k| (k, serde_json::from_value(json!({"u": k, "w": k as f64 / 2.0})).unwrap()))
            .collect();
        let fields = BTreeMap::from([
            ("u".to_string(), PayloadIndexKind::Integer),
            ("w".to_string(), PayloadIndexKind::Float),
        ]);
        let ix = PayloadIndexes::build(&fields, pts.iter().map(|(k, p)| (*k, p)));
        let f = json!({"must": [{"key": "u", "range": {"gte": 20, "lt": 90}},
                                {"key": "w", "range": {"gte": 30}}]});
        assert_eq!(cands(&ix, f), Some((60..90).collect()));
        // Far larger answers are skipped rather than built: still a superset.
        let u = json!({"key": "u", "range": {"lt": 3}});
        let f = json!({"must": [u, {"key": "w", "range": {"gte": 0}}]});
        assert_eq!(cands(&ix, f), Some(vec![0, 1, 2]));
        let f = json!({"must": [u, {"key": "w", "range": {"gte": 0.5}}]});
        assert_eq!(cands(&ix, f), Some(vec![0, 1, 2]));
    }

    #[test]
    fn wide_ranges_fall_back() {
        let pts: Vec<(u64, Payload)> = (0..(crate::part::RANGE_SCAN_LIMIT as u64 + 5))
            .map(|k| (k, serde_json::from_value(json!({"v": k})).unwrap()))
            .collect();
        let mut ix = PayloadIndexes::default();
        ix.create("v", PayloadIndexKind::Integer, pts.iter().map(|(k, p)| (*k, p)));
        assert_eq!(cands(&ix, json!({"must": [{"key": "v", "range": {"gte": 0}}]})), None);
        let narrow = cands(&ix, json!({"must": [{"key": "v", "range": {"gte": 10, "lt": 13}}]}));
        assert_eq!(narrow, Some(vec![10, 11, 12]));
    }
}
