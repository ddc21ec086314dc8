//! The model store: content-addressed blobs, manifests that give them names, fetchers that
//! pull models from local files, a Hugging Face hub or Python packages, and inspection of
//! what a stored model is. It knows nothing of engines, HTTP or the command line.

mod atomic;
mod error;
pub mod fetch;
pub mod inspect;
mod manifest;
mod progress;
pub mod recipe;
mod sniff;
mod store;
mod validate;

pub use atomic::{write_atomic, FAULT_ENV};
pub use error::{ErrorKind, Result, StoreError};
pub use fetch::{pull, PullOptions, Source};
pub use manifest::{
    Adapter, FileRole, Manifest, ManifestFile, ModelFormat, SourceRecord, MANIFEST_SCHEMA,
};
pub use progress::{NoProgress, Progress};
pub use store::{GcReport, ListEntry, Store, StoreLock};
