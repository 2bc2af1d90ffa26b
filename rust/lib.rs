//! nanobpe: byte-level BPE for small-GPT training pipelines.
//!
//! Plain Rust; the only module that knows about Python is `py` (behind the `python` feature).
//!
//! Data flow of `nanobpe train`:
//! `input` (parquet/txt/jsonl → capped documents) → `count` (pretokenize + count unique pieces, in parallel)
//! → `merge` (merge loop, generic over the token width) → `vocab` (ranks, specials, files on disk).

pub mod atomic;
pub mod cancel;
pub mod chat;
pub mod count;
pub mod cuts;
pub mod encode;
pub mod error;
pub mod hub;
pub mod input;
pub mod loader;
pub mod merge;
pub mod pages;
pub mod pairs;
pub mod piece_cache;
pub mod piece_starts;
pub mod pretokenize;
pub mod progress;
pub mod pull;
pub mod sealed;
pub mod shards;
pub mod text;
pub mod trainer;
pub mod unicode;
pub mod vocab;

#[cfg(feature = "python")]
mod py;

#[cfg(test)]
mod fuzz_tests;

pub use error::{Error, Result};
