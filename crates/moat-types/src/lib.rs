//! The domain vocabulary shared by every moat crate: model references, content digests and
//! default sampling parameters. Nothing here does IO or knows a wire format.

mod digest;
mod model_ref;
mod sampling;

pub use digest::{Digest, DigestError};
pub use model_ref::{ModelRef, ModelRefError, DEFAULT_TAG};
pub use sampling::SamplingDefaults;
