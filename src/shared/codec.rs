//! A shared answer as Redis holds it: one tag byte, then the answer's bytes, raw or
//! zstd-compressed. Decoding never allocates past the entry cap, whatever Redis holds.

use bytes::Bytes;

const RAW: u8 = b'r';
const ZSTD: u8 = b'z';
/// Fast enough for the request path; the answers are JSON and compress several-fold.
const LEVEL: i32 = 3;

pub(super) fn encode(answer: &[u8], compress_above: usize) -> Vec<u8> {
    if answer.len() > compress_above {
        if let Ok(packed) = zstd::bulk::compress(answer, LEVEL) {
            if packed.len() < answer.len() {
                let mut out = Vec::with_capacity(packed.len() + 1);
                out.push(ZSTD);
                out.extend_from_slice(&packed);
                return out;
            }
        }
    }
    let mut out = Vec::with_capacity(answer.len() + 1);
    out.push(RAW);
    out.extend_from_slice(answer);
    out
}

pub(super) fn decode(stored: &[u8], max_bytes: usize) -> Result<Bytes, String> {
    match stored.split_first() {
        Some((&RAW, answer)) if answer.len() <= max_bytes => Ok(Bytes::copy_from_slice(answer)),
        Some((&RAW, answer)) => Err(format!("{} bytes, over the entry cap", answer.len())),
        Some((&ZSTD, packed)) => {
            let mut answer =
                zstd::bulk::decompress(packed, max_bytes).map_err(|e| format!("zstd: {e}"))?;
            // Decompression reserves room by the frame's word, up to the cap: the cached
            // answer must hold its own bytes, not the cap's.
            answer.shrink_to_fit();
            Ok(Bytes::from(answer))
        }
        Some((tag, _)) => Err(format!("unknown tag {tag}")),
        None => Err("empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_answers_go_raw_and_large_ones_compressed_both_ways() {
        let small = br#"{"block":{}}"#;
        let stored = encode(small, 4096);
        assert_eq!(stored[0], RAW);
        assert_eq!(decode(&stored, 1 << 20).unwrap(), &small[..]);

        let large = format!("[{}]", r#"{"key":"value","n":"12345"},"#.repeat(400));
        let stored = encode(large.as_bytes(), 4096);
        assert_eq!(stored[0], ZSTD);
        assert!(stored.len() < large.len() / 4, "{}", stored.len());
        assert_eq!(decode(&stored, 1 << 20).unwrap(), large.as_bytes());
    }

    #[test]
    fn a_decoded_answer_holds_its_own_bytes_not_the_cap() {
        let large = "y".repeat(20_000);
        let stored = encode(large.as_bytes(), 4096);
        let answer = decode(&stored, 1 << 20).unwrap();
        let owned: Vec<u8> = answer.into();
        assert!(owned.capacity() < 64 * 1024, "{}", owned.capacity());
    }

    #[test]
    fn what_redis_holds_never_grows_past_the_cap_or_panics() {
        let large = "x".repeat(100_000);
        let stored = encode(large.as_bytes(), 4096);
        assert!(
            decode(&stored, 10_000).is_err(),
            "a bomb is refused at the cap"
        );
        assert!(decode(&encode(large.as_bytes(), usize::MAX), 10_000).is_err());
        assert!(decode(b"", 10).is_err());
        assert!(decode(b"q123", 10).is_err());
        assert!(decode(b"zgarbage", 10).is_err());
    }
}
