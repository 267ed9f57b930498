//! The payload filter language.
//!
//! ```json
//! {"must": [{"key": "section", "match": {"value": "utils"}},
//!           {"key": "size", "range": {"gte": 10, "lt": 100}}],
//!  "should": [{"has_id": [1, 2, 3]}],
//!  "must_not": [{"is_empty": {"key": "meta.tags"}}]}
//! ```
//!
//! A point matches a filter when it matches every `must` condition, at least one `should`
//! condition (if there are any) and no `must_not` condition. Keys are dotted paths into nested
//! payload objects; when a path reaches an array, a condition matches if any element matches.

use crate::ids::PointId;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A boolean combination of conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Every one of these must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must: Vec<Condition>,
    /// At least one of these must hold (ignored when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub should: Vec<Condition>,
    /// None of these may hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_not: Vec<Condition>,
}

impl Filter {
    /// True when the filter has no condition at all (it matches every point).
    pub fn is_empty(&self) -> bool {
        self.must.is_empty() && self.should.is_empty() && self.must_not.is_empty()
    }

    /// A filter whose only condition must hold.
    pub fn must(condition: Condition) -> Self {
        Filter { must: vec![condition], ..Default::default() }
    }
}

/// One condition of a filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Condition {
    /// A condition on one payload field.
    Field(FieldCondition),
    /// The point's id is one of these.
    HasId(HasIdCondition),
    /// The field is missing, null or an empty array.
    IsEmpty(IsEmptyCondition),
    /// A nested filter.
    #[schema(no_recursion)]
    Filter(Filter),
}

impl Condition {
    pub fn matches(key: impl Into<String>, value: impl Into<MatchValue>) -> Self {
        Condition::Field(FieldCondition {
            key: key.into(),
            r#match: Some(Match::Value { value: value.into() }),
            range: None,
        })
    }

    pub fn range(key: impl Into<String>, range: Range) -> Self {
        Condition::Field(FieldCondition { key: key.into(), r#match: None, range: Some(range) })
    }
}

/// A condition on the value found at `key` (a dotted path). Exactly one of `match` and
/// `range` is given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldCondition {
    pub key: String,
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub r#match: Option<Match>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Range>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HasIdCondition {
    pub has_id: Vec<PointId>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IsEmptyCondition {
    pub is_empty: FieldKey,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FieldKey {
    pub key: String,
}

/// Match a keyword, integer or boolean value: exactly one of `value`, `any`, `except`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged, try_from = "RawMatch")]
pub enum Match {
    /// The value equals this one.
    Value { value: MatchValue },
    /// The value equals one of these.
    Any { any: Vec<MatchValue> },
    /// The value exists and equals none of these.
    Except { except: Vec<MatchValue> },
}

/// The wire shape of [`Match`], checked to hold exactly one key and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatch {
    value: Option<MatchValue>,
    any: Option<Vec<MatchValue>>,
    except: Option<Vec<MatchValue>>,
}

impl TryFrom<RawMatch> for Match {
    type Error = String;
    fn try_from(raw: RawMatch) -> Result<Self, String> {
        match (raw.value, raw.any, raw.except) {
            (Some(value), None, None) => Ok(Match::Value { value }),
            (None, Some(any), None) => Ok(Match::Any { any }),
            (None, None, Some(except)) => Ok(Match::Except { except }),
            _ => Err("match takes exactly one of value, any, except".into()),
        }
    }
}

/// A value a `match` compares against: a string, an integer or a boolean.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MatchValue {
    Bool(bool),
    Integer(i64),
    Keyword(String),
}

impl From<&str> for MatchValue {
    fn from(s: &str) -> Self {
        MatchValue::Keyword(s.to_string())
    }
}
impl From<String> for MatchValue {
    fn from(s: String) -> Self {
        MatchValue::Keyword(s)
    }
}
impl From<i64> for MatchValue {
    fn from(v: i64) -> Self {
        MatchValue::Integer(v)
    }
}
impl From<bool> for MatchValue {
    fn from(v: bool) -> Self {
        MatchValue::Bool(v)
    }
}

/// Numeric bounds; at least one must be given.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
}

impl Range {
    /// True when `v` lies within every given bound.
    pub fn contains(&self, v: f64) -> bool {
        self.gt.is_none_or(|b| v > b)
            && self.gte.is_none_or(|b| v >= b)
            && self.lt.is_none_or(|b| v < b)
            && self.lte.is_none_or(|b| v <= b)
    }
}

/// Checks what serde cannot: a field condition with both or neither of `match` and `range`,
/// an empty range, NaN bounds, empty keys. Returns a message for the user.
pub fn validate(filter: &Filter) -> Result<(), String> {
    for c in filter.must.iter().chain(&filter.should).chain(&filter.must_not) {
        match c {
            Condition::Field(f) => {
                validate_key(&f.key)?;
                match (&f.r#match, &f.range) {
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "condition on {:?} has both match and range; give one",
                            f.key
                        ))
                    }
                    (None, None) => {
                        return Err(format!("condition on {:?} needs match or range", f.key))
                    }
                    (None, Some(r)) => {
                        let bounds = [r.gt, r.gte, r.lt, r.lte];
                        if bounds.iter().all(Option::is_none) {
                            return Err(format!("range on {:?} has no bound", f.key));
                        }
                        if bounds.iter().flatten().any(|b| !b.is_finite()) {
                            return Err(format!("range on {:?} has a non-finite bound", f.key));
                        }
                    }
                    (Some(_), None) => {}
                }
            }
            Condition::IsEmpty(e) => validate_key(&e.is_empty.key)?,
            Condition::HasId(_) => {}
            Condition::Filter(inner) => validate(inner)?,
        }
    }
    Ok(())
}

fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(format!("invalid payload key {key:?}: use a dotted path like \"a.b\""));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_condition_kind() {
        let f: Filter = serde_json::from_str(
            r#"{"must": [{"key": "a.b", "match": {"value": "x"}},
                          {"key": "n", "range": {"gte": 1, "lt": 5.5}},
                          {"key": "t", "match": {"any": ["a", 2, true]}},
                          {"key": "t", "match": {"except": ["z"]}}],
                "should": [{"has_id": [1, "1b4e28ba-2fa1-11d2-883f-0016d3cca427"]}],
                "must_not": [{"is_empty": {"key": "c"}}, {"must": [{"has_id": [3]}]}]}"#,
        )
        .unwrap();
        assert_eq!(f.must.len(), 4);
        assert!(matches!(
            f.must[2],
            Condition::Field(FieldCondition { r#match: Some(Match::Any { .. }), .. })
        ));
        assert!(matches!(f.must_not[1], Condition::Filter(_)));
        validate(&f).unwrap();
        let back: Filter = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
    }

    #[test]
    fn rejects_unknown_shapes() {
        assert!(serde_json::from_str::<Filter>(r#"{"must": [{"kee": "a"}]}"#).is_err());
        assert!(serde_json::from_str::<Filter>(r#"{"mus": []}"#).is_err());
        assert!(serde_json::from_str::<Filter>(
            r#"{"must": [{"key": "a", "match": {"value": 1.5}}]}"#
        )
        .is_err());
        let both: Filter = serde_json::from_str(
            r#"{"must": [{"key": "a", "match": {"value": 1}, "range": {"gt": 1}}]}"#,
        )
        .unwrap();
        assert!(validate(&both).is_err());
        let empty_range: Filter =
            serde_json::from_str(r#"{"must": [{"key": "a", "range": {}}]}"#).unwrap();
        assert!(validate(&empty_range).is_err());
        let bad_key: Filter =
            serde_json::from_str(r#"{"must": [{"key": "a..b", "match": {"value": 1}}]}"#).unwrap();
        assert!(validate(&bad_key).is_err());
    }

    #[test]
    fn range_bounds() {
        let r = Range { gte: Some(1.0), lt: Some(3.0), ..Default::default() };
        assert!(r.contains(1.0) && r.contains(2.9) && !r.contains(3.0) && !r.contains(0.5));
    }
}
