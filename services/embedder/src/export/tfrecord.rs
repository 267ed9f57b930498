//! TFRecord files of `tf.train.Example` records, as `tf.data.TFRecordDataset` reads them.
//!
//! A record is framed as `length: u64 LE | masked crc32c(length) | data | masked crc32c(data)`.
//! Each example has two features: `embedding` (a float list) and `label` (a bytes list). The
//! protobuf is encoded by hand: it is three nested length-delimited messages.

use std::io::{self, Write};

/// Writes `tf.train.Example` records to `w`.
pub struct TfRecordWriter<W: Write> {
    w: W,
}

impl<W: Write> TfRecordWriter<W> {
    pub fn new(w: W) -> Self {
        TfRecordWriter { w }
    }

    pub fn write_example(&mut self, embedding: &[f32], label: &[u8]) -> io::Result<()> {
        self.write_record(&example(embedding, label))
    }

    /// One framed record.
    pub fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        self.w.write_all(&len)?;
        self.w.write_all(&masked_crc(&len).to_le_bytes())?;
        self.w.write_all(data)?;
        self.w.write_all(&masked_crc(data).to_le_bytes())
    }

    pub fn into_inner(self) -> W {
        self.w
    }
}

/// TFRecord's checksum: crc32c, rotated and offset so that checksums of checksums differ.
pub fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// `Example { features: Features { feature: {"embedding": float_list, "label": bytes_list} } }`
pub fn example(embedding: &[f32], label: &[u8]) -> Vec<u8> {
    let mut floats = Vec::with_capacity(embedding.len() * 4);
    embedding.iter().for_each(|f| floats.extend_from_slice(&f.to_le_bytes()));
    // FloatList { repeated float value = 1 [packed] }, Feature { float_list = 2 }
    let float_feature = field(2, &field(1, &floats));
    // BytesList { repeated bytes value = 1 }, Feature { bytes_list = 1 }
    let bytes_feature = field(1, &field(1, label));
    // map<string, Feature> entries: { key = 1, value = 2 }
    let mut features = Vec::new();
    for (key, value) in [(&b"embedding"[..], float_feature), (&b"label"[..], bytes_feature)] {
        let mut entry = field(1, key);
        entry.extend(field(2, &value));
        features.extend(field(1, &entry));
    }
    field(1, &features)
}

/// A length-delimited protobuf field: tag (wire type 2), varint length, bytes.
fn field(number: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    varint(&mut out, u64::from(number << 3 | 2));
    varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_mask_matches_tensorflow() {
        // crc32c("") = 0, so the masked value is the offset alone.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        // crc32c("123456789") = 0xe3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn example_layout() {
        let e = example(&[1.0], b"x");
        // Example.features (field 1, LEN) wraps everything.
        assert_eq!(e[0], 0x0a);
        assert_eq!(e[1] as usize, e.len() - 2);
        // Feature { float_list (2): FloatList { value (1): [1.0] } }
        let needle = [0x12, 0x06, 0x0a, 0x04, 0x00, 0x00, 0x80, 0x3f];
        assert!(e.windows(needle.len()).any(|w| w == needle), "float feature {e:02x?}");
    }

    #[test]
    fn frames() {
        let mut w = TfRecordWriter::new(Vec::new());
        w.write_record(b"abc").unwrap();
        let out = w.into_inner();
        assert_eq!(out.len(), 8 + 4 + 3 + 4);
        assert_eq!(&out[..8], &3u64.to_le_bytes());
        assert_eq!(&out[12..15], b"abc");
    }
}
