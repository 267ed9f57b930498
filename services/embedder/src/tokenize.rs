//! Text to token ids with the model's `tokenizer.json` (the `tokenizers` crate), enforcing the
//! model's input limit: longer inputs are cut when the request asks for it, refused otherwise.
//! Padding is not done here: the batcher pads each batch to its own longest input.

use crate::error::{EmbedError, StartError};
use std::path::Path;
use tokenizers::{Tokenizer, TruncationParams};
use vdb_api::embed::Token;

/// One tokenized input.
#[derive(Clone, Debug, PartialEq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

pub struct TextTokenizer {
    /// Never truncates: tells how long an input really is.
    full: Tokenizer,
    /// Truncates to `max` tokens, special tokens included.
    cut: Tokenizer,
    max: usize,
}

impl TextTokenizer {
    pub fn from_file(path: &Path, max_tokens: usize) -> Result<Self, StartError> {
        let tok = Tokenizer::from_file(path)
            .map_err(|e| StartError::Model(format!("tokenizer {}: {e}", path.display())))?;
        Self::new(tok, max_tokens)
    }

    pub fn new(mut tok: Tokenizer, max_tokens: usize) -> Result<Self, StartError> {
        // tokenizer.json files often carry a fixed padding and a shorter truncation (e.g. 128)
        // than the model accepts; the service decides both.
        tok.with_padding(None);
        let mut full = tok.clone();
        full.with_truncation(None).map_err(|e| StartError::Model(e.to_string()))?;
        let params = TruncationParams { max_length: max_tokens, ..Default::default() };
        tok.with_truncation(Some(params)).map_err(|e| StartError::Model(e.to_string()))?;
        Ok(TextTokenizer { full, cut: tok, max: max_tokens })
    }

    pub fn max_tokens(&self) -> usize {
        self.max
    }

    /// Tokenizes `texts` (numbered for error messages), cutting or refusing long ones.
    pub fn encode_all(&self, texts: &[String], truncate: bool) -> Result<Vec<Encoded>, EmbedError> {
        texts.iter().enumerate().map(|(i, t)| self.encode(i, t, truncate)).collect()
    }

    pub fn encode(&self, index: usize, text: &str, truncate: bool) -> Result<Encoded, EmbedError> {
        let tok = if truncate { &self.cut } else { &self.full };
        let enc = tok
            .encode(text, true)
            .map_err(|e| EmbedError::Tokenize { index, reason: e.to_string() })?;
        if enc.len() > self.max {
            return Err(EmbedError::TooLong { index, tokens: enc.len(), max: self.max });
        }
        Ok(Encoded { ids: enc.get_ids().to_vec(), type_ids: enc.get_type_ids().to_vec() })
    }

    /// The tokens of `text` as the model sees them (never truncated), for `/tokenize`.
    pub fn tokens(
        &self,
        index: usize,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<Token>, EmbedError> {
        let enc = self
            .full
            .encode(text, add_special)
            .map_err(|e| EmbedError::Tokenize { index, reason: e.to_string() })?;
        let special = enc.get_special_tokens_mask();
        Ok(enc
            .get_ids()
            .iter()
            .zip(enc.get_tokens())
            .zip(enc.get_offsets())
            .zip(special)
            .map(|(((&id, text), &(start, stop)), &s)| Token {
                id,
                text: text.clone(),
                special: s != 0,
                start,
                stop,
            })
            .collect())
    }
}

/// A small BERT-style tokenizer (lower-casing, WordPiece over a few words and every ASCII
/// letter) for tests that must not depend on a downloaded model.
pub fn test_tokenizer() -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    let words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "a", "vector", "database", "debian"];
    let more = ["package", "text", "embed", "!", "."];
    for w in words.iter().chain(&more) {
        vocab.insert(w.to_string(), vocab.len().into());
    }
    for c in 'a'..='z' {
        for piece in [c.to_string(), format!("##{c}")] {
            if !vocab.contains_key(&piece) {
                vocab.insert(piece, vocab.len().into());
            }
        }
    }
    let json = serde_json::json!({
        "version": "1.0",
        "added_tokens": [
            {"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                       "strip_accents": null, "lowercase": true},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
        "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": vocab}
    });
    json.to_string().parse().expect("a valid tokenizer definition")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(max: usize) -> TextTokenizer {
        TextTokenizer::new(test_tokenizer(), max).unwrap()
    }

    #[test]
    fn special_tokens_and_limits() {
        let t = tok(6);
        let e = t.encode(0, "The vector database", false).unwrap();
        assert_eq!(e.ids.first(), Some(&2));
        assert_eq!(e.ids.last(), Some(&3));
        assert_eq!(e.len(), 5);
        let long = "the vector database text package";
        assert_eq!(
            t.encode(4, long, false),
            Err(EmbedError::TooLong { index: 4, tokens: 7, max: 6 })
        );
        let cut = t.encode(4, long, true).unwrap();
        assert_eq!(cut.len(), 6);
        assert_eq!(cut.ids.last(), Some(&3), "truncation keeps [SEP]");
    }

    #[test]
    fn token_listing() {
        let t = tok(16);
        let tokens = t.tokens(0, "Debian!", true).unwrap();
        let texts: Vec<_> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, ["[CLS]", "debian", "!", "[SEP]"]);
        assert!(tokens[0].special && !tokens[1].special);
        assert_eq!((tokens[1].start, tokens[1].stop), (0, 6));
    }
}
