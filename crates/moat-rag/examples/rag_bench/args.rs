//! A small `--name value` argument reader: the benchmarks take a handful of paths and numbers,
//! and every bad or missing one is a clear error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use crate::common::BenchError;

/// The options of one subcommand: `--name value` pairs, where a name may repeat.
pub struct Args {
    values: HashMap<String, Vec<String>>,
}

impl Args {
    /// Reads `argv`, accepting only the option names in `known`.
    pub fn parse(argv: &[String], known: &[&str]) -> Result<Self, BenchError> {
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        let mut words = argv.iter();
        while let Some(word) = words.next() {
            let name = word
                .strip_prefix("--")
                .filter(|name| known.contains(name))
                .ok_or_else(|| {
                    format!(
                        "unexpected argument {word:?}; options: --{}",
                        known.join(", --")
                    )
                })?;
            let value = words
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            values
                .entry(name.to_owned())
                .or_default()
                .push(value.clone());
        }
        Ok(Args { values })
    }

    /// The last value given for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .and_then(|values| values.last())
            .map(String::as_str)
    }

    /// Every value given for `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub fn path(&self, name: &str) -> Result<PathBuf, BenchError> {
        self.get(name)
            .map(PathBuf::from)
            .ok_or_else(|| format!("--{name} is required").into())
    }

    /// A number, or `default` when the option is absent.
    pub fn number<T: FromStr>(&self, name: &str, default: T) -> Result<T, BenchError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name} {text:?} is not a valid number").into()),
        }
    }
}
