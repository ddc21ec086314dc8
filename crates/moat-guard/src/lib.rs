//! moat-guard: the guardrails between users and models.
//!
//! Detectors find PII (email, phone, card, IBAN, US SSN, IP addresses), secrets (documented
//! token formats, private keys, JWTs, high-entropy strings), prompt-injection and jailbreak
//! phrasings, and the user's deny-lists and topics. They match on a normalised view of the
//! text (zero-width characters removed, NFKC, split digits joined, base64 decoded) and report
//! spans in the original text. A policy per rail maps classes to actions (allow, flag, redact,
//! block); `RuleGuard` applies it to requests (`check_input`) and to answers, whole or
//! streamed (`OutputScanner`, which holds back only what a detector still needs). The
//! classifier rail (`classifier`) builds a Llama Guard-style prompt and parses its verdict.
//!
//! Knows nothing of HTTP, keys or the audit log: the server turns `GuardError::Blocked` into
//! `content_policy_violation` and records `Verdict::hits`.
//!
//! Wiring, as the server is expected to do it: `check_input` each request text (block → error,
//! else forward `Verdict::text`); wrap each answer stream in `Guard::output_scanner` and send
//! what `push` returns; to restore the request's placeholders in the answer, feed the
//! scanner's output through `Verdict::redactions.restorer()` (after the scan, so the output
//! rail judges placeholders, not the user's own data). `RuleGuard::findings` serves
//! moderation endpoints. The labeled evaluation and its limits are in `tests/eval.rs`.
//!
//! Known limits: digits split only by spaces, dashes, dots or parentheses are read as one
//! number, so two numbers written "4111 1111 1111 1111 5500 0000 0000 0004" are one run and
//! neither is a card; a bare 40-character token is an AWS secret only with "aws" or "secret"
//! just before it (else it is `high_entropy`); the injection and jailbreak lists catch the
//! phrasings they list, not paraphrases (the classifier rail is for those).
//!
//! ```
//! use moat_guard::{Action, Guard, GuardConfig, RuleGuard};
//!
//! let config: GuardConfig = toml::from_str("[input.actions]\npii = \"redact\"\n").unwrap();
//! let guard = RuleGuard::new(&config).unwrap();
//! let verdict = guard.check_input("mail jane@example.org").unwrap();
//! assert_eq!(verdict.decision, Action::Redact);
//! assert_eq!(verdict.text, "mail [EMAIL_1]");
//! assert_eq!(verdict.redactions.restore("Hi [EMAIL_1]"), "Hi jane@example.org");
//! ```

mod checksum;
mod class;
pub mod classifier;
mod detect;
mod error;
mod guard;
mod normalize;
mod policy;
mod redact;
mod stream;

pub use class::{Class, Group};
pub use detect::Finding;
pub use error::{GuardError, GuardErrorKind, Rail};
pub use guard::{AllowAll, Guard, Hit, OutputScan, RuleGuard, Verdict};
pub use policy::{Action, EntropyConfig, GuardConfig, LimitsConfig, RailPolicy, RuleConfig};
pub use redact::{Redaction, RedactionMap, Restorer};
pub use stream::OutputScanner;
