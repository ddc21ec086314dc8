//! Unit tests of the whole reader on small files built in memory.
//!
//! `writer.rs` builds the files; `round_trip.rs` checks that what is written is
//! read back, `hostile.rs` that each malformed or hostile input gets its own
//! error, and `truncation.rs` that every prefix of a file is rejected. Real
//! models are tested in `tests/real_models.rs`.

mod hostile;
mod round_trip;
mod truncation;
mod writer;
