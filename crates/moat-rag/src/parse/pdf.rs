//! PDF text per page with `pdf-extract`, and the deadline runner that parsers of hostile
//! formats share. That crate (and `lopdf` under it) can panic, loop for long or allocate much
//! on a damaged file, so extraction runs on its own worker thread under `catch_unwind`, and
//! the caller waits at most the configured deadline. An error is a [`ParseError::Pdf`], a
//! panic a [`ParseError::Failed`], a deadline passed a [`ParseError::Timeout`], and the worker
//! is then left to finish on its own (a thread cannot be killed; it holds only its copy of the
//! bytes). The memory it may use is bounded only by the file size limit checked before.
//!
//! The panic message still reaches the process's panic hook (stderr); replacing the global
//! hook is not a library's business.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;
use std::time::Duration;

use super::{text, Block, ParseError, ParsedDocument};

pub(super) fn parse(bytes: &[u8], timeout: Duration) -> Result<ParsedDocument, ParseError> {
    if bytes.is_empty() {
        return Err(ParseError::Empty);
    }
    if !bytes.starts_with(b"%PDF-") {
        return Err(ParseError::Pdf(
            "it does not start with the %PDF- signature".into(),
        ));
    }
    let pages = extract_pages(bytes.to_vec(), timeout)?;
    let mut blocks: Vec<Block> = Vec::new();
    for (index, page) in pages.iter().enumerate() {
        let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let page = page.replace('\0', "");
        for mut block in text::parse_plain(&page).blocks {
            block.page = number;
            // Line numbers inside an extracted page are not the file's lines.
            block.line_start = 0;
            blocks.push(block);
        }
    }
    if blocks.is_empty() {
        return Err(ParseError::PdfNoText);
    }
    Ok(ParsedDocument { blocks })
}

fn extract_pages(bytes: Vec<u8>, timeout: Duration) -> Result<Vec<String>, ParseError> {
    let result = run_with_deadline("PDF", timeout, move || {
        pdf_extract::extract_text_from_mem_by_pages(&bytes)
    })?;
    result.map_err(|error| ParseError::Pdf(error.to_string()))
}

/// Runs `work` on its own thread under `catch_unwind` and waits for it at most `timeout`.
/// A panic is [`ParseError::Failed`] naming `format`; a deadline
/// passed is [`ParseError::Timeout`], and the thread is left to finish on its own.
pub(super) fn run_with_deadline<T: Send + 'static>(
    format: &'static str,
    timeout: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ParseError> {
    let (sender, receiver) = mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("moat-rag-parse".into())
        .spawn(move || {
            let result = catch_unwind(AssertUnwindSafe(work));
            // The receiver is gone when the caller gave up waiting; nothing to tell then.
            let _ = sender.send(result);
        });
    if let Err(error) = spawned {
        return Err(ParseError::Io(format!(
            "cannot start a parser thread: {error}"
        )));
    }
    match receiver.recv_timeout(timeout) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(panic)) => Err(ParseError::Failed {
            format,
            message: panic_message(panic.as_ref()),
        }),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(ParseError::Timeout {
            format,
            seconds: timeout.as_secs().max(1),
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(ParseError::Failed {
            format,
            message: "the parser thread stopped without an answer".into(),
        }),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("the parser panicked ({detail})")
}
