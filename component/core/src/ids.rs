//! Greeting ids: ULIDs, so ids made by several hosts at once never collide and sort by time.
//!
//! A ULID is 128 bits, a 48-bit Unix time in milliseconds followed by 80 random bits, written
//! as 26 characters of Crockford's base32 (`01ARZ3NDEKTSV4RRFFQ69G5FAV`). Sorting ids sorts
//! greetings by creation time; ids made in the same millisecond order by their random part.

use std::fmt;

/// Crockford's base32 digits, in value order (no I, L, O or U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const ENCODED_LEN: usize = 26;
const TIME_BITS: u32 = 48;
const RANDOM_BITS: u32 = 80;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GreetingId(u128);

impl GreetingId {
    /// The id of a greeting made at `unix_ms` (only its low 48 bits count, which lasts until
    /// the year 10889), with the low 80 bits of `random`.
    pub fn new(unix_ms: u64, random: u128) -> Self {
        let time = u128::from(unix_ms) & ((1 << TIME_BITS) - 1);
        Self(time << RANDOM_BITS | random & ((1 << RANDOM_BITS) - 1))
    }

    /// Reads the 26-character form, in either case; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != ENCODED_LEN {
            return None;
        }
        // 26 digits hold 130 bits; `checked_mul` refuses the values that need more than 128.
        let value = text.bytes().try_fold(0u128, |value, byte| {
            let digit = ALPHABET
                .iter()
                .position(|&d| d == byte.to_ascii_uppercase())?;
            Some(value.checked_mul(32)? | digit as u128)
        })?;
        Some(Self(value))
    }
}

impl fmt::Display for GreetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; ENCODED_LEN];
        for (position, digit) in digits.iter_mut().rev().enumerate() {
            *digit = ALPHABET[(self.0 >> (5 * position) & 31) as usize];
        }
        // Every digit comes from ALPHABET, which is ASCII.
        f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::GreetingId;

    #[test]
    fn encodes_the_ulid_spec_example() {
        // The timestamp and randomness of the ULID specification's README example.
        let id = GreetingId::new(1_469_918_176_385, 0x5A48_D43D_B765_2DB1_B1F5);
        assert_eq!(id.to_string(), "01ARYZ6S41B94D8FDQCMPV3CFN");
    }

    #[test]
    fn round_trips_through_text_in_either_case() {
        let id = GreetingId::new(1_700_000_000_123, u128::MAX);
        let text = id.to_string();
        assert_eq!(text.len(), 26);
        assert_eq!(GreetingId::parse(&text), Some(id));
        assert_eq!(GreetingId::parse(&text.to_lowercase()), Some(id));
    }

    #[test]
    fn sorts_by_time_first() {
        let earlier = GreetingId::new(1_000, u128::MAX);
        let later = GreetingId::new(1_001, 0);
        assert!(earlier < later);
        assert!(earlier.to_string() < later.to_string());
    }

    #[test]
    fn rejects_what_is_not_a_ulid() {
        for text in [
            "",
            "01ARYZ6S41B94D8FDQCMPV3CF",      // 25 characters
            "01ARYZ6S41B94D8FDQCMPV3CFNN",    // 27 characters
            "01ARYZ6S41B94D8FDQCMPV3CFU",     // U is not a Crockford digit
            "81ARYZ6S41B94D8FDQCMPV3CFN",     // over 128 bits
            "01ARYZ6S41B94D8FDQCMPV3C\u{e9}", // 26 bytes, not 26 digits
        ] {
            assert_eq!(GreetingId::parse(text), None, "{text:?}");
        }
    }
}
