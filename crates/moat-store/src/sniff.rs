//! A GGUF file announces itself in its first four bytes. A fetcher copying a `.gguf` reads it
//! through [`GgufMagic`], so a file that is not one (an HTML error page saved under the name, a
//! zero-filled member of a wheel) is refused at its first read instead of after its last byte
//! was copied into the store.

use std::io::{self, Read};

/// What GGUF files start with.
const MAGIC: [u8; 4] = *b"GGUF";

/// Passes reads through and fails the read that completes the first four bytes when they are
/// not `GGUF`; [`GgufMagic::refused`] then says what they were.
pub(crate) struct GgufMagic<'a> {
    inner: &'a mut dyn Read,
    first: [u8; 4],
    seen: usize,
    refused: Option<[u8; 4]>,
}

impl<'a> GgufMagic<'a> {
    pub(crate) fn new(inner: &'a mut dyn Read) -> Self {
        Self {
            inner,
            first: [0; 4],
            seen: 0,
            refused: None,
        }
    }

    /// The first four bytes, when they were not GGUF's magic.
    pub(crate) fn refused(&self) -> Option<[u8; 4]> {
        self.refused
    }
}

impl Read for GgufMagic<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.refused.is_some() {
            return Err(not_gguf());
        }
        let n = self.inner.read(buf)?;
        if self.seen < MAGIC.len() {
            let take = (MAGIC.len() - self.seen).min(n);
            self.first[self.seen..self.seen + take].copy_from_slice(&buf[..take]);
            self.seen += take;
            if self.seen == MAGIC.len() && self.first != MAGIC {
                self.refused = Some(self.first);
                return Err(not_gguf());
            }
        }
        Ok(n)
    }
}

/// The copy's error; the fetcher reports [`GgufMagic::refused`] in its place.
fn not_gguf() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a GGUF file")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out its bytes a few at a time, as a network read may.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(self.0.len()).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn read_all(bytes: &[u8], step: usize) -> (io::Result<Vec<u8>>, Option<[u8; 4]>) {
        let mut source = Trickle(bytes, step);
        let mut magic = GgufMagic::new(&mut source);
        let mut out = Vec::new();
        let result = magic.read_to_end(&mut out).map(|_| out);
        (result, magic.refused())
    }

    #[test]
    fn a_gguf_passes_through_unchanged_however_it_is_split() {
        let bytes = b"GGUF\x03\x00\x00\x00rest of the header";
        for step in [1, 2, 3, 4, 5, 64] {
            let (result, refused) = read_all(bytes, step);
            assert_eq!(result.unwrap(), bytes.to_vec(), "step {step}");
            assert_eq!(refused, None);
        }
    }

    #[test]
    fn other_bytes_are_refused_at_the_read_that_completes_the_magic() {
        for step in [1, 3, 4, 4096] {
            let (result, refused) = read_all(b"<!DOCTYPE html><html>", step);
            let error = result.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "step {step}");
            assert_eq!(refused, Some(*b"<!DO"));
        }
        // Shorter than the magic: nothing to judge here; the header check refuses it later.
        let (result, refused) = read_all(b"GG", 1);
        assert_eq!(result.unwrap(), b"GG".to_vec());
        assert_eq!(refused, None);
    }
}
