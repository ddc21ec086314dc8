//! Table-driven verdicts: every license in the fact base against a set of deployment
//! profiles, asserting the outcome and the clause that decides it. The expectations were
//! written from the license texts in shared/licenses/, not taken from the code's output.

use moat_license::{
    check, detect, CitationBasis, DeploymentProfile, Dimension, GgufLicenseKeys,
    LicenseDecisionInput, LicenseEvidence, LicenseId, ObligationKind, Outcome, Verdict,
};

/// A model whose GGUF metadata names the license as HF cards do (`other` + `license_name`).
fn gguf_naming(license: &str) -> LicenseEvidence {
    LicenseEvidence {
        gguf: GgufLicenseKeys {
            license: Some("other".into()),
            name: Some(license.into()),
            link: None,
        },
        ..LicenseEvidence::default()
    }
}

fn overridden(license: &str) -> LicenseEvidence {
    LicenseEvidence {
        manifest_override: Some(LicenseId::parse(license).expect("known id")),
        ..LicenseEvidence::default()
    }
}

fn verdict(evidence: LicenseEvidence, profile: DeploymentProfile) -> Verdict {
    check(&LicenseDecisionInput {
        detection: detect(&evidence),
        profile,
    })
}

fn internal_research() -> DeploymentProfile {
    DeploymentProfile::default()
}
fn commercial_internal() -> DeploymentProfile {
    DeploymentProfile {
        commercial: true,
        ..DeploymentProfile::default()
    }
}
fn public_api() -> DeploymentProfile {
    DeploymentProfile {
        commercial: true,
        third_party_api: true,
        ..DeploymentProfile::default()
    }
}
fn api_800m_users() -> DeploymentProfile {
    DeploymentProfile {
        monthly_active_users: Some(800_000_000),
        ..public_api()
    }
}
fn redistribute_finetune() -> DeploymentProfile {
    DeploymentProfile {
        redistribute_weights: true,
        ..DeploymentProfile::default()
    }
}
fn train_on_outputs() -> DeploymentProfile {
    DeploymentProfile {
        train_on_outputs: true,
        ..DeploymentProfile::default()
    }
}
fn eu_based() -> DeploymentProfile {
    DeploymentProfile {
        eu_based: true,
        ..DeploymentProfile::default()
    }
}
fn revenue_over_20m() -> DeploymentProfile {
    DeploymentProfile {
        commercial: true,
        monthly_revenue_usd: Some(30_000_000),
        ..DeploymentProfile::default()
    }
}

/// Expected outcome and the `ref` of the deciding clause (or fact-base field).
#[derive(Clone, Copy, Debug)]
enum Want {
    A(&'static str),
    O(&'static str),
    F(&'static str),
    U(&'static str),
}

impl Want {
    fn split(self) -> (Outcome, &'static str) {
        match self {
            Want::A(r) => (Outcome::Allowed, r),
            Want::O(r) => (Outcome::AllowedWithObligations, r),
            Want::F(r) => (Outcome::Forbidden, r),
            Want::U(r) => (Outcome::Unknown, r),
        }
    }
}

use Want::{A, F, O, U};

type MakeProfile = fn() -> DeploymentProfile;

const PROFILES: [(&str, MakeProfile); 8] = [
    ("internal research", internal_research),
    ("commercial internal", commercial_internal),
    ("public API", public_api),
    ("800M MAU", api_800m_users),
    ("redistribute fine-tune", redistribute_finetune),
    ("train on outputs", train_on_outputs),
    ("EU-based", eu_based),
    ("revenue $30M/month", revenue_over_20m),
];

#[rustfmt::skip]
const TABLE: [(&str, [Want; 8]); 23] = [
    // id                              internal              commercial            public API              800M MAU             redistribute                          train on outputs                      EU-based                    revenue > $20M
    ("llama2",                    [A("commercial"),     A("commercial"),     O("hosting_api"),      F("2"),              O("redistribution_conditions"),       F("1.b.v"),                           A("commercial"),            A("commercial")]),
    ("llama3",                    [A("commercial"),     A("commercial"),     O("1.b.i"),            F("mau_rule"),       O("1.b.i"),                           F("1.b.v"),                           A("commercial"),            A("commercial")]),
    ("llama3.1",                  [A("commercial"),     A("commercial"),     O("1.b.i"),            F("mau_rule"),       O("1.b.i"),                           O("1.b.i"),                           A("commercial"),            A("commercial")]),
    ("llama3.2",                  [A("commercial"),     A("commercial"),     O("1.b.i"),            F("mau_rule"),       O("1.b.i"),                           O("1.b.i"),                           U("AUP (USE_POLICY.md)"),   A("commercial")]),
    ("llama3.3",                  [A("commercial"),     A("commercial"),     O("1.b.i"),            F("mau_rule"),       O("1.b.i"),                           O("1.b.i"),                           A("commercial"),            A("commercial")]),
    ("llama4",                    [A("commercial"),     A("commercial"),     O("1.b.i"),            F("mau_rule"),       O("1.b.i"),                           O("1.b.i"),                           F("AUP (USE_POLICY.md)"),   A("commercial")]),
    ("gemma",                     [A("commercial"),     A("commercial"),     O("3.1.1"),            O("3.1.1"),          O("3.1.1"),                           O("1.1(e)"),                          A("commercial"),            A("commercial")]),
    ("gemma-prohibited-use-policy", [U("intro"),        U("intro"),          U("intro"),            U("intro"),          U("intro"),                           U("intro"),                           U("intro"),                 U("intro")]),
    ("tongyi-qianwen",            [A("commercial"),     A("commercial"),     A("commercial"),       F("4"),              O("redistribution_conditions"),       F("5.b"),                             A("commercial"),            A("commercial")]),
    ("tongyi-qianwen-research",   [A("2.a"),            F("2.a"),            F("2.a"),              F("2.a"),            O("redistribution_conditions"),       F("output_training_restriction"),     A("2.a"),                   F("2.a")]),
    ("qwen",                      [A("commercial"),     A("commercial"),     A("commercial"),       F("4"),              O("redistribution_conditions"),       O("5.b"),                             A("commercial"),            A("commercial")]),
    ("qwen-research",             [A("2.a"),            F("2.b"),            F("2.b"),              F("2.b"),            O("redistribution_conditions"),       O("4.b"),                             A("2.a"),                   F("2.b")]),
    ("apache-2.0",                [A("commercial"),     A("commercial"),     A("commercial"),       A("commercial"),     O("4(a)"),                            A("commercial"),                      A("commercial"),            A("commercial")]),
    ("mit",                       [A("commercial"),     A("commercial"),     A("commercial"),       A("commercial"),     O("redistribution_conditions"),       A("commercial"),                      A("commercial"),            A("commercial")]),
    ("deepseek",                  [A("commercial"),     A("commercial"),     O("4"),                O("4"),              O("4.a"),                             O("output_training_restriction"),     A("commercial"),            A("commercial")]),
    ("mrl",                       [A("3.2"),            F("3.2"),            F("3.2"),              F("3.2"),            O("redistribution_conditions"),       O("3.2"),                             A("3.2"),                   F("3.2")]),
    ("mnpl",                      [A("3.2"),            F("3.2"),            F("3.2"),              F("3.2"),            O("redistribution_conditions"),       U("output_training_restriction"),     A("3.2"),                   F("3.2")]),
    ("mistral-modified-mit",      [A("commercial"),     A("commercial"),     A("commercial"),       A("commercial"),     O("redistribution_conditions"),       A("commercial"),                      A("commercial"),            F("2")]),
    ("falcon-llm-license",        [U("Introductory note (copy, opening only)"); 8]),
    ("falcon-180b",               [A("AUP intro (vendor space)"), U("commercial"), U("commercial"),   U("commercial"),     U("redistribution_conditions"),       U("output_training_restriction"),     U("geo_restrictions"),      U("commercial")]),
    ("cc-by-nc-4.0",              [A("redistribution_conditions"), F("redistribution_conditions"), F("redistribution_conditions"), F("redistribution_conditions"), O("redistribution_conditions"), U("output_training_restriction"), A("redistribution_conditions"), F("redistribution_conditions")]),
    ("bigscience-bloom-rail-1.0", [A("commercial"),     A("commercial"),     U("hosting_api"),      U("hosting_api"),    O("redistribution_conditions"),       A("commercial"),                      A("commercial"),            A("commercial")]),
    ("nvidia-open-model-license", [A("preamble (vendor HF)"), A("preamble (vendor HF)"), A("preamble (vendor HF)"), A("preamble (vendor HF)"), O("3.1 (secondary)"), A("preamble (vendor HF)"), A("preamble (vendor HF)"), A("preamble (vendor HF)")]),
];

#[test]
fn every_license_against_every_profile() {
    let ids: Vec<&str> = moat_license::list()
        .map(|summary| summary.id.as_str())
        .collect();
    let table_ids: Vec<&str> = TABLE.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        table_ids, ids,
        "the table must cover every license in the fact base, in order"
    );

    let mut failures = Vec::new();
    for (id, wants) in TABLE {
        for ((profile_name, profile), want) in PROFILES.iter().zip(wants) {
            let (outcome, reference) = want.split();
            let verdict = verdict(gguf_naming(id), profile());
            let deciding = verdict
                .deciding
                .as_ref()
                .map(|finding| finding.clause.reference.as_str());
            if verdict.outcome != outcome || deciding != Some(reference) {
                failures.push(format!(
                    "{id} / {profile_name}: want {outcome} by {reference:?}, got {} by {deciding:?}",
                    verdict.outcome
                ));
            }
            assert_eq!(verdict.exit_code, verdict.outcome.exit_code());
            assert_eq!(verdict.license_id.map(|id| id.as_str()), Some(id));
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_finding_cites_a_quote_and_its_source() {
    for (id, _) in TABLE {
        for (_, profile) in PROFILES {
            let verdict = verdict(gguf_naming(id), profile());
            assert!(
                !verdict.findings.is_empty(),
                "{id}: the grant is always asked"
            );
            for finding in verdict.findings.iter().chain(verdict.deciding.iter()) {
                assert!(
                    !finding.clause.quote.is_empty(),
                    "{id} {:?}",
                    finding.dimension
                );
                assert!(!finding.clause.source.is_empty() && !finding.clause.url.is_empty());
                assert!(!finding.explanation.is_empty());
            }
            for obligation in &verdict.obligations {
                assert!(
                    !obligation.text.is_empty() && !obligation.clause.quote.is_empty(),
                    "{id}"
                );
            }
        }
    }
}

#[test]
fn llama_3_1_at_800m_users_is_forbidden_by_the_mau_rule() {
    let verdict = verdict(gguf_naming("llama3.1"), api_800m_users());
    assert_eq!(verdict.outcome, Outcome::Forbidden);
    assert_eq!(verdict.exit_code, 20);
    let deciding = verdict.deciding.clone().expect("deciding finding");
    assert_eq!(deciding.dimension, Dimension::UserCap);
    // The fact base quotes no §2 for Llama 3.1, so the citation is its `mau_rule` field.
    assert_eq!(deciding.clause.basis, CitationBasis::FactBaseField);
    assert_eq!(deciding.clause.reference, "mau_rule");
    assert!(
        deciding.clause.quote.contains("as Llama 2"),
        "{}",
        deciding.clause.quote
    );
    assert!(
        deciding.explanation.contains("800,000,000"),
        "{}",
        deciding.explanation
    );
    assert!(deciding.clause.source.contains("llama3_1/LICENSE"));
    // The API would owe "Built with Llama", but a forbidden deployment owes nothing.
    assert!(verdict
        .findings
        .iter()
        .any(|f| f.outcome == Outcome::AllowedWithObligations));
    assert!(verdict.obligations.is_empty());
}

#[test]
fn llama_2_at_800m_users_quotes_clause_2() {
    let deciding = verdict(gguf_naming("llama2"), api_800m_users())
        .deciding
        .expect("deciding");
    assert_eq!(deciding.clause.basis, CitationBasis::QuotedClause);
    assert!(deciding
        .clause
        .quote
        .contains("greater than 700 million monthly active users"));
}

#[test]
fn llama_below_the_cap_is_allowed_and_an_undeclared_count_is_noted() {
    let small = DeploymentProfile {
        monthly_active_users: Some(5_000_000),
        ..public_api()
    };
    let verdict_small = verdict(gguf_naming("llama3.1"), small);
    assert_eq!(verdict_small.outcome, Outcome::AllowedWithObligations);
    let cap = verdict_small
        .findings
        .iter()
        .find(|f| f.dimension == Dimension::UserCap)
        .expect("cap finding");
    assert_eq!(cap.outcome, Outcome::Allowed);

    let undeclared = verdict(gguf_naming("llama3.1"), public_api());
    assert!(
        undeclared
            .notes
            .iter()
            .any(|note| note.contains("700,000,000")),
        "{:?}",
        undeclared.notes
    );
}

#[test]
fn qwen_user_cap_counts_only_for_commercial_use() {
    let profile = DeploymentProfile {
        monthly_active_users: Some(800_000_000),
        ..DeploymentProfile::default()
    };
    assert_eq!(
        verdict(gguf_naming("qwen"), profile.clone()).outcome,
        Outcome::Allowed
    );
    let commercial = DeploymentProfile {
        commercial: true,
        ..profile
    };
    let forbidden = verdict(gguf_naming("qwen"), commercial);
    assert_eq!(forbidden.outcome, Outcome::Forbidden);
    assert_eq!(forbidden.deciding.expect("deciding").clause.reference, "4");
}

#[test]
fn gemma_as_a_public_api_passes_the_use_restrictions_on() {
    let verdict = verdict(gguf_naming("gemma"), public_api());
    assert_eq!(verdict.outcome, Outcome::AllowedWithObligations);
    assert_eq!(verdict.exit_code, 10);
    let pass_through = verdict
        .obligations
        .iter()
        .find(|o| o.kind == ObligationKind::UsePolicyPassThrough)
        .expect("use-policy pass-through");
    assert_eq!(pass_through.clause.reference, "3.1.1");
    assert!(pass_through
        .clause
        .quote
        .contains("use restrictions referenced in Section 3.2"));
    assert!(verdict
        .obligations
        .iter()
        .any(|o| o.kind == ObligationKind::LicenseCopy));
    // A hosted service is exempt from the Notice file.
    assert!(!verdict
        .obligations
        .iter()
        .any(|o| o.kind == ObligationKind::NoticeFile));
}

#[test]
fn gemma_redistribution_ships_the_notice_file() {
    let verdict = verdict(gguf_naming("gemma"), redistribute_finetune());
    let notice = verdict
        .obligations
        .iter()
        .find(|o| o.kind == ObligationKind::NoticeFile)
        .expect("notice");
    assert!(notice
        .text
        .contains("Gemma is provided under and subject to the Gemma Terms of Use"));
}

#[test]
fn llama_naming_rule_applies_only_to_models_built_with_it() {
    let has_naming = |profile| {
        verdict(gguf_naming("llama3.1"), profile)
            .obligations
            .iter()
            .any(|o| o.kind == ObligationKind::Naming)
    };
    assert!(!has_naming(public_api()));
    assert!(has_naming(redistribute_finetune()));
    assert!(has_naming(train_on_outputs()));

    let api = verdict(gguf_naming("llama3.1"), public_api());
    let built_with = api
        .obligations
        .iter()
        .find(|o| o.kind == ObligationKind::Attribution)
        .expect("attribution");
    assert!(built_with.text.contains("Built with Llama"));
    assert_eq!(built_with.clause.reference, "1.b.i");
}

#[test]
fn qwen_research_with_commercial_use_is_forbidden_by_2b() {
    let verdict = verdict(gguf_naming("qwen-research"), commercial_internal());
    assert_eq!(verdict.outcome, Outcome::Forbidden);
    let deciding = verdict.deciding.expect("deciding");
    assert_eq!(deciding.clause.reference, "2.b");
    assert_eq!(
        deciding.clause.quote,
        "If you are commercially using the Materials, you shall request a license from us."
    );
}

#[test]
fn tongyi_qianwen_research_with_commercial_use_is_forbidden() {
    let verdict = verdict(
        gguf_naming("tongyi-qianwen-research"),
        commercial_internal(),
    );
    assert_eq!(verdict.outcome, Outcome::Forbidden);
    assert!(verdict
        .deciding
        .expect("deciding")
        .clause
        .quote
        .contains("FOR NON-COMMERCIAL PURPOSES ONLY"));
}

#[test]
fn apache_is_allowed_without_obligations_until_redistributed() {
    let local = verdict(gguf_naming("apache-2.0"), commercial_internal());
    assert_eq!(local.outcome, Outcome::Allowed);
    assert_eq!(local.exit_code, 0);
    assert!(local.obligations.is_empty());

    let shared = verdict(gguf_naming("apache-2.0"), redistribute_finetune());
    let kinds: Vec<ObligationKind> = shared.obligations.iter().map(|o| o.kind).collect();
    assert_eq!(
        kinds,
        [
            ObligationKind::LicenseCopy,
            ObligationKind::ModifiedFilesNotice,
            ObligationKind::RetainNotices,
            ObligationKind::NoticeFile
        ]
    );
}

#[test]
fn falcon_terms_are_unknown_unless_the_manifest_overrides_the_license() {
    let from_files = verdict(gguf_naming("falcon-llm-license"), public_api());
    assert_eq!(from_files.outcome, Outcome::Unknown);
    assert_eq!(from_files.exit_code, 30);
    assert_eq!(
        from_files.verification.as_deref(),
        Some("metadata only; terms unverified")
    );
    assert!(from_files
        .deciding
        .expect("deciding")
        .explanation
        .contains("unverified"));
    assert!(from_files.obligations.is_empty());

    let overridden_verdict = verdict(overridden("falcon-llm-license"), public_api());
    assert!(overridden_verdict.overridden);
    assert_eq!(overridden_verdict.outcome, Outcome::AllowedWithObligations);
    assert!(overridden_verdict
        .obligations
        .iter()
        .any(|o| o.kind == ObligationKind::UsePolicyPassThrough));
    assert!(overridden_verdict
        .notes
        .iter()
        .any(|n| n.contains("manifest override")));

    // An override does not invent facts: nothing is known about training on Falcon outputs.
    assert_eq!(
        verdict(overridden("falcon-llm-license"), train_on_outputs()).outcome,
        Outcome::Unknown
    );
}

#[test]
fn falcon_180b_hosting_is_forbidden_only_on_overridden_facts() {
    let overridden_verdict = verdict(
        overridden("falcon-180b"),
        DeploymentProfile {
            third_party_api: true,
            ..DeploymentProfile::default()
        },
    );
    assert_eq!(overridden_verdict.outcome, Outcome::Forbidden);
    assert_eq!(
        overridden_verdict
            .deciding
            .expect("deciding")
            .clause
            .reference,
        "Introductory note (copy)"
    );
}

#[test]
fn llama_2_training_on_outputs_is_forbidden_by_1bv() {
    let verdict = verdict(gguf_naming("llama2"), train_on_outputs());
    assert_eq!(verdict.outcome, Outcome::Forbidden);
    let deciding = verdict.deciding.expect("deciding");
    assert_eq!(deciding.clause.reference, "1.b.v");
    assert!(deciding
        .clause
        .quote
        .contains("to improve any other large language model"));
}

#[test]
fn mistral_research_and_non_production_licenses_forbid_commercial_use() {
    for id in ["mrl", "mnpl"] {
        let verdict = verdict(gguf_naming(id), commercial_internal());
        assert_eq!(verdict.outcome, Outcome::Forbidden, "{id}");
        assert_eq!(
            verdict.deciding.expect("deciding").clause.reference,
            "3.2",
            "{id}"
        );
    }
}

#[test]
fn cc_by_nc_forbids_commercial_use() {
    assert_eq!(
        verdict(gguf_naming("cc-by-nc-4.0"), commercial_internal()).outcome,
        Outcome::Forbidden
    );
}

#[test]
fn eu_clause_depends_on_modality() {
    let eu = |multimodal| DeploymentProfile {
        eu_based: true,
        multimodal,
        ..DeploymentProfile::default()
    };
    assert_eq!(
        verdict(gguf_naming("llama3.2"), eu(Some(true))).outcome,
        Outcome::Forbidden
    );
    assert_eq!(
        verdict(gguf_naming("llama3.2"), eu(Some(false))).outcome,
        Outcome::Allowed
    );
    assert_eq!(
        verdict(gguf_naming("llama4"), eu(Some(false))).outcome,
        Outcome::Allowed
    );
    assert_eq!(
        verdict(gguf_naming("llama3.3"), eu(Some(true))).outcome,
        Outcome::Forbidden
    );
    assert_eq!(
        verdict(gguf_naming("llama3.1"), eu(Some(true))).outcome,
        Outcome::Allowed
    );
}

#[test]
fn undeclared_revenue_is_noted_for_the_modified_mit_license() {
    let verdict = verdict(gguf_naming("mistral-modified-mit"), commercial_internal());
    assert_eq!(verdict.outcome, Outcome::Allowed);
    assert!(
        verdict.notes.iter().any(|n| n.contains("20,000,000")),
        "{:?}",
        verdict.notes
    );
}

#[test]
fn exit_codes_are_distinct_per_outcome() {
    assert_eq!(Outcome::Allowed.exit_code(), 0);
    assert_eq!(Outcome::AllowedWithObligations.exit_code(), 10);
    assert_eq!(Outcome::Forbidden.exit_code(), 20);
    assert_eq!(Outcome::Unknown.exit_code(), 30);
}

#[test]
fn verdict_json_uses_stable_snake_case_keys() {
    let json =
        serde_json::to_value(verdict(gguf_naming("gemma"), public_api())).expect("serializable");
    assert_eq!(json["outcome"], "allowed_with_obligations");
    assert_eq!(json["exit_code"], 10);
    assert_eq!(json["license_id"], "gemma");
    assert_eq!(json["deciding"]["dimension"], "third_party_api");
    assert_eq!(json["deciding"]["clause"]["ref"], "3.1.1");
    assert_eq!(json["deciding"]["clause"]["basis"], "quoted_clause");
    assert_eq!(json["deciding"]["certainty"], "verbatim_copy");
    assert_eq!(json["obligations"][0]["kind"], "use_policy_pass_through");
    assert_eq!(json["detection"]["source"], "gguf_metadata");
}

#[test]
fn list_covers_the_fact_base() {
    let all: Vec<_> = moat_license::list().collect();
    assert_eq!(all.len(), 23);
    let llama = all
        .iter()
        .find(|s| s.id.as_str() == "llama3.1")
        .expect("llama3.1");
    assert_eq!(llama.mau_cap, Some(700_000_000));
    let devstral = all
        .iter()
        .find(|s| s.id.as_str() == "mistral-modified-mit")
        .expect("modified mit");
    assert_eq!(devstral.revenue_cap, Some(20_000_000));
    assert_eq!(devstral.commercial, moat_license::Commercial::Conditional);
}

#[test]
fn override_ids_are_parsed_with_suggestions() {
    assert_eq!(
        LicenseId::parse("Apache-2.0").expect("spdx id").as_str(),
        "apache-2.0"
    );
    assert_eq!(LicenseId::parse("MRL-0.1").expect("mrl").as_str(), "mrl");
    let error = LicenseId::parse("lama3.1").expect_err("unknown");
    let moat_license::LicenseError::UnknownLicense { suggestions, .. } = &error;
    assert_eq!(
        suggestions.first().map(String::as_str),
        Some("llama3.1"),
        "{suggestions:?}"
    );
    assert!(
        error.to_string().contains("did you mean llama3.1"),
        "{error}"
    );
}
