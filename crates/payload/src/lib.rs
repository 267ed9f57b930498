//! Payload filters (being written).
