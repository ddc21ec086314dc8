//! `Digest`: a sha256 content address, written `sha256-<64 hex>` in file names and
//! `sha256:<64 hex>` in user-facing text. It does not compute hashes; callers do.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A sha256 digest of a blob's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("digest '{0}' is not 'sha256:' or 'sha256-' followed by 64 hex digits")]
    Malformed(String),
}

impl Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits.
    pub fn hex(&self) -> String {
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
        }
        out
    }

    /// The name of the blob file: `sha256-<hex>`.
    pub fn file_name(&self) -> String {
        format!("sha256-{}", self.hex())
    }

    /// Parses 64 hex digits with no prefix.
    pub fn from_hex(hex: &str) -> Result<Self, DigestError> {
        let malformed = || DigestError::Malformed(hex.to_string());
        if hex.len() != 64 {
            return Err(malformed());
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let high = (pair[0] as char).to_digit(16).ok_or_else(malformed)?;
            let low = (pair[1] as char).to_digit(16).ok_or_else(malformed)?;
            bytes[i] = (high * 16 + low) as u8;
        }
        Ok(Self(bytes))
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Accepts `sha256:<hex>`, `sha256-<hex>` or bare hex.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text
            .strip_prefix("sha256:")
            .or_else(|| text.strip_prefix("sha256-"))
            .unwrap_or(text);
        Self::from_hex(&hex.to_ascii_lowercase()).map_err(|_| DigestError::Malformed(text.into()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

    #[test]
    fn round_trips_every_spelling() {
        let digest: Digest = HEX.parse().expect("bare hex");
        assert_eq!(digest.hex(), HEX);
        assert_eq!(digest.to_string(), format!("sha256:{HEX}"));
        assert_eq!(digest.file_name(), format!("sha256-{HEX}"));
        assert_eq!(format!("sha256-{HEX}").parse::<Digest>(), Ok(digest));
        assert_eq!(HEX.to_ascii_uppercase().parse::<Digest>(), Ok(digest));
    }

    #[test]
    fn rejects_short_long_and_non_hex() {
        for bad in [
            "",
            "sha256:",
            &HEX[1..],
            &format!("{HEX}0"),
            &HEX.replace('b', "g"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }
}
