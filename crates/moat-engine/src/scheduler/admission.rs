//! Admission into slots: reusing the longest prefix of a prompt that a slot holds (an idle
//! slot is taken and cut, a running sequence's prefix is copied into a free slot), the host
//! prompt cache (sequences saved before their cells are dropped, restored when their prompt
//! comes back), and eviction of idle slots, least recently released first.

use std::time::Duration;

use super::{to_u32, Active, KvOp, Queued, Saved, Scheduler, SlotState};
use crate::prefix::longest_prefix;
use crate::TokenId;

/// A prefix found for a prompt, if any: where (a slot's index, or a position in the host
/// cache) and how many tokens long.
pub(super) type Found = Option<(usize, usize)>;

impl Scheduler {
    /// Puts a request into a slot, reusing the longest cached prefix of its prompt: an idle
    /// slot holding it is taken and truncated; a prefix held by a running sequence is copied
    /// into a free slot. Returns false, with the request back at the head of the queue, when
    /// no slot is free.
    pub(super) fn admit(&mut self, request: Queued) -> bool {
        let (found, restorable) = self.reusable(&request);
        if let Some((position, len)) = restorable {
            // Marked used first, so making room for a slot cannot evict it.
            let used = self.tick();
            self.saved[position].used = used;
            let entry = self.saved[position].entry;
            let Some(index) = self.take_free_slot() else {
                self.queue.push_front(request);
                return false;
            };
            let cached = self.restore(entry, index, len);
            self.activate(index, request, cached);
            return true;
        }
        let (index, cached) = match found {
            Some((index, len)) if !self.slots[index].is_active() => {
                self.truncate_slot(index, len);
                (index, len)
            }
            Some((source, len)) => {
                let Some(index) = self.take_free_slot() else {
                    self.queue.push_front(request);
                    return false;
                };
                self.copy_prefix(source, index, len);
                (index, len)
            }
            None => {
                let Some(index) = self.take_free_slot() else {
                    self.queue.push_front(request);
                    return false;
                };
                (index, 0)
            }
        };
        self.activate(index, request, cached);
        true
    }

    /// What admission would reuse for `request` now: the longest prefix of its prompt that a
    /// slot holds (slot index, length; at least `min_prefix` long, or any length in the slot
    /// that admission would evict anyway), and a host-cache entry that beats it (position in
    /// `saved`, length). Nothing without prefix reuse or with prompt logprobs.
    pub(super) fn reusable(&self, request: &Queued) -> (Found, Found) {
        if !self.config.prefix_reuse || request.options.prompt_logprobs {
            return (None, None);
        }
        let found = self
            .find_prefix(&request.prompt)
            .or_else(|| self.victim_prefix(&request.prompt));
        let held = found.map_or(0, |(_, len)| len);
        (found, self.find_saved(&request.prompt, held))
    }

    /// The slot a request without a prefix worth reusing would take from an idle sequence
    /// (none while a slot is empty), with however much of `prompt` it holds, at least one
    /// token. The slot is given up anyway, so cutting it back to that start costs nothing,
    /// however short: no `min_prefix` here. This is what a one-slot server meets with short
    /// prompts that share their first tokens (llama-server's slot keeps any common prefix too).
    fn victim_prefix(&self, prompt: &[TokenId]) -> Option<(usize, usize)> {
        let index = self.victim()?;
        let held = self.slots[index].tokens.as_slice();
        if !self.can_reuse(held, prompt) {
            return None;
        }
        let found = longest_prefix(prompt, [(index, held)], 1)?;
        Some((found.key, found.len))
    }

    /// The idle slot [`Self::take_free_slot`] would evict: the least recently released one,
    /// when no slot is empty.
    fn victim(&self) -> Option<usize> {
        if self
            .slots
            .iter()
            .any(|slot| matches!(slot.state, SlotState::Empty))
        {
            return None;
        }
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot.state {
                SlotState::Idle { released } => Some((released, index)),
                _ => None,
            })
            .min()
            .map(|(_, index)| index)
    }

    /// Starts `request` in slot `index`, whose first `cached` positions hold its prompt.
    pub(super) fn activate(&mut self, index: usize, request: Queued, cached: usize) {
        let admitted = self.tick();
        self.slots[index].state = SlotState::Active(Active {
            request_id: request.id,
            prompt: request.prompt,
            options: request.options,
            cached_tokens: to_u32(cached),
            generated: 0,
            busy: Duration::ZERO,
            next_token: None,
            admitted,
            end: None,
        });
    }

    /// The saved sequence (its position in `saved`) and length of the longest prefix of
    /// `prompt` it holds, if that beats the `held` tokens a slot already offers by at least
    /// `min_prefix` (a restore copies the whole entry, so a small gain is not worth it).
    pub(super) fn find_saved(&self, prompt: &[TokenId], held: usize) -> Option<(usize, usize)> {
        let candidates = self
            .saved
            .iter()
            .enumerate()
            .map(|(position, saved)| (position, saved.tokens.as_slice()))
            .filter(|(_, held)| self.can_reuse(held, prompt));
        let found = longest_prefix(prompt, candidates, self.config.min_prefix as usize)?;
        (found.len >= held + self.config.min_prefix as usize).then_some((found.key, found.len))
    }

    /// Brings saved `entry` back into the empty slot `index`, keeping `len` positions; returns
    /// the positions the slot now holds.
    pub(super) fn restore(&mut self, entry: u64, index: usize, len: usize) -> usize {
        let Some(saved) = self.saved.iter().find(|saved| saved.entry == entry) else {
            return 0;
        };
        let tokens = saved.tokens.clone();
        let seq = self.slots[index].seq_id;
        self.pending.kv_ops.push(KvOp::Restore { entry, seq });
        let first_cell = self.next_cell;
        self.next_cell += tokens.len() as u64;
        let slot = &mut self.slots[index];
        slot.cells = (first_cell..self.next_cell).collect();
        slot.tokens = tokens;
        self.truncate_slot(index, len);
        len
    }

    /// Keeps a copy of idle slot `index`'s cells in the host cache before they are dropped,
    /// unless the cache is off, the sequence is too short to be worth it, or a saved entry
    /// already holds all of it. Entries it extends are forgotten; the least recently used ones
    /// make room.
    pub(super) fn save_before_dropping(&mut self, index: usize) {
        let capacity = self.config.host_cache_tokens as usize;
        let tokens = &self.slots[index].tokens;
        if !self.config.prefix_reuse
            || capacity == 0
            || tokens.len() < self.config.min_prefix as usize
            || tokens.len() > capacity
        {
            return;
        }
        let used = self.clock + 1;
        if let Some(covering) = self
            .saved
            .iter_mut()
            .find(|saved| saved.tokens.starts_with(tokens))
        {
            covering.used = used;
            self.clock = used;
            return;
        }
        let tokens = tokens.clone();
        let mut kept = Vec::with_capacity(self.saved.len());
        for saved in std::mem::take(&mut self.saved) {
            if tokens.starts_with(&saved.tokens) {
                self.forget(&saved);
            } else {
                kept.push(saved);
            }
        }
        self.saved = kept;
        while self.saved_tokens + tokens.len() > capacity {
            let Some(oldest) = (0..self.saved.len()).min_by_key(|&i| self.saved[i].used) else {
                break;
            };
            let evicted = self.saved.remove(oldest);
            self.forget(&evicted);
        }
        let entry = self.next_entry;
        self.next_entry += 1;
        self.pending.kv_ops.push(KvOp::Save {
            seq: self.slots[index].seq_id,
            entry,
        });
        self.saved_tokens += tokens.len();
        self.clock = used;
        self.saved.push(Saved {
            entry,
            tokens,
            used,
        });
    }

    pub(super) fn forget(&mut self, saved: &Saved) {
        self.saved_tokens -= saved.tokens.len();
        self.pending
            .kv_ops
            .push(KvOp::Forget { entry: saved.entry });
    }

    /// The slot (idle ones first, so a tie takes no copy) and length of the longest reusable
    /// prefix of `prompt`.
    pub(super) fn find_prefix(&self, prompt: &[TokenId]) -> Option<(usize, usize)> {
        let idle = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_active());
        let running = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_active());
        let candidates = idle
            .chain(running)
            .map(|(index, slot)| (index, slot.tokens.as_slice()))
            .filter(|(_, held)| self.can_reuse(held, prompt));
        let found = longest_prefix(prompt, candidates, self.config.min_prefix as usize)?;
        Some((found.key, found.len))
    }

    /// Whether a prefix of `held` may serve `prompt`. With a sliding window, a sequence longer
    /// than the window lost its oldest positions in the window's layers, so only a prompt
    /// that continues all of it may reuse it (the last token is recomputed, which needs nothing
    /// older than what is kept); a cut further back would attend to positions that are gone.
    fn can_reuse(&self, held: &[TokenId], prompt: &[TokenId]) -> bool {
        match self.config.swa_window {
            Some(window) if held.len() > window as usize => {
                prompt.len() >= held.len() && prompt[..held.len() - 1] == held[..held.len() - 1]
            }
            _ => true,
        }
    }

    /// An empty slot, else the least recently released idle one (evicted).
    pub(super) fn take_free_slot(&mut self) -> Option<usize> {
        let empty = self
            .slots
            .iter()
            .position(|slot| matches!(slot.state, SlotState::Empty));
        let index = empty.or_else(|| self.victim())?;
        if matches!(self.slots[index].state, SlotState::Idle { .. }) {
            self.save_before_dropping(index);
        }
        self.clear_slot(index);
        Some(index)
    }

    pub(super) fn truncate_slot(&mut self, index: usize, len: usize) {
        let dropped = self.slots[index].tokens.len().saturating_sub(len);
        if dropped >= self.config.min_prefix as usize
            && matches!(self.slots[index].state, SlotState::Idle { .. })
        {
            self.save_before_dropping(index);
        }
        let slot = &mut self.slots[index];
        if slot.tokens.len() > len {
            self.pending.kv_ops.push(KvOp::Truncate {
                seq: slot.seq_id,
                from: to_u32(len),
            });
            slot.tokens.truncate(len);
            slot.cells.truncate(len);
        }
    }

    /// Gives the empty slot `index` the first `len` positions of `source`: the same cells in a
    /// shared KV cache, a copy in cells of its own otherwise.
    pub(super) fn copy_prefix(&mut self, source: usize, index: usize, len: usize) {
        let tokens = self.slots[source].tokens[..len].to_vec();
        let cells = if self.config.shared_kv {
            self.slots[source].cells[..len].to_vec()
        } else {
            let first_cell = self.next_cell;
            self.next_cell += len as u64;
            (first_cell..self.next_cell).collect()
        };
        self.pending.kv_ops.push(KvOp::Copy {
            src_seq: self.slots[source].seq_id,
            dst_seq: self.slots[index].seq_id,
            len: to_u32(len),
        });
        let slot = &mut self.slots[index];
        slot.tokens = tokens;
        slot.cells = cells;
    }
}
