//! `ModelRef`: the `name[:tag]` a user types to name a model in the store. It validates the
//! spelling so that a reference can always be used as a relative path; it knows nothing of
//! what the store holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The tag a reference gets when it names none.
pub const DEFAULT_TAG: &str = "latest";

const MAX_NAME_LEN: usize = 128;
const MAX_TAG_LEN: usize = 64;

/// A model's name in the store, such as `smollm2` or `qwen/coder:0.5b`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    name: String,
    tag: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelRefError {
    #[error("model name is empty")]
    Empty,
    #[error("model name '{0}' is longer than {MAX_NAME_LEN} characters")]
    NameTooLong(String),
    #[error("tag '{0}' is longer than {MAX_TAG_LEN} characters")]
    TagTooLong(String),
    #[error(
        "model name '{0}' may only hold a-z, 0-9, '.', '_', '-' and '/' between parts \
         (no leading '.', no '..', no empty parts)"
    )]
    BadName(String),
    #[error("tag '{0}' may only hold a-z, 0-9, '.', '_' and '-' and must not start with '.'")]
    BadTag(String),
}

impl ModelRef {
    pub fn new(name: &str, tag: &str) -> Result<Self, ModelRefError> {
        let name = name.to_ascii_lowercase();
        let tag = tag.to_ascii_lowercase();
        validate_name(&name)?;
        validate_tag(&tag)?;
        Ok(Self { name, tag })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> &str {
        &self.tag
    }
}

fn is_plain_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

fn validate_name(name: &str) -> Result<(), ModelRefError> {
    if name.is_empty() {
        return Err(ModelRefError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ModelRefError::NameTooLong(name.into()));
    }
    let part_ok =
        |part: &str| !part.is_empty() && !part.starts_with('.') && part.chars().all(is_plain_char);
    if name.split('/').all(part_ok) {
        Ok(())
    } else {
        Err(ModelRefError::BadName(name.into()))
    }
}

fn validate_tag(tag: &str) -> Result<(), ModelRefError> {
    if tag.len() > MAX_TAG_LEN {
        return Err(ModelRefError::TagTooLong(tag.into()));
    }
    if tag.is_empty() || tag.starts_with('.') || !tag.chars().all(is_plain_char) {
        return Err(ModelRefError::BadTag(tag.into()));
    }
    Ok(())
}

impl FromStr for ModelRef {
    type Err = ModelRefError;

    /// `name` or `name:tag`; the tag defaults to `latest`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.rsplit_once(':') {
            Some((name, tag)) => Self::new(name, tag),
            None => Self::new(text, DEFAULT_TAG),
        }
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

impl fmt::Debug for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelRef({self})")
    }
}

impl Serialize for ModelRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ModelRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_tag() {
        let plain: ModelRef = "SmolLM2".parse().expect("plain");
        assert_eq!((plain.name(), plain.tag()), ("smollm2", "latest"));
        let tagged: ModelRef = "qwen/coder:0.5b-q4_k_m".parse().expect("tagged");
        assert_eq!(tagged.to_string(), "qwen/coder:0.5b-q4_k_m");
    }

    #[test]
    fn rejects_names_that_escape_the_store() {
        for bad in [
            "", "../x", "a/../b", ".hidden", "a//b", "/abs", "a b", "a:", "a:.x", "a:b/c",
        ] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            "x".repeat(129).parse::<ModelRef>(),
            Err(ModelRefError::NameTooLong("x".repeat(129)))
        );
    }
}
