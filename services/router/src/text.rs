//! Points and searches that carry `text` instead of a vector: checked before anything is
//! embedded, their texts embedded through the collection's model (all texts of one request
//! together, in as few calls as the embedder's limits allow), and turned into the vectors
//! shards take. A text the embedder refuses fails the whole request: nothing is written.

use crate::cluster::{Cluster, Routed};
use crate::error::{Result, RouterError};
use vdb_api::*;

/// Exactly one of a vector and a text; a text needs the collection's model.
fn check_query(
    routed: &Routed,
    vector: Option<&[f32]>,
    text: Option<&str>,
    at: &str,
) -> Result<()> {
    let invalid = |m: String| Err(RouterError::Invalid(format!("{at}: {m}")));
    match (vector, text) {
        (Some(_), Some(_)) => invalid("give a vector or a text, not both".into()),
        (None, None) => invalid("give a vector or a text".into()),
        (None, Some(t)) => {
            if routed.record.config.embedding.is_none() {
                return invalid(format!(
                    "collection {} has no embedding model, so it takes vectors, not text \
                     (name a model in the collection's embedding to send text)",
                    routed.record.name
                ));
            }
            if t.is_empty() {
                return invalid("text must not be empty".into());
            }
            Ok(())
        }
        (Some(_), None) => Ok(()),
    }
}

/// Checks every point before any text is embedded: a vector or a text, a text only with a
/// model, the stored-text key not also set by the point's own payload, and everything the
/// shard would check (vectors, payloads, routable ids).
pub fn check_points(routed: &Routed, points: &[CollectionPoint]) -> Result<()> {
    if points.is_empty() {
        return Err(RouterError::Invalid("points must not be empty".into()));
    }
    let store = routed.record.config.embedding.as_ref().and_then(|e| e.store_text.as_deref());
    for (i, p) in points.iter().enumerate() {
        let at = format!("points[{i}]");
        check_query(routed, p.vector.as_deref(), p.text.as_deref(), &at)?;
        crate::points::validate_point(routed, i, &p.id, p.vector.as_deref(), p.payload.as_ref())?;
        if let (Some(key), Some(_), Some(serde_json::Value::Object(payload))) =
            (store, &p.text, &p.payload)
        {
            if payload.contains_key(key) {
                return Err(RouterError::Rejected {
                    code: ErrorCode::InvalidPayload,
                    message: format!(
                        "{at}: payload key {key:?} holds the point's text (the collection's \
                         embedding.store_text); leave it out of the payload"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The points shards take: `vectors` are the embeddings of the points' texts, in order; each
/// text is stored in the payload under `store_text` when that is set.
pub fn assemble(
    points: Vec<CollectionPoint>,
    vectors: Vec<Vec<f32>>,
    store_text: Option<&str>,
) -> Vec<Point> {
    let mut vectors = vectors.into_iter();
    points
        .into_iter()
        .map(|p| {
            let (vector, payload) = match (p.vector, p.text) {
                (Some(v), _) => (v, p.payload),
                (None, text) => {
                    let vector = vectors.next().expect("one vector per text");
                    let payload = match (store_text, text) {
                        (Some(key), Some(text)) => {
                            let mut map = match p.payload {
                                Some(serde_json::Value::Object(m)) => m,
                                _ => Payload::new(),
                            };
                            map.insert(key.to_string(), serde_json::Value::String(text));
                            Some(serde_json::Value::Object(map))
                        }
                        _ => p.payload,
                    };
                    (vector, payload)
                }
            };
            Point { id: p.id, vector, payload }
        })
        .collect()
}

/// Checks one search's query: a vector or a text (the text needs the collection's model).
pub fn check_search(routed: &Routed, s: &CollectionSearch, at: &str) -> Result<()> {
    check_query(routed, s.vector.as_deref(), s.text.as_deref(), at)
}

impl Cluster {
    /// Embeds the texts of `points` (all in as few calls as the embedder allows) and returns
    /// the points shards take. `points` must have passed [`check_points`].
    pub async fn embed_points(
        &self,
        routed: &Routed,
        points: Vec<CollectionPoint>,
    ) -> Result<Vec<Point>> {
        let Some(embedding) = routed.record.config.embedding.as_ref() else {
            return Ok(assemble(points, Vec::new(), None));
        };
        let (at, texts): (Vec<usize>, Vec<&str>) = points
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Some(i).zip(p.text.as_deref()).filter(|_| p.vector.is_none()))
            .unzip();
        let vectors = self
            .embedders
            .embed(embedding, &texts, routed.dimension(), &|i| format!("points[{}]", at[i]))
            .await?;
        Ok(assemble(points, vectors, embedding.store_text.as_deref()))
    }

    /// The query vector of every search: given, or the embedding of its text (all texts of the
    /// batch in one call when the embedder's limits allow). `searches` must have passed
    /// [`check_search`].
    pub async fn query_vectors(
        &self,
        routed: &Routed,
        searches: &[CollectionSearch],
    ) -> Result<Vec<Vec<f32>>> {
        let (at, texts): (Vec<usize>, Vec<&str>) = searches
            .iter()
            .enumerate()
            .filter(|(_, s)| s.vector.is_none())
            .filter_map(|(i, s)| Some(i).zip(s.text.as_deref()))
            .unzip();
        let mut embedded = match (&routed.record.config.embedding, texts.is_empty()) {
            (Some(embedding), false) => {
                let label = |i: usize| match searches.len() {
                    1 => "the query text".to_string(),
                    _ => format!("searches[{}]", at[i]),
                };
                self.embedders.embed(embedding, &texts, routed.dimension(), &label).await?
            }
            _ => Vec::new(),
        }
        .into_iter();
        Ok(searches
            .iter()
            .map(|s| match &s.vector {
                Some(v) => v.clone(),
                None => embedded.next().expect("one vector per text"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(
        id: u64,
        vector: Option<Vec<f32>>,
        text: Option<&str>,
        payload: serde_json::Value,
    ) -> CollectionPoint {
        CollectionPoint {
            id: id.into(),
            vector,
            text: text.map(str::to_string),
            payload: Some(payload).filter(|p| !p.is_null()),
        }
    }

    #[test]
    fn texts_take_their_vectors_in_order_and_are_stored() {
        let points = vec![
            point(1, None, Some("first"), json!({"a": 1})),
            point(2, Some(vec![9.0, 9.0]), None, json!(null)),
            point(3, None, Some("third"), json!(null)),
        ];
        let vectors = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let got = assemble(points.clone(), vectors.clone(), Some("text"));
        assert_eq!(got[0].vector, vec![1.0, 0.0]);
        assert_eq!(got[0].payload, Some(json!({"a": 1, "text": "first"})));
        assert_eq!(got[1].vector, vec![9.0, 9.0]);
        assert_eq!(got[1].payload, None);
        assert_eq!(got[2].vector, vec![0.0, 1.0]);
        assert_eq!(got[2].payload, Some(json!({"text": "third"})));
        // Without store_text the payload is left as sent.
        let got = assemble(points, vectors, None);
        assert_eq!(got[0].payload, Some(json!({"a": 1})));
        assert_eq!(got[2].payload, None);
    }
}
