//! Bounds on what a GGUF header may declare, so hostile files cannot make the
//! reader allocate or loop without end.
//!
//! Owns `Limits` and its defaults. It does not enforce them; `reader.rs` and
//! `file.rs` do, on top of the always-on rule that nothing may extend past the
//! end of the file when its length is known.

/// Upper bounds checked while reading a header. The defaults admit every
/// public model we know of with room to spare (the largest headers, such as
/// Gemma 3's 262,144-token vocabulary, are a few MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest string, in bytes (keys, values, tensor names, array elements).
    pub max_string_len: u64,
    /// Most elements in one array.
    pub max_array_len: u64,
    /// Deepest nesting of arrays inside arrays (1 = arrays of scalars only).
    pub max_array_depth: u32,
    /// Most metadata entries.
    pub max_kv_count: u64,
    /// Most tensors.
    pub max_tensor_count: u64,
    /// Most bytes of header (everything before the tensor data), which also
    /// bounds memory when the total length of the input is not known.
    pub max_header_bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_string_len: 64 << 20,
            max_array_len: 16 << 20,
            max_array_depth: 8,
            max_kv_count: 65_536,
            max_tensor_count: 1_000_000,
            max_header_bytes: 256 << 20,
        }
    }
}
