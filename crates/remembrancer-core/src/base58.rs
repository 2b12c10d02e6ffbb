//! Base58 (the Bitcoin alphabet, as multibase `z` and libp2p PeerIds use it), computed in
//! limbs of five digits: every receipt carries its signatures as base58 strings, and a node
//! encodes or decodes several per receipt. Digit by digit (the `bs58` crate's way) that was
//! about 3 % of a node's time under load; five digits a step encode a signature 11x and
//! decode it 6.7x faster (`examples/base58_speed.rs`; the tests check both agree).

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
/// 58^5: one limb of the encoder holds five digits.
const DIGITS5: u64 = 58 * 58 * 58 * 58 * 58;
/// Longest text [`decode`] reads (a 64-byte signature is at most 88 digits).
pub const TEXT_MAX: usize = 1024;

/// Why a text is not base58.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Base58Error {
    /// A character outside the alphabet (at this byte offset).
    #[error("character {0} is not in the base58 alphabet")]
    Character(usize),
    /// Longer than [`TEXT_MAX`].
    #[error("longer than {TEXT_MAX} characters")]
    TooLong,
}

/// The digit of each ASCII character, 58 for none.
const fn digit_table() -> [u8; 128] {
    let mut table = [58u8; 128];
    let mut i = 0;
    while i < 58 {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
}
const DIGIT_OF: [u8; 128] = digit_table();

/// Encodes `bytes` as base58 (each leading zero byte a `1`).
pub fn encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|b| **b == 0).count();
    let rest = &bytes[zeros..];
    // Little-endian limbs of five digits; the number grows by up to three bytes a step.
    let mut limbs: Vec<u64> = Vec::with_capacity(rest.len() * 8 / 29 + 2);
    let (head, tail) = rest.split_at(rest.len() % 3);
    let chunks = std::iter::once(head).filter(|h| !h.is_empty()).chain(tail.chunks(3));
    for chunk in chunks {
        let mut carry = chunk.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b));
        let shift = 8 * chunk.len() as u32;
        for limb in &mut limbs {
            let value = (*limb << shift) | carry;
            *limb = value % DIGITS5;
            carry = value / DIGITS5;
        }
        while carry > 0 {
            limbs.push(carry % DIGITS5);
            carry /= DIGITS5;
        }
    }
    // The number's digits, least significant first, after the leading zeros' `1`s.
    let mut out = Vec::with_capacity(zeros + limbs.len() * 5);
    out.resize(zeros, b'1');
    for limb in &limbs {
        let mut limb = *limb;
        for _ in 0..5 {
            out.push(ALPHABET[(limb % 58) as usize]);
            limb /= 58;
        }
    }
    // The top limb's leading zero digits are not digits of the number.
    while out.len() > zeros && out.last() == Some(&b'1') {
        out.pop();
    }
    out[zeros..].reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The value of up to five base58 digits, and 58 to the power of their count (what the
/// number read so far is multiplied by); the offset of the first character that is not a
/// digit.
fn chunk_value(chunk: &[u8]) -> Result<(u64, u64), usize> {
    let mut value = 0u64;
    let mut scale = 1u64;
    for (offset, c) in chunk.iter().enumerate() {
        let digit = DIGIT_OF.get(*c as usize).copied().unwrap_or(58);
        if digit == 58 {
            return Err(offset);
        }
        value = value * 58 + u64::from(digit);
        scale *= 58;
    }
    Ok((value, scale))
}

/// Decodes base58 `text` (each leading `1` a zero byte).
pub fn decode(text: &str) -> Result<Vec<u8>, Base58Error> {
    let text = text.as_bytes();
    if text.len() > TEXT_MAX {
        return Err(Base58Error::TooLong);
    }
    let zeros = text.iter().take_while(|c| **c == b'1').count();
    // Little-endian limbs of 32 bits; the number grows by up to five digits a step.
    let mut limbs: Vec<u64> = Vec::with_capacity(text.len() * 6 / 32 + 2);
    let rest = &text[zeros..];
    let (head, tail) = rest.split_at(rest.len() % 5);
    let mut at = zeros;
    let chunks = std::iter::once(head).filter(|h| !h.is_empty()).chain(tail.chunks(5));
    for chunk in chunks {
        let (mut carry, scale) = chunk_value(chunk).map_err(|offset| Base58Error::Character(at + offset))?;
        at += chunk.len();
        for limb in &mut limbs {
            let value = *limb * scale + carry;
            *limb = value & 0xffff_ffff;
            carry = value >> 32;
        }
        while carry > 0 {
            limbs.push(carry & 0xffff_ffff);
            carry >>= 32;
        }
    }
    // The leading `1`s' zero bytes, then the number's bytes from its first non-zero one.
    let mut out = Vec::with_capacity(zeros + limbs.len() * 4);
    out.resize(zeros, 0);
    for limb in limbs.iter().rev() {
        out.extend_from_slice(&(*limb as u32).to_be_bytes());
    }
    let padding = out[zeros..].iter().take_while(|b| **b == 0).count();
    out.drain(zeros..zeros + padding);
    Ok(out)
}

/// Limbs of [`decode_array`]'s number: up to 4 bytes each, one to spare.
const ARRAY_LIMBS: usize = 33;

/// Decodes base58 `text` that stands for exactly `N` bytes (a signature, a key) as [`decode`]
/// does, without allocating: receipts carry their signatures in base58, and a node decodes
/// several per receipt. None when the text is not base58 or stands for another length.
pub fn decode_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if N > 4 * (ARRAY_LIMBS - 1) || text.len() > TEXT_MAX {
        return None;
    }
    let zeros = text.iter().take_while(|c| **c == b'1').count();
    if zeros > N {
        return None;
    }
    let mut limbs = [0u64; ARRAY_LIMBS];
    let mut used = 0;
    let rest = &text[zeros..];
    let (head, tail) = rest.split_at(rest.len() % 5);
    let chunks = std::iter::once(head).filter(|h| !h.is_empty()).chain(tail.chunks(5));
    for chunk in chunks {
        let (mut carry, scale) = chunk_value(chunk).ok()?;
        for limb in &mut limbs[..used] {
            let value = *limb * scale + carry;
            *limb = value & 0xffff_ffff;
            carry = value >> 32;
        }
        while carry > 0 {
            // A number this long has more than `N` bytes.
            let limb = limbs.get_mut(used)?;
            *limb = carry & 0xffff_ffff;
            carry >>= 32;
            used += 1;
        }
    }
    let mut number = [0u8; 4 * ARRAY_LIMBS];
    for (bytes, limb) in number.chunks_exact_mut(4).zip(limbs[..used].iter().rev()) {
        bytes.copy_from_slice(&(*limb as u32).to_be_bytes());
    }
    let number = &number[..4 * used];
    let padding = number.iter().take_while(|b| **b == 0).count();
    let number = &number[padding..];
    if zeros + number.len() != N {
        return None;
    }
    let mut out = [0u8; N];
    out[zeros..].copy_from_slice(number);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_values() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(&[0]), "1");
        assert_eq!(encode(&[0, 0, 1]), "112");
        assert_eq!(encode(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(encode(&[0xff; 4]), "7YXq9G");
        assert_eq!(decode("StV1DL6CwTryKyV"), Ok(b"hello world".to_vec()));
        assert_eq!(decode("112"), Ok(vec![0, 0, 1]));
        assert_eq!(decode(""), Ok(Vec::new()));
    }

    #[test]
    fn characters_outside_the_alphabet_are_named() {
        assert_eq!(decode("abc0"), Err(Base58Error::Character(3)));
        assert_eq!(decode("1O"), Err(Base58Error::Character(1)));
        assert_eq!(decode("Il"), Err(Base58Error::Character(0)));
        assert_eq!(decode("zé"), Err(Base58Error::Character(1)));
        assert_eq!(decode(&"2".repeat(TEXT_MAX + 1)), Err(Base58Error::TooLong));
        assert_eq!(decode_array::<2>("abc0"), None);
    }

    #[test]
    fn an_array_takes_exactly_its_length() {
        let signature: [u8; 64] = std::array::from_fn(|i| (i * 7 + 1) as u8);
        let text = encode(&signature);
        assert_eq!(decode_array::<64>(&text), Some(signature));
        assert_eq!(decode_array::<63>(&text), None);
        assert_eq!(decode_array::<65>(&text), None);
        assert_eq!(decode_array::<3>("112"), Some([0, 0, 1]));
        assert_eq!(decode_array::<0>(""), Some([]));
        // Zeros and number together longer than the array.
        assert_eq!(decode_array::<2>("112"), None);
        assert_eq!(decode_array::<64>(&"z".repeat(TEXT_MAX)), None);
    }

    proptest! {
        #[test]
        fn encodes_and_decodes_as_the_reference_does(
            zeros in 0usize..4,
            body in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = vec![0u8; zeros];
            bytes.extend(body);
            let text = encode(&bytes);
            prop_assert_eq!(&text, &bs58::encode(&bytes).into_string());
            prop_assert_eq!(decode(&text).expect("our own encoding decodes"), bytes);
        }

        #[test]
        fn decodes_into_an_array_what_decode_gives_of_that_length(
            zeros in 0usize..3,
            body in proptest::collection::vec(any::<u8>(), 0..70),
            noise in "[1-9A-HJ-NP-Za-km-z]{0,100}",
        ) {
            let mut bytes = vec![0u8; zeros];
            bytes.extend(body);
            for text in [encode(&bytes), noise] {
                let whole = decode(&text).ok();
                let as_array = |whole: &Option<Vec<u8>>, n: usize| {
                    whole.as_ref().filter(|b| b.len() == n).cloned()
                };
                prop_assert_eq!(decode_array::<64>(&text).map(|a| a.to_vec()), as_array(&whole, 64));
                prop_assert_eq!(decode_array::<32>(&text).map(|a| a.to_vec()), as_array(&whole, 32));
                prop_assert_eq!(decode_array::<1>(&text).map(|a| a.to_vec()), as_array(&whole, 1));
            }
        }

        #[test]
        fn decodes_any_text_as_the_reference_does(text in "[1-9A-HJ-NP-Za-km-z]{0,120}") {
            prop_assert_eq!(decode(&text).ok(), bs58::decode(&text).into_vec().ok());
        }
    }
}
