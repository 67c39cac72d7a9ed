//! Text that others wrote, kept or logged at a bounded length: an error a callback raised, a
//! receiver's answer. A callback can raise a message of hundreds of megabytes, which would be
//! written whole to the server log and to its event.

/// `text` cut to at most `max` bytes (at a character boundary), with `…` and how long it was
/// when cut.
pub fn clipped(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(clipped("connection refused", 500), "connection refused");
        assert_eq!(clipped("abc", 3), "abc");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_how_long_it_was() {
        assert_eq!(clipped("abcdef", 4), "abcd… (6 bytes in all)");
        // "é" is two bytes: a cut in its middle goes back before it.
        assert_eq!(clipped("aé", 2), "a… (3 bytes in all)");
    }
}
