//! Property tests: the evaluator against a naive reference, index answers as supersets of the
//! true matches, index maintenance against rebuilds, and planner invariants.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use vdb_api::filter::{
    Condition, FieldCondition, FieldKey, Filter, HasIdCondition, IsEmptyCondition, Match,
    MatchValue, Range,
};
use vdb_api::{Payload, PayloadIndexKind, PlanChoice, PointId, SearchPlan};
use vdb_payload::{
    choose_plan, estimate, filtered_ef, matches, Estimate, PayloadIndexes, PreparedFilter,
};

const KEYS: [&str; 8] = ["a", "b", "c", "m", "m.x", "a.x", "b.y", "m.x.y"];
const INDEXABLE: [&str; 5] = ["a", "b", "m", "m.x", "a.x"];
const WORDS: [&str; 3] = ["p", "q", "5"];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => (-1i64..3).prop_map(Value::from),
        2 => (-1i64..3).prop_map(|i| json!(i as f64)),
        2 => (-1i64..3).prop_map(|i| json!(i as f64 + 0.5)),
        3 => prop::sample::select(&WORDS[..]).prop_map(Value::from),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(-0.0)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    // Mostly scalars, so that conditions often hold and the tests see matches.
    let nested = leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(vec!["x", "y"]), inner, 0..3)
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
        ]
    });
    prop_oneof![2 => leaf(), 1 => nested]
}

/// `a` and `b` hold any value; `m` is often an object or an array of objects, so that dotted
/// paths (`m.x`) meet objects and arrays on the way.
fn payload() -> impl Strategy<Value = Payload> {
    let object = || {
        (prop::option::of(value()), prop::option::of(value())).prop_map(|(x, y)| {
            let mut o = serde_json::Map::new();
            o.extend(x.map(|x| ("x".to_string(), x)));
            o.extend(y.map(|y| ("y".to_string(), y)));
            Value::Object(o)
        })
    };
    let m = prop_oneof![
        value(),
        object(),
        prop::collection::vec(prop_oneof![object(), value()], 0..3).prop_map(Value::Array),
    ];
    (prop::option::of(value()), prop::option::of(value()), prop::option::of(m)).prop_map(
        |(a, b, m)| {
            [("a", a), ("b", b), ("m", m)]
                .into_iter()
                .filter_map(|(k, v)| Some((k.to_string(), v?)))
                .collect()
        },
    )
}

fn match_value() -> impl Strategy<Value = MatchValue> {
    prop_oneof![
        any::<bool>().prop_map(MatchValue::Bool),
        (-1i64..3).prop_map(MatchValue::Integer),
        prop::sample::select(&WORDS[..]).prop_map(MatchValue::from),
    ]
}

/// Mostly one lower and/or one upper bound (inclusive or not); sometimes all four at random.
fn range() -> impl Strategy<Value = Range> {
    let side = || prop::option::of((any::<bool>(), (-3i32..7).prop_map(|h| f64::from(h) / 2.0)));
    prop_oneof![
        3 => (side(), side()).prop_map(|(lo, hi)| {
            let mut r = Range::default();
            match lo {
                Some((true, b)) => r.gte = Some(b),
                Some((false, b)) => r.gt = Some(b),
                None => {}
            }
            match hi {
                Some((true, b)) => r.lte = Some(b),
                Some((false, b)) => r.lt = Some(b),
                None => {}
            }
            r
        }),
        1 => (bound(), bound(), bound(), bound())
            .prop_map(|(gt, gte, lt, lte)| Range { gt, gte, lt, lte }),
    ]
}

fn bound() -> impl Strategy<Value = Option<f64>> {
    prop::option::of((-3i32..7).prop_map(|h| f64::from(h) / 2.0))
}

fn field_condition() -> impl Strategy<Value = Condition> {
    let key = prop::sample::select(&KEYS[..]).prop_map(str::to_string);
    let values = || prop::collection::vec(match_value(), 0..3);
    let m = prop_oneof![
        match_value().prop_map(|value| Match::Value { value }),
        values().prop_map(|any| Match::Any { any }),
        values().prop_map(|except| Match::Except { except }),
    ];

    (key, prop::option::of(m), range()).prop_map(|(key, m, range)| {
        // Mostly valid shapes (exactly one of match and range), as the API lets through.
        let (r#match, range) = match m {
            Some(m) => (Some(m), None),
            None => (None, Some(range)),
        };
        Condition::Field(FieldCondition { key, r#match, range })
    })
}

fn leaf_condition() -> impl Strategy<Value = Condition> {
    prop_oneof![
        6 => field_condition(),
        1 => prop::collection::vec((0u64..12).prop_map(PointId::Num), 0..4)
            .prop_map(|has_id| Condition::HasId(HasIdCondition { has_id })),
        1 => prop::sample::select(&KEYS[..])
            .prop_map(|k| {
                let is_empty = FieldKey { key: k.into() };
                Condition::IsEmpty(IsEmptyCondition { is_empty })
            }),
    ]
}

fn filter() -> impl Strategy<Value = Filter> {
    let conds = |c: BoxedStrategy<Condition>| {
        (
            prop::collection::vec(c.clone(), 0..3),
            prop::collection::vec(c.clone(), 0..3),
            prop::collection::vec(c, 0..2),
        )
            .prop_map(|(must, should, must_not)| Filter { must, should, must_not })
    };
    let flat = conds(leaf_condition().boxed());
    flat.prop_recursive(2, 16, 3, move |inner| {
        let c = prop_oneof![3 => leaf_condition(), 1 => inner.prop_map(Condition::Filter)].boxed();
        conds(c)
    })
}

/// Conjunctions and disjunctions of field conditions on indexable keys, where index answers
/// get combined.
fn indexed_filter() -> impl Strategy<Value = Filter> {
    let cond = || {
        (field_condition(), prop::sample::select(&INDEXABLE[..])).prop_map(|(mut c, key)| {
            if let Condition::Field(f) = &mut c {
                f.key = key.to_string();
            }
            c
        })
    };
    (prop::collection::vec(cond(), 1..3), prop::collection::vec(cond(), 0..3))
        .prop_map(|(must, should)| Filter { must, should, must_not: vec![] })
}

fn any_filter() -> impl Strategy<Value = Filter> {
    prop_oneof![1 => filter(), 2 => indexed_filter()]
}

fn kind() -> impl Strategy<Value = PayloadIndexKind> {
    prop::sample::select(vec![
        PayloadIndexKind::Keyword,
        PayloadIndexKind::Integer,
        PayloadIndexKind::Float,
    ])
}

fn index_fields() -> impl Strategy<Value = BTreeMap<String, PayloadIndexKind>> {
    // Most indexable fields indexed, so that most filters get index answers to combine.
    prop::collection::vec(prop::option::weighted(0.75, kind()), INDEXABLE.len()).prop_map(|kinds| {
        INDEXABLE.iter().zip(kinds).filter_map(|(f, k)| Some((f.to_string(), k?))).collect()
    })
}

// --- A naive reference evaluator, written independently of the crate's path walker. ---

fn leaves<'a>(v: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(xs) => xs.iter().for_each(|x| leaves(x, path, out)),
        _ if path.is_empty() => out.push(v),
        Value::Object(m) => {
            if let Some(child) = m.get(path[0]) {
                leaves(child, &path[1..], out);
            }
        }
        _ => {}
    }
}

fn leaves_at<'a>(p: &'a Payload, key: &str) -> Vec<&'a Value> {
    let path: Vec<&str> = key.split('.').collect();
    let mut out = Vec::new();
    if let Some(v) = p.get(path[0]) {
        leaves(v, &path[1..], &mut out);
    }
    out
}

fn ref_eq(m: &MatchValue, v: &Value) -> bool {
    match m {
        MatchValue::Bool(b) => v.as_bool() == Some(*b),
        MatchValue::Keyword(s) => v.as_str() == Some(s.as_str()),
        // Exact for the small values generated here.
        MatchValue::Integer(i) => v.is_number() && v.as_f64() == Some(*i as f64),
    }
}

fn ref_condition(c: &Condition, id: &PointId, p: &Payload) -> bool {
    match c {
        Condition::HasId(h) => h.has_id.contains(id),
        Condition::IsEmpty(e) => leaves_at(p, &e.is_empty.key).iter().all(|v| v.is_null()),
        Condition::Filter(f) => ref_filter(f, id, p),
        Condition::Field(f) => {
            let vals = leaves_at(p, &f.key);
            let range_ok = |v: &Value| {
                f.range.as_ref().is_none_or(|r| {
                    v.as_f64().is_some_and(|x| {
                        r.gt.is_none_or(|b| x > b)
                            && r.gte.is_none_or(|b| x >= b)
                            && r.lt.is_none_or(|b| x < b)
                            && r.lte.is_none_or(|b| x <= b)
                    })
                })
            };
            let match_ok = |v: &Value| match &f.r#match {
                None => true,
                Some(Match::Value { value }) => ref_eq(value, v),
                Some(Match::Any { any }) => any.iter().any(|m| ref_eq(m, v)),
                Some(Match::Except { except }) => {
                    !v.is_null() && except.iter().all(|m| !ref_eq(m, v))
                }
            };
            (f.r#match.is_some() || f.range.is_some())
                && vals.iter().any(|v| match_ok(v) && range_ok(v))
        }
    }
}

fn ref_filter(f: &Filter, id: &PointId, p: &Payload) -> bool {
    f.must.iter().all(|c| ref_condition(c, id, p))
        && (f.should.is_empty() || f.should.iter().any(|c| ref_condition(c, id, p)))
        && f.must_not.iter().all(|c| !ref_condition(c, id, p))
}

fn id_of(key: u64) -> PointId {
    PointId::Num(key)
}

// Evaluation is cheap, so it gets many cases: the rarer shapes (paths through arrays,
// integral floats) need them to show up.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn evaluator_agrees_with_reference(f in filter(), p in payload(), key in 0u64..12) {
        let id = id_of(key);
        let want = ref_filter(&f, &id, &p);
        prop_assert_eq!(matches(&f, &id, &p), want);
        prop_assert_eq!(PreparedFilter::new(&f).matches(&id, &p), want);
    }

    #[test]
    fn single_conditions_agree_with_reference(
        c in leaf_condition(),
        p in payload(),
        key in 0u64..12,
    ) {
        let id = id_of(key);
        let want = ref_condition(&c, &id, &p);
        for (f, expect) in [
            (Filter::must(c.clone()), want),
            (Filter { should: vec![c.clone()], ..Default::default() }, want),
            (Filter { must_not: vec![c], ..Default::default() }, !want),
        ] {
            prop_assert_eq!(matches(&f, &id, &p), expect);
            prop_assert_eq!(PreparedFilter::new(&f).matches(&id, &p), expect);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn candidates_are_supersets(
        pts in prop::collection::vec(payload(), 0..32),
        fields in index_fields(),
        f in any_filter(),
    ) {
        let ix = PayloadIndexes::build(&fields, pts.iter().enumerate().map(|(k, p)| (k as u64, p)));
        let truth: Vec<u64> = pts.iter().enumerate()
            .filter(|(k, p)| matches(&f, &id_of(*k as u64), p))
            .map(|(k, _)| k as u64)
            .collect();
        if let Some(c) = ix.candidates(&f) {
            for k in &truth {
                prop_assert!(c.contains(*k), "key {} matches but is not a candidate of {:?}", k, c);
            }
        }
        let n = pts.len() as u64;
        let with_ids = ix.candidates_with_ids(&f, |id| match id {
            PointId::Num(k) if *k < n => Some(*k),
            _ => None,
        });
        if let Some(c) = with_ids {
            for k in &truth {
                prop_assert!(c.contains(*k), "key {} matches but is not a candidate of {:?}", k, c);
            }
        }
        if let Some(b) = ix.cardinality_bound(&f) {
            prop_assert!(b >= truth.len() as u64, "bound {} below {}", b, truth.len());
        }

        // Estimates: ordered, within the total, and exact when the sample is every point.
        let ids: Vec<PointId> = (0..n).map(id_of).collect();
        let all = estimate(&f, &ix, n, ids.iter().zip(&pts));
        prop_assert_eq!(all, Estimate::exact(if f.is_empty() { n } else { truth.len() as u64 }, n));
        let some = estimate(&f, &ix, n, ids.iter().zip(&pts).step_by(3));
        let ordered = some.min <= some.expected && some.expected <= some.max && some.max <= n;
        prop_assert!(ordered, "{:?}", some);
        let sample_hits =
            ids.iter().zip(&pts).step_by(3).filter(|(id, p)| matches(&f, id, p)).count() as u64;
        prop_assert!(some.min >= sample_hits || f.is_empty(), "{:?} < {}", some, sample_hits);
        prop_assert!((0.0..=1.0).contains(&some.selectivity()));
    }

    #[test]
    fn single_conditions_on_indexed_fields_are_answered(
        pts in prop::collection::vec(payload(), 0..32),
        field in prop::sample::select(&INDEXABLE[..]),
        k in kind(),
        v in match_value(),
        r in range(),
    ) {
        let fields = BTreeMap::from([(field.to_string(), k)]);
        let ix = PayloadIndexes::build(&fields, pts.iter().enumerate().map(|(k, p)| (k as u64, p)));
        let truth = |f: &Filter| -> Vec<u64> {
            pts.iter().enumerate()
                .filter(|(k, p)| matches(f, &id_of(*k as u64), p))
                .map(|(k, _)| k as u64)
                .collect()
        };

        // Numeric indexes answer every range with a superset; a float index exactly.
        let f = Filter::must(Condition::range(field, r));
        let got = ix.candidates(&f);
        prop_assert_eq!(got.is_some(), k != PayloadIndexKind::Keyword);
        if let Some(got) = got {
            let want = truth(&f);
            let superset = want.iter().all(|k| got.contains(*k));
            prop_assert!(superset, "{:?} missing from {:?}", want, got);
            if k == PayloadIndexKind::Float {
                prop_assert_eq!(got.into_vec(), want);
            }
        }

        // A match the index kind holds must be answered, and exactly.
        let f = Filter::must(Condition::matches(field, v.clone()));
        use PayloadIndexKind as K;
        let answerable = matches!(
            (k, &v),
            (K::Keyword, MatchValue::Keyword(_)) | (K::Integer, MatchValue::Integer(_))
        );
        let got = ix.candidates(&f);
        let float_int = matches!((k, &v), (K::Float, MatchValue::Integer(_)));
        prop_assert_eq!(got.is_some(), answerable || float_int);
        if answerable {
            prop_assert_eq!(got.unwrap().into_vec(), truth(&f));
        }
    }

    #[test]
    fn maintenance_matches_rebuild(
        fields in index_fields(),
        ops in prop::collection::vec(
            (0u64..10, prop::option::of(payload()), 0u8..20, kind()),
            0..40,
        ),
    ) {
        let mut store: BTreeMap<u64, Payload> = BTreeMap::new();
        let mut ix = PayloadIndexes::build(&fields, std::iter::empty());
        for (key, new, admin, k) in ops {
            match (admin, new) {
                // Occasionally (re)create or drop an index while points exist.
                (0, _) => {
                    let field = INDEXABLE[key as usize % INDEXABLE.len()];
                    ix.create(field, k, store.iter().map(|(k, p)| (*k, p)));
                }
                (1, _) => {
                    ix.drop(INDEXABLE[key as usize % INDEXABLE.len()]);
                }
                (_, Some(p)) => {
                    match store.insert(key, p.clone()) {
                        Some(old) => ix.update(key, &old, &p),
                        None => ix.insert(key, &p),
                    }
                }
                (_, None) => {
                    if let Some(old) = store.remove(&key) {
                        ix.remove(key, &old);
                    }
                }
            }
            let rebuilt = PayloadIndexes::build(&ix.fields(), store.iter().map(|(k, p)| (*k, p)));
            prop_assert_eq!(&ix, &rebuilt);
        }
    }

    #[test]
    fn planner_invariants(
        total in 0u64..2_000_000,
        frac in 0.0f64..=1.0,
        k in 1usize..10_000,
        threshold in 0u64..100_000,
        choice in prop::sample::select(vec![PlanChoice::Auto, PlanChoice::Hnsw, PlanChoice::Exact]),
        filtered in any::<bool>(),
    ) {
        let expected = (total as f64 * frac) as u64;
        let e = Estimate { min: expected / 2, expected, max: total, total };
        let plan = choose_plan(filtered.then_some(&e), total, k, threshold, choice);
        match choice {
            PlanChoice::Exact => prop_assert_eq!(plan, SearchPlan::Exact),
            PlanChoice::Hnsw => {
                let want = if filtered { SearchPlan::FilteredHnsw } else { SearchPlan::Hnsw };
                prop_assert_eq!(plan, want);
            }
            PlanChoice::Auto if !filtered => prop_assert_eq!(plan, SearchPlan::Hnsw),
            PlanChoice::Auto => {
                let small = expected <= threshold.max(k as u64);
                let want = if small { SearchPlan::Exact } else { SearchPlan::FilteredHnsw };
                prop_assert_eq!(plan, want);
            }
        }
        // A filter never runs the unfiltered graph, and no filter never runs the filtered one.
        prop_assert!(!filtered || plan != SearchPlan::Hnsw);
        prop_assert!(filtered || plan != SearchPlan::FilteredHnsw);
        prop_assert!((0.0..=1.0).contains(&e.selectivity()));
    }

    #[test]
    fn filtered_ef_invariants(
        ef in 1usize..2_000,
        k in 1usize..2_000,
        s in 0.0f64..=1.0,
        t in 0.0f64..=1.0,
        max_ef in 0usize..20_000,
    ) {
        let floor = ef.max(k);
        let cap = max_ef.max(floor);
        let a = filtered_ef(ef, k, s, max_ef);
        prop_assert!(floor <= a && a <= cap);
        // More selective filters never get a smaller ef.
        let (lo, hi) = if s <= t { (s, t) } else { (t, s) };
        prop_assert!(filtered_ef(ef, k, lo, max_ef) >= filtered_ef(ef, k, hi, max_ef));
        prop_assert_eq!(filtered_ef(ef, k, 1.0, max_ef), floor);
        if s > 0.0 && (floor as f64 / s) <= cap as f64 {
            prop_assert!(a as f64 >= floor as f64 / s - 1e-9);
        }
    }
}
