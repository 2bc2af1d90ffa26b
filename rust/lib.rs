//! nanobpe: byte-level BPE for small-GPT training pipelines.
//!
//! Plain Rust; the only module that knows about Python is `py` (behind the `python` feature).
//!
//! Data flow of `nanobpe train`:
//! `input` (parquet/txt/jsonl → capped documents) → `count` (pretokenize + count unique pieces, in parallel)
//! → `train` (merge loop, generic over the token width) → `vocab` (ranks, specials, files on disk).

pub mod cancel;
pub mod count;
pub mod encode;
pub mod error;
pub mod hub;
pub mod input;
pub mod loader;
pub mod pretokenize;
pub mod progress;
pub mod pull;
pub mod shards;
pub mod train;
pub mod trainer;
pub mod unicode;
pub mod vocab;

#[cfg(feature = "python")]
mod py;

pub use error::{Error, Result};
