//! A reasoning model's thinking in the engine, with the real Qwen2.5-Coder-0.5B (no reasoning
//! model small enough ships in a package, so its prompts open `<think>` as DeepSeek-R1's
//! template does): a thinking budget makes the model write the closing tag once it is spent,
//! and a grammar that waits for the thinking holds only what follows it.

#![allow(clippy::unwrap_used)]

mod common;

use common::{generate, qwen, request, Collected};
use moat_engine::{Engine, FinishReason, Grammar, Thinking, ValidGenerate};
use moat_engine_llamacpp::LlamaEngine;
use serde_json::Value;

const QUESTION: &str = "Give three fruits and their colors as a JSON object.";
const FRUITS: &str = r#"{"type": "object",
  "properties": {"fruits": {"type": "array", "maxItems": 3,
    "items": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
      "color": {"type": "string", "maxLength": 12}}, "required": ["name", "color"],
      "additionalProperties": false}}},
  "required": ["fruits"], "additionalProperties": false}"#;

/// A chat prompt whose generation prompt opens the thinking (DeepSeek-R1's kind) or not.
fn prompt(opened: bool) -> String {
    let open = if opened { "<think>\n" } else { "" };
    format!("<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n{open}")
}

fn thinking(opened: bool, budget: Option<u32>, grammar_after: bool) -> Thinking {
    Thinking {
        open: "<think>".to_owned(),
        close: "</think>".to_owned(),
        opened,
        budget,
        grammar_after,
    }
}

fn asked(opened: bool, max_tokens: u32) -> ValidGenerate {
    let mut request = request(&prompt(opened), max_tokens);
    request.stop.ignore_eos = false;
    request
}

/// The tokens of the closing text the engine forces.
fn closing(engine: &LlamaEngine) -> Vec<i32> {
    engine.tokenize("\n</think>\n\n", false, true).unwrap()
}

/// The output's text after the thinking's closing tag, which must be there.
fn after_thinking(out: &Collected) -> String {
    let text = out.text();
    let (_, after) = text
        .split_once("</think>")
        .unwrap_or_else(|| panic!("the thinking never ended: {text:?}"));
    after.to_owned()
}

fn assert_fruits(text: &str) {
    let value: Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    assert!(value["fruits"].is_array(), "{text}");
}

#[tokio::test]
async fn a_spent_budget_makes_the_model_close_its_thinking() {
    let Some(engine) = qwen() else {
        return;
    };
    let free = generate(&engine, asked(true, 24)).await;
    assert!(
        !free.text().contains("</think>"),
        "free-running, the model never closes the thinking: {:?}",
        free.text()
    );
    let closing = closing(&engine);
    for budget in [0, 5] {
        let mut bounded = asked(true, 24);
        bounded.thinking = Some(thinking(true, Some(budget), false));
        let out = generate(&engine, bounded).await;
        let at = budget as usize;
        // The budget's tokens are the model's own (the same as free-running), then the tag.
        assert_eq!(out.ids()[..at], free.ids()[..at], "{:?}", out.text());
        assert_eq!(
            out.ids()[at..at + closing.len()],
            closing[..],
            "{:?}",
            out.text()
        );
        assert!(
            out.tokens.len() > at + closing.len(),
            "the model goes on: {:?}",
            out.text()
        );
    }
}

#[tokio::test]
async fn a_budget_counts_from_the_opening_tag_the_model_writes() {
    let Some(engine) = qwen() else {
        return;
    };
    let lead = engine.tokenize("<", false, true).unwrap();
    assert_eq!(lead.len(), 1);
    // Without the opening tag the budget never starts, however small.
    let mut plain = asked(false, 12);
    plain.thinking = Some(thinking(false, Some(0), false));
    let unbounded = asked(false, 12);
    assert_eq!(
        generate(&engine, plain).await.ids(),
        generate(&engine, unbounded).await.ids()
    );
    // A grammar that waits for the thinking lets the answer open it; the bias makes the model
    // do so, the budget ends it, and what follows is held to the schema.
    let mut opens = asked(false, 200);
    opens.sampling.logit_bias = vec![(lead[0], 30.0)];
    opens.grammar = Some(Grammar::JsonSchema(FRUITS.to_owned()));
    opens.thinking = Some(thinking(false, Some(3), true));
    let out = generate(&engine, opens).await;
    let text = out.text();
    assert!(text.starts_with("<think>"), "{text:?}");
    assert_eq!(out.reason, FinishReason::Stop, "{text:?}");
    assert_fruits(&after_thinking(&out));
}

#[tokio::test]
async fn a_grammar_after_the_thinking_holds_only_the_answer() {
    let Some(engine) = qwen() else {
        return;
    };
    // The prompt opened the thinking: the grammar lets the model think, the budget ends it,
    // and the answer follows the schema.
    let mut opened = asked(true, 200);
    opened.grammar = Some(Grammar::JsonSchema(FRUITS.to_owned()));
    opened.thinking = Some(thinking(true, Some(6), true));
    let out = generate(&engine, opened).await;
    assert_eq!(out.reason, FinishReason::Stop, "{:?}", out.text());
    let thought = out.text();
    let thought = thought.split("</think>").next().unwrap();
    assert!(!thought.trim().is_empty(), "{:?}", out.text());
    assert_fruits(&after_thinking(&out));

    // A model that does not open its thinking answers to the schema at once, as it does with
    // the grammar alone.
    let mut direct = asked(false, 200);
    direct.grammar = Some(Grammar::JsonSchema(FRUITS.to_owned()));
    let held = generate(&engine, direct.clone()).await;
    direct.thinking = Some(thinking(false, None, true));
    let after = generate(&engine, direct).await;
    assert_eq!(after.ids(), held.ids(), "{:?}", after.text());
    assert_fruits(&after.text());
}

#[tokio::test]
async fn a_grammar_that_refuses_the_closing_tag_keeps_its_text() {
    let Some(engine) = qwen() else {
        return;
    };
    // The grammar holds the whole answer (not waiting for the thinking): the forced tag is not
    // one of its texts, so the budget gives way to it.
    let texts = vec!["a long thought</think>yes".to_owned()];
    let mut held = asked(true, 32);
    held.grammar = Some(Grammar::Choice(texts.clone()));
    held.thinking = Some(thinking(true, Some(1), false));
    let out = generate(&engine, held).await;
    assert_eq!(out.text(), texts[0]);
    assert_eq!(out.reason, FinishReason::Stop);
}
