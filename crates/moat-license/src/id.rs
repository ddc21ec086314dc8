//! `LicenseId`: the id of a license that exists in the fact base. Parsing is the only way to
//! make one, so code that holds a `LicenseId` never re-checks it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::LicenseError;
use crate::knowledge::knowledge;

/// A fact-base license id such as `llama3.1` or `apache-2.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LicenseId(&'static str);

impl LicenseId {
    /// Parses a license id, or any other name the fact base knows for a license (an SPDX id,
    /// a Hugging Face id, a license name; case-insensitive). An unknown name is an error that
    /// suggests close ids.
    pub fn parse(text: &str) -> Result<LicenseId, LicenseError> {
        let knowledge = knowledge();
        match knowledge.resolve_name(text) {
            Some(index) => Ok(LicenseId(knowledge.entry(index).id())),
            None => Err(LicenseError::UnknownLicense {
                given: text.to_string(),
                suggestions: knowledge.suggest(text),
            }),
        }
    }

    pub fn as_str(&self) -> &'static str {
        self.0
    }

    /// Only the knowledge module makes ids from its own entries, which exist by construction.
    pub(crate) fn from_known(id: &'static str) -> LicenseId {
        LicenseId(id)
    }
}

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for LicenseId {
    type Err = LicenseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        LicenseId::parse(text)
    }
}

impl TryFrom<String> for LicenseId {
    type Error = LicenseError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        LicenseId::parse(&text)
    }
}

impl From<LicenseId> for String {
    fn from(id: LicenseId) -> String {
        id.0.to_string()
    }
}
