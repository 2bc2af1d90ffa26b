//! Property tests (proptest) for the readers of untrusted bytes: token shards and loader states. Whatever the
//! input, the answer is `Ok` or an `Err` naming the file; never a panic. A few seconds each at `--profile quick`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{json, Value};

use crate::encode::Encoder;
use crate::input::InputSpec;
use crate::loader::{Loader, LoaderOptions, LoaderState};
use crate::shards::{self, Header, HEADER_BYTES, NO_BOS};
use crate::vocab::Vocab;

/// u64 values that break arithmetic: small ones, powers of two near the top, and anything.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..70, Just(u64::MAX), Just(1 << 63), Just(1 << 62), Just((1 << 61) + 1), any::<u64>()]
}

fn shard_bytes(h: &Header, tokens: &[u16], offsets: &[u64]) -> Vec<u8> {
    let mut b = h.to_bytes().to_vec();
    tokens.iter().for_each(|t| b.extend_from_slice(&t.to_le_bytes()));
    offsets.iter().for_each(|o| b.extend_from_slice(&o.to_le_bytes()));
    b
}

/// A shard with a consistent header and the given tokens and offsets (which may be nonsense).
fn shard_with(tokens: &[u16], offsets: &[u64], vocab_size: u64) -> Vec<u8> {
    let h = Header {
        width: 16,
        vocab_size,
        n_tokens: tokens.len() as u64,
        n_docs: offsets.len().saturating_sub(1) as u64,
        checksum: 1,
        bos: NO_BOS,
        n_units: 0,
        version: 1,
    };
    shard_bytes(&h, tokens, offsets)
}

fn must_not_panic(bytes: &[u8]) {
    let p = Path::new("fuzz.bin");
    match shards::parse_shard(p, bytes) {
        Ok((h, offsets, ids)) => {
            // What it accepts is sound: offsets inside the tokens, ids inside the vocab.
            assert_eq!(offsets.first(), Some(&0));
            assert_eq!(offsets.last(), Some(&h.n_tokens));
            assert!(offsets.windows(2).all(|w| w[0] <= w[1]));
            assert!(ids.iter().all(|&t| (t as u64) < h.vocab_size));
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.bin: "), "{e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn shard_reader_takes_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        must_not_panic(&bytes);
        // The same bytes behind a real magic and version, so the fields get read.
        let mut b = b"NBPETOK\0\x01\0\0\0".to_vec();
        b.extend_from_slice(&bytes);
        must_not_panic(&b);
    }

    #[test]
    fn shard_reader_takes_arbitrary_header_fields(
        width in prop_oneof![Just(16u32), Just(32u32), any::<u32>()],
        vocab_size in edgy_u64(),
        n_tokens in edgy_u64(),
        n_docs in edgy_u64(),
        bos in edgy_u64(),
        n_units in edgy_u64(),
        tail in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let h = Header { width, vocab_size, n_tokens, n_docs, checksum: 0, bos, n_units, version: 2 };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&tail);
        must_not_panic(&b);
    }

    #[test]
    fn shard_reader_takes_arbitrary_offsets_and_ids(
        tokens in proptest::collection::vec(prop_oneof![0u16..300, any::<u16>()], 0..50),
        offsets in proptest::collection::vec(prop_oneof![0u64..60, edgy_u64()], 0..12),
        vocab_size in prop_oneof![Just(300u64), 1u64..70_000],
    ) {
        must_not_panic(&shard_with(&tokens, &offsets, vocab_size));
    }

    #[test]
    fn shard_reader_takes_a_damaged_good_shard(flips in proptest::collection::vec((0usize..200, any::<u8>()), 1..6)) {
        let tokens: Vec<u16> = (0..40).map(|i| (i * 7 % 300) as u16).collect();
        let mut b = shard_with(&tokens, &[0, 10, 10, 33, 40], 300);
        for (at, x) in flips {
            let n = b.len();
            b[at % n] ^= x;
        }
        must_not_panic(&b);
    }
}

/// A tokenizer with <|bos|> and a token shard of 2500 short documents (three blocks of 1024) for it.
fn loader_fixture() -> (tempfile::TempDir, Vocab, Arc<Encoder>, PathBuf) {
    let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    ranks.push(b"ab".to_vec());
    let vocab = Vocab::new("nanochat", ranks, &["<|bos|>".to_string()], 0, None, json!({})).unwrap();
    let enc = Arc::new(Encoder::new(&vocab).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.bin");
    let mut tokens: Vec<u16> = Vec::new();
    let mut offsets = vec![0u64];
    for d in 0..2500u32 {
        tokens.extend((0..(1 + d % 37)).map(|i| ((d + i) % 257) as u16));
        offsets.push(tokens.len() as u64);
    }
    let h = Header {
        width: 16,
        vocab_size: vocab.vocab_size() as u64,
        n_tokens: tokens.len() as u64,
        n_docs: 2500,
        checksum: shards::checksum(&vocab),
        bos: NO_BOS,
        n_units: 0,
        version: 1,
    };
    std::fs::write(&path, shard_bytes(&h, &tokens, &offsets)).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), HEADER_BYTES as u64 + tokens.len() as u64 * 2 + 2501 * 8);
    (dir, vocab, enc, path)
}

/// JSON values of any shape, for fields the state parser must refuse.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[a-z.]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn edgy_usize() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..5, 1000u64..1030, Just(u64::MAX), Just(usize::MAX as u64 / 2), any::<u64>()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Loader states as they come from a checkpoint's JSON: right shape with wild numbers, or wrong shapes.
    #[test]
    fn loader_state_json_is_refused_or_resumed_never_a_panic(
        epoch in edgy_u64(),
        unit in edgy_usize(),
        row in edgy_usize(),
        seq in edgy_u64(),
        buffer in proptest::collection::vec((edgy_u64(), prop_oneof![0u64..4, edgy_usize()], prop_oneof![0u64..1100, edgy_usize()]), 0..6),
        junk in proptest::option::of(("[a-z]{1,8}", any_json())),
    ) {
        let (_dir, vocab, enc, path) = loader_fixture();
        let mut state = json!({
            "version": 1, "files": ["a.bin"], "rank": 0, "world": 1,
            "epoch": epoch, "unit": unit, "row": row, "seq": seq, "buffer": buffer,
        });
        if let Some((key, value)) = junk {
            state[key.as_str()] = value; // may replace a real field with any JSON
        }
        let text = state.to_string();
        let Ok(state) = serde_json::from_str::<LoaderState>(&text) else { return Ok(()) };
        let opts = LoaderOptions {
            input: InputSpec { paths: vec![path], ..Default::default() },
            batch_size: 2,
            seq_len: 16,
            buffer_docs: 8,
            prefetch: 1,
            threads: 1,
        };
        let loader = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Loader::new(&vocab, enc, &opts, Some(state))));
        let Ok(loader) = loader else { panic!("Loader::new panicked on {text}") };
        if let Ok(mut loader) = loader {
            for _ in 0..3 {
                match loader.next_batch() {
                    Ok(b) => prop_assert_eq!(b.tokens.len(), 2 * 17),
                    Err(e) => {
                        prop_assert!(!e.to_string().contains("panic"), "{} on {}", e, text);
                        break;
                    }
                }
            }
        }
    }
}
