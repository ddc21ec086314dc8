//! The output rail on a streamed answer. Text is released as soon as no detector can still
//! change its verdict on it, which is when it lies before:
//!
//! - the last `stream_window_bytes` of normalised text (every match that can contain
//!   whitespace, a split number or an injection phrase, is shorter than that);
//! - the start of the token (whitespace-free run) the window boundary falls in, so a key, an
//!   email or a base64 blob is judged whole (up to 4 KiB);
//! - the start of any finding the boundary cuts, such as a PEM block without its END line yet.
//!
//! A finding wholly before the cut is final: a longer match would need to start after the
//! cut. The scanner rescans only once `stream_min_batch_bytes` of new text has come, so a
//! token-at-a-time stream costs a few scans per window, not one per token.

use std::sync::Arc;

use crate::detect::Finding;
use crate::detect::MAX_TOKEN_BYTES;
use crate::error::{GuardError, Rail};
use crate::guard::{apply_redactions, blocked_classes, Hit, Inner, OutputScan};
use crate::normalize::{floor_boundary, Normalized};
use crate::policy::Action;
use crate::redact::RedactionMap;

/// Scans one streamed answer (from `RuleGuard::scanner` or `Guard::output_scanner`).
pub struct OutputScanner {
    guard: Arc<Inner>,
    /// The end of the released text, re-read before `pending` so that detectors that look
    /// back ("ssn", "aws" before a value; word boundaries) see what a whole-text scan sees.
    context: String,
    pending: String,
    new_bytes: usize,
    released: usize,
    hits: Vec<Hit>,
    redactions: RedactionMap,
    blocked: Option<Vec<String>>,
}

impl OutputScanner {
    pub(crate) fn new(guard: Arc<Inner>) -> OutputScanner {
        OutputScanner {
            guard,
            context: String::new(),
            pending: String::new(),
            new_bytes: 0,
            released: 0,
            hits: Vec::new(),
            redactions: RedactionMap::default(),
            blocked: None,
        }
    }

    /// How many bytes are held back now (for tests and metrics).
    pub fn held_bytes(&self) -> usize {
        self.pending.len()
    }

    fn blocked_error(&self) -> Option<GuardError> {
        self.blocked.as_ref().map(|classes| GuardError::Blocked {
            rail: Rail::Output,
            classes: classes.clone(),
        })
    }

    /// Scans the pending text and releases what is safe (everything when `last`).
    fn release(&mut self, last: bool) -> Result<String, GuardError> {
        let context_len = self.context.len();
        let combined = format!("{}{}", self.context, self.pending);
        let view = Normalized::new(&combined);
        let state = self.guard.rail(Rail::Output);
        let findings = if state.families.pii
            || state.families.secrets
            || state.families.injection
            || state.custom
        {
            self.guard
                .detectors
                .scan_view(&view, state.families, state.custom)
        } else {
            Vec::new()
        };
        let cut = if last {
            self.pending.len()
        } else {
            let window = self.guard.limits.stream_window_bytes;
            safe_cut(&combined, &view, &findings, window, context_len).saturating_sub(context_len)
        };
        drop(view);
        // Findings that start in the context were acted on when it was released.
        let final_findings: Vec<Finding> = findings
            .into_iter()
            .filter(|finding| {
                finding.span.start >= context_len && finding.span.end - context_len <= cut
            })
            .map(|mut finding| {
                let start = finding.span.start - context_len + self.released;
                let end = finding.span.end - context_len + self.released;
                finding.span = start..end;
                finding
            })
            .collect();
        let hits = self.guard.hits(final_findings, Rail::Output);
        if hits.iter().any(|hit| hit.action == Action::Block) {
            self.blocked = Some(blocked_classes(&hits));
            self.hits.extend(hits);
            self.pending.clear();
            return Err(self.blocked_error().unwrap_or(GuardError::Blocked {
                rail: Rail::Output,
                classes: Vec::new(),
            }));
        }
        let out = apply_redactions(
            &self.pending[..cut],
            &hits,
            self.released,
            &mut self.redactions,
        );
        self.hits.extend(hits);
        let released: String = self.pending.drain(..cut).collect();
        self.context.push_str(&released);
        let keep_from = floor_boundary(
            &self.context,
            self.context.len().saturating_sub(CONTEXT_BYTES),
        );
        self.context.drain(..keep_from);
        self.released += cut;
        self.new_bytes = 0;
        Ok(out)
    }
}

/// How much released text is re-read as context: more than any detector looks back (48
/// normalised bytes), with room for invisible characters.
const CONTEXT_BYTES: usize = 128;

/// The end of the text that is final now (see the module comment), in original bytes.
/// Findings that start before `released` (the re-read context) were settled already and do not
/// hold anything back, so the stream can never stall on them.
fn safe_cut(
    pending: &str,
    view: &Normalized<'_>,
    findings: &[Finding],
    window: usize,
    released: usize,
) -> usize {
    let normal = view.text();
    if normal.len() <= window {
        return 0;
    }
    let normal_cut = floor_boundary(normal, normal.len() - window);
    let mut cut = view.original_offset(normal_cut, pending.len());
    // Back to the start of the token the cut falls in.
    let starts_token = cut == 0
        || pending[..cut]
            .chars()
            .next_back()
            .is_some_and(char::is_whitespace);
    if !starts_token {
        let reach = floor_boundary(pending, cut.saturating_sub(MAX_TOKEN_BYTES));
        if let Some(space) = pending[reach..cut].rfind(char::is_whitespace) {
            let space = reach + space;
            cut = space + pending[space..].chars().next().map_or(1, char::len_utf8);
        } else if reach > 0 {
            // A token longer than any detector reads: cut it where the window says.
        } else {
            cut = 0;
        }
    }
    // Never through a finding.
    for finding in findings.iter().rev().filter(|f| f.span.start >= released) {
        if finding.span.start < cut && cut < finding.span.end {
            cut = finding.span.start;
        }
    }
    cut
}

impl OutputScan for OutputScanner {
    fn push(&mut self, delta: &str) -> Result<String, GuardError> {
        if let Some(error) = self.blocked_error() {
            return Err(error);
        }
        self.pending.push_str(delta);
        self.new_bytes += delta.len();
        let limits = self.guard.limits;
        if self.new_bytes < limits.stream_min_batch_bytes
            || self.pending.len() <= limits.stream_window_bytes
        {
            return Ok(String::new());
        }
        self.release(false)
    }

    fn finish(&mut self) -> Result<String, GuardError> {
        if let Some(error) = self.blocked_error() {
            return Err(error);
        }
        self.release(true)
    }

    fn hits(&self) -> &[Hit] {
        &self.hits
    }

    fn redactions(&self) -> &RedactionMap {
        &self.redactions
    }
}
