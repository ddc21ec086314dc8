//! Reversible redaction: each redacted value gets a placeholder such as `[EMAIL_1]` (one value,
//! one placeholder, however often it occurs), and the map restores them in an answer, whole
//! or streamed.

use std::collections::BTreeMap;

use crate::class::Class;

/// Placeholders are `[STEM_N]` with a stem of at most 40 characters; nothing longer is one.
const MAX_PLACEHOLDER_BYTES: usize = 64;

/// One redacted value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redaction {
    pub class: Class,
    /// The placeholder that replaced it, e.g. `[EMAIL_1]`.
    pub placeholder: String,
    /// The original bytes, exactly as sent (zero-width characters included).
    pub original: String,
}

/// Placeholders and what they stand for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionMap {
    entries: Vec<Redaction>,
    by_placeholder: BTreeMap<String, usize>,
    next_number: BTreeMap<String, usize>,
}

impl RedactionMap {
    /// The placeholder for `original`, reusing the one it already has.
    pub(crate) fn placeholder_for(&mut self, class: &Class, original: &str) -> String {
        if let Some(entry) = self
            .entries
            .iter()
            .find(|entry| entry.original == original && &entry.class == class)
        {
            return entry.placeholder.clone();
        }
        let stem = class.placeholder_stem();
        let number = self.next_number.entry(stem.clone()).or_insert(0);
        *number += 1;
        let placeholder = format!("[{stem}_{number}]");
        self.by_placeholder
            .insert(placeholder.clone(), self.entries.len());
        self.entries.push(Redaction {
            class: class.clone(),
            placeholder: placeholder.clone(),
            original: original.to_string(),
        });
        placeholder
    }

    /// Every redaction, in the order the placeholders were given.
    pub fn entries(&self) -> &[Redaction] {
        &self.entries
    }

    /// Whether nothing was redacted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `text` with every known placeholder replaced by its original. Unknown bracketed text is
    /// left alone.
    pub fn restore(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..open]);
            let candidate = &rest[open..];
            let close = candidate
                .bytes()
                .take(MAX_PLACEHOLDER_BYTES)
                .position(|b| b == b']');
            match close.and_then(|close| self.original_of(&candidate[..=close])) {
                Some((original, len)) => {
                    out.push_str(original);
                    rest = &candidate[len..];
                }
                None => {
                    out.push('[');
                    rest = &candidate[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn original_of(&self, placeholder: &str) -> Option<(&str, usize)> {
        let index = *self.by_placeholder.get(placeholder)?;
        Some((&self.entries[index].original, placeholder.len()))
    }

    /// A restorer for a streamed answer: it holds back only a possible placeholder that has
    /// not closed yet.
    pub fn restorer(&self) -> Restorer<'_> {
        Restorer {
            map: self,
            pending: String::new(),
        }
    }
}

/// Restores placeholders in a stream of deltas (see `RedactionMap::restorer`).
#[derive(Debug)]
pub struct Restorer<'a> {
    map: &'a RedactionMap,
    pending: String,
}

impl Restorer<'_> {
    /// Text safe to send now, placeholders restored.
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        // Hold back from the last '[' that is not closed and could still become a placeholder.
        let hold_from = self.pending.rfind('[').filter(|&open| {
            !self.pending[open..].contains(']') && self.pending.len() - open < MAX_PLACEHOLDER_BYTES
        });
        let cut = hold_from.unwrap_or(self.pending.len());
        let ready: String = self.pending.drain(..cut).collect();
        self.map.restore(&ready)
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.map.restore(&rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_one_placeholder_and_restore() {
        let mut map = RedactionMap::default();
        assert_eq!(map.placeholder_for(&Class::Email, "a@b.io"), "[EMAIL_1]");
        assert_eq!(map.placeholder_for(&Class::Email, "c@d.io"), "[EMAIL_2]");
        assert_eq!(map.placeholder_for(&Class::Email, "a@b.io"), "[EMAIL_1]");
        assert_eq!(
            map.restore("to [EMAIL_2] and [EMAIL_1], not [EMAIL_3] or [x"),
            "to c@d.io and a@b.io, not [EMAIL_3] or [x"
        );
    }

    #[test]
    fn streamed_restore_matches_whole_restore_at_every_split() {
        let mut map = RedactionMap::default();
        map.placeholder_for(&Class::Phone, "555-0100");
        let answer = "Call [PHONE_1] now [or] [PHONE_1]!";
        for split in 0..=answer.len() {
            let mut restorer = map.restorer();
            let mut out = restorer.push(&answer[..split]);
            out.push_str(&restorer.push(&answer[split..]));
            out.push_str(&restorer.finish());
            assert_eq!(out, map.restore(answer), "split at {split}");
        }
    }
}
