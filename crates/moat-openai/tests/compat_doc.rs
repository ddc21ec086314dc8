//! docs/openai-compat.md lists every chat and completions request field with what moat does
//! with it; this test keeps that table and `moat_openai::fields` in step.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use moat_openai::fields::{FieldRule, CHAT_FIELDS, COMPLETION_FIELDS};

/// The `| \`field\` | support | note |` rows under `heading`, up to the next heading.
fn rows(doc: &str, heading: &str) -> Vec<(String, String, String)> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in the doc"));
    let section = &doc[start + heading.len()..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim().trim_matches('|').split(" | ").collect();
            let name = cells.first()?.trim().strip_prefix('`')?.strip_suffix('`')?;
            Some((
                name.to_string(),
                cells.get(1)?.trim().to_string(),
                cells.get(2)?.trim().to_string(),
            ))
        })
        .collect()
}

fn expected(rules: &[FieldRule]) -> Vec<(String, String, String)> {
    rules
        .iter()
        .map(|rule| {
            (
                rule.name.to_string(),
                rule.support.label().to_string(),
                rule.note.to_string(),
            )
        })
        .collect()
}

#[test]
fn the_compat_doc_lists_every_field_as_the_code_treats_it() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openai-compat.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        rows(&doc, "## Chat: "),
        expected(CHAT_FIELDS),
        "chat table of {}",
        path.display()
    );
    assert_eq!(
        rows(&doc, "## Completions: "),
        expected(COMPLETION_FIELDS),
        "completions table of {}",
        path.display()
    );
}
