//! Scores the detectors on the held-out half of the labeled set (tests/data/guard-dataset.jsonl,
//! made by scripts/guard_dataset.py) and fails if precision or recall of any checksum or
//! pattern class is under 0.95. Prints per-class precision, recall and support, recall per
//! evasion, false positives per near-miss kind, and the false-positive rate on benign
//! documentation text.
//!
//! A label is found when a finding of its class overlaps its span; a finding is correct when it
//! overlaps a label of its class. Precision counts findings in positives and near misses; the
//! benign documentation is reported apart because it contains real addresses (127.0.0.1,
//! example emails) that nobody labeled. `GUARD_EVAL_SPLIT=train` scores the tuning half.

use std::collections::BTreeMap;
use std::ops::Range;

use moat_guard::{Class, Finding, GuardConfig, RuleGuard};
use serde_json::Value;

const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/guard-dataset.jsonl"
);
const THRESHOLD: f64 = 0.95;

struct Label {
    class: String,
    span: Range<usize>,
}

struct Record {
    kind: String,
    class: String,
    evasion: String,
    text: String,
    labels: Vec<Label>,
}

fn load(split: &str) -> Vec<Record> {
    let data = std::fs::read_to_string(DATA).unwrap_or_else(|e| panic!("{DATA}: {e}"));
    let field = |v: &Value, name: &str| v[name].as_str().unwrap_or_default().to_string();
    data.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("a JSON record"))
        .filter(|v| v["split"] == split)
        .map(|v| Record {
            kind: field(&v, "kind"),
            class: field(&v, "class"),
            evasion: field(&v, "evasion"),
            text: field(&v, "text"),
            labels: v["labels"]
                .as_array()
                .map(|labels| {
                    labels
                        .iter()
                        .map(|l| Label {
                            class: field(l, "class"),
                            span: l["start"].as_u64().unwrap_or(0) as usize
                                ..l["end"].as_u64().unwrap_or(0) as usize,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

#[derive(Default)]
struct Score {
    support: usize,
    found: usize,
    findings: usize,
    correct: usize,
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        1.0
    } else {
        n as f64 / d as f64
    }
}

#[test]
fn held_out_precision_and_recall() {
    let split = std::env::var("GUARD_EVAL_SPLIT").unwrap_or_else(|_| "heldout".to_string());
    let records = load(&split);
    assert!(records.len() > 4000, "the data set is missing or truncated");
    let guard = RuleGuard::new(&GuardConfig::default()).expect("default config");
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut by_evasion: BTreeMap<(String, String), (usize, usize)> = BTreeMap::new();
    let mut near_miss_fp: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut benign = (0usize, 0usize);
    let mut benign_classes: BTreeMap<String, usize> = BTreeMap::new();
    let mut benign_examples = Vec::new();
    let mut misses = Vec::new();
    let mut false_positives = Vec::new();
    for record in &records {
        let findings: Vec<Finding> = guard.findings(&record.text).expect("within limits");
        if record.kind == "benign" {
            benign.1 += 1;
            if !findings.is_empty() {
                benign.0 += 1;
            }
            for finding in &findings {
                *benign_classes.entry(finding.class.to_string()).or_default() += 1;
                if benign_examples.len() < 8 {
                    benign_examples.push(format!("{}: {:?}", finding.class, finding.value));
                }
            }
            continue;
        }
        for label in &record.labels {
            let score = scores.entry(label.class.clone()).or_default();
            score.support += 1;
            let hit = findings
                .iter()
                .any(|f| f.class.name() == label.class && overlaps(&f.span, &label.span));
            score.found += usize::from(hit);
            let evasion = by_evasion
                .entry((label.class.clone(), record.evasion.clone()))
                .or_default();
            evasion.1 += 1;
            evasion.0 += usize::from(hit);
            if !hit && misses.len() < 30 {
                misses.push(format!(
                    "{}/{}: {:?} found {:?}",
                    label.class,
                    record.evasion,
                    record.text,
                    findings
                        .iter()
                        .map(|f| f.class.to_string())
                        .collect::<Vec<_>>()
                ));
            }
        }
        if record.kind == "near_miss" {
            let entry = near_miss_fp.entry(record.class.clone()).or_default();
            entry.1 += 1;
            entry.0 += usize::from(!findings.is_empty());
        }
        for finding in &findings {
            let score = scores.entry(finding.class.to_string()).or_default();
            score.findings += 1;
            let correct = record
                .labels
                .iter()
                .any(|l| l.class == finding.class.name() && overlaps(&l.span, &finding.span));
            score.correct += usize::from(correct);
            if !correct && false_positives.len() < 30 {
                false_positives.push(format!(
                    "{} in {}: {:?} ({:?})",
                    finding.class, record.kind, finding.value, record.text
                ));
            }
        }
    }

    println!("\nsplit: {split} ({} records)\n", records.len());
    println!("| class | precision | recall | support | findings |");
    println!("|---|---|---|---|---|");
    let mut failures = Vec::new();
    let mut report = Vec::new();
    for class in Class::BUILT_IN {
        let score = scores.remove(class.name()).unwrap_or_default();
        let precision = ratio(score.correct, score.findings);
        let recall = ratio(score.found, score.support);
        report.push(serde_json::json!({
            "class": class.name(),
            "gated": class.is_checksum_or_pattern(),
            "precision": precision,
            "recall": recall,
            "support": score.support,
            "findings": score.findings,
        }));
        println!(
            "| {class} | {precision:.3} | {recall:.3} | {} | {} |",
            score.support, score.findings
        );
        if class.is_checksum_or_pattern() {
            if score.support < 200 && split == "heldout" {
                failures.push(format!("{class}: support {} < 200", score.support));
            }
            if precision < THRESHOLD || recall < THRESHOLD {
                failures.push(format!(
                    "{class}: precision {precision:.3}, recall {recall:.3}"
                ));
            }
        }
    }
    println!("\nrecall by evasion:");
    for ((class, evasion), (found, total)) in &by_evasion {
        println!(
            "  {class:24} {evasion:12} {:.3} ({found}/{total})",
            ratio(*found, *total)
        );
    }
    println!("\nnear misses with any finding:");
    for (kind, (hit, total)) in &near_miss_fp {
        println!("  {kind:20} {hit}/{total}");
    }
    println!(
        "\nbenign documentation paragraphs with any finding: {}/{} = {:.4}; findings by class: {benign_classes:?}",
        benign.0,
        benign.1,
        ratio(benign.0, benign.1)
    );
    for example in &benign_examples {
        println!("  e.g. {example}");
    }
    // GUARD_EVAL_OUT=path writes the numbers as JSON (bench/results/guard-eval-*.json).
    if let Some(path) = std::env::var_os("GUARD_EVAL_OUT") {
        let json = serde_json::json!({
            "split": split,
            "records": records.len(),
            "classes": report,
            "recall_by_evasion": by_evasion.iter().map(|((class, evasion), (found, total))| {
                serde_json::json!({"class": class, "evasion": evasion, "found": found, "total": total})
            }).collect::<Vec<_>>(),
            "near_misses_with_a_finding": near_miss_fp.iter().map(|(kind, (hit, total))| {
                serde_json::json!({"kind": kind, "with_finding": hit, "total": total})
            }).collect::<Vec<_>>(),
            "benign_paragraphs": benign.1,
            "benign_paragraphs_with_a_finding": benign.0,
            "benign_findings_by_class": benign_classes,
        });
        let text = serde_json::to_string_pretty(&json).expect("serialisable");
        std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("{path:?}: {e}"));
    }
    for miss in &misses {
        println!("MISS {miss}");
    }
    for fp in &false_positives {
        println!("FP {fp}");
    }
    assert!(failures.is_empty(), "under {THRESHOLD}: {failures:#?}");
}
