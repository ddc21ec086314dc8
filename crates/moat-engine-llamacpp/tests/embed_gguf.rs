//! The llama.cpp embedder on a real GGUF: all-MiniLM-L6-v2 converted by
//! `scripts/convert_minilm_gguf.py` (made by `scripts/fetch-test-models.sh`), checked against
//! the independent numpy reference committed in `crates/moat-embed/tests/fixtures` (made by
//! `scripts/embed_reference.py`, which follows sentence-transformers: truncation at 256 tokens,
//! mean pooling, L2 normalisation).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use moat_engine::{EmbedInput, Embedder, EngineError};
use moat_engine_llamacpp::{EmbedderOptions, LlamaEmbedder};
use moat_testkit::{models, repo_root, test_model};

/// File name inside `MOAT_TEST_MODELS` (written by `fetch-test-models.sh minilm_gguf`).
const MINILM_GGUF: &str = "all-minilm-l6-v2.gguf";
const REFERENCE: &str = "crates/moat-embed/tests/fixtures/minilm-reference.json";
const MIN_COSINE: f64 = 0.999;

fn minilm(options: impl FnOnce(&mut EmbedderOptions)) -> Option<LlamaEmbedder> {
    let path = test_model(MINILM_GGUF)?;
    let mut load_options = EmbedderOptions::new("all-minilm-l6-v2:gguf");
    options(&mut load_options);
    Some(LlamaEmbedder::load(&path, load_options).unwrap())
}

struct Reference {
    texts: Vec<String>,
    token_counts: Vec<u32>,
    vectors: Vec<Vec<f32>>,
}

fn reference() -> Reference {
    let path: PathBuf = repo_root().join(REFERENCE);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
        panic!(
            "{}: {error}; it is made by scripts/embed_reference.py",
            path.display()
        )
    });
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let texts: Vec<String> = serde_json::from_value(json["texts"].clone()).unwrap();
    let token_counts: Vec<u32> = serde_json::from_value(json["token_counts"].clone()).unwrap();
    let vectors: Vec<Vec<f32>> = serde_json::from_value(json["vectors"].clone()).unwrap();
    assert!(!texts.is_empty());
    assert_eq!(texts.len(), token_counts.len());
    assert_eq!(texts.len(), vectors.len());
    Reference {
        texts,
        token_counts,
        vectors,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// Each reference text as the model must see it: the text itself, or, where sentence-transformers
/// truncated it, its first tokens as ids (this embedder never truncates on its own).
fn reference_inputs(embedder: &LlamaEmbedder, reference: &Reference) -> Vec<EmbedInput> {
    let max_tokens = embedder.info().max_tokens;
    reference
        .texts
        .iter()
        .zip(&reference.token_counts)
        .map(|(text, &expected)| {
            if embedder.count_tokens(text).unwrap() <= max_tokens {
                return EmbedInput::Text(text.clone());
            }
            assert_eq!(expected, max_tokens, "the reference truncated {text:?}");
            let mut tokens = embedder.tokenize(text, false);
            tokens.truncate(max_tokens as usize - 2);
            EmbedInput::Tokens(tokens)
        })
        .collect()
}

#[test]
fn vectors_match_the_numpy_reference() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let reference = reference();
    let info = embedder.info();
    assert_eq!(info.dimension, 384);
    assert_eq!(info.max_tokens, 256, "the GGUF's context is max_seq_length");
    assert!(info.normalized);

    let inputs = reference_inputs(&embedder, &reference);
    let embeddings = embedder.embed(&inputs).unwrap();
    assert_eq!(embeddings.vectors.len(), reference.texts.len());
    let mut worst = (f64::INFINITY, 0);
    for (index, (got, want)) in embeddings
        .vectors
        .iter()
        .zip(&reference.vectors)
        .enumerate()
    {
        let similarity = cosine(got, want);
        if similarity < worst.0 {
            worst = (similarity, index);
        }
        let norm = got
            .iter()
            .map(|&x| f64::from(x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "vector {index} has norm {norm}");
    }
    println!(
        "minimum cosine against the reference: {:.6} (text {}: {:?})",
        worst.0, worst.1, reference.texts[worst.1]
    );
    for (index, (got, want)) in embeddings
        .vectors
        .iter()
        .zip(&reference.vectors)
        .enumerate()
    {
        let similarity = cosine(got, want);
        assert!(
            similarity >= MIN_COSINE,
            "text {index} {:?}: cosine {similarity:.6} < {MIN_COSINE}",
            reference.texts[index]
        );
    }
    let expected_tokens: u64 = reference.token_counts.iter().map(|&n| u64::from(n)).sum();
    assert_eq!(embeddings.prompt_tokens, expected_tokens);
}

#[test]
fn token_counts_match_the_reference() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let reference = reference();
    for (text, &expected) in reference.texts.iter().zip(&reference.token_counts) {
        let counted = embedder.count_tokens(text).unwrap();
        // The reference counts what the model saw: at most max_seq_length tokens.
        assert_eq!(counted.min(256), expected, "{text:?}");
    }
}

#[test]
fn a_batch_gives_the_vectors_of_one_by_one() {
    // Small batches so the reference texts span several forward passes.
    let Some(embedder) = minilm(|options| {
        options.batch_tokens = 300;
        options.max_sequences = 3;
    }) else {
        return;
    };
    let reference = reference();
    let inputs = reference_inputs(&embedder, &reference);
    let batched = embedder.embed(&inputs).unwrap();
    let mut worst: f64 = 1.0;
    for (index, input) in inputs.iter().enumerate() {
        let alone = embedder.embed(std::slice::from_ref(input)).unwrap();
        assert_eq!(alone.vectors.len(), 1);
        let similarity = cosine(&alone.vectors[0], &batched.vectors[index]);
        worst = worst.min(similarity);
        assert!(
            similarity > 0.99999,
            "input {index}: batched and alone differ (cosine {similarity})"
        );
    }
    println!("minimum cosine between batched and one-by-one: {worst:.8}");
}

#[test]
fn tokens_in_give_the_vector_of_their_text() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let text = "A man is playing a guitar.";
    let tokens = embedder.tokenize(text, false);
    assert_eq!(
        tokens.len() + 2,
        embedder.count_tokens(text).unwrap() as usize
    );
    let both = embedder
        .embed(&[EmbedInput::Text(text.into()), EmbedInput::Tokens(tokens)])
        .unwrap();
    let similarity = cosine(&both.vectors[0], &both.vectors[1]);
    assert!(similarity > 0.99999, "cosine {similarity}");
    assert_eq!(both.prompt_tokens, 2 * 9);
}

#[test]
fn an_input_of_exactly_the_context_fits_and_one_more_token_does_not() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let word = embedder.tokenize("word", false);
    assert_eq!(word.len(), 1);
    let fits = EmbedInput::Tokens(vec![word[0]; 254]);
    let embeddings = embedder.embed(std::slice::from_ref(&fits)).unwrap();
    assert_eq!(embeddings.prompt_tokens, 256);

    let too_long = EmbedInput::Tokens(vec![word[0]; 255]);
    let error = embedder.embed(&[fits, too_long]).unwrap_err();
    let EngineError::InvalidRequest(message) = error else {
        panic!("expected InvalidRequest, got {error:?}");
    };
    assert!(message.contains("input 1 is 257 tokens"), "{message}");
    assert!(message.contains("at most 256"), "{message}");

    let long_text = "word ".repeat(300);
    let error = embedder.embed(&[EmbedInput::Text(long_text)]).unwrap_err();
    assert!(
        matches!(&error, EngineError::InvalidRequest(m) if m.contains("input 0 is 302 tokens")),
        "{error:?}"
    );
}

#[test]
fn empty_and_out_of_vocabulary_inputs_are_refused_by_index() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let ok = EmbedInput::Text("fine".into());
    let cases = [
        (EmbedInput::Text(String::new()), "input 1 is empty"),
        (EmbedInput::Tokens(Vec::new()), "input 1 is empty"),
        (EmbedInput::Tokens(vec![30_522]), "input 1: token id 30522"),
        (EmbedInput::Tokens(vec![-1]), "input 1: token id -1"),
    ];
    for (bad, expected) in cases {
        let error = embedder.embed(&[ok.clone(), bad.clone()]).unwrap_err();
        assert!(
            matches!(&error, EngineError::InvalidRequest(m) if m.contains(expected)),
            "{bad:?}: {error:?}"
        );
    }
    // The embedder still works after refusing.
    assert_eq!(embedder.embed(&[ok]).unwrap().vectors.len(), 1);
    assert_eq!(embedder.embed(&[]).unwrap().vectors.len(), 0);
}

#[test]
fn vectors_are_raw_when_normalisation_is_off() {
    let Some(embedder) = minilm(|options| options.normalize = false) else {
        return;
    };
    assert!(!embedder.info().normalized);
    let vector = embedder
        .embed(&[EmbedInput::Text("The cat sits on the mat.".into())])
        .unwrap()
        .vectors
        .remove(0);
    let norm = vector
        .iter()
        .map(|&x| f64::from(x).powi(2))
        .sum::<f64>()
        .sqrt();
    // Mean-pooled MiniLM vectors are far from unit length before the Normalize module.
    assert!((norm - 1.0).abs() > 0.1, "norm {norm}");
}

#[test]
fn a_chat_model_is_not_an_embedding_model() {
    let Some(path) = test_model(models::SMOLLM2) else {
        return;
    };
    let Err(error) = LlamaEmbedder::load(&path, EmbedderOptions::new("smollm2")) else {
        panic!("SmolLM2 loaded as an embedder");
    };
    assert!(
        matches!(&error, EngineError::ModelLoad(m) if m.contains("pooling_type")),
        "{error:?}"
    );
}

#[test]
fn a_missing_or_broken_file_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.gguf");
    assert!(matches!(
        LlamaEmbedder::load(&missing, EmbedderOptions::new("x")),
        Err(EngineError::ModelLoad(_))
    ));
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, b"GGUF\x03\x00\x00\x00 not really a model").unwrap();
    assert!(matches!(
        LlamaEmbedder::load(&broken, EmbedderOptions::new("x")),
        Err(EngineError::ModelLoad(_))
    ));
}

#[test]
fn callers_on_several_threads_share_one_embedder() {
    let Some(embedder) = minilm(|_| {}) else {
        return;
    };
    let embedder: std::sync::Arc<dyn Embedder> = std::sync::Arc::new(embedder);
    let texts = [
        "The cat sits on the mat.",
        "Hello, world!",
        "a",
        "Привет, как дела?",
    ];
    let alone: Vec<Vec<f32>> = texts
        .iter()
        .map(|&text| {
            let input = EmbedInput::Text(text.into());
            embedder.embed(&[input]).unwrap().vectors.remove(0)
        })
        .collect();
    let threads: Vec<_> = texts
        .iter()
        .map(|&text| {
            let embedder = std::sync::Arc::clone(&embedder);
            std::thread::spawn(move || {
                let inputs = vec![EmbedInput::Text(text.into()); 5];
                embedder.embed(&inputs).unwrap().vectors
            })
        })
        .collect();
    for (thread, expected) in threads.into_iter().zip(&alone) {
        for vector in thread.join().unwrap() {
            let similarity = cosine(&vector, expected);
            assert!(similarity > 0.99999, "cosine {similarity}");
        }
    }
}
