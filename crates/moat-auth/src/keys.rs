//! API key secrets, their hashes and public prefixes, the strict `Authorization` header parser,
//! and the key records and scopes that the store keeps.
//!
//! A secret is `moat-sk-` followed by 32 bytes from the operating system's CSPRNG, written as
//! 43 base64url characters without padding. Only its SHA-256 is stored. A plain, unsalted hash
//! is enough here because the input has 256 bits of entropy: salts and slow hashes defend
//! guessable passwords against dictionary attacks, and no dictionary covers 2^256 secrets, so
//! a stolen table of hashes does not give the keys back. A fast hash also keeps
//! authentication cheap on every request.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::limits::Limits;
use crate::AuthError;

/// Every secret starts with this, so that leaked keys are easy to recognise and scan for.
pub const SECRET_PREFIX: &str = "moat-sk-";
/// The number of random bytes in a secret.
const SECRET_BYTES: usize = 32;
/// 32 bytes in base64url without padding.
const SECRET_BODY_CHARS: usize = 43;
/// How many characters of the body form the public prefix used for display and lookup. 48
/// bits: collisions between a team's keys are practically impossible, and `create` retries on
/// one anyway; revealing them leaves 208 unknown bits.
const PUBLIC_PREFIX_CHARS: usize = 8;

/// A freshly generated secret. Shown to the user once by `Auth::create_key`, never stored.
pub struct Secret(String);

impl Secret {
    /// Draws a new secret from the operating system's CSPRNG.
    pub(crate) fn generate() -> Result<Secret, AuthError> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| AuthError::Storage(format!("the system random source failed: {e}")))?;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        Ok(Secret(format!("{SECRET_PREFIX}{body}")))
    }

    /// A secret given by the operator: one that `moat keys create` made on another node, so
    /// that every node of a fleet accepts the same key. Surrounding whitespace (a trailing
    /// newline) is ignored; the rest must have a generated secret's form. Its strength is the
    /// generator's: moat cannot tell a random secret from a guessable one of the same form.
    pub fn from_text(text: &str) -> Result<Secret, AuthError> {
        let text = text.trim();
        check_form(text).map_err(|reason| AuthError::invalid("secret", reason))?;
        Ok(Secret(text.to_owned()))
    }

    /// The secret text, `moat-sk-...`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn public_prefix(&self) -> &str {
        &self.0[SECRET_PREFIX.len()..SECRET_PREFIX.len() + PUBLIC_PREFIX_CHARS]
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Debug output ends up in logs; the secret must not.
        write!(f, "Secret({SECRET_PREFIX}{}…)", self.public_prefix())
    }
}

/// The SHA-256 of a secret's full text.
pub(crate) fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A well-formed bearer token from a header: the full secret and its public prefix.
pub(crate) struct Presented<'a> {
    pub secret: &'a str,
    pub prefix: &'a str,
}

/// Parses an `Authorization` header value strictly: the scheme `Bearer` (case-insensitive, as
/// RFC 9110 says of schemes), one space, and a token of exactly the secret's shape. Anything
/// else (other schemes, extra spaces, a wrong length or alphabet) is `MalformedHeader`, so no
/// lookup happens for input that could never be a key.
pub(crate) fn parse_authorization(header_value: &str) -> Result<Presented<'_>, AuthError> {
    let (scheme, token) = header_value
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader("expected `Bearer <key>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MalformedHeader("the scheme must be Bearer"));
    }
    let body = check_form(token).map_err(AuthError::MalformedHeader)?;
    Ok(Presented {
        secret: token,
        prefix: &body[..PUBLIC_PREFIX_CHARS],
    })
}

/// Checks that `token` has a secret's form (`moat-sk-` and 43 base64url characters) and
/// returns the part after `moat-sk-`, or why not.
fn check_form(token: &str) -> Result<&str, &'static str> {
    let body = token
        .strip_prefix(SECRET_PREFIX)
        .ok_or("the key must start with moat-sk-")?;
    if body.len() != SECRET_BODY_CHARS {
        return Err("the key has the wrong length");
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("the key has characters outside base64url");
    }
    Ok(body)
}

/// A key's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub i64);

/// What a key may do: which models (names or aliases) and whether it is an admin key.
///
/// A model pattern is `*` (any model), a name with a tag (`qwen:7b`, only that tag), or a name
/// without one (`qwen`, any tag of that name). Admin keys may use the admin endpoints; being
/// admin does not widen the model list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes {
    /// Model patterns, as above. Empty means no model at all (an admin-only key).
    pub models: Vec<String>,
    /// Whether the key may use admin endpoints (key management, usage of all keys, metrics).
    pub admin: bool,
}

impl Scopes {
    /// Every model, not admin.
    pub fn all_models() -> Self {
        Scopes {
            models: vec!["*".to_owned()],
            admin: false,
        }
    }

    /// Whether `model` (as the request names it) is within these scopes.
    pub fn allows(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|pattern| pattern_matches(pattern, model))
    }

    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        if self.models.len() > 1_000 {
            return Err(AuthError::invalid("model scope", "more than 1000 patterns"));
        }
        for pattern in &self.models {
            let ok = !pattern.is_empty()
                && pattern.len() <= 256
                && !pattern.chars().any(|c| c.is_whitespace() || c.is_control())
                && (pattern == "*" || !pattern.contains('*'));
            if !ok {
                return Err(AuthError::invalid(
                    "model scope",
                    format!("{pattern:?} is not `*` or a model name of at most 256 characters without spaces"),
                ));
            }
        }
        Ok(())
    }
}

fn pattern_matches(pattern: &str, model: &str) -> bool {
    if pattern == "*" || pattern == model {
        return true;
    }
    // A pattern without a tag admits every tag of that name.
    !pattern.contains(':')
        && model
            .split_once(':')
            .is_some_and(|(name, _)| name == pattern)
}

/// What `Auth::create_key` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewKey {
    /// A human name (1 to 100 printable characters), for listings and the audit log.
    pub name: String,
    /// What the key may do.
    pub scopes: Scopes,
    /// Its limits; the default is unlimited.
    #[serde(default)]
    pub limits: Limits,
    /// The guard policy (a `[guard.policies.NAME]` of moat.toml) for its requests, over the
    /// alias's or the default one. moat-auth stores the name; the server resolves it.
    #[serde(default)]
    pub guard: Option<String>,
    /// A private key's requests never reach an external upstream (a closed API), whatever
    /// the alias says.
    #[serde(default)]
    pub private: bool,
}

impl NewKey {
    pub(crate) fn validate(&self) -> Result<(), AuthError> {
        let name_ok = !self.name.trim().is_empty()
            && self.name.chars().count() <= 100
            && !self.name.chars().any(char::is_control);
        if !name_ok {
            return Err(AuthError::invalid(
                "key name",
                "1 to 100 printable characters",
            ));
        }
        if let Some(guard) = &self.guard {
            let guard_ok = !guard.trim().is_empty()
                && guard.chars().count() <= 100
                && !guard.chars().any(char::is_control);
            if !guard_ok {
                return Err(AuthError::invalid(
                    "guard policy name",
                    "1 to 100 printable characters",
                ));
            }
        }
        self.scopes.validate()?;
        self.limits.validate()
    }
}

/// A stored key, without its secret or hash: what listings show and what authentication
/// returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Its database id.
    pub id: KeyId,
    /// Its human name.
    pub name: String,
    /// Its public prefix, `moat-sk-` and the first 8 characters of the secret: safe to show
    /// and to log.
    pub prefix: String,
    /// What it may do.
    pub scopes: Scopes,
    /// Its limits.
    pub limits: Limits,
    /// When it was created, in milliseconds since the epoch.
    pub created_ms: i64,
    /// When it was revoked, if it was.
    pub revoked_ms: Option<i64>,
    /// Its own guard policy, if it has one.
    #[serde(default)]
    pub guard: Option<String>,
    /// Whether its requests must stay off external upstreams.
    #[serde(default)]
    pub private: bool,
}

impl Key {
    /// How the key appears in the audit log and usage reports: its public prefix and name,
    /// never anything secret.
    pub fn display_name(&self) -> String {
        format!("{} {}", self.prefix, self.name)
    }
}

/// The answer of `Auth::create_key`: the stored key and its secret, which is shown this once.
#[derive(Debug)]
pub struct CreatedKey {
    /// The stored record.
    pub key: Key,
    /// The secret to hand to the user. moat keeps only its hash.
    pub secret: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_documented_shape_and_parse_back() {
        let secret = Secret::generate().unwrap();
        let text = secret.expose();
        assert!(text.starts_with(SECRET_PREFIX));
        assert_eq!(text.len(), SECRET_PREFIX.len() + SECRET_BODY_CHARS);
        let header = format!("Bearer {text}");
        let presented = parse_authorization(&header).unwrap();
        assert_eq!(presented.secret, text);
        assert_eq!(presented.prefix, secret.public_prefix());
        assert!(!format!("{secret:?}").contains(&text[16..]));
        assert_ne!(Secret::generate().unwrap().expose(), text);
    }

    #[test]
    fn malformed_headers_are_rejected_before_any_lookup() {
        let good = Secret::generate().unwrap();
        let body = &good.expose()[SECRET_PREFIX.len()..];
        let cases = [
            String::new(),
            "Bearer".to_owned(),
            format!("Basic {}", good.expose()),
            format!("Bearer  {}", good.expose()),
            format!("Bearer {} ", good.expose()),
            format!("Bearer sk-{body}"),
            format!("Bearer moat-sk-{}", &body[1..]),
            format!("Bearer moat-sk-{body}A"),
            format!("Bearer moat-sk-{}+", &body[1..]),
            format!("Bearer moat-sk-{}é", &body[2..]),
        ];
        for case in cases {
            assert!(
                matches!(
                    parse_authorization(&case),
                    Err(AuthError::MalformedHeader(_))
                ),
                "{case:?}"
            );
        }
        assert!(parse_authorization(&format!("bearer {}", good.expose())).is_ok());
    }

    #[test]
    fn scopes_match_names_tags_and_the_wildcard() {
        let scopes = Scopes {
            models: vec!["qwen".into(), "llama:8b".into()],
            admin: false,
        };
        assert!(scopes.allows("qwen"));
        assert!(scopes.allows("qwen:7b"));
        assert!(scopes.allows("llama:8b"));
        assert!(!scopes.allows("llama:70b"));
        assert!(!scopes.allows("llama"));
        assert!(!scopes.allows("qwen2"));
        assert!(!scopes.allows("qwenx:7b"));
        assert!(Scopes::all_models().allows("anything:at-all"));
        assert!(!Scopes {
            models: vec![],
            admin: true
        }
        .allows("qwen"));
        for bad in ["", "a b", "qw*n", "x\n"] {
            let scopes = Scopes {
                models: vec![bad.to_owned()],
                admin: false,
            };
            assert!(scopes.validate().is_err(), "{bad:?}");
        }
    }
}
