//! How long-running store work reports progress. The store calls a [`Progress`]; the CLI
//! draws it (bytes, bytes/s, ETA). Nothing here prints.

use std::io::{self, Read, Write};

use crate::atomic::{self, BlobWriter};
use crate::error::{Result, StoreError};

pub trait Progress {
    /// A new transfer starts; `total` is its size in bytes when known.
    fn begin(&mut self, label: &str, total: Option<u64>);
    /// `bytes` more bytes were transferred.
    fn advance(&mut self, bytes: u64);
    /// The transfer is over (successfully or not).
    fn end(&mut self);
    /// A one-line status message between transfers.
    fn note(&mut self, _message: &str) {}
    /// Something the user should know even when status messages are off (a setting the pull
    /// did not keep, say).
    fn warn(&mut self, message: &str) {
        self.note(message);
    }
}

/// A [`Progress`] that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _label: &str, _total: Option<u64>) {}
    fn advance(&mut self, _bytes: u64) {}
    fn end(&mut self) {}
}

const BUFFER_BYTES: usize = 1 << 20;

/// Copies `reader` into `writer`, reporting each chunk. Returns the bytes copied.
pub(crate) fn copy_reporting(
    reader: &mut dyn Read,
    writer: &mut BlobWriter,
    label: &str,
    total: Option<u64>,
    progress: &mut dyn Progress,
) -> Result<u64> {
    progress.begin(label, total);
    let result = copy_loop(reader, writer, progress);
    progress.end();
    result.map_err(|e| {
        if atomic::is_cancelled(&e) {
            StoreError::Interrupted
        } else {
            StoreError::io(format!("copying {label}"))(e)
        }
    })
}

/// Copies `reader` into `writer`, reporting each chunk, without `begin`/`end`. Returns the
/// bytes copied.
pub(crate) fn copy_loop(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    progress: &mut dyn Progress,
) -> io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut copied = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            // A signal interrupted the read itself; the writer decides whether to stop.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buffer[..n])?;
        copied += n as u64;
        progress.advance(n as u64);
    }
}
