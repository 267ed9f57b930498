//! Payload filters for the shard node: evaluation, payload indexes and search planning.
//!
//! - [`filter`]: [`matches()`] decides whether a point (id + JSON payload) satisfies a
//!   [`vdb_api::Filter`]; [`PreparedFilter`] does the same faster for the search loop.
//! - [`index`]: [`PayloadIndexes`], per-field keyword / integer / float indexes over the
//!   shard's internal `u64` keys, kept in sync on writes and rebuilt from points on recovery;
//!   they answer filters with a superset of the matching keys ([`Candidates`]).
//! - [`planner`]: [`estimate`] (how many points a filter matches), [`choose_plan`] (exact,
//!   graph or filtered graph search) and [`filtered_ef`].
//!
//! Correctness never rests on the indexes: every candidate is re-checked with [`matches()`].

pub mod filter;
pub mod index;
mod part;
pub mod planner;
mod posting;

pub use filter::{any_value, for_each_value, matches, PreparedFilter};
pub use index::PayloadIndexes;
pub use planner::{choose_plan, estimate, filtered_ef, Estimate};
pub use posting::Candidates;
