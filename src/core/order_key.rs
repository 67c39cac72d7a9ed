//! Per-key order: the hash that names an event's order key, and the lock bucket it falls in.
//!
//! An event's key is made of its order key columns' values, each hashed by the database with
//! its type's hash function (the one hash indexes and hash joins use, which agrees
//! with the type's `=`: `1.0` and `1.00`, or one instant written from sessions in different
//! time zones, hash alike) — or, for a type without one, the hash of its output text. The key's
//! hash is FNV-1a over each column's part (`key_hash`), fixed here so every version of
//! pg_webhook computes the same one.

/// How many locks the writers of one subscription's keys share. A bulk statement takes at most
/// this many; two writers wait for each other only when their keys fall in the same bucket.
pub const LOCK_BUCKETS: u32 = 256;

/// The 64-bit FNV-1a hash of a text (a key column's value of a type without a hash function).
pub fn hash(key_text: &str) -> i64 {
    fnv_1a(key_text.bytes())
}

/// The 64-bit FNV-1a hash of `bytes`.
fn fnv_1a(bytes: impl IntoIterator<Item = u8>) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h as i64
}

/// One column's share of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPart {
    /// The column is NULL in this row.
    Null,
    /// The column is no longer there (dropped or renamed since subscribing): the same for every
    /// row.
    Gone,
    /// The hash of the column's value.
    Value(u64),
}

/// The hash of a key: FNV-1a over each part as a tag byte (0 NULL, 1 gone, 2 a value) followed,
/// for a value, by its hash's 8 bytes, little-endian.
pub fn key_hash(parts: impl IntoIterator<Item = KeyPart>) -> i64 {
    fnv_1a(parts.into_iter().flat_map(|part| {
        let (tag, value) = match part {
            KeyPart::Null => (0u8, None),
            KeyPart::Gone => (1, None),
            KeyPart::Value(v) => (2, Some(v.to_le_bytes())),
        };
        std::iter::once(tag).chain(value.into_iter().flatten())
    }))
}

/// The lock bucket of a key's hash for a subscription whose lock salt is `salt`: from
/// SHA-256 over the salt and the hash. `pg_locks` shows every session the buckets a writer
/// holds; the hash's own low bits told anyone 8 bits of each key written, which a guessed
/// value's hash (the type's hash function is callable by all) matched. Without the salt, a
/// private column of the subscription's, a bucket tells nothing of the key.
pub fn bucket(hash: i64, salt: i64) -> u32 {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(salt.to_le_bytes());
    digest.update(hash.to_le_bytes());
    let out = digest.finalize();
    u32::from_le_bytes([out[0], out[1], out[2], out[3]]) % LOCK_BUCKETS
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
        assert_eq!(bucket(k, 5), bucket(hash("'acct-7'"), 5));
        assert_ne!(hash("'1','2'"), hash("'12'"));
        for i in 0..1000 {
            assert!(bucket(hash(&i.to_string()), 5) < LOCK_BUCKETS);
        }
    }

    #[test]
    fn buckets_known_answers() {
        // The first 4 bytes of SHA-256 over the little-endian salt then hash, as a
        // little-endian u32, modulo 256: the low byte of the digest's first.
        // SHA-256 of 16 zero bytes: 374708fff7719dd5979ec875d56cd228...
        assert_eq!(bucket(0, 0), 0x37);
        // Salt 1, hash 0: SHA-256(01 00*15) = 4cbbd8ca...
        assert_eq!(bucket(0, 1), 0x4c);
    }

    #[test]
    fn the_salt_moves_keys_between_buckets() {
        // One salt's buckets say nothing of another's: of 1,000 keys, about 1 in 256 shares
        // its bucket under both salts (all of them did when the bucket was the hash's low bits).
        let same = (0..1000)
            .map(|i| hash(&i.to_string()))
            .filter(|k| bucket(*k, 1) == bucket(*k, 2))
            .count();
        assert!(
            same < 20,
            "{same} of 1000 keys in the same bucket under two salts"
        );
    }

    #[test]
    fn key_hashes_known_answers() {
        // FNV-1a 64 of the bytes [] , [0], [1], [2, 1,0,0,0,0,0,0,0], [0, 1].
        assert_eq!(key_hash([]) as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_hash([KeyPart::Null]) as u64, 0xaf63_bd4c_8601_b7df);
        assert_eq!(key_hash([KeyPart::Gone]) as u64, 0xaf63_bc4c_8601_b62c);
        assert_eq!(key_hash([KeyPart::Value(1)]) as u64, 0xedde_65ec_42d6_cbc4);
        assert_eq!(
            key_hash([KeyPart::Null, KeyPart::Gone]) as u64,
            0x0832_8707_b4eb_6e3a
        );
        assert_ne!(
            key_hash([KeyPart::Value(1), KeyPart::Null]),
            key_hash([KeyPart::Null, KeyPart::Value(1)])
        );
    }
}
