//! all-MiniLM-L6-v2 end to end: vectors against the independent numpy reference, batching,
//! token arrays and the input errors, all on the real model.

mod common;

use std::sync::OnceLock;

use common::{cosine, load_minilm, reference, reference_inputs};
use moat_embed::{BatchLimits, SentenceEmbedder};
use moat_engine::{EmbedInput, Embedder, EngineError};

fn minilm() -> &'static SentenceEmbedder {
    static EMBEDDER: OnceLock<SentenceEmbedder> = OnceLock::new();
    EMBEDDER.get_or_init(load_minilm)
}

fn embed_one(embedder: &SentenceEmbedder, input: EmbedInput) -> Vec<f32> {
    let mut out = embedder.embed(&[input]).expect("embed");
    assert_eq!(out.vectors.len(), 1);
    out.vectors.remove(0)
}

fn invalid_request(result: Result<moat_engine::Embeddings, EngineError>) -> String {
    match result {
        Err(EngineError::InvalidRequest(message)) => message,
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn info_follows_the_sentence_transformers_config() {
    let info = minilm().info();
    assert_eq!(info.model, "all-minilm-l6-v2");
    assert_eq!(info.dimension, 384);
    // sentence_bert_config.json's 256, not tokenizer.json's 128 or the position table's 512.
    assert_eq!(info.max_tokens, 256);
    assert!(info.normalized);
}

#[test]
fn every_vector_matches_the_numpy_reference() {
    let embedder = minilm();
    let reference = reference();
    let inputs = reference_inputs(embedder, &reference);
    let mut min = f64::MAX;
    for (i, (input, expected)) in inputs.into_iter().zip(&reference.vectors).enumerate() {
        let vector = embed_one(embedder, input);
        assert_eq!(vector.len(), expected.len());
        let norm: f64 = vector
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
        let c = cosine(&vector, expected);
        assert!(c >= 0.999, "text {i} {:?}: cosine {c}", reference.texts[i]);
        min = min.min(c);
    }
    println!(
        "minimum cosine to the reference over {} texts: {min:.9}",
        reference.texts.len()
    );
}

#[test]
fn token_counts_match_the_reference() {
    let embedder = minilm();
    let reference = reference();
    let max = reference.max_seq_length;
    let mut truncated = 0;
    for (text, &expected) in reference.texts.iter().zip(&reference.token_counts) {
        let count = embedder.count_tokens(text).expect("count") as usize;
        if count > max {
            // The reference truncated this text; moat counts all of it.
            assert_eq!(expected, max, "{text:?}");
            truncated += 1;
        } else {
            assert_eq!(count, expected, "{text:?}");
            assert_eq!(embedder.token_ids(text).expect("ids").len() + 2, count);
        }
    }
    assert!(truncated > 0, "the fixture must exercise truncation");
    let inputs = reference_inputs(embedder, &reference);
    let used = embedder.embed(&inputs).expect("embed").prompt_tokens;
    assert_eq!(used, reference.token_counts.iter().sum::<usize>() as u64);
}

#[test]
fn a_batch_equals_one_by_one_in_input_order() {
    let reference = reference();
    // Tight bounds force several batches, each reordered by length.
    let limits = BatchLimits {
        max_padded_tokens: 300,
        max_sequences: 6,
    };
    for embedder in [load_minilm(), load_minilm().with_batch_limits(limits)] {
        let inputs = reference_inputs(&embedder, &reference);
        let batch = embedder.embed(&inputs).expect("batch");
        assert_eq!(batch.vectors.len(), inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let single = embed_one(&embedder, input.clone());
            let c = cosine(&batch.vectors[i], &single);
            assert!(c >= 0.9999, "input {i}: batch vs single cosine {c}");
            // And it is not just close to its own: every other input is further away.
            for (j, other) in batch.vectors.iter().enumerate().filter(|(j, _)| *j != i) {
                assert!(cosine(other, &single) < c, "input {j} looks like input {i}");
            }
        }
    }
}

#[test]
fn token_arrays_embed_like_their_text() {
    let embedder = minilm();
    let texts = [
        "Hello, world!",
        "Café, naïve, résumé.",
        "fn main() {}",
        "東京は日本の首都です。",
    ];
    for text in texts {
        let ids = embedder.token_ids(text).expect("ids");
        let from_text = embedder
            .embed(&[EmbedInput::Text(text.to_owned())])
            .expect("text");
        let from_ids = embedder.embed(&[EmbedInput::Tokens(ids)]).expect("tokens");
        assert_eq!(from_text.prompt_tokens, from_ids.prompt_tokens, "{text:?}");
        let c = cosine(&from_text.vectors[0], &from_ids.vectors[0]);
        assert!(c >= 0.99999, "{text:?}: cosine {c}");
    }
}

#[test]
fn an_input_past_max_tokens_is_refused_naming_it() {
    let embedder = minilm();
    let long = "word ".repeat(300);
    let message = invalid_request(
        embedder.embed(&[EmbedInput::Text("fine".to_owned()), EmbedInput::Text(long)]),
    );
    assert!(
        message.contains("input 1") && message.contains("256"),
        "{message}"
    );

    // 254 ids plus [CLS] and [SEP] fit exactly; one more does not.
    let word = embedder.token_ids("word").expect("ids");
    assert_eq!(word.len(), 1);
    let fits = embedder
        .embed(&[EmbedInput::Tokens(vec![word[0]; 254])])
        .expect("fits");
    assert_eq!(fits.prompt_tokens, 256);
    let message = invalid_request(embedder.embed(&[EmbedInput::Tokens(vec![word[0]; 255])]));
    assert!(
        message.contains("input 0") && message.contains("257"),
        "{message}"
    );
}

#[test]
fn empty_inputs_are_refused_naming_them() {
    let embedder = minilm();
    for (index, inputs) in [
        (0, vec![EmbedInput::Text(String::new())]),
        (
            2,
            vec![
                EmbedInput::Text("a".to_owned()),
                EmbedInput::Text("b".to_owned()),
                EmbedInput::Tokens(Vec::new()),
            ],
        ),
    ] {
        let message = invalid_request(embedder.embed(&inputs));
        assert!(
            message.contains(&format!("input {index} is empty")),
            "{message}"
        );
    }
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let embedder = minilm();
    for bad in [30_522, -1, i32::MAX] {
        let message = invalid_request(embedder.embed(&[EmbedInput::Tokens(vec![2054, bad])]));
        assert!(
            message.contains("input 0") && message.contains("token 1") && message.contains("30521"),
            "{message}"
        );
    }
}

#[test]
fn no_inputs_give_no_vectors() {
    let out = minilm().embed(&[]).expect("empty call");
    assert!(out.vectors.is_empty());
    assert_eq!(out.prompt_tokens, 0);
}
