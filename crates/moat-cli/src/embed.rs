//! `moat embed MODEL [TEXT...]`: embeds each TEXT (or, without any, each line of stdin) with a
//! stored embedding model and prints one JSON array of floats per input, in input order, so
//! scripts can read the vectors line by line. Stdin is read and embedded in batches, so a long
//! stream starts printing before it ends. An empty or too-long input fails the command,
//! naming its index; nothing is truncated.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use moat_engine::{EmbedInput, Embedder};

use crate::knowledge::StoreEmbedders;

/// Inputs per `embed` call when reading stdin.
const STDIN_BATCH: usize = 64;

#[derive(Args)]
pub struct EmbedArgs {
    /// The embedding model (a stored sentence-transformers folder or embedding GGUF).
    model: String,
    /// Texts to embed; without any, every line of stdin is one text.
    texts: Vec<String>,
}

pub fn run(home: &Path, args: EmbedArgs) -> Result<u8> {
    let embedder = StoreEmbedders::new(home).load_embedder(&args.model)?;
    if !args.texts.is_empty() {
        print_vectors(embedder.as_ref(), args.texts, 0)?;
        return Ok(0);
    }
    let stdin = std::io::stdin();
    let mut batch = Vec::with_capacity(STDIN_BATCH);
    let mut offset = 0;
    for line in stdin.lock().lines() {
        batch.push(line.context("reading stdin")?);
        if batch.len() == STDIN_BATCH {
            let texts = std::mem::take(&mut batch);
            offset += print_vectors(embedder.as_ref(), texts, offset)?;
        }
    }
    if !batch.is_empty() {
        print_vectors(embedder.as_ref(), batch, offset)?;
    }
    Ok(0)
}

/// Embeds `texts` (inputs `offset..` of the whole run) and prints their vectors.
fn print_vectors(embedder: &dyn Embedder, texts: Vec<String>, offset: usize) -> Result<usize> {
    let count = texts.len();
    let inputs: Vec<EmbedInput> = texts.into_iter().map(EmbedInput::Text).collect();
    let embeddings = embedder.embed(&inputs).map_err(|error| {
        anyhow::anyhow!("{error}").context(format!(
            "embedding inputs {offset} to {} (0-based; indexes in the message are within this batch)",
            offset + count - 1
        ))
    })?;
    for vector in embeddings.vectors {
        println!("{}", serde_json::to_string(&vector)?);
    }
    Ok(count)
}
