//! Tokens an instance verified recently, with their claims: a hit costs no host call,
//! no hashing of the token with SHA-256 and no JSON.
//!
//! Keyed by the token's bytes, hashed and compared eight bytes at a time: a JWT is a
//! couple of hundred bytes, and in wasm both the standard SipHash and a byte-wise
//! `memcmp` cost several instructions per byte (they were most of this filter's work
//! per request). The hash needs no resistance to flooding: the map is bounded and
//! emptied when full, and every hit is confirmed by comparing the whole token.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Most tokens kept; the map is emptied when full.
pub const RECENT_TOKENS: usize = 512;

/// A token's bytes, compared and hashed a word at a time.
#[derive(Debug, Clone)]
struct Token(Box<[u8]>);

impl Token {
    fn hash_bytes<H: Hasher>(b: &[u8], state: &mut H) {
        let (w, rest) = words(b);
        for word in w {
            state.write_u64(u64::from_le_bytes(*word));
        }
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        state.write_u64(u64::from_le_bytes(last) ^ b.len() as u64);
    }
}

fn words(b: &[u8]) -> (&[[u8; 8]], &[u8]) {
    b.as_chunks::<8>()
}

/// Whether two byte strings are equal, eight bytes at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, ra) = words(a);
    let (wb, rb) = words(b);
    wa.iter()
        .zip(wb)
        .all(|(x, y)| u64::from_le_bytes(*x) == u64::from_le_bytes(*y))
        && ra == rb
}

/// A multiply-rotate hash of words (as rustc's FxHash).
#[derive(Default)]
struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Tokens whose words hash alike, each with what its verification gave.
type Bucket<V> = Vec<(Token, V)>;

/// Verified tokens and what their verification gave (`V`: shared by every request
/// that presents the token).
#[derive(Debug)]
pub struct Recent<V> {
    map: HashMap<u64, Bucket<V>, BuildHasherDefault<WordHasher>>,
    len: usize,
}

impl<V> Default for Recent<V> {
    fn default() -> Self {
        Recent {
            map: HashMap::default(),
            len: 0,
        }
    }
}

impl<V> Recent<V> {
    fn key(token: &[u8]) -> u64 {
        let mut h = WordHasher::default();
        Token::hash_bytes(token, &mut h);
        h.finish()
    }

    /// What a token verified earlier gave.
    pub fn get(&self, token: &str) -> Option<&V> {
        let bucket = self.map.get(&Self::key(token.as_bytes()))?;
        bucket
            .iter()
            .find(|(t, _)| same(&t.0, token.as_bytes()))
            .map(|(_, c)| c)
    }

    /// Remembers a verified token (the map is emptied when full).
    pub fn insert(&mut self, token: &str, claims: V) {
        if self.len >= RECENT_TOKENS {
            self.map.clear();
            self.len = 0;
        }
        let bucket = self.map.entry(Self::key(token.as_bytes())).or_default();
        if !bucket.iter().any(|(t, _)| same(&t.0, token.as_bytes())) {
            bucket.push((Token(token.as_bytes().into()), claims));
            self.len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use std::rc::Rc;

    #[test]
    fn tokens_are_found_by_content_and_bounded() {
        let mut r = Recent::default();
        let claims = Rc::new(Map::new());
        let a = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.sig-a";
        let b = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJiIn0.sig-b";
        r.insert(a, claims.clone());
        assert!(r.get(a).is_some());
        assert!(r.get(b).is_none());
        assert!(
            r.get(&a[..a.len() - 1]).is_none(),
            "a prefix is another token"
        );
        for i in 0..RECENT_TOKENS + 3 {
            r.insert(&format!("{a}{i}"), claims.clone());
        }
        assert!(r.len <= RECENT_TOKENS);
        assert!(same(b"0123456789abcdefXYZ", b"0123456789abcdefXYZ"));
        assert!(!same(b"0123456789abcdefXYZ", b"0123456789abcdefXYz"));
        assert!(!same(b"0123456789abcdef", b"0123456789abcdeF"));
    }
}
