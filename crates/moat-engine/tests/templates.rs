//! Chat templates rendered by moat against Hugging Face's own rendering, byte for byte: every
//! case in `fixtures/templates/cases.json` (real GGUF templates and inline ones that pin down
//! Python semantics) has its reference output in `fixtures/templates/expected/`, written by
//! real Jinja2 through `fixtures/templates/make_expected.py`. It does not know how moat's
//! server builds the messages; it feeds the cases' OpenAI-shaped JSON straight in.
//!
//! Cases that need a GGUF are skipped when `MOAT_TEST_MODELS` is unset and fail when it is set
//! but the model is missing.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use moat_engine::{
    select_template_source, ChatMessage, ChatTemplate, RenderOptions, TemplateError,
};
use moat_gguf::GgufFile;
use moat_testkit::models;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/templates")
}

fn case(name: &str) -> Value {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let cases: Value = serde_json::from_str(&text).unwrap();
    let found = cases["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name);
    found
        .unwrap_or_else(|| panic!("no case {name} in cases.json"))
        .clone()
}

/// A GGUF's chat template (if any) and its bos/eos token strings.
struct GgufTemplate {
    source: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

fn read_gguf_template(path: &Path) -> GgufTemplate {
    let gguf = GgufFile::open(path).unwrap();
    let tokens = gguf.get_array("tokenizer.ggml.tokens").unwrap();
    let token = |key: &str| {
        let id = gguf.get_u64(key)?;
        Some(
            tokens
                .get_str(usize::try_from(id).unwrap())
                .unwrap()
                .to_owned(),
        )
    };
    GgufTemplate {
        source: gguf.get_str("tokenizer.chat_template").map(str::to_owned),
        bos_token: token("tokenizer.ggml.bos_token_id"),
        eos_token: token("tokenizer.ggml.eos_token_id"),
    }
}

/// The case's template, or `None` when it needs a GGUF and `MOAT_TEST_MODELS` is unset.
fn template_for(case: &Value) -> Option<ChatTemplate> {
    let text = |key: &str| case[key].as_str().map(str::to_owned);
    let (source, bos, eos) = match case["model"].as_str() {
        Some(model) => {
            let gguf = read_gguf_template(&moat_testkit::test_model(model)?);
            (gguf.source.unwrap(), gguf.bos_token, gguf.eos_token)
        }
        None => (
            text("template").unwrap(),
            text("bos_token"),
            text("eos_token"),
        ),
    };
    Some(ChatTemplate::new(&source, bos, eos).unwrap())
}

fn render_case(case: &Value, template: &ChatTemplate) -> Result<String, TemplateError> {
    let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
    let options = RenderOptions {
        add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap_or(false),
        tools: case.get("tools").cloned(),
        extra: case
            .get("extra")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
    };
    template.render(&messages, &options)
}

/// Renders case `name` and compares it with its reference output.
fn check(name: &str) {
    let case = case(name);
    let Some(template) = template_for(&case) else {
        return;
    };
    let rendered = render_case(&case, &template);
    let expected = fixtures().join("expected");
    let raised = expected.join(format!("{name}.raised.txt"));
    if raised.exists() {
        let message = std::fs::read_to_string(raised).unwrap();
        assert_eq!(rendered, Err(TemplateError::Raised(message)));
        return;
    }
    let want = std::fs::read_to_string(expected.join(format!("{name}.txt"))).unwrap();
    let got = rendered.unwrap_or_else(|err| panic!("{name}: {err}"));
    assert!(
        got == want,
        "{name} differs from Hugging Face's rendering\n--- want\n{want:?}\n--- got\n{got:?}"
    );
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $( #[test] fn $name() { check(stringify!($name)); } )*

        #[test]
        fn every_case_in_the_fixtures_has_a_test() {
            let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
            let cases: Value = serde_json::from_str(&text).unwrap();
            let mut in_fixtures: Vec<&str> = cases["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap())
                .collect();
            let mut tested = vec![$(stringify!($name)),*];
            in_fixtures.sort_unstable();
            tested.sort_unstable();
            assert_eq!(in_fixtures, tested);
        }
    };
}

cases!(
    smollm2_single_user,
    smollm2_multi_turn,
    smollm2_multi_turn_no_generation_prompt,
    smollm2_text_parts,
    qwen_single_user,
    qwen_multi_turn,
    qwen_tools,
    qwen_tools_without_system,
    qwen_text_parts,
    inline_python_values,
    inline_string_methods,
    inline_loop_controls,
    inline_whitespace,
    inline_tojson,
    inline_raise_exception,
    inline_generation_tag,
    inline_content_parts_as_given,
    inline_extra_context,
);

#[test]
fn a_model_without_a_chat_template_is_a_clear_error() {
    let Some(path) = moat_testkit::test_model(models::GEMMA3) else {
        return;
    };
    let gguf = read_gguf_template(&path);
    assert_eq!(gguf.source, None);
    let err = select_template_source(None, gguf.source.as_deref()).unwrap_err();
    assert_eq!(err, TemplateError::Missing);
    assert!(err.to_string().contains("no chat template"), "{err}");
    let manifest = "{% for m in messages %}{{ m.content }}{% endfor %}";
    assert_eq!(
        select_template_source(Some(manifest), gguf.source.as_deref()),
        Ok(manifest)
    );
}

#[test]
fn the_manifest_override_wins_over_the_gguf_template() {
    let Some(path) = moat_testkit::test_model(models::SMOLLM2) else {
        return;
    };
    let gguf = read_gguf_template(&path);
    let manifest =
        "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}";
    let source = select_template_source(Some(manifest), gguf.source.as_deref()).unwrap();
    let template = ChatTemplate::new(source, gguf.bos_token, gguf.eos_token).unwrap();
    let rendered = template
        .render(
            &[ChatMessage::text("user", "hi")],
            &RenderOptions::default(),
        )
        .unwrap();
    assert_eq!(rendered, "<|im_start|>user: hi\n");
}
