//! The fact base and the rules joined into one read-only index, built on first use: the
//! licenses with their resolved rules, and the look-ups detection needs (names, links,
//! license-text titles). Everything here is compiled-in data; the only runtime input is the
//! string being looked up.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::facts::{Commercial, FactBase, LicenseFacts, LICENSES_JSON};
use crate::id::LicenseId;
use crate::rules::{marks_unverified, LicenseRules, Rule, RulesFile, RULES_TOML};
use crate::verdict::{Certainty, Dimension};

pub(crate) struct Knowledge {
    entries: Vec<Entry>,
    names: HashMap<String, NameTarget>,
    links: HashMap<String, usize>,
    /// Title patterns, normalized; `None` marks a license that is not in the fact base.
    titles: Vec<(String, Option<usize>)>,
    markers: Vec<(String, usize)>,
}

pub(crate) struct Entry {
    pub facts: LicenseFacts,
    pub certainty: Certainty,
    /// Sorted by dimension.
    rules: Vec<Rule>,
}

#[derive(Clone, Copy)]
struct NameTarget {
    index: usize,
    /// The fact base marks this name's mapping unverified (e.g. an HF `license_name`).
    unverified: bool,
}

/// What a license text's title search found.
pub(crate) enum TextMatch {
    Known(usize),
    OutOfScope,
    Nothing,
}

/// The index, loaded on first use.
///
/// The data is compiled in and `Knowledge::load` checks it (that is the consistency test in
/// `cargo test`), so a failure here is a build defect, not a runtime condition: it panics
/// with every problem listed rather than making every caller handle an impossible error.
pub(crate) fn knowledge() -> &'static Knowledge {
    static KNOWLEDGE: OnceLock<Knowledge> = OnceLock::new();
    KNOWLEDGE.get_or_init(|| {
        Knowledge::load(LICENSES_JSON, RULES_TOML).unwrap_or_else(|problems| {
            panic!(
                "compiled-in license data is inconsistent:\n{}",
                problems.join("\n")
            )
        })
    })
}

impl Entry {
    pub fn id(&self) -> &str {
        &self.facts.id
    }

    pub fn rule(&self, dimension: Dimension) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.dimension == dimension)
    }

    pub fn name(&self) -> &str {
        self.facts.names.first().map_or(self.id(), String::as_str)
    }

    pub fn commercial(&self) -> Commercial {
        self.facts.commercial
    }
}

impl Knowledge {
    /// Parses both files and checks them against each other; `Err` lists every problem.
    pub fn load(licenses_json: &str, rules_toml: &str) -> Result<Knowledge, Vec<String>> {
        let (schema_version, facts) = FactBase::parse(licenses_json).map_err(|e| vec![e])?;
        let rules: RulesFile =
            toml::from_str(rules_toml).map_err(|error| vec![format!("rules.toml: {error}")])?;
        let mut problems = Vec::new();
        if schema_version != 1 || rules.schema_version != 1 {
            problems.push(format!(
                "schema versions: licenses.json {schema_version}, rules.toml {}; this code reads 1",
                rules.schema_version
            ));
        }
        let entries = join(facts, &rules.license, &mut problems);
        let mut knowledge = Knowledge {
            entries,
            names: HashMap::new(),
            links: HashMap::new(),
            titles: Vec::new(),
            markers: Vec::new(),
        };
        knowledge.index(&rules, &mut problems);
        if problems.is_empty() {
            Ok(knowledge)
        } else {
            Err(problems)
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, index: usize) -> &Entry {
        &self.entries[index]
    }

    pub fn entry_by_id(&self, id: LicenseId) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.id() == id.as_str())
    }

    /// A `LicenseId` for an entry of this index (the static one: ids borrow from it).
    pub fn id_of(&'static self, index: usize) -> LicenseId {
        LicenseId::from_known(self.entries[index].id())
    }

    /// Looks a short string up: an id, a name, an SPDX or Hugging Face id, an alias from the
    /// rules file, or a license URL. Case-insensitive.
    pub fn resolve_name(&self, text: &str) -> Option<usize> {
        self.resolve_name_marked(text).map(|(index, _)| index)
    }

    /// As `resolve_name`, also saying whether the fact base marks the mapping unverified.
    pub fn resolve_name_marked(&self, text: &str) -> Option<(usize, bool)> {
        if let Some(target) = self.names.get(&normalize(text)) {
            return Some((target.index, target.unverified));
        }
        self.links
            .get(&normalize_link(text))
            .map(|index| (*index, false))
    }

    /// Finds which license a license text is: a marker anywhere wins; otherwise the title
    /// found earliest in the text (the longest one on a tie).
    pub fn match_text(&self, text: &str) -> TextMatch {
        let text = normalize(text);
        if let Some((_, index)) = self
            .markers
            .iter()
            .find(|(marker, _)| find_word(&text, marker).is_some())
        {
            return TextMatch::Known(*index);
        }
        let best = self
            .titles
            .iter()
            .filter_map(|(title, target)| {
                find_word(&text, title).map(|at| (at, title.len(), *target))
            })
            .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        match best {
            Some((_, _, Some(index))) => TextMatch::Known(index),
            Some((_, _, None)) => TextMatch::OutOfScope,
            None => TextMatch::Nothing,
        }
    }

    /// Up to three license ids whose names are close to `text`, closest first.
    pub fn suggest(&self, text: &str) -> Vec<String> {
        let wanted = normalize(text);
        let mut best: HashMap<usize, f64> = HashMap::new();
        for (name, target) in &self.names {
            let mut score = strsim::jaro_winkler(&wanted, name);
            if !wanted.is_empty() && (name.contains(&wanted) || wanted.contains(name.as_str())) {
                score = score.max(0.9);
            }
            let slot = best.entry(target.index).or_insert(0.0);
            *slot = slot.max(score);
        }
        let mut ranked: Vec<(usize, f64)> = best.into_iter().filter(|(_, s)| *s >= 0.8).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
            .into_iter()
            .take(3)
            .map(|(index, _)| self.entries[index].id().to_string())
            .collect()
    }

    fn index(&mut self, rules: &RulesFile, problems: &mut Vec<String>) {
        for (index, entry) in self.entries.iter().enumerate() {
            let Some(license_rules) = rules.license.iter().find(|r| r.id == entry.id()) else {
                continue;
            };
            for (name, unverified) in names_of(&entry.facts, license_rules) {
                add_name(
                    &mut self.names,
                    name,
                    NameTarget { index, unverified },
                    problems,
                    &self.entries,
                );
            }
            self.links.insert(normalize_link(&entry.facts.url), index);
            for title in &license_rules.titles {
                self.titles.push((normalize(title), Some(index)));
            }
            for marker in &license_rules.markers {
                self.markers.push((normalize(marker), index));
            }
        }
        for title in &rules.out_of_scope_titles {
            self.titles.push((normalize(title), None));
        }
    }
}

/// Pairs each fact-base license with its rules, in fact-base order.
fn join(
    facts: Vec<LicenseFacts>,
    rules: &[LicenseRules],
    problems: &mut Vec<String>,
) -> Vec<Entry> {
    for license_rules in rules {
        if !facts.iter().any(|f| f.id == license_rules.id) {
            problems.push(format!(
                "rules.toml has license {:?}, which the fact base lacks",
                license_rules.id
            ));
        }
    }
    let mut entries = Vec::new();
    for license in facts {
        let matching: Vec<&LicenseRules> = rules.iter().filter(|r| r.id == license.id).collect();
        let [license_rules] = matching.as_slice() else {
            problems.push(format!(
                "license {:?}: {} rule sections, want 1",
                license.id,
                matching.len()
            ));
            continue;
        };
        let resolved = license_rules.resolve(&license, problems);
        entries.push(Entry {
            certainty: license_rules.certainty,
            rules: resolved,
            facts: license,
        });
    }
    entries
}

/// Every short string that names this license, with whether the mapping is unverified.
fn names_of(facts: &LicenseFacts, rules: &LicenseRules) -> Vec<(String, bool)> {
    let mut names = vec![(facts.id.clone(), false)];
    for name in &facts.names {
        if rules.ignore_names.contains(name) {
            continue;
        }
        names.push((name.clone(), false));
        if let Some((head, tail)) = name.split_once(" (") {
            names.push((head.to_string(), false));
            let inner = tail.trim_end_matches(')');
            // A parenthesised id such as "MRL-0.1" names the license; a date does not.
            if !inner.contains(' ') && inner.starts_with(|c: char| c.is_ascii_alphabetic()) {
                names.push((inner.to_string(), false));
            }
        }
    }
    for field in [&facts.spdx, &facts.hf_license, &facts.hf_license_name]
        .into_iter()
        .flatten()
    {
        let head = field.split(" (").next().unwrap_or_default().trim();
        if !head.is_empty() && head != "other" && head != "unverified" {
            names.push((head.to_string(), marks_unverified(field)));
        }
    }
    names.extend(rules.aliases.iter().map(|alias| (alias.clone(), false)));
    names
}

fn add_name(
    names: &mut HashMap<String, NameTarget>,
    name: String,
    target: NameTarget,
    problems: &mut Vec<String>,
    entries: &[Entry],
) {
    let key = normalize(&name);
    match names.get(&key) {
        Some(existing) if existing.index != target.index => problems.push(format!(
            "name {name:?} would mean both {} and {}",
            entries[existing.index].id(),
            entries[target.index].id()
        )),
        // The same string may be both an id and an HF name the fact base marks unverified;
        // the mark sticks, so detection can say so.
        Some(existing) if target.unverified && !existing.unverified => {
            names.insert(key, target);
        }
        Some(_) => {}
        None => {
            names.insert(key, target);
        }
    }
}

/// Lowercase, straight quotes and dashes, single spaces.
pub(crate) fn normalize(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            '\u{2018}' | '\u{2019}' => '\'',
            '\u{201C}' | '\u{201D}' => '"',
            '\u{2010}'..='\u{2015}' => '-',
            c => c,
        })
        .collect();
    let lower = mapped
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .to_lowercase();
    lower.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A URL without scheme, `www.`, trailing slash or fragment; "licences" spelled "licenses".
fn normalize_link(link: &str) -> String {
    let lower = link.trim().to_lowercase();
    let without_scheme = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let without_www = without_scheme
        .strip_prefix("www.")
        .unwrap_or(without_scheme);
    let without_fragment = without_www.split('#').next().unwrap_or_default();
    without_fragment
        .trim_end_matches('/')
        .replace("/licences/", "/licenses/")
}

/// The first occurrence of `needle` in `haystack` that starts and ends at word boundaries.
fn find_word(haystack: &str, needle: &str) -> Option<usize> {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    haystack
        .match_indices(needle)
        .map(|(at, _)| at)
        .find(|&at| {
            let before = haystack[..at].chars().next_back();
            let after = haystack[at + needle.len()..].chars().next();
            let glued_before = needle.starts_with(char::is_alphanumeric) && is_word(before);
            let glued_after = needle.ends_with(char::is_alphanumeric) && is_word(after);
            !glued_before && !glued_after
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_in_data_is_consistent() {
        if let Err(problems) = Knowledge::load(LICENSES_JSON, RULES_TOML) {
            panic!("{} problems:\n{}", problems.len(), problems.join("\n"));
        }
    }

    /// Loads the real fact base with an edited rules file and returns the problems found.
    fn problems_with(edit: impl Fn(&str) -> String) -> String {
        let rules = edit(RULES_TOML);
        assert_ne!(rules, RULES_TOML, "the edit must change the rules file");
        match Knowledge::load(LICENSES_JSON, &rules) {
            Ok(_) => panic!("the edited rules were accepted"),
            Err(problems) => problems.join("\n"),
        }
    }

    #[test]
    fn every_fact_base_license_has_every_dimension() {
        let knowledge = Knowledge::load(LICENSES_JSON, RULES_TOML).expect("consistent data");
        assert_eq!(knowledge.entries().len(), 23);
        for entry in knowledge.entries() {
            for dimension in [
                Dimension::Grant,
                Dimension::CommercialUse,
                Dimension::ThirdPartyApi,
                Dimension::Redistribution,
                Dimension::OutputTraining,
                Dimension::EuBased,
            ] {
                assert!(
                    entry.rule(dimension).is_some(),
                    "{} lacks {dimension:?}",
                    entry.id()
                );
            }
            let user_cap = entry.rule(Dimension::UserCap).and_then(|rule| rule.cap);
            assert_eq!(user_cap, entry.facts.mau_limit, "{} user cap", entry.id());
            let revenue_cap = entry.rule(Dimension::RevenueCap).and_then(|rule| rule.cap);
            assert_eq!(
                revenue_cap,
                entry.facts.revenue_limit,
                "{} revenue cap",
                entry.id()
            );
        }
    }

    #[test]
    fn rejects_a_cap_that_differs_from_the_fact_base() {
        let problems =
            problems_with(|rules| rules.replacen("cap = 700000000", "cap = 600000000", 1));
        assert!(
            problems.contains("llama2: UserCap rule cap Some(Some(600000000))"),
            "{problems}"
        );
    }

    #[test]
    fn rejects_a_clause_the_fact_base_does_not_quote() {
        let problems =
            problems_with(|rules| rules.replacen("clause = \"1.b.v\"", "clause = \"1.b.vi\"", 1));
        assert!(problems.contains("no clause \"1.b.vi\""), "{problems}");
    }

    #[test]
    fn rejects_a_license_without_rules() {
        let problems = problems_with(|rules| rules.replace("id = \"mit\"", "id = \"mit-0\""));
        assert!(
            problems.contains("license \"mit\": 0 rule sections"),
            "{problems}"
        );
        assert!(
            problems.contains("\"mit-0\", which the fact base lacks"),
            "{problems}"
        );
    }

    #[test]
    fn rejects_a_rule_surer_than_the_unverified_fact_it_cites() {
        // BLOOM's hosting_api field reads "allowed subject to use restrictions (unverified)".
        let problems = problems_with(|rules| {
            rules.replacen(
                "field = \"hosting_api\"\ncertainty = \"unverified\"\nwhy = \"Hosting is reported",
                "field = \"hosting_api\"\nwhy = \"Hosting is reported",
                1,
            )
        });
        assert!(
            problems
                .contains("bigscience-bloom-rail-1.0 ThirdPartyApi: cites text marked unverified"),
            "{problems}"
        );
    }

    #[test]
    fn rejects_decisive_rules_for_a_license_whose_terms_are_unverified() {
        let problems = problems_with(|rules| {
            rules.replace(
                "id = \"falcon-llm-license\"\ncertainty = \"unverified\"",
                "id = \"falcon-llm-license\"\ncertainty = \"secondary\"",
            )
        });
        assert!(
            problems.contains("falcon-llm-license: certainty Secondary"),
            "{problems}"
        );
        assert!(
            problems.contains("falcon-llm-license Grant: the license's terms are unverified"),
            "{problems}"
        );
    }

    #[test]
    fn words_match_only_at_boundaries() {
        assert_eq!(
            find_word("tongyi qianwen license agreement", "qwen license agreement"),
            None
        );
        assert_eq!(
            find_word("the qwen license agreement", "qwen license agreement"),
            Some(4)
        );
        assert_eq!(
            find_word("llama 3.1 community license", "llama 3 community license"),
            None
        );
    }

    #[test]
    fn links_compare_without_scheme_or_spelling() {
        assert_eq!(
            normalize_link("https://mistral.ai/licences/MNPL-0.1.md"),
            normalize_link("http://www.mistral.ai/licenses/MNPL-0.1.md/")
        );
    }
}
