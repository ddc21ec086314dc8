//! The classifier rail: a served model asked with moat-guard's Llama Guard-style prompt
//! (greedy, a few tokens) and its answer parsed into a verdict. A model that is missing,
//! fails, or answers something that does not parse takes the policy's `on_error` action,
//! which blocks unless configured otherwise (fail closed). No safety model ships with moat;
//! whichever model is named is asked, and its judgement is only as good as that model.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use moat_engine::{
    ChatMessage, GenerationEvent, MessageContent, Prompt, SamplingParams, StopConditions,
    ValidGenerate,
};
use moat_guard::classifier::{
    Classifier, ClassifierError, ClassifierOutcome, ClassifierPolicy, SafetyVerdict, Speaker, Turn,
};
use moat_guard::{Action, GuardError, Rail};

use crate::guarding::decision_of;
use crate::state::ServedModel;
use crate::trust::{Caller, ChosenGuard};
use crate::{prompt, ApiError, AppState};

/// Tokens the classifier may answer with: `unsafe\nS1,S2,...` fits easily.
const MAX_ANSWER_TOKENS: u32 = 24;

/// A served model as the classifier.
pub(crate) struct EngineClassifier {
    name: String,
    model: Result<Arc<ServedModel>, String>,
    /// Tokens of the prompts it was asked and of its answers, over every question.
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    busy_nanos: AtomicU64,
}

/// The tokens a classifier's questions and answers took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ClassifierTokens {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    /// The engine's time on them (`Usage::busy`).
    pub(crate) busy: std::time::Duration,
}

impl EngineClassifier {
    /// The served model `name`; a model that is not served makes every answer an error.
    pub(crate) fn new(state: &AppState, name: &str) -> EngineClassifier {
        EngineClassifier {
            name: name.to_owned(),
            model: state.model(name).map_err(|error| error.message),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            busy_nanos: AtomicU64::new(0),
        }
    }

    /// The tokens its questions and answers took so far.
    pub(crate) fn tokens(&self) -> ClassifierTokens {
        ClassifierTokens {
            prompt: self.prompt_tokens.load(Ordering::Relaxed),
            completion: self.completion_tokens.load(Ordering::Relaxed),
            busy: std::time::Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed)),
        }
    }

    async fn ask(&self, text: String) -> Result<String, ClassifierError> {
        let model = self
            .model
            .as_ref()
            .map_err(|e| ClassifierError(e.clone()))?;
        let messages = vec![ChatMessage::text("user", text)];
        let tokens = prompt::chat(model, &self.name, messages, None, Default::default())
            .await
            .map_err(|error| ClassifierError(error.message))?
            .tokens;
        self.prompt_tokens
            .fetch_add(tokens.len() as u64, Ordering::Relaxed);
        let request = ValidGenerate {
            prompt: Prompt::Tokens(tokens),
            sampling: SamplingParams {
                temperature: 0.0,
                ..SamplingParams::default()
            },
            stop: StopConditions {
                max_tokens: MAX_ANSWER_TOKENS,
                stop_strings: Vec::new(),
                ignore_eos: false,
            },
            logprobs: None,
            prompt_logprobs: false,
            deadline: None,
            grammar: None,
            thinking: None,
        };
        let mut stream = model
            .engine
            .generate(request)
            .map_err(|error| ClassifierError(error.to_string()))?;
        let mut answer = String::new();
        while let Some(event) = stream.next().await {
            match event.map_err(|error| ClassifierError(error.to_string()))? {
                GenerationEvent::Token(token) => {
                    self.completion_tokens.fetch_add(1, Ordering::Relaxed);
                    answer.push_str(&token.text);
                }
                GenerationEvent::Finished { usage, .. } => {
                    let nanos = u64::try_from(usage.busy.as_nanos()).unwrap_or(u64::MAX);
                    self.busy_nanos.fetch_add(nanos, Ordering::Relaxed);
                    break;
                }
                GenerationEvent::Started { .. } => {}
            }
        }
        Ok(answer)
    }
}

impl Classifier for EngineClassifier {
    fn complete(
        &self,
        prompt: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, ClassifierError>> + Send + '_>> {
        Box::pin(self.ask(prompt))
    }
}

/// The conversation as the classifier sees it: user and assistant turns with text.
fn turns(messages: &[ChatMessage]) -> Vec<Turn> {
    // Earlier thinking is read for the turns after the last user message, the ones templates
    // such as Qwen3's still show (a client that sends every answer back with its thinking
    // would otherwise grow the classifier's prompt without bound).
    let last_user = messages.iter().rposition(|message| message.role == "user");
    messages
        .iter()
        .enumerate()
        .filter_map(|(index, message)| {
            let speaker = match message.role.as_str() {
                "user" => Speaker::User,
                "assistant" => Speaker::Agent,
                _ => return None,
            };
            let text = match &message.content {
                Some(MessageContent::Text(text)) => text.clone(),
                Some(MessageContent::Parts(parts)) => parts
                    .iter()
                    .filter_map(|part| part.text.as_deref())
                    .collect::<Vec<_>>()
                    .join(" "),
                None => String::new(),
            };
            let shown = last_user.is_none_or(|last| index > last);
            let reasoning = crate::guarding::message_reasoning(message).filter(|_| shown);
            let text = match reasoning {
                Some(reasoning) if text.is_empty() => reasoning.to_owned(),
                Some(reasoning) => format!("{reasoning}\n{text}"),
                None if message.content.is_none() => return None,
                None => text,
            };
            Some(Turn { speaker, text })
        })
        .collect()
}

/// The audit name of an outcome: `classifier.unsafe.S1`, `classifier.error`, ….
pub(crate) fn outcome_rails(outcome: &ClassifierOutcome) -> Vec<String> {
    match &outcome.verdict {
        Ok(SafetyVerdict::Safe) => Vec::new(),
        Ok(SafetyVerdict::Unsafe { categories }) if categories.is_empty() => {
            vec!["classifier.unsafe".into()]
        }
        Ok(SafetyVerdict::Unsafe { categories }) => categories
            .iter()
            .map(|c| format!("classifier.unsafe.S{c}"))
            .collect(),
        Err(_) => vec!["classifier.error".into()],
    }
}

/// A bound on the tokens [`classify_counted`] takes to judge `text` alone as the user's turn.
pub(crate) fn token_bound(policy: &ClassifierPolicy, text: &str) -> u64 {
    let turn = [Turn {
        speaker: Speaker::User,
        text: text.to_owned(),
    }];
    turns_bound(policy, &turn, Speaker::User)
}

/// A bound on the tokens [`classify_counted`] takes to judge `turns`: the classifier prompt's
/// bytes (a token is at least a byte, but for the chat template's special tokens, which the
/// margin covers) and the longest answer.
fn turns_bound(policy: &ClassifierPolicy, turns: &[Turn], judged: Speaker) -> u64 {
    const TEMPLATE_MARGIN: u64 = 64;
    let prompt = moat_guard::classifier::build_prompt(turns, judged, &policy.categories);
    prompt.len() as u64 + TEMPLATE_MARGIN + u64::from(MAX_ANSWER_TOKENS)
}

/// Asks the configured classifier model about `turns`, judging `judged`; returns its verdict
/// and the tokens its questions and answers took, which are the caller's to pay.
pub(crate) async fn classify_counted(
    state: &AppState,
    model: &str,
    policy: &ClassifierPolicy,
    turns: &[Turn],
    judged: Speaker,
) -> (ClassifierOutcome, ClassifierTokens) {
    let classifier = EngineClassifier::new(state, model);
    let outcome = policy.check(&classifier, turns, judged).await;
    (outcome, classifier.tokens())
}

/// The classifier rail on a chat's input, when the request's policy has one and the server
/// names a classifier model: block → `content_policy_violation`, flag → recorded. The
/// classifier's work is the caller's: the request is admitted for a bound on it first (a key
/// past its limits is turned away before the classifier runs), and its tokens count against
/// the key's limits and as its usage of the classifier model.
pub(crate) async fn input_rail(
    state: &AppState,
    guard: &ChosenGuard,
    messages: &[ChatMessage],
    caller: &Caller,
) -> Result<(), ApiError> {
    let Some(policy) = &guard.classifier else {
        return Ok(());
    };
    let turns = turns(messages);
    if turns.is_empty() {
        return Ok(());
    }
    let ticket = &caller.ticket;
    let outcome = match state.trust().classifier_model() {
        Some(model) => {
            caller.admit_first(state.trust(), turns_bound(policy, &turns, Speaker::User))?;
            let (outcome, tokens) =
                classify_counted(state, model, policy, &turns, Speaker::User).await;
            ticket.add_side_usage(model, tokens.prompt, tokens.completion, tokens.busy);
            outcome
        }
        // A policy that asks for a classifier on a server without one fails closed too.
        None => policy.decide(Err(ClassifierError(
            "no classifier model is configured ([guard] classifier_model)".into(),
        ))),
    };
    ticket.record_rails(decision_of(outcome.action), outcome_rails(&outcome));
    if let Some(record) = ticket.record() {
        record.count_classifier(outcome.action);
    }
    if outcome.action == Action::Block {
        return Err(GuardError::Blocked {
            rail: Rail::Input,
            classes: outcome_rails(&outcome),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(role: &str, text: Option<&str>, reasoning: Option<&str>) -> ChatMessage {
        let mut message = ChatMessage::text(role, text.unwrap_or_default());
        if text.is_none() {
            message.content = None;
        }
        if let Some(reasoning) = reasoning {
            message.extra.insert(
                moat_openai::REASONING_CONTENT.into(),
                serde_json::Value::from(reasoning),
            );
        }
        message
    }

    #[test]
    fn thinking_is_read_for_the_turns_after_the_last_user_message() {
        let messages = [
            said("user", Some("q1"), None),
            said("assistant", Some("a1"), Some("old thinking")),
            said("user", Some("q2"), None),
            said("assistant", None, Some("thinking before a call")),
            said("tool", Some("result"), None),
            said("assistant", Some("a2"), Some("more thinking")),
        ];
        let texts: Vec<(Speaker, String)> = turns(&messages)
            .into_iter()
            .map(|turn| (turn.speaker, turn.text))
            .collect();
        assert_eq!(
            texts,
            [
                (Speaker::User, "q1".to_owned()),
                (Speaker::Agent, "a1".to_owned()),
                (Speaker::User, "q2".to_owned()),
                (Speaker::Agent, "thinking before a call".to_owned()),
                (Speaker::Agent, "more thinking\na2".to_owned()),
            ]
        );
    }
}
