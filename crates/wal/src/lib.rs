//! A segmented, checksummed write-ahead log (being written).
