//! Just enough DER for RFC 3161: reading a tree of tag-length-value items (definite lengths,
//! one-byte tags, as DER allows for every structure a time-stamp token holds) and writing the
//! few a request needs.
//!
//! Hand-written because the RustCrypto types for these structures (`x509-tsp` 0.1.0 on `der`)
//! refuse a genTime with fractional seconds, which RFC 3161 allows and `openssl ts` writes at
//! `clock_precision_digits` 1 to 6. Signatures and chains are checked by OpenSSL, not here.

/// Why bytes are not the DER expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub String);

/// Items read from one constructed value, at most (a token holds a few dozen).
pub const CHILDREN_MAX: usize = 1024;

/// Universal tags.
pub const BOOLEAN: u8 = 0x01;
/// INTEGER.
pub const INTEGER: u8 = 0x02;
/// OCTET STRING.
pub const OCTET_STRING: u8 = 0x04;
/// NULL.
pub const NULL: u8 = 0x05;
/// OBJECT IDENTIFIER.
pub const OID: u8 = 0x06;
/// GeneralizedTime.
pub const GENERALIZED_TIME: u8 = 0x18;
/// SEQUENCE (constructed).
pub const SEQUENCE: u8 = 0x30;
/// SET (constructed).
pub const SET: u8 = 0x31;
/// `[n]` constructed (explicit, or implicit over a constructed type).
pub const fn context(n: u8) -> u8 {
    0xa0 | n
}
/// `[n]` primitive (implicit over a primitive type).
pub const fn context_primitive(n: u8) -> u8 {
    0x80 | n
}

/// One item: its tag, its contents, and its whole encoding (tag and length included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item<'a> {
    /// The tag byte.
    pub tag: u8,
    /// The contents.
    pub body: &'a [u8],
    /// Tag, length and contents.
    pub whole: &'a [u8],
}

/// Reads one item from the front of `input`; returns it and what follows.
pub fn read(input: &[u8]) -> Result<(Item<'_>, &[u8]), DerError> {
    let (&tag, rest) = input.split_first().ok_or_else(|| DerError("an item is missing".into()))?;
    if tag & 0x1f == 0x1f {
        return Err(DerError(format!("tag {tag:#04x}: multi-byte tags are not used here")));
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| DerError("a length is missing".into()))?;
    let (length, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 {
            return Err(DerError(format!("a length of {count} bytes (indefinite or too long)")));
        }
        if rest.len() < count {
            return Err(DerError("a length is cut short".into()));
        }
        let length = rest[..count].iter().fold(0usize, |n, b| (n << 8) | *b as usize);
        if length < 0x80 || rest[0] == 0 {
            return Err(DerError("a length not in its shortest form".into()));
        }
        (length, &rest[count..])
    };
    if rest.len() < length {
        return Err(DerError(format!("an item of {length} bytes with {} left", rest.len())));
    }
    let header = input.len() - rest.len();
    Ok((Item { tag, body: &rest[..length], whole: &input[..header + length] }, &rest[length..]))
}

/// Reads `input` as exactly one item.
pub fn read_all(input: &[u8]) -> Result<Item<'_>, DerError> {
    let (item, rest) = read(input)?;
    if !rest.is_empty() {
        return Err(DerError(format!("{} bytes after the item", rest.len())));
    }
    Ok(item)
}

impl<'a> Item<'a> {
    /// The item, or an error naming `what` when its tag is not `tag`.
    pub fn expect(self, tag: u8, what: &str) -> Result<Self, DerError> {
        if self.tag != tag {
            return Err(DerError(format!("{what}: tag {:#04x}, expected {tag:#04x}", self.tag)));
        }
        Ok(self)
    }

    /// The items a constructed item holds, in order.
    pub fn children(&self) -> Result<Vec<Item<'a>>, DerError> {
        let mut items = Vec::new();
        let mut rest = self.body;
        while !rest.is_empty() {
            if items.len() == CHILDREN_MAX {
                return Err(DerError(format!("more than {CHILDREN_MAX} items in one value")));
            }
            let (item, next) = read(rest)?;
            items.push(item);
            rest = next;
        }
        Ok(items)
    }

    /// An OBJECT IDENTIFIER in dotted form.
    pub fn oid(&self) -> Result<String, DerError> {
        if self.tag != OID || self.body.is_empty() {
            return Err(DerError("not an object identifier".into()));
        }
        let mut arcs: Vec<u64> = Vec::new();
        let mut value: u64 = 0;
        for (i, byte) in self.body.iter().enumerate() {
            if value > (u64::MAX >> 7) {
                return Err(DerError("an object identifier arc too large".into()));
            }
            value = (value << 7) | u64::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                if arcs.is_empty() {
                    let first = (value / 40).min(2);
                    arcs.push(first);
                    arcs.push(value - first * 40);
                } else {
                    arcs.push(value);
                }
                value = 0;
            } else if i + 1 == self.body.len() {
                return Err(DerError("an object identifier cut short".into()));
            }
        }
        Ok(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
    }

    /// A non-negative INTEGER (or an implicitly tagged one) that fits 64 bits.
    pub fn unsigned(&self) -> Result<u64, DerError> {
        let body = match self.body {
            [0, rest @ ..] if !rest.is_empty() => rest,
            body => body,
        };
        if body.is_empty() || body.len() > 8 || (self.body[0] & 0x80 != 0) {
            return Err(DerError("an integer that is negative, empty or over 64 bits".into()));
        }
        Ok(body.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
    }

    /// A BOOLEAN.
    pub fn boolean(&self) -> Result<bool, DerError> {
        match (self.tag, self.body) {
            (BOOLEAN, [0x00]) => Ok(false),
            (BOOLEAN, [0xff]) => Ok(true),
            _ => Err(DerError("not a DER boolean".into())),
        }
    }
}

/// Writes one item.
pub fn write(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let length = body.len();
    if length < 0x80 {
        out.push(length as u8);
    } else {
        let bytes = length.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(body);
    out
}

/// Writes a non-negative INTEGER in its shortest form.
pub fn write_unsigned(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut body = bytes[skip..].to_vec();
    if body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    write(INTEGER, &body)
}

/// Writes a SEQUENCE of already written items.
pub fn write_sequence(items: &[Vec<u8>]) -> Vec<u8> {
    write(SEQUENCE, &items.concat())
}

/// Writes an OBJECT IDENTIFIER from its dotted form (arcs of this crate's constants only).
pub fn write_oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap_or(0)).collect();
    let mut body = Vec::new();
    let mut push = |mut value: u64| {
        let mut bytes = vec![(value & 0x7f) as u8];
        value >>= 7;
        while value > 0 {
            bytes.push(0x80 | (value & 0x7f) as u8);
            value >>= 7;
        }
        bytes.reverse();
        body.extend_from_slice(&bytes);
    };
    push(arcs.first().copied().unwrap_or(0) * 40 + arcs.get(1).copied().unwrap_or(0));
    for arc in arcs.iter().skip(2) {
        push(*arc);
    }
    write(OID, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_round_trip() {
        for dotted in ["1.2.840.113549.1.9.16.1.4", "2.16.840.1.101.3.4.2.1", "2.5.29.19"] {
            let written = write_oid(dotted);
            assert_eq!(read_all(&written).expect("succeeds").oid().expect("succeeds"), dotted);
        }
    }

    #[test]
    fn integers_are_shortest_and_non_negative() {
        for value in [0u64, 1, 127, 128, 255, 256, u64::MAX] {
            let written = write_unsigned(value);
            assert_eq!(read_all(&written).expect("succeeds").unsigned().expect("succeeds"), value);
        }
        assert_eq!(write_unsigned(128), vec![0x02, 0x02, 0x00, 0x80]);
        assert!(read_all(&[0x02, 0x01, 0x80]).expect("succeeds").unsigned().is_err(), "-128 is refused");
    }

    #[test]
    fn long_lengths_are_read_and_bad_ones_refused() {
        let body = vec![7u8; 300];
        let written = write(OCTET_STRING, &body);
        assert_eq!(&written[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(read_all(&written).expect("succeeds").body, body.as_slice());
        assert!(read(&[0x30, 0x80, 0, 0]).is_err(), "indefinite length");
        assert!(read(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5]).is_err(), "long form for a short length");
        assert!(read(&[0x04, 0x05, 1, 2]).is_err(), "cut short");
        assert!(read(&[0x1f, 0x01, 0x00]).is_err(), "multi-byte tag");
    }
}
