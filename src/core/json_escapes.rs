//! What a string grows by when PostgreSQL writes it into JSON text (`escape_json`): a quote or
//! a backslash takes two bytes, as do backspace, form feed, newline, carriage return and tab;
//! every other control character takes six (`\u0001`). A delivery worker reads row images as
//! text, so an image is counted with what its strings grow by: 160 MiB of `chr(1)` is 960 MiB
//! as text.

/// The bytes `text` gains when written as a JSON string (without its quotes).
pub fn escape_growth(text: &[u8]) -> usize {
    let mut growth = 0;
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        // Most text has nothing to escape: eight bytes are looked at together, and one by one
        // only when one of them may need it.
        if may_escape(u64::from_le_bytes(bytes)) {
            growth += word.iter().map(|b| byte_growth(*b)).sum::<usize>();
        }
    }
    growth
        + words
            .remainder()
            .iter()
            .map(|b| byte_growth(*b))
            .sum::<usize>()
}

/// What one byte grows by (see the module's comment).
fn byte_growth(byte: u8) -> usize {
    match byte {
        b'"' | b'\\' | 0x08 | 0x0C | b'\n' | b'\r' | b'\t' => 1,
        0..=0x1F => 5,
        _ => 0,
    }
}

/// Whether any byte of `word` may be one `byte_growth` counts: below 0x20, a quote or a
/// backslash. Never false when one is (it may be true when none is).
fn may_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // A byte below n sets its high bit in (word - n per byte) & !word (the classic test,
    // exact as to whether there is one for n <= 128); a byte equal to c is a zero in word ^ c.
    let below = |n: u64| word.wrapping_sub(ONES * n) & !word & HIGH;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    below(0x20) | zero(word ^ (ONES * 0x22)) | zero(word ^ (ONES * 0x5C)) != 0
}

#[cfg(test)]
mod tests {
    use super::escape_growth;

    #[test]
    fn plain_text_grows_by_nothing() {
        assert_eq!(escape_growth(b""), 0);
        assert_eq!(escape_growth(b"customer 42, total 17.50 ~ {}[]/"), 0);
        assert_eq!(escape_growth("grüße, 東京, \u{7f}".as_bytes()), 0);
    }

    #[test]
    fn quotes_backslashes_and_short_escapes_take_two_bytes() {
        // "a\"b\\c" then \b \f \n \r \t: one more byte each.
        assert_eq!(escape_growth(b"a\"b\\c"), 2);
        assert_eq!(escape_growth(b"\x08\x0c\n\r\t"), 5);
    }

    #[test]
    fn other_control_characters_take_six_bytes() {
        // \u0000 is not in jsonb text, but json and text can hold \u0001 .. \u001f.
        assert_eq!(escape_growth(b"\x01"), 5);
        assert_eq!(escape_growth(b"\x1f\x0b\x00"), 15);
    }

    #[test]
    fn every_position_of_a_long_text_is_seen() {
        // Each special byte alone at every offset of 24 bytes (three words and none left),
        // and of 27 (a remainder): the word test must not miss one.
        for len in [24, 27] {
            for at in 0..len {
                for (byte, grows) in [(b'"', 1), (b'\\', 1), (b'\n', 1), (0x01, 5), (0x1f, 5)] {
                    let mut text = vec![b'x'; len];
                    text[at] = byte;
                    assert_eq!(escape_growth(&text), grows, "{byte:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn bytes_next_to_the_special_ones_are_not_counted() {
        // 0x20 (space), 0x21, 0x23, 0x5b, 0x5d and high bytes sit around the tested values.
        assert_eq!(escape_growth(b" !#[]\x80\xff\x7f ! # [ ] "), 0);
        assert_eq!(escape_growth(&[0x20; 64]), 0);
        assert_eq!(escape_growth(&[0x01; 64]), 320);
        assert_eq!(escape_growth(&[b'"'; 9]), 9);
    }
}
