//! Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2, seed 0x9747b28c): where a schedule id lives.

const M: u32 = 0x5bd1_e995;
const SEED: u32 = 0x9747_b28c;

/// Kafka's murmur2 of `data` as Java's signed 32-bit int.
pub fn murmur2(data: &[u8]) -> i32 {
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for word in &mut chunks {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition a keyed record lands in with `partitions` partitions (Java's default partitioner).
pub fn partition_for(key: &[u8], partitions: u32) -> u32 {
    ((murmur2(key) as u32) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    // Kafka's UtilsTest.testMurmur2
    #[test]
    fn matches_kafkas_test_vectors() {
        let cases: [(&[u8], i32); 7] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
            (b"", 275_646_681),
        ];
        for (data, want) in cases {
            assert_eq!(
                murmur2(data),
                want,
                "murmur2({:?})",
                std::str::from_utf8(data)
            );
        }
    }

    #[test]
    fn partition_is_in_range_and_positive() {
        for n in 1..50u32 {
            assert!(partition_for(b"reservation-42", n) < n);
        }
    }
}
