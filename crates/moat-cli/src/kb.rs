//! `moat kb`: knowledge bases from the command line. `create` binds a name to an embedding
//! model, `add` ingests files and folders incrementally (a progress line on stderr, a summary
//! on stdout), `ls`, `show`, `rm` (a whole knowledge base, or one document) and `query`.
//!
//! Exit codes: 0 ok, 1 error, 2 usage. `add` exits 0 when some files failed (each is listed
//! with its reason) and the rest went in, so one bad file in a big folder does not fail a
//! script; `--strict` makes any per-file failure exit 1. The work itself is moat-rag's; where
//! the knowledge lives and how models load is `knowledge.rs`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use moat_rag::{ingest, retrieve, IdentityReranker, IngestOptions, IngestProgress, IngestReport};
use moat_rag::{RetrieveParams, SearchMode};
use moat_vector::{Filter, KbSpec, VectorStore};
use serde_json::json;

use crate::knowledge::{open_vector_store, settings, StoreEmbedders};
use crate::EXIT_ERROR;

#[derive(Subcommand)]
pub enum KbCommand {
    /// Create a knowledge base whose chunks are embedded with MODEL.
    Create(CreateArgs),
    /// Add files and folders (recursively, with .gitignore/.moatignore rules); only new or
    /// changed files are embedded, and files deleted from an added folder leave the knowledge
    /// base.
    Add(AddArgs),
    /// List the knowledge bases.
    #[command(alias = "list")]
    Ls(JsonArgs),
    /// Show a knowledge base: its embedding model, documents and chunks.
    Show(ShowArgs),
    /// Remove a knowledge base, or one of its documents with --document.
    Rm(RmArgs),
    /// Search a knowledge base.
    Query(QueryArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Knowledge base name: 1-64 letters, digits, '.', '_' or '-'.
    name: String,
    /// The embedding model (a stored sentence-transformers folder or embedding GGUF).
    #[arg(long = "embed", value_name = "MODEL")]
    embed: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct AddArgs {
    /// The knowledge base.
    name: String,
    /// Files and folders to add.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Tag every document written by this run (repeatable); replaces their former tags.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Exit 1 when any file failed (by default failures are listed and the exit code is 0).
    #[arg(long)]
    strict: bool,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct JsonArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The knowledge base.
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RmArgs {
    /// The knowledge base.
    name: String,
    /// Remove only this document (its path as `kb show` lists it).
    #[arg(long, value_name = "PATH")]
    document: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Hybrid,
    Vector,
    Text,
}

#[derive(Args)]
pub struct QueryArgs {
    /// The knowledge base.
    name: String,
    /// The question or keywords.
    query: String,
    /// How many hits.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    top_k: u32,
    #[arg(long, value_enum, default_value = "hybrid")]
    mode: Mode,
    /// Only documents whose path matches this glob (`*` within a segment, `**` across).
    #[arg(long = "path", value_name = "GLOB")]
    path_glob: Option<String>,
    /// Only documents with this tag (repeatable: all of them).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Drop hits whose cosine similarity to the query is below this (-1 to 1).
    #[arg(long, allow_hyphen_values = true)]
    min_score: Option<f32>,
    #[arg(long)]
    json: bool,
}

pub fn run(home: &Path, command: KbCommand) -> Result<u8> {
    let settings = settings(home, None)?;
    let store = open_vector_store(home, &settings.backend)?;
    let store = store.as_ref();
    match command {
        KbCommand::Create(args) => create(home, store, args),
        KbCommand::Add(args) => add(home, store, args),
        KbCommand::Ls(args) => ls(store, args.json),
        KbCommand::Show(args) => show(store, args),
        KbCommand::Rm(args) => rm(store, args),
        KbCommand::Query(args) => query(home, store, args),
    }
}

fn create(home: &Path, store: &dyn VectorStore, args: CreateArgs) -> Result<u8> {
    moat_vector::validate_kb_name(&args.name)?;
    let embedder = gated_embedders(home)?.load_embedder(&args.embed)?;
    let info = embedder.info();
    let created = store.create_kb(&KbSpec {
        name: args.name,
        embed_model: info.model.clone(),
        dimension: info.dimension,
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&created)?);
    } else {
        println!(
            "created knowledge base {} (embeddings: {}, {} dimensions)",
            created.name, created.embed_model, created.dimension
        );
    }
    Ok(0)
}

/// Embedders behind the license gate of moat.toml's `[deployment]` (in the working folder or
/// `$MOAT_HOME`), as `moat serve` loads them.
fn gated_embedders(home: &Path) -> Result<StoreEmbedders> {
    let profile = crate::license::config_profile(home, None)?;
    Ok(StoreEmbedders::new(home).with_license_gate(profile, false))
}

/// The knowledge base's own embedder.
fn kb_embedder(
    home: &Path,
    store: &dyn VectorStore,
    name: &str,
) -> Result<Arc<dyn moat_engine::Embedder>> {
    let info = store.kb(name)?;
    gated_embedders(home)?
        .load_embedder(&info.embed_model)
        .with_context(|| {
            format!(
                "loading {}, the embedding model of {name}",
                info.embed_model
            )
        })
}

fn add(home: &Path, store: &dyn VectorStore, args: AddArgs) -> Result<u8> {
    let embedder = kb_embedder(home, store, &args.name)?;
    for path in &args.paths {
        if !path.exists() {
            bail!("{}: no such file or folder", path.display());
        }
    }
    let options = IngestOptions {
        tags: args.tags.clone(),
        ..IngestOptions::default()
    };
    let mut progress = IngestBar::new(args.quiet);
    let report = ingest(
        store,
        embedder.as_ref(),
        &args.name,
        &args.paths,
        &options,
        &mut |p| progress.update(p),
    )?;
    progress.end();
    if report.chunks > 0 || report.removed > 0 {
        if !args.quiet {
            eprintln!("building the search index of {}", args.name);
        }
        store
            .finish_indexing(&args.name)
            .context("building the search index (the knowledge base itself is complete)")?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
    } else {
        print_report(&report);
    }
    Ok(if args.strict && !report.failed.is_empty() {
        EXIT_ERROR
    } else {
        0
    })
}

fn report_json(report: &IngestReport) -> serde_json::Value {
    json!({
        "added": report.added,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "removed": report.removed,
        "chunks": report.chunks,
        "failed": report.failed.iter().map(|f| json!({"path": f.path, "reason": f.reason})).collect::<Vec<_>>(),
        "removal_skipped": report.removal_skipped,
    })
}

fn print_report(report: &IngestReport) {
    println!(
        "added {}, updated {}, unchanged {}, removed {}, failed {} ({} chunks embedded)",
        report.added,
        report.updated,
        report.unchanged,
        report.removed,
        report.failed.len(),
        report.chunks
    );
    for failure in &report.failed {
        println!("  failed: {}: {}", failure.path, failure.reason);
    }
    for root in &report.removal_skipped {
        println!("  note: {root}: its walk met an error, so no documents under it were removed");
    }
}

fn ls(store: &dyn VectorStore, json: bool) -> Result<u8> {
    let kbs = store.list_kbs()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&kbs)?);
        return Ok(0);
    }
    if kbs.is_empty() {
        println!("no knowledge bases; create one with `moat kb create NAME --embed MODEL`");
        return Ok(0);
    }
    println!(
        "{:<24} {:<28} {:>10} {:>10}",
        "NAME", "EMBED MODEL", "DOCUMENTS", "CHUNKS"
    );
    for kb in kbs {
        println!(
            "{:<24} {:<28} {:>10} {:>10}",
            kb.name, kb.embed_model, kb.documents, kb.chunks
        );
    }
    Ok(0)
}

fn show(store: &dyn VectorStore, args: ShowArgs) -> Result<u8> {
    let info = store.kb(&args.name)?;
    let documents = store.documents(&args.name)?;
    if args.json {
        let mut value = serde_json::to_value(&info)?;
        if let serde_json::Value::Object(object) = &mut value {
            object.insert("document_list".into(), serde_json::to_value(&documents)?);
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    println!("name:        {}", info.name);
    println!(
        "embed model: {} ({} dimensions)",
        info.embed_model, info.dimension
    );
    println!("documents:   {}", info.documents);
    println!("chunks:      {}", info.chunks);
    for document in documents {
        let tags = if document.tags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", document.tags.join(", "))
        };
        println!("  {}  ({} chunks){tags}", document.path, document.chunks);
    }
    Ok(0)
}

fn rm(store: &dyn VectorStore, args: RmArgs) -> Result<u8> {
    match args.document {
        None => {
            store.delete_kb(&args.name)?;
            println!("removed knowledge base {}", args.name);
        }
        Some(document) => {
            if !store.remove_document(&args.name, &document)? {
                bail!("knowledge base {} has no document {document:?}", args.name);
            }
            println!("removed {document} from {}", args.name);
        }
    }
    Ok(0)
}

fn query(home: &Path, store: &dyn VectorStore, args: QueryArgs) -> Result<u8> {
    let embedder = kb_embedder(home, store, &args.name)?;
    if let Some(score) = args.min_score {
        if !(score.is_finite() && (-1.0..=1.0).contains(&score)) {
            bail!("--min-score {score} is out of range: expected -1 to 1");
        }
    }
    let params = RetrieveParams {
        mode: match args.mode {
            Mode::Hybrid => SearchMode::Hybrid,
            Mode::Vector => SearchMode::Vector,
            Mode::Text => SearchMode::Text,
        },
        top_k: args.top_k as usize,
        min_score: args.min_score,
        filter: Filter {
            path_glob: args.path_glob,
            tags: args.tags,
        },
        ..RetrieveParams::default()
    };
    let hits = retrieve(
        store,
        embedder.as_ref(),
        &args.name,
        &args.query,
        &params,
        &IdentityReranker,
    )?;
    if args.json {
        let hits: Vec<_> = hits
            .iter()
            .map(|h| {
                json!({
                    "path": h.hit.path,
                    "chunk_id": h.hit.chunk_id,
                    "ordinal": h.hit.ordinal,
                    "text": h.hit.text,
                    "location": h.hit.location,
                    "score": h.score,
                    "vector_score": h.vector_score,
                    "vector_rank": h.vector_rank,
                    "text_rank": h.text_rank,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(0);
    }
    if hits.is_empty() {
        println!("no hits");
    }
    for (rank, h) in hits.iter().enumerate() {
        let location = &h.hit.location;
        let mut place = String::new();
        if location.page > 0 {
            place.push_str(&format!(" page {}", location.page));
        }
        if location.line_start > 0 {
            place.push_str(&format!(
                " lines {}-{}",
                location.line_start, location.line_end
            ));
        }
        let similarity = h
            .vector_score
            .map(|s| format!(", similarity {s:.3}"))
            .unwrap_or_default();
        println!(
            "{}. {}{place} (score {:.4}{similarity})",
            rank + 1,
            h.hit.path,
            h.score
        );
        let snippet: String = h.hit.text.chars().take(300).collect();
        for line in snippet.lines().filter(|l| !l.trim().is_empty()) {
            println!("   {line}");
        }
    }
    Ok(0)
}

/// The ingest progress line: files done of total, chunks embedded, the current file. On a
/// terminal it is redrawn in place; otherwise a line is printed every few seconds.
struct IngestBar {
    tty: bool,
    quiet: bool,
    last_draw: Option<Instant>,
    drew: bool,
}

impl IngestBar {
    fn new(quiet: bool) -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            quiet,
            last_draw: None,
            drew: false,
        }
    }

    fn update(&mut self, progress: &IngestProgress<'_>) {
        if self.quiet {
            return;
        }
        let interval = if self.tty {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(5)
        };
        let last = progress.current.is_none();
        if !last && self.last_draw.is_some_and(|at| at.elapsed() < interval) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let line = format!(
            "files {}/{}  chunks {}  {}",
            progress.files_done,
            progress.files_total,
            progress.chunks_embedded,
            progress.current.unwrap_or("done")
        );
        let mut stderr = std::io::stderr().lock();
        if self.tty {
            let _ = write!(stderr, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(stderr, "{line}");
        }
        let _ = stderr.flush();
        self.drew = true;
    }

    fn end(&mut self) {
        if self.tty && self.drew {
            eprintln!();
        }
    }
}
