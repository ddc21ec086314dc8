//! `Utf8Decoder`: turns the byte pieces of generated tokens into whole UTF-8 characters. A
//! token may end inside a character (byte-level BPE splits emoji and CJK characters); those
//! bytes wait for the next piece. It does not know tokens, vocabularies or stop strings.

/// Incremental UTF-8 decoding of a byte stream that arrives in arbitrary pieces.
#[derive(Clone, Debug, Default)]
pub struct Utf8Decoder {
    /// The start of a character whose remaining bytes have not arrived (at most 3 bytes).
    pending: Vec<u8>,
}

impl Utf8Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes `bytes` after whatever was held back: returns every whole character, holds an
    /// incomplete one at the end, and replaces invalid bytes with U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    // `valid_up_to` marks the end of valid UTF-8, so this never fails.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        // An incomplete character at the end: wait for its other bytes.
                        None => {
                            rest = after;
                            break;
                        }
                        Some(invalid) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[invalid..];
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        text
    }

    /// Ends the stream: a character still incomplete becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        if self.pending.is_empty() {
            return String::new();
        }
        self.pending.clear();
        char::REPLACEMENT_CHARACTER.to_string()
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_pieces(pieces: &[&[u8]]) -> Vec<String> {
        let mut decoder = Utf8Decoder::new();
        let mut out: Vec<String> = pieces.iter().map(|piece| decoder.push(piece)).collect();
        out.push(decoder.finish());
        out
    }

    #[test]
    fn ascii_passes_through() {
        assert_eq!(
            decode_pieces(&[b"Hello", b", ", b"world"]),
            ["Hello", ", ", "world", ""]
        );
    }

    #[test]
    fn a_multi_byte_char_split_across_tokens_comes_out_whole() {
        let euro = "€".as_bytes(); // e2 82 ac
        assert_eq!(
            decode_pieces(&[b"a", &euro[..1], &euro[1..2], &euro[2..], b"b"]),
            ["a", "", "", "€", "b", ""]
        );
    }

    #[test]
    fn a_four_byte_emoji_split_into_single_bytes() {
        let emoji = "🦀".as_bytes();
        let pieces: Vec<&[u8]> = emoji.chunks(1).collect();
        assert_eq!(decode_pieces(&pieces).concat(), "🦀");
        let mut decoder = Utf8Decoder::new();
        assert_eq!(decoder.push(&emoji[..3]), "");
        assert!(decoder.has_pending());
        assert_eq!(decoder.push(&emoji[3..]), "🦀");
        assert!(!decoder.has_pending());
    }

    #[test]
    fn a_piece_may_end_one_char_and_start_the_next() {
        let text = "é漢".as_bytes(); // c3 a9 e6 bc a2
        assert_eq!(
            decode_pieces(&[&text[..1], &text[1..3], &text[3..]]),
            ["", "é", "漢", ""]
        );
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(decode_pieces(&[b"a\xffb"]), ["a\u{fffd}b", ""]);
        // A lead byte followed by a non-continuation byte is invalid at once, not held.
        assert_eq!(decode_pieces(&[b"\xe2", b"x"]), ["", "\u{fffd}x", ""]);
        assert_eq!(decode_pieces(&[b"\x80\x80"]), ["\u{fffd}\u{fffd}", ""]);
    }

    #[test]
    fn an_incomplete_char_at_the_end_becomes_one_replacement_character() {
        assert_eq!(decode_pieces(&[b"ok", b"\xf0\x9f"]), ["ok", "", "\u{fffd}"]);
    }
}
