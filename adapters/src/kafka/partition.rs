//! Which partition a message goes to: the old producer's, so that every key stays on the partition its
//! consumers already read it from.
//!
//! The old payment service used Sarama's default partitioner (`NewHashPartitioner`): FNV-1a, 32 bit, of
//! the key's bytes; the sum reinterpreted as a signed `int32`; Go's `%` by the partition count (the
//! remainder takes the sign of the dividend); a negative remainder negated. That is neither librdkafka's
//! default (murmur2 / consistent_random) nor Sarama's "reference" variant (`& 0x7fffffff` before the
//! modulo), so the adapter computes the partition itself and sets it on every message.

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bit (Go's `hash/fnv.New32a`).
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(FNV32_OFFSET, |h, b| (h ^ u32::from(*b)).wrapping_mul(FNV32_PRIME))
}

/// The partition Sarama's hash partitioner picks for `key` among `partitions` (> 0).
pub fn partition_of(key: &[u8], partitions: i32) -> i32 {
    debug_assert!(partitions > 0, "a topic has at least one partition");
    // Rust's `%` truncates like Go's, and the remainder is taken before the negation, so i32::MIN cannot
    // overflow (its remainder is greater than -partitions).
    let remainder = (fnv1a32(key) as i32) % partitions.max(1);
    if remainder < 0 { -remainder } else { remainder }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a32_matches_the_published_vectors() {
        // From the FNV reference test suite (Go's hash/fnv tests use the same ones).
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"ab"), 0x4d25_05ca);
        assert_eq!(fnv1a32(b"abc"), 0x1a47_e90b);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn a_negative_sum_takes_the_absolute_remainder() {
        // fnv1a32("c") = 0xe60c2c52 = -435_409_838 as int32; Go: -435409838 % 3 = -2, negated: 2.
        assert_eq!(fnv1a32(b"c") as i32, -435_409_838);
        assert_eq!(partition_of(b"c", 3), 2);
        // fnv1a32("a") = 0xe40c292c = -468_965_076: Sarama's default gives 0, where its reference variant
        // ((h & 0x7fffffff) % 3) gives 2 and an unsigned modulo (librdkafka's fnv1a) gives 1.
        assert_eq!(partition_of(b"a", 3), 0);
        // fnv1a32("pay_1") = 0x7336b229 = 1_932_964_393 (positive): 1932964393 % 3 = 1.
        assert_eq!(partition_of(b"pay_1", 3), 1);
        assert_eq!(partition_of(b"pay_1", 1), 0);
    }

    #[test]
    fn partitions_stay_in_range() {
        for n in 1..=12 {
            for key in ["", "a", "pay_1", "user_42", "1234567890", "\u{ff}\u{fe}"] {
                let p = partition_of(key.as_bytes(), n);
                assert!((0..n).contains(&p), "{key} → {p} of {n}");
            }
        }
    }
}
