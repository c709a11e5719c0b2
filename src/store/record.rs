//! How an entry's value and generation are laid out as bytes in the
//! backends that hold bytes (embedded, Redis): a tag byte, then for
//! versioned entries the generation as 8 big-endian bytes, then the value.
//! Big-endian so that comparing two generations byte by byte (as the Redis
//! script does) orders them as numbers.

use super::{StoreError, StoreResult, Versioned};

const PLAIN: u8 = b'p';
const VERSIONED: u8 = b'v';
const GENERATION_LEN: usize = 8;

/// A decoded entry, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Plain(&'a [u8]),
    Versioned { generation: u64, value: &'a [u8] },
}

impl<'a> Record<'a> {
    pub fn decode(bytes: &'a [u8]) -> StoreResult<Self> {
        match bytes.split_first() {
            Some((&PLAIN, value)) => Ok(Self::Plain(value)),
            Some((&VERSIONED, rest)) if rest.len() >= GENERATION_LEN => {
                let (generation, value) = rest.split_at(GENERATION_LEN);
                let mut be = [0u8; GENERATION_LEN];
                be.copy_from_slice(generation);
                Ok(Self::Versioned {
                    generation: u64::from_be_bytes(be),
                    value,
                })
            }
            _ => Err(StoreError::Failed(
                "an entry in the store is corrupt".into(),
            )),
        }
    }

    /// The value, whichever kind of entry.
    pub fn value(&self) -> &'a [u8] {
        match self {
            Self::Plain(value) | Self::Versioned { value, .. } => value,
        }
    }

    /// The generation a versioned write compares with: a plain entry
    /// counts as generation 0.
    pub fn generation(&self) -> u64 {
        match self {
            Self::Plain(_) => 0,
            Self::Versioned { generation, .. } => *generation,
        }
    }

    pub fn versioned(&self) -> Option<Versioned> {
        match self {
            Self::Plain(_) => None,
            Self::Versioned { generation, value } => Some(Versioned {
                generation: *generation,
                value: value.to_vec(),
            }),
        }
    }
}

pub fn encode_plain(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + value.len());
    out.push(PLAIN);
    out.extend_from_slice(value);
    out
}

pub fn encode_versioned(generation: u64, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + GENERATION_LEN + value.len());
    out.push(VERSIONED);
    out.extend_from_slice(&generation.to_be_bytes());
    out.extend_from_slice(value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_kinds_round_trip() {
        let plain = encode_plain(b"abc");
        assert_eq!(Record::decode(&plain), Ok(Record::Plain(b"abc")));
        let versioned = encode_versioned(7, b"xyz");
        let record = Record::decode(&versioned).unwrap();
        assert_eq!(record.generation(), 7);
        assert_eq!(record.value(), b"xyz");
        assert_eq!(
            record.versioned(),
            Some(Versioned {
                generation: 7,
                value: b"xyz".to_vec()
            })
        );
        assert_eq!(Record::decode(&plain).unwrap().generation(), 0);
        assert_eq!(Record::decode(&plain).unwrap().versioned(), None);
    }

    #[test]
    fn generations_order_as_bytes() {
        let pairs = [
            (0u64, 1u64),
            (255, 256),
            (1 << 40, (1 << 40) + 1),
            (7, u64::MAX),
        ];
        for (low, high) in pairs {
            assert!(encode_versioned(low, b"") < encode_versioned(high, b""));
        }
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        for bad in [&b""[..], b"x", b"v1234567"] {
            assert!(matches!(Record::decode(bad), Err(StoreError::Failed(_))));
        }
    }
}
