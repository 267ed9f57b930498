//! The one hash function of the crate: 64 bits of MurmurHash3 x64_128, seed 0.
//!
//! Every router must compute the same owner for an id, including routers written in other
//! languages, so the exact bits are part of the contract: [`hash64`] is `h1`, the first 8
//! bytes of the canonical 16-byte MurmurHash3_x64_128 digest read as a little-endian `u64`
//! (Python: `mmh3.hash64(data, 0, signed=False)[0]`).

use murmur3::murmur3_x64_128;

/// MurmurHash3 x64_128 of `data` with seed 0, reduced to its first 64 bits (`h1`).
pub fn hash64(data: &[u8]) -> u64 {
    let mut reader = data;
    // The crate returns `h2 << 64 | h1`; the low half is `h1`.
    let digest = murmur3_x64_128(&mut reader, 0).expect("reading from a slice cannot fail");
    digest as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Python's `mmh3.hash64(data, 0, signed=False)[0]`.
    #[test]
    fn matches_reference_implementation() {
        assert_eq!(hash64(b""), 0);
        assert_eq!(hash64(b"hello"), 0xcbd8_a7b3_41bd_9b02);
        assert_eq!(hash64(&42u64.to_le_bytes()), 0xb6ac_c399_89d2_7df8);
        let sixteen: Vec<u8> = (0..16).collect();
        assert_eq!(hash64(&sixteen), 0x4449_24b5_9190_3f30);
        assert_eq!(hash64(b"The quick brown fox jumps over the lazy dog"), 0xe34b_bc7b_bc07_1b6c);
    }
}
