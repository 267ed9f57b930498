//! Filter evaluation: does a point (its id and payload) satisfy a [`Filter`]?
//!
//! Semantics, condition by condition:
//! - `must`: every condition holds; `should`: at least one holds (ignored when empty);
//!   `must_not`: none holds. Nested filters recurse; the empty filter matches every point.
//! - `key` is a dotted path into nested objects (`"meta.tags"`), always split on `.` (a payload
//!   key that itself contains a dot cannot be addressed). Where the path meets an array it fans
//!   out, at any depth and at any number of array levels: a field condition holds when ANY
//!   value reached satisfies it. The values reached are the *leaves*: arrays are never leaves
//!   themselves, their elements are.
//! - `match: {value}`: a leaf equals the value. A keyword equals a JSON string, a boolean a JSON
//!   boolean, an integer a JSON number of the same integral value (`5` matches `5` and `5.0`,
//!   never `"5"`). `match: {any}`: a leaf equals one of the values (an empty list matches
//!   nothing).
//! - `match: {except}`: some leaf is non-null and equals none of the values. For an array this
//!   means "at least one element is not in the list" (as Qdrant does), so `["a", "b"]` passes
//!   `except: ["a"]`; a missing field, `null` or `[]` never passes.
//! - `range`: a numeric leaf (integer or float, compared as `f64`) lies within every bound;
//!   strings, booleans and objects never do.
//! - `has_id`: the point's id is in the list. `is_empty`: no leaf other than `null` is reached,
//!   i.e. the field is missing, `null`, `[]` (or an array holding only those).
//! - A field condition with neither `match` nor `range` matches nothing, and one with both
//!   needs a single leaf satisfying both; `vdb_api::filter::validate` rejects either shape
//!   before a filter gets here.
//!
//! [`matches()`] is allocation-free: it walks the path lazily with `str::split` and compares
//! borrowed values. It scans `has_id` lists linearly; for the search loop, where one filter is
//! evaluated against thousands of points, [`PreparedFilter`] sorts those lists once so each
//! check is a binary search.

use serde_json::{Number, Value};
use std::str::Split;
use vdb_api::filter::{Condition, FieldCondition, Filter, Match, MatchValue};
use vdb_api::{Payload, PointId};

/// True when the point with `id` and `payload` satisfies `filter` (see the module docs).
pub fn matches(filter: &Filter, id: &PointId, payload: &Payload) -> bool {
    eval_filter::<false>(filter, id, payload)
}

/// A filter made ready for evaluation against many points: its `has_id` lists are sorted and
/// deduplicated once, so each check is a binary search instead of a scan.
#[derive(Clone, Debug, PartialEq)]
pub struct PreparedFilter {
    filter: Filter,
}

impl PreparedFilter {
    /// Prepares a copy of `filter`.
    pub fn new(filter: &Filter) -> Self {
        Self::from(filter.clone())
    }

    /// Same result as [`matches()`] on the original filter.
    pub fn matches(&self, id: &PointId, payload: &Payload) -> bool {
        eval_filter::<true>(&self.filter, id, payload)
    }

    /// The filter (with its `has_id` lists sorted).
    pub fn filter(&self) -> &Filter {
        &self.filter
    }
}

impl From<Filter> for PreparedFilter {
    fn from(mut filter: Filter) -> Self {
        sort_ids(&mut filter);
        PreparedFilter { filter }
    }
}

fn sort_ids(filter: &mut Filter) {
    for c in filter.must.iter_mut().chain(&mut filter.should).chain(&mut filter.must_not) {
        match c {
            Condition::HasId(h) => {
                h.has_id.sort_unstable();
                h.has_id.dedup();
            }
            Condition::Filter(inner) => sort_ids(inner),
            Condition::Field(_) | Condition::IsEmpty(_) => {}
        }
    }
}

/// `SORTED` says whether `has_id` lists are sorted (a [`PreparedFilter`]), so the one generic
/// evaluator serves both entry points without a runtime branch per condition.
fn eval_filter<const SORTED: bool>(filter: &Filter, id: &PointId, payload: &Payload) -> bool {
    filter.must.iter().all(|c| eval_condition::<SORTED>(c, id, payload))
        && (filter.should.is_empty()
            || filter.should.iter().any(|c| eval_condition::<SORTED>(c, id, payload)))
        && !filter.must_not.iter().any(|c| eval_condition::<SORTED>(c, id, payload))
}

fn eval_condition<const SORTED: bool>(c: &Condition, id: &PointId, payload: &Payload) -> bool {
    match c {
        Condition::Field(f) => field_matches(f, payload),
        Condition::HasId(h) => {
            if SORTED {
                h.has_id.binary_search(id).is_ok()
            } else {
                h.has_id.contains(id)
            }
        }
        Condition::IsEmpty(e) => !any_value(payload, &e.is_empty.key, |v| !v.is_null()),
        Condition::Filter(inner) => eval_filter::<SORTED>(inner, id, payload),
    }
}

fn field_matches(f: &FieldCondition, payload: &Payload) -> bool {
    if f.r#match.is_none() && f.range.is_none() {
        return false;
    }
    any_value(payload, &f.key, |v| leaf_matches(f, v))
}

fn leaf_matches(f: &FieldCondition, v: &Value) -> bool {
    let match_ok = match &f.r#match {
        None => true,
        Some(Match::Value { value }) => value_eq(value, v),
        Some(Match::Any { any }) => any.iter().any(|m| value_eq(m, v)),
        Some(Match::Except { except }) => !v.is_null() && !except.iter().any(|m| value_eq(m, v)),
    };
    match_ok && f.range.as_ref().is_none_or(|r| v.as_f64().is_some_and(|x| r.contains(x)))
}

/// Whether a JSON leaf equals a match value (see the module docs for the typing rules).
pub(crate) fn value_eq(m: &MatchValue, v: &Value) -> bool {
    match (m, v) {
        (MatchValue::Keyword(s), Value::String(t)) => s == t,
        (MatchValue::Integer(i), Value::Number(n)) => exact_i64(n) == Some(*i),
        (MatchValue::Bool(b), Value::Bool(c)) => b == c,
        _ => false,
    }
}

/// The number as an `i64` when it is integral and in range: `5` and `5.0` give 5, `5.5` and
/// `2^64 - 1` give `None`. Integer matches and the integer index both go through this, which
/// keeps the index a superset of what the evaluator accepts.
pub(crate) fn exact_i64(n: &Number) -> Option<i64> {
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    if n.is_u64() {
        return None;
    }
    // -2^63 and 2^63 are exact in f64, and every integral f64 in [-2^63, 2^63) converts to i64
    // without loss, so the cast below is exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let f = n.as_f64()?;
    (f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f)).then_some(f as i64)
}

/// Calls `f` on every leaf reached by the dotted path `key` (fanning out over arrays, see the
/// module docs) until it returns true; returns whether it did. Nothing is allocated.
pub fn any_value<'p>(
    payload: &'p Payload,
    key: &str,
    mut f: impl FnMut(&'p Value) -> bool,
) -> bool {
    let mut segments = key.split('.');
    let Some(first) = segments.next() else { return false };
    payload.get(first).is_some_and(|v| walk(v, segments, &mut f))
}

/// Calls `f` on every leaf reached by `key`, in document order.
pub fn for_each_value<'p>(payload: &'p Payload, key: &str, mut f: impl FnMut(&'p Value)) {
    any_value(payload, key, |v| {
        f(v);
        false
    });
}

fn walk<'p, F: FnMut(&'p Value) -> bool>(
    value: &'p Value,
    mut rest: Split<'_, char>,
    f: &mut F,
) -> bool {
    match value {
        // Arrays fan out before the next segment is consumed, so `tags` and `items.name` both
        // reach through (possibly nested) arrays.
        Value::Array(items) => items.iter().any(|item| walk(item, rest.clone(), f)),
        Value::Object(map) => match rest.next() {
            None => f(value),
            Some(segment) => map.get(segment).is_some_and(|child| walk(child, rest, f)),
        },
        // A scalar ends the path; any segments left name something that does not exist.
        _ => rest.next().is_none() && f(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use vdb_api::filter::{FieldKey, HasIdCondition, IsEmptyCondition};
    use vdb_api::Range;

    fn payload(v: Value) -> Payload {
        match v {
            Value::Object(m) => m,
            _ => panic!("payload must be an object"),
        }
    }

    fn filter(v: Value) -> Filter {
        serde_json::from_value(v).unwrap()
    }

    fn check(f: Value, p: Value) -> bool {
        let f = filter(f);
        let p = payload(p);
        let id = PointId::Num(7);
        let plain = matches(&f, &id, &p);
        assert_eq!(plain, PreparedFilter::new(&f).matches(&id, &p), "prepared disagrees");
        plain
    }

    fn must(c: Value) -> Value {
        json!({"must": [c]})
    }

    #[test]
    fn match_keyword_integer_bool() {
        let p = json!({"s": "utils", "n": 5, "f": 5.0, "g": 5.5, "b": true, "ns": "5"});
        assert!(check(must(json!({"key": "s", "match": {"value": "utils"}})), p.clone()));
        assert!(!check(must(json!({"key": "s", "match": {"value": "util"}})), p.clone()));
        assert!(check(must(json!({"key": "n", "match": {"value": 5}})), p.clone()));
        assert!(check(must(json!({"key": "f", "match": {"value": 5}})), p.clone()));
        assert!(!check(must(json!({"key": "g", "match": {"value": 5}})), p.clone()));
        assert!(!check(must(json!({"key": "ns", "match": {"value": 5}})), p.clone()));
        assert!(!check(must(json!({"key": "n", "match": {"value": "5"}})), p.clone()));
        assert!(check(must(json!({"key": "b", "match": {"value": true}})), p.clone()));
        assert!(!check(must(json!({"key": "b", "match": {"value": false}})), p.clone()));
        assert!(!check(must(json!({"key": "n", "match": {"value": true}})), p));
    }

    #[test]
    fn integer_edge_values() {
        let p = json!({"big": u64::MAX, "min": i64::MIN, "neg": -3.0, "huge": 1e300});
        assert!(!check(must(json!({"key": "big", "match": {"value": -1}})), p.clone()));
        assert!(check(must(json!({"key": "min", "match": {"value": i64::MIN}})), p.clone()));
        assert!(check(must(json!({"key": "neg", "match": {"value": -3}})), p.clone()));
        assert!(!check(must(json!({"key": "huge", "match": {"value": i64::MAX}})), p));
        assert_eq!(exact_i64(&Number::from_f64(2f64.powi(63)).unwrap()), None);
        assert_eq!(exact_i64(&Number::from_f64(-2f64.powi(63)).unwrap()), Some(i64::MIN));
    }

    #[test]
    fn match_any_and_except() {
        let p = json!({"c": "red", "tags": ["a", "b"], "z": null, "e": []});
        assert!(check(must(json!({"key": "c", "match": {"any": ["blue", "red"]}})), p.clone()));
        assert!(!check(must(json!({"key": "c", "match": {"any": ["blue", 1]}})), p.clone()));
        assert!(!check(must(json!({"key": "c", "match": {"any": []}})), p.clone()));
        assert!(check(must(json!({"key": "c", "match": {"except": ["blue"]}})), p.clone()));
        assert!(!check(must(json!({"key": "c", "match": {"except": ["red", "blue"]}})), p.clone()));
        // Arrays: except holds when some element is outside the list.
        assert!(check(must(json!({"key": "tags", "match": {"except": ["a"]}})), p.clone()));
        assert!(!check(must(json!({"key": "tags", "match": {"except": ["a", "b"]}})), p.clone()));
        // Missing, null and empty fields never pass except.
        for key in ["missing", "z", "e"] {
            assert!(
                !check(must(json!({"key": key, "match": {"except": ["x"]}})), p.clone()),
                "{key}"
            );
        }
    }

    #[test]
    fn nested_paths_and_arrays() {
        let p = json!({
            "meta": {"tags": ["x", "y"], "owner": {"name": "ann"}},
            "items": [{"name": "a", "qty": 1}, {"name": "b", "qty": [2, [30]]}],
            "grid": [[1, 2], [3, [4]]]
        });
        assert!(check(must(json!({"key": "meta.tags", "match": {"value": "y"}})), p.clone()));
        assert!(check(
            must(json!({"key": "meta.owner.name", "match": {"value": "ann"}})),
            p.clone()
        ));
        assert!(!check(must(json!({"key": "meta.owner", "match": {"value": "ann"}})), p.clone()));
        assert!(!check(
            must(json!({"key": "meta.owner.name.x", "match": {"value": "ann"}})),
            p.clone()
        ));
        assert!(check(must(json!({"key": "items.name", "match": {"value": "b"}})), p.clone()));
        assert!(check(must(json!({"key": "items.qty", "match": {"value": 30}})), p.clone()));
        assert!(check(must(json!({"key": "grid", "match": {"value": 4}})), p.clone()));
        assert!(!check(must(json!({"key": "grid", "match": {"value": 5}})), p.clone()));
        assert!(check(must(json!({"key": "items.qty", "range": {"gt": 20}})), p.clone()));
        assert!(!check(must(json!({"key": "items.nope", "range": {"gt": 0}})), p));
    }

    #[test]
    fn ranges() {
        let p = json!({"i": 10, "f": 2.5, "s": "10", "b": true, "arr": [1, 100]});
        assert!(check(must(json!({"key": "i", "range": {"gte": 10, "lt": 11}})), p.clone()));
        assert!(!check(must(json!({"key": "i", "range": {"gt": 10}})), p.clone()));
        assert!(check(must(json!({"key": "f", "range": {"gt": 2, "lte": 2.5}})), p.clone()));
        assert!(!check(must(json!({"key": "f", "range": {"lt": 2.5}})), p.clone()));
        assert!(!check(must(json!({"key": "s", "range": {"gte": 0}})), p.clone()));
        assert!(!check(must(json!({"key": "b", "range": {"gte": 0}})), p.clone()));
        assert!(!check(must(json!({"key": "missing", "range": {"gte": 0}})), p.clone()));
        // Any element may satisfy the whole range, but one element must satisfy all bounds.
        assert!(check(must(json!({"key": "arr", "range": {"gt": 50}})), p.clone()));
        assert!(!check(must(json!({"key": "arr", "range": {"gt": 2, "lt": 99}})), p));
    }

    #[test]
    fn missing_fields() {
        let p = json!({"a": 1});
        assert!(!check(must(json!({"key": "b", "match": {"value": 1}})), p.clone()));
        assert!(!check(must(json!({"key": "b", "match": {"any": [1]}})), p.clone()));
        assert!(!check(must(json!({"key": "b", "match": {"except": [1]}})), p.clone()));
        assert!(check(json!({"must_not": [{"key": "b", "match": {"value": 1}}]}), p));
    }

    #[test]
    fn is_empty_and_has_id() {
        let p = json!({"n": null, "e": [], "en": [null, []], "v": [0], "o": {}, "s": ""});
        for key in ["missing", "n", "e", "en", "o.x", "v.x"] {
            assert!(check(must(json!({"is_empty": {"key": key}})), p.clone()), "{key}");
        }
        for key in ["v", "o", "s"] {
            assert!(!check(must(json!({"is_empty": {"key": key}})), p.clone()), "{key}");
        }
        assert!(check(must(json!({"has_id": [3, 7]})), p.clone()));
        assert!(!check(must(json!({"has_id": [3]})), p.clone()));
        assert!(!check(must(json!({"has_id": []})), p));
        let f = Filter::must(Condition::HasId(HasIdCondition { has_id: vec![PointId::Num(7)] }));
        assert!(!matches(&f, &PointId::Num(8), &Payload::new()));
        let e = Filter::must(Condition::IsEmpty(IsEmptyCondition {
            is_empty: FieldKey { key: "a".into() },
        }));
        assert!(matches(&e, &PointId::Num(8), &Payload::new()));
    }

    #[test]
    fn boolean_combinations() {
        let p = json!({"a": 1, "b": "x"});
        let a1 = json!({"key": "a", "match": {"value": 1}});
        let a2 = json!({"key": "a", "match": {"value": 2}});
        let bx = json!({"key": "b", "match": {"value": "x"}});
        assert!(check(json!({}), p.clone()));
        assert!(check(json!({"must": [a1, bx]}), p.clone()));
        assert!(!check(json!({"must": [a1, a2]}), p.clone()));
        assert!(check(json!({"should": [a2, bx]}), p.clone()));
        assert!(!check(json!({"should": [a2]}), p.clone()));
        assert!(!check(json!({"must_not": [a2, bx]}), p.clone()));
        assert!(check(json!({"must_not": [a2]}), p.clone()));
        assert!(!check(json!({"must": [a1], "should": [a2]}), p.clone()));
        assert!(check(json!({"must": [a1], "should": [a2, bx], "must_not": [a2]}), p.clone()));
        // Nested filters: (a = 2 OR b = x) AND NOT (a = 1 AND b = x).
        let nested = json!({"must": [{"should": [a2, bx]}], "must_not": [{"must": [a1, bx]}]});
        assert!(!check(nested, p.clone()));
        assert!(check(json!({"must": [{}], "should": [{"must_not": [a2]}]}), p));
    }

    #[test]
    fn malformed_field_conditions() {
        let p = payload(json!({"a": 5}));
        let neither = Filter::must(Condition::Field(FieldCondition {
            key: "a".into(),
            r#match: None,
            range: None,
        }));
        assert!(!matches(&neither, &PointId::Num(1), &p));
        let both = |lo: f64| {
            Filter::must(Condition::Field(FieldCondition {
                key: "a".into(),
                r#match: Some(Match::Value { value: 5.into() }),
                range: Some(Range { gte: Some(lo), ..Default::default() }),
            }))
        };
        assert!(matches(&both(5.0), &PointId::Num(1), &p));
        assert!(!matches(&both(6.0), &PointId::Num(1), &p));
    }

    #[test]
    fn prepared_sorts_ids() {
        let f =
            filter(json!({"should": [{"has_id": [9, 3, 9, 1]}, {"must": [{"has_id": [5, 2]}]}]}));
        let p = PreparedFilter::new(&f);
        assert!(p.matches(&PointId::Num(3), &Payload::new()));
        assert!(p.matches(&PointId::Num(5), &Payload::new()));
        assert!(!p.matches(&PointId::Num(4), &Payload::new()));
        let Condition::HasId(h) = &p.filter().should[0] else { panic!() };
        assert_eq!(h.has_id, vec![PointId::Num(1), PointId::Num(3), PointId::Num(9)]);
    }

    #[test]
    fn for_each_value_reaches_every_leaf() {
        let p = payload(json!({"a": [{"b": [1, [2]]}, {"b": 3}, {"c": 4}, 5]}));
        let mut seen = Vec::new();
        for_each_value(&p, "a.b", |v| seen.push(v.clone()));
        assert_eq!(seen, vec![json!(1), json!(2), json!(3)]);
    }
}
