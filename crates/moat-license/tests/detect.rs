//! Detection: which license a model's files name, from GGUF metadata, a LICENSE file, a
//! model card's front matter, or a manifest override, and what the gate answers when they
//! name none, an unknown one, or disagree.

use moat_license::{
    check, detect, DeploymentProfile, Detection, DetectionStatus, GgufLicenseKeys,
    LicenseDecisionInput, LicenseEvidence, LicenseId, LicenseSource, Outcome,
};

fn gguf(license: &str, name: Option<&str>, link: Option<&str>) -> LicenseEvidence {
    LicenseEvidence {
        gguf: GgufLicenseKeys {
            license: Some(license.into()),
            name: name.map(Into::into),
            link: link.map(Into::into),
        },
        ..LicenseEvidence::default()
    }
}

fn license_file(text: &str) -> LicenseEvidence {
    LicenseEvidence {
        license_file: Some(text.into()),
        ..LicenseEvidence::default()
    }
}

fn model_card(text: &str) -> LicenseEvidence {
    LicenseEvidence {
        model_card: Some(text.into()),
        ..LicenseEvidence::default()
    }
}

fn id(detection: &Detection) -> Option<&'static str> {
    detection.license_id.map(|id| id.as_str())
}

fn verdict_for(evidence: &LicenseEvidence) -> moat_license::Verdict {
    check(&LicenseDecisionInput {
        detection: detect(evidence),
        profile: DeploymentProfile::default(),
    })
}

#[test]
fn gguf_hf_ids() {
    for (value, want) in [
        ("apache-2.0", "apache-2.0"),
        ("gemma", "gemma"),
        ("llama3.1", "llama3.1"),
        ("MIT", "mit"),
        ("cc-by-nc-4.0", "cc-by-nc-4.0"),
    ] {
        let detection = detect(&gguf(value, None, None));
        assert_eq!(detection.status, DetectionStatus::Identified, "{value}");
        assert_eq!(id(&detection), Some(want), "{value}");
        assert_eq!(detection.source, Some(LicenseSource::GgufMetadata));
        assert_eq!(detection.raw.as_deref(), Some(value));
    }
}

#[test]
fn gguf_other_with_license_name() {
    assert_eq!(
        id(&detect(&gguf("other", Some("qwen"), None))),
        Some("qwen")
    );
    assert_eq!(
        id(&detect(&gguf("other", Some("qwen-research"), None))),
        Some("qwen-research")
    );
    assert_eq!(
        id(&detect(&gguf("other", Some("tongyi-qianwen"), None))),
        Some("tongyi-qianwen")
    );
    assert_eq!(
        id(&detect(&gguf("other", Some("falcon-llm-license"), None))),
        Some("falcon-llm-license")
    );
    assert_eq!(
        id(&detect(&gguf("other", Some("deepseek"), None))),
        Some("deepseek")
    );
    let mrl = detect(&gguf(
        "other",
        Some("mrl"),
        Some("https://mistral.ai/licenses/MRL-0.1.md"),
    ));
    assert_eq!(id(&mrl), Some("mrl"));
}

#[test]
fn gguf_link_alone_identifies_a_license() {
    let detection = detect(&gguf(
        "other",
        None,
        Some("https://mistral.ai/licences/MNPL-0.1.md"),
    ));
    assert_eq!(id(&detection), Some("mnpl"));
}

#[test]
fn gguf_other_without_a_name_names_no_license() {
    let detection = detect(&gguf("other", None, None));
    assert_eq!(detection.status, DetectionStatus::NoLicenseNamed);
    assert!(
        detection.notes.iter().any(|n| n.contains("without naming")),
        "{:?}",
        detection.notes
    );
}

#[test]
fn unverified_hf_names_are_noted() {
    let detection = detect(&gguf("other", Some("tongyi-qianwen-research"), None));
    assert_eq!(id(&detection), Some("tongyi-qianwen-research"));
    assert!(
        detection.notes.iter().any(|n| n.contains("unverified")),
        "{:?}",
        detection.notes
    );
}

#[test]
fn a_license_the_fact_base_lacks_is_unknown() {
    let evidence = gguf("cc-by-sa-4.0", None, None);
    let detection = detect(&evidence);
    assert_eq!(detection.status, DetectionStatus::NotInFactBase);
    assert_eq!(detection.raw.as_deref(), Some("cc-by-sa-4.0"));
    let verdict = verdict_for(&evidence);
    assert_eq!(verdict.outcome, Outcome::Unknown);
    assert!(
        verdict.summary.contains("not in the fact base"),
        "{}",
        verdict.summary
    );
}

#[test]
fn several_licenses_at_once_are_not_guessed() {
    let detection = detect(&gguf("apache-2.0,mit", None, None));
    assert_eq!(detection.status, DetectionStatus::NotInFactBase);
    assert!(detection
        .notes
        .iter()
        .any(|n| n.contains("several licenses")));
    assert_eq!(
        id(&detect(&gguf("apache-2.0, Apache-2.0", None, None))),
        Some("apache-2.0")
    );
}

/// The Qwen2.5-Coder GGUF case: a re-upload whose files carry no license at all.
#[test]
fn files_that_name_no_license_are_unknown_until_overridden() {
    let bare = LicenseEvidence::default();
    let verdict = verdict_for(&bare);
    assert_eq!(verdict.outcome, Outcome::Unknown);
    assert_eq!(verdict.detection.status, DetectionStatus::NoLicenseNamed);
    assert!(
        verdict.summary.contains("name no license"),
        "{}",
        verdict.summary
    );
    assert!(verdict.deciding.is_none());

    let overridden = LicenseEvidence {
        manifest_override: Some(LicenseId::parse("qwen-research").expect("id")),
        ..bare
    };
    let verdict = verdict_for(&overridden);
    assert_eq!(verdict.outcome, Outcome::Allowed);
    assert_eq!(
        verdict.detection.source,
        Some(LicenseSource::ManifestOverride)
    );
}

#[test]
fn model_card_front_matter() {
    let card = "---\nlanguage:\n- en\nlicense: llama3.1\npipeline_tag: text-generation\n---\n\n# Llama 3.1\n";
    let detection = detect(&model_card(card));
    assert_eq!(id(&detection), Some("llama3.1"));
    assert_eq!(detection.source, Some(LicenseSource::ModelCard));

    let qwen = "---\nlicense: other\nlicense_name: qwen\nlicense_link: https://huggingface.co/Qwen/Qwen2.5-72B-Instruct/blob/main/LICENSE\n---\n";
    assert_eq!(id(&detect(&model_card(qwen))), Some("qwen"));

    let codestral = "---\nlicense: other\nlicense_name: mnpl\nlicense_link: https://mistral.ai/licences/MNPL-0.1.md\n---\n";
    assert_eq!(id(&detect(&model_card(codestral))), Some("mnpl"));

    assert_eq!(
        detect(&model_card("# A model\n\nApache 2.0 licensed.\n")).status,
        DetectionStatus::NoLicenseNamed
    );
}

#[test]
fn license_file_titles() {
    let texts = [
        ("                                 Apache License\n                           Version 2.0, January 2004\n                        http://www.apache.org/licenses/\n", "apache-2.0"),
        ("LLAMA 2 COMMUNITY LICENSE AGREEMENT\nLlama 2 Version Release Date: July 18, 2023\n", "llama2"),
        ("META LLAMA 3 COMMUNITY LICENSE AGREEMENT\nMeta Llama 3 Version Release Date: April 18, 2024\n", "llama3"),
        ("LLAMA 3.1 COMMUNITY LICENSE AGREEMENT\nLlama 3.1 Version Release Date: July 23, 2024\n“Agreement” means the terms and conditions for use, reproduction, distribution and modification of the Llama Materials set forth herein.", "llama3.1"),
        ("LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, 2024\n", "llama3.2"),
        ("LLAMA 4 COMMUNITY LICENSE AGREEMENT\nLlama 4 Version Effective Date: April 5, 2025\n", "llama4"),
        ("Gemma Terms of Use\n\nLast modified: March 24, 2025\n\nBy using, reproducing, modifying, distributing, performing or displaying any portion or element of Gemma", "gemma"),
        ("Tongyi Qianwen LICENSE AGREEMENT\n\nTongyi Qianwen Release Date: August 3, 2023\n", "tongyi-qianwen"),
        ("Tongyi Qianwen RESEARCH LICENSE AGREEMENT\n\nTongyi Qianwen Release Date: November 30, 2023\n", "tongyi-qianwen-research"),
        ("Qwen LICENSE AGREEMENT\n\nQwen LICENSE AGREEMENT Release Date: September 19, 2024\n", "qwen"),
        ("Qwen RESEARCH LICENSE AGREEMENT\n\nQwen RESEARCH LICENSE AGREEMENT Release Date: September 19, 2024\n\nBy clicking to agree", "qwen-research"),
        ("DEEPSEEK LICENSE AGREEMENT\n\nVersion 1.0, 23 October 2023\n\nCopyright (c) 2023 DeepSeek\n", "deepseek"),
        ("MIT License\n\nCopyright (c) 2023 DeepSeek\n\nPermission is hereby granted, free of charge, to any person obtaining a copy", "mit"),
        ("Copyright (c) Microsoft Corporation.\n\nPermission is hereby granted, free of charge, to any person obtaining a copy of this software", "mit"),
        ("Mistral AI Research License\n\nIf You want to use a Mistral Model, a Derivative or an Output for any purpose that is not expressly authorized", "mrl"),
        ("Attribution-NonCommercial 4.0 International\n\n=======================================================================\n\nCreative Commons Corporation (\"Creative Commons\") is not a law firm", "cc-by-nc-4.0"),
        ("NVIDIA Open Model License Agreement\n\nVersion Release Date: September 23, 2025\n", "nvidia-open-model-license"),
    ];
    for (text, want) in texts {
        let detection = detect(&license_file(text));
        assert_eq!(id(&detection), Some(want), "{text:?}");
        assert_eq!(detection.source, Some(LicenseSource::LicenseFile));
    }
}

/// The Modified MIT license reuses MIT's wording; its revenue sentence must win.
#[test]
fn modified_mit_is_not_plain_mit() {
    let text = "MIT License\n\nAttribution notice: 2025 - Mistral AI\n\nPermission is hereby granted, free of charge, to any person obtaining a copy ...\n\n(b) You are not authorized to exercise any rights under this license if the global consolidated monthly revenue of your company (or that of your employer) exceeds $20 million";
    assert_eq!(
        id(&detect(&license_file(text))),
        Some("mistral-modified-mit")
    );
}

/// License texts that quote Apache-2.0 further down are not Apache-2.0.
#[test]
fn the_title_found_first_wins() {
    let falcon2 = "Falcon 2 11B TII License Version 1.0\n\nThis license is, in part, based on the Apache License Version 2.0 (available at http://www.apache.org/licenses/LICENSE-2.0) with a series of modifications.";
    assert_eq!(
        id(&detect(&license_file(falcon2))),
        Some("falcon-llm-license")
    );

    let falcon_royalty = "TII Falcon LLM License Version 1.0\n\nThis license is based on the Apache License Version 2.0 with modifications: commercial use above $1M revenue owes royalties.";
    let detection = detect(&license_file(falcon_royalty));
    assert_eq!(detection.status, DetectionStatus::NotInFactBase);
    assert_eq!(
        detection.raw.as_deref(),
        Some("TII Falcon LLM License Version 1.0")
    );
}

#[test]
fn unrecognised_license_text_is_unknown() {
    let detection = detect(&license_file(
        "Some Company Model License\n\nYou may use this model only on Tuesdays.",
    ));
    assert_eq!(detection.status, DetectionStatus::NotInFactBase);
    assert_eq!(detection.raw.as_deref(), Some("Some Company Model License"));
}

#[test]
fn precedence_override_then_gguf_then_license_file_then_card() {
    let all_agree = LicenseEvidence {
        manifest_override: None,
        gguf: GgufLicenseKeys {
            license: Some("apache-2.0".into()),
            ..GgufLicenseKeys::default()
        },
        license_file: Some("Apache License\nVersion 2.0, January 2004".into()),
        model_card: Some("---\nlicense: apache-2.0\n---\n".into()),
    };
    let detection = detect(&all_agree);
    assert_eq!(detection.status, DetectionStatus::Identified);
    assert_eq!(detection.source, Some(LicenseSource::GgufMetadata));
    assert_eq!(detection.readings.len(), 3);

    let file_and_card = LicenseEvidence {
        gguf: GgufLicenseKeys::default(),
        ..all_agree.clone()
    };
    assert_eq!(
        detect(&file_and_card).source,
        Some(LicenseSource::LicenseFile)
    );

    let overridden = LicenseEvidence {
        manifest_override: Some(LicenseId::parse("mit").expect("id")),
        ..all_agree
    };
    let detection = detect(&overridden);
    assert_eq!(detection.status, DetectionStatus::Identified);
    assert_eq!(id(&detection), Some("mit"));
    assert_eq!(detection.source, Some(LicenseSource::ManifestOverride));
    assert!(
        detection
            .notes
            .iter()
            .any(|n| n.contains("manifest override wins")),
        "{:?}",
        detection.notes
    );
}

/// A GGUF that claims Apache-2.0 next to a Qwen RESEARCH LICENSE is exactly the mistake the
/// gate exists to catch (Qwen2.5-3B and Coder-3B are not Apache): unknown until overridden.
#[test]
fn sources_that_disagree_are_unknown_until_overridden() {
    let evidence = LicenseEvidence {
        gguf: GgufLicenseKeys { license: Some("apache-2.0".into()), ..GgufLicenseKeys::default() },
        license_file: Some("Qwen RESEARCH LICENSE AGREEMENT\n\nQwen RESEARCH LICENSE AGREEMENT Release Date: September 19, 2024".into()),
        ..LicenseEvidence::default()
    };
    let verdict = verdict_for(&evidence);
    assert_eq!(verdict.detection.status, DetectionStatus::Conflicting);
    assert_eq!(verdict.outcome, Outcome::Unknown);
    assert!(
        verdict.summary.contains("qwen-research"),
        "{}",
        verdict.summary
    );

    let overridden = LicenseEvidence {
        manifest_override: Some(LicenseId::parse("qwen-research").expect("id")),
        ..evidence
    };
    assert_eq!(verdict_for(&overridden).outcome, Outcome::Allowed);
}

#[test]
fn an_unrecognised_lower_source_does_not_conflict() {
    let evidence = LicenseEvidence {
        gguf: GgufLicenseKeys {
            license: Some("gemma".into()),
            ..GgufLicenseKeys::default()
        },
        license_file: Some("See the terms at ai.google.dev".into()),
        ..LicenseEvidence::default()
    };
    assert_eq!(detect(&evidence).status, DetectionStatus::Identified);
}
