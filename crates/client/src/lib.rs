//! Typed HTTP clients (being written).
