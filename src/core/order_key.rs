//! Per-key order: the hash that names an event's order key, and the lock bucket it falls in.
//!
//! An event's key is the text of its order key columns, each as `quote_literal` of its output
//! form (`NULL` unquoted), joined by commas — the same as SQL's
//! `concat_ws(',', format('%L', col1), format('%L', col2))`. Its hash is FNV-1a over that text,
//! fixed here so every version of pg_webhook computes the same one.

/// How many locks the writers of one subscription's keys share. A bulk statement takes at most
/// this many; two writers wait for each other only when their keys fall in the same bucket.
pub const LOCK_BUCKETS: u32 = 256;

/// The 64-bit FNV-1a hash of a key's text, as stored in the queue.
pub fn hash(key_text: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key_text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// The lock bucket of a key's hash.
pub fn bucket(hash: i64) -> u32 {
    ((hash as u64) % u64::from(LOCK_BUCKETS)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_1a_known_answers() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(hash("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash("foobar") as u64, 0x8594_4171_f739_67e8);
    }

    #[test]
    fn equal_keys_share_a_bucket_and_buckets_are_in_range() {
        let k = hash("'acct-7'");
        assert_eq!(bucket(k), bucket(hash("'acct-7'")));
        assert_ne!(hash("'1','2'"), hash("'12'"));
        for i in 0..1000 {
            assert!(bucket(hash(&i.to_string())) < LOCK_BUCKETS);
        }
    }
}
