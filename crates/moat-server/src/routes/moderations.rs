//! `POST /v1/moderations` in OpenAI's shape: `input` is a string or an array of strings; each
//! gets a result with `flagged`, `categories` (booleans) and `category_scores` (0..=1).
//! Without `model` (or with `moat-rules`) the categories are the rule detectors' groups and
//! classes (`pii`, `secret`, `injection`, `custom`, `email`, `credit_card`, …), every
//! finding counts. With `model` naming a served model, that model is asked with the Llama
//! Guard-style prompt and the categories are `S1`…`S14`; a model that fails or answers
//! something that does not parse flags the input (fail closed) and says why in
//! `classifier_error`. moat adds `findings` (class, group, byte span, confidence) to each
//! result, never the matched text.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use moat_guard::classifier::{ClassifierPolicy, SafetyVerdict, Speaker, Turn, CATEGORIES};
use moat_guard::{Class, Finding};
use moat_meter::Decision;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::classify::{classify_counted, outcome_rails, token_bound, ClassifierTokens};
use crate::extract::RawBody;
use crate::guarding::decision_of;
use crate::trust::Caller;
use crate::{ApiError, AppState};

/// The model name of the rule detectors.
const RULES_MODEL: &str = "moat-rules";
/// The most inputs one request may hold.
const MAX_INPUTS: usize = 256;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/moderations", post(moderations))
}

#[derive(Deserialize)]
struct ModerationRequest {
    input: Value,
    model: Option<String>,
}

#[derive(Serialize)]
struct WireFinding {
    class: String,
    group: &'static str,
    start: usize,
    end: usize,
    confidence: f32,
}

#[derive(Serialize, Default)]
struct ModerationResult {
    flagged: bool,
    categories: BTreeMap<String, bool>,
    category_scores: BTreeMap<String, f32>,
    findings: Vec<WireFinding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    classifier_error: Option<String>,
}

#[derive(Serialize)]
struct Moderation {
    id: String,
    model: String,
    results: Vec<ModerationResult>,
}

fn inputs(input: Value) -> Result<Vec<String>, ApiError> {
    let invalid = |message: &str| ApiError::invalid_request(message).with_param("input");
    let texts = match input {
        Value::String(text) => vec![text],
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(invalid("input must be a string or an array of strings")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(invalid("input must be a string or an array of strings")),
    };
    if texts.is_empty() || texts.len() > MAX_INPUTS {
        return Err(invalid(&format!(
            "input must hold 1 to {MAX_INPUTS} strings"
        )));
    }
    Ok(texts)
}

/// The rule detectors' result for one text.
fn rules_result(findings: Vec<Finding>) -> ModerationResult {
    let mut result = ModerationResult::default();
    let groups = ["pii", "secret", "injection", "custom"];
    for name in groups
        .into_iter()
        .chain(Class::BUILT_IN.iter().map(Class::name))
    {
        result.categories.insert(name.to_owned(), false);
        result.category_scores.insert(name.to_owned(), 0.0);
    }
    for finding in findings {
        let class = finding.class.name().to_owned();
        let group = finding.class.group().as_str();
        for name in [class.clone(), group.to_owned()] {
            result.categories.insert(name.clone(), true);
            let score = result.category_scores.entry(name).or_insert(0.0);
            *score = score.max(finding.confidence);
        }
        result.findings.push(WireFinding {
            class,
            group,
            start: finding.span.start,
            end: finding.span.end,
            confidence: finding.confidence,
        });
    }
    result.flagged = !result.findings.is_empty();
    result
}

/// The classifier's result for one text, with the rule findings alongside.
async fn classifier_result(
    state: &AppState,
    model: &str,
    text: &str,
    findings: Vec<Finding>,
) -> (ModerationResult, Vec<String>, ClassifierTokens) {
    let policy = ClassifierPolicy::default();
    let turns = [Turn {
        speaker: Speaker::User,
        text: text.to_owned(),
    }];
    let (outcome, tokens) = classify_counted(state, model, &policy, &turns, Speaker::User).await;
    let rails = outcome_rails(&outcome);
    let mut result = ModerationResult {
        findings: rules_result(findings).findings,
        ..ModerationResult::default()
    };
    let violated: Vec<u8> = match &outcome.verdict {
        Ok(SafetyVerdict::Unsafe { categories }) => categories.clone(),
        _ => Vec::new(),
    };
    for (number, _) in (1u8..).zip(CATEGORIES) {
        let hit = violated.contains(&number);
        result.categories.insert(format!("S{number}"), hit);
        result
            .category_scores
            .insert(format!("S{number}"), if hit { 1.0 } else { 0.0 });
    }
    if let Err(error) = &outcome.verdict {
        result.classifier_error = Some(error.clone());
    }
    result.flagged = outcome.action != moat_guard::Action::Allow;
    (result, rails, tokens)
}

async fn moderations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    RawBody(body): RawBody,
) -> Result<Json<Moderation>, ApiError> {
    let request: ModerationRequest = serde_json::from_slice(&body)
        .map_err(|error| ApiError::invalid_request(format!("invalid request body: {error}")))?;
    let texts = inputs(request.input)?;
    let model = request.model.filter(|m| {
        m != RULES_MODEL && !m.starts_with("omni-moderation") && !m.starts_with("text-moderation")
    });
    if let Some(model) = &model {
        caller.authorize(model, model)?;
        state.model(model)?;
        // The classifier runs the chat model on every text: the key's limits apply, with the
        // classifier prompts' bytes as the bound on their tokens; the real count settles it.
        let policy = ClassifierPolicy::default();
        let bound: u64 = texts.iter().map(|text| token_bound(&policy, text)).sum();
        caller.admit(state.trust(), 0, bound)?;
    }
    caller.ticket.set_prompt(|| texts.join("\n"));
    let guard = state.trust().moderation_guard();
    let mut results = Vec::with_capacity(texts.len());
    let mut used = ClassifierTokens::default();
    for text in &texts {
        let findings = guard.findings(text)?;
        let result = match &model {
            None => {
                let result = rules_result(findings);
                let rails: Vec<String> = result
                    .findings
                    .iter()
                    .map(|f| format!("{}.{}", f.group, f.class))
                    .collect();
                let decision = if result.flagged {
                    Decision::Flagged
                } else {
                    Decision::Allowed
                };
                caller.ticket.record_rails(decision, rails);
                result
            }
            Some(model) => {
                let (result, rails, tokens) =
                    classifier_result(&state, model, text, findings).await;
                used.prompt += tokens.prompt;
                used.completion += tokens.completion;
                used.busy += tokens.busy;
                let decision = if result.flagged {
                    decision_of(moat_guard::Action::Flag)
                } else {
                    Decision::Allowed
                };
                caller.ticket.record_rails(decision, rails);
                result
            }
        };
        results.push(result);
    }
    // The classifier's tokens settle the key's reservation and count as its usage.
    if let Some(model) = &model {
        caller.ticket.set_tokens(used.prompt, used.completion);
        caller.ticket.add_busy(used.busy);
        caller.ticket.answered_by(model, true);
    }
    let ids = state.response_ids("modr", model.as_deref().unwrap_or(RULES_MODEL));
    Ok(Json(Moderation {
        id: ids.id,
        model: ids.model,
        results,
    }))
}
