//! Which shard owns what. The hashes must never change, or data would move between shards.

/// Stable hash for routing (FNV-1a 64).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub fn shard_of_user(user_id: &str, shards: u32) -> u32 {
    (fnv1a(user_id.as_bytes()) % u64::from(shards)) as u32
}

pub fn shard_of_product(id: u64, shards: u32) -> u32 {
    (id % u64::from(shards)) as u32
}
