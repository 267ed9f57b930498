//! Point ids: an unsigned 64-bit integer or a UUID.
//!
//! Ids order integers first (numerically), then UUIDs (by their bytes); scroll relies on it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use uuid::Uuid;

/// The id of a point: `42` or `"1b4e28ba-2fa1-11d2-883f-0016d3cca427"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    Num(u64),
    Uuid(Uuid),
}

impl PointId {
    /// The documented byte encoding of an id (used for hashing by the router):
    /// an integer is its 8 little-endian bytes, a UUID its 16 bytes in RFC 4122 order.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            PointId::Num(n) => n.to_le_bytes().to_vec(),
            PointId::Uuid(u) => u.as_bytes().to_vec(),
        }
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{u}"),
        }
    }
}

impl From<u64> for PointId {
    fn from(n: u64) -> Self {
        PointId::Num(n)
    }
}

impl From<Uuid> for PointId {
    fn from(u: Uuid) -> Self {
        PointId::Uuid(u)
    }
}

impl FromStr for PointId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(PointId::Num(n));
        }
        Uuid::parse_str(s)
            .map(PointId::Uuid)
            .map_err(|_| format!("point id must be an unsigned integer or a UUID, got {s:?}"))
    }
}

impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PointId::Num(n) => s.serialize_u64(*n),
            PointId::Uuid(u) => s.collect_str(u),
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PointId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned integer or a UUID string")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<PointId, E> {
                Ok(PointId::Num(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<PointId, E> {
                u64::try_from(v)
                    .map(PointId::Num)
                    .map_err(|_| E::custom(format!("point id must not be negative, got {v}")))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<PointId, E> {
                Err(E::custom(format!("point id must be an unsigned integer, got {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PointId, E> {
                Uuid::parse_str(v)
                    .map(PointId::Uuid)
                    .map_err(|_| E::custom(format!("point id string must be a UUID, got {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for PointId {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .format(Some(SchemaFormat::Custom("uint64".into()))),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            )
            .description(Some("An unsigned 64-bit integer or a UUID string."))
            .into()
    }
}

impl utoipa::ToSchema for PointId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_uuids() {
        let a: PointId = serde_json::from_str("42").unwrap();
        assert_eq!(a, PointId::Num(42));
        let u = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        let b: PointId = serde_json::from_str(&format!("\"{u}\"")).unwrap();
        assert_eq!(b.to_string(), u);
        assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{u}\""));
    }

    #[test]
    fn rejects_negative_float_and_bad_strings() {
        assert!(serde_json::from_str::<PointId>("-1").is_err());
        assert!(serde_json::from_str::<PointId>("1.5").is_err());
        assert!(serde_json::from_str::<PointId>("\"abc\"").is_err());
        assert!(serde_json::from_str::<PointId>("null").is_err());
    }

    #[test]
    fn integers_sort_before_uuids() {
        let mut v = [PointId::Uuid(Uuid::nil()), PointId::Num(7), PointId::Num(3)];
        v.sort();
        assert_eq!(v[0], PointId::Num(3));
        assert!(matches!(v[2], PointId::Uuid(_)));
    }
}
