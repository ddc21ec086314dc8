//! `moat serve [MODEL...]`: the OpenAI-compatible server on 127.0.0.1 by default. It resolves
//! the models in the store (the default model is pulled when no model is named and it is
//! missing), refuses a model whose license forbids this deployment unless told otherwise,
//! answers at once (`/health` is 503 while models load), loads each with llama.cpp off the
//! runtime, and on SIGTERM or Ctrl-C stops admitting, lets requests in flight finish within
//! the grace period, then exits. The HTTP side is moat-server's; this file is the glue.
//!
//! Trust: the keys and audit log in `$MOAT_HOME/moat.db`, `[guard]` and `[audit]` of moat.toml
//! and each alias's `guard` become the server's `TrustConfig`. A non-loopback `--host` while no
//! key exists is refused (exit 2) unless `--insecure`; a license override is audited.
//!
//! Traces: with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`, or `[observability]` in
//! moat.toml; see `observability.rs`) every request's spans go to that collector; a bad URL
//! exits with code 2 before anything starts, and the spans still queued are sent at shutdown.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use moat_engine::Engine;
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};
use moat_openai::ModelLimits;
use moat_otlp::Exporter;
use moat_server::{
    serve, Alias, AppState, Knowledge, LogFormat, ModelCard, ServedModel, ServerConfig,
    ShutdownOutcome, Trust, TrustConfig,
};
use moat_store::recipe::DEFAULT_RECIPE;
use moat_store::{ErrorKind, Manifest, ModelFormat, PullOptions, Source, Store};
use tokio::sync::Notify;

use crate::knowledge::{model_kind, open_vector_store, ModelKind, StoreEmbedders};
use crate::models::{open_store, recipes_dir};
use crate::progress::TermProgress;
use crate::trust::{open_auth, open_meter};
use crate::CANCEL;

#[derive(Args)]
pub struct ServeArgs {
    /// Models to serve, by name[:tag]: chat models (GGUF) and embedding models (a
    /// sentence-transformers folder or an embedding GGUF, for /v1/embeddings). Default: the
    /// default model (recipe "smollm2"), pulled if it is not in the store yet.
    models: Vec<String>,
    /// Address to listen on. Anything but loopback exposes the API to the network.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    host: IpAddr,
    #[arg(long, default_value_t = ServerConfig::DEFAULT_PORT)]
    port: u16,
    #[command(flatten)]
    engine: EngineArgs,
    /// Requests that may wait for a free sequence, per model; past it clients get 429.
    #[arg(long, default_value_t = LoadOptions::DEFAULT_MAX_QUEUE)]
    max_queue: u32,
    /// Largest request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = ServerConfig::DEFAULT_BODY_LIMIT_BYTES, value_name = "BYTES")]
    body_limit: usize,
    /// After SIGTERM or Ctrl-C, how long requests in flight may run before the server exits.
    #[arg(long, default_value_t = ServerConfig::DEFAULT_SHUTDOWN_GRACE.as_secs(), value_name = "SECONDS")]
    shutdown_grace: u64,
    /// Serve a model even if its license forbids this deployment (see `moat license check`);
    /// the override is written to the audit log.
    #[arg(long)]
    allow_forbidden_license: bool,
    /// Listen beyond loopback, or allow `--cors-origin '*'`, even though no API key exists,
    /// so anyone who can reach the port (or any web page) can use the API.
    #[arg(long)]
    insecure: bool,
    /// Serve /metrics without an API key even once keys exist (by default it then needs an
    /// admin key).
    #[arg(long)]
    metrics_public: bool,
    /// Let web pages from ORIGIN (`http://localhost:3000`) call the API from a browser;
    /// repeat for several, or `*` for any site (refused while no API key exists, unless
    /// --insecure). Without it browsers keep other sites' pages from reading the answers.
    #[arg(long = "cors-origin", value_name = "ORIGIN", value_parser = parse_origin)]
    cors_origins: Vec<String>,
    /// Most tokens a reasoning model may spend thinking in a chat request that sets no budget
    /// of its own (`thinking_token_budget`, `reasoning_budget_tokens`); then it is made to end
    /// its thinking and answer. -1: no limit; 0: it answers at once.
    #[arg(long, default_value_t = -1, value_name = "TOKENS", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..=i64::from(u32::MAX)))]
    reasoning_budget: i64,
    /// The request log on stderr: one text line per request, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
    /// Send request traces to this OpenTelemetry collector (OTLP/HTTP with JSON; spans go to
    /// URL/v1/traces). Default: $OTEL_EXPORTER_OTLP_ENDPOINT, else [observability]
    /// otlp_endpoint in moat.toml; none of them: no traces.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// A moat.toml with [deployment], [knowledge], [aliases.NAME], [guard], [audit] and
    /// [observability] tables (default: ./moat.toml, else $MOAT_HOME/moat.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(format: LogFormatArg) -> Self {
        match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// How llama.cpp runs a model; shared by `serve` and `run`.
#[derive(Args, Clone)]
pub struct EngineArgs {
    /// Sequences decoded in parallel per model.
    #[arg(long, default_value_t = LoadOptions::DEFAULT_PARALLEL)]
    pub parallel: u32,
    /// Context per sequence, in tokens (prompt plus completion).
    #[arg(long, default_value_t = LoadOptions::DEFAULT_N_CTX_PER_SEQ)]
    pub ctx: u32,
    /// Compute threads (default: the cores this process may use).
    #[arg(long)]
    pub threads: Option<u32>,
    /// Recompute every prompt instead of reusing KV entries of a shared prefix (for
    /// benchmarks and debugging).
    #[arg(long)]
    pub no_prefix_reuse: bool,
    /// One KV cache for all sequences instead of one each: a prefix shared by running
    /// sequences is held once, but every step attends over all sequences' cells, which slows
    /// generation as more run (llama.cpp's `--kv-unified`).
    #[arg(long)]
    pub kv_unified: bool,
    /// Tokens of earlier prompts kept in host memory after their sequence was given to other
    /// work, so a prompt seen before is not recomputed (default: what 2 GiB of the model's KV
    /// entries hold, at least parallel × ctx; on a GPU 0; 0 turns it off).
    #[arg(long, value_name = "TOKENS")]
    pub cache_tokens: Option<u32>,
    /// Niceness of the compute threads, 0 to 19. Above 0 they yield to the rest of the
    /// process, so token delivery never waits behind a decode (steadier gaps between tokens
    /// on a machine of its own), but beside other busy processes the decode then gets far
    /// less than its share of the CPU; 0 (the default) is the process's own priority.
    /// --compute-slice evens the gaps too, without that cost.
    #[arg(long, value_name = "N", default_value_t = moat_engine::compute::DEFAULT_COMPUTE_NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub compute_nice: i32,
    /// Layers to offload to the GPU on a GPU build (`--features cuda|metal|vulkan`), counting
    /// the output layer like llama.cpp's `-ngl` (default: all; 0: run on the CPU).
    #[arg(long, value_name = "N")]
    pub gpu_layers: Option<u32>,
    /// Milliseconds to wait, after a request arrives while more are likely (fewer in the
    /// engine than at its peak, a slot free), for the rest of the burst, so their prompts
    /// share one prefill step; within 10 % of the prefill's estimated cost (0: off).
    #[arg(long, value_name = "MS",
          default_value_t = moat_engine::arrival::DEFAULT_QUIET.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    pub arrival_window: u64,
    /// Microseconds a model's thread and the compute executor poll for each other's hand-off
    /// of a decode step before they sleep. The first model decodes on its own thread with no
    /// hand-off; a second model, or any model when an embedder took the executor first, hands
    /// each step over. Polling saves two wake-ups a step (some 100 µs), which counts where
    /// steps are short, as for a small model on a GPU, but holds a core while it polls
    /// (default: 2000 when the process has a core beyond --threads and one more, else 0,
    /// which turns it off).
    #[arg(long, value_name = "MICROS",
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub compute_poll: Option<u64>,
    /// Milliseconds of CPU time the thread that decodes (the compute executor's: the first
    /// model's own, or a compute thread) asks the kernel for at a stretch (its time slice;
    /// Linux 6.12 and later, else ignored). Longer than the kernel's default (about
    /// 1-3 ms), it lets threads that wake up during a decode, the one that writes a token to
    /// its client or a client on the same machine, run before the decode ends, without giving
    /// the decode less than its share of the CPU as --compute-nice does. 0 keeps the kernel's
    /// default.
    #[arg(long, value_name = "MS",
          default_value_t = moat_engine_llamacpp::DEFAULT_COMPUTE_SLICE.as_millis() as u64,
          value_parser = clap::value_parser!(u64)
              .range(0..=moat_engine_llamacpp::MAX_COMPUTE_SLICE.as_millis() as u64))]
    pub compute_slice: u64,
}

/// A stored model ready to load: its manifest and GGUF file.
pub struct ModelFile {
    pub manifest: Manifest,
    pub gguf: PathBuf,
}

/// The GGUF file of a stored model.
pub fn model_file(store: &Store, name: &str) -> Result<ModelFile> {
    let manifest = store.resolve(name)?;
    if manifest.format != ModelFormat::Gguf {
        bail!(
            "{} is a {:?} model; moat runs GGUF models",
            manifest.name,
            manifest.format
        );
    }
    let weights = manifest
        .weights()
        .with_context(|| format!("{} has no weights file", manifest.name))?;
    let gguf = store.file_path(&manifest, &weights.digest)?;
    Ok(ModelFile { manifest, gguf })
}

/// The compute executor's niceness and time slice, for whichever thread takes its role first
/// (the first model's, or a compute thread that an embedder starts). Called at startup and again
/// by each load, which then finds the thread running with what the first call set: the same
/// flags.
pub fn configure_compute(engine: &EngineArgs) {
    let _ = moat_engine::compute::set_compute_nice(engine.compute_nice);
    moat_engine_llamacpp::set_compute_slice(std::time::Duration::from_millis(engine.compute_slice));
}

/// Starts loading `model` with llama.cpp (the manifest's chat template replaces the GGUF's).
pub fn load_engine(model: &ModelFile, engine: &EngineArgs, max_queue: u32) -> Result<LlamaEngine> {
    configure_compute(engine);
    let mut options = LoadOptions::new(model.manifest.name.to_string());
    options.n_ctx_per_seq = engine.ctx;
    options.parallel = engine.parallel;
    options.prefix_reuse = !engine.no_prefix_reuse;
    options.kv_unified = engine.kv_unified;
    options.host_cache_tokens = engine.cache_tokens;
    options.gpu_layers = engine.gpu_layers;
    options.arrival.quiet = std::time::Duration::from_millis(engine.arrival_window);
    options.compute_poll = engine.compute_poll.map(std::time::Duration::from_micros);
    if let Some(threads) = engine.threads {
        options.n_threads = threads;
    }
    options.max_queue = max_queue;
    options.chat_template_override = model.manifest.chat_template.clone();
    LlamaEngine::load(&model.gguf, options)
        .with_context(|| format!("loading {}", model.manifest.name))
}

/// The manifest's settings that apply to requests.
pub fn model_limits(manifest: &Manifest) -> ModelLimits {
    ModelLimits {
        defaults: manifest.sampling.clone(),
        system_prompt: manifest.system_prompt.clone(),
        ..ModelLimits::default()
    }
}

/// What the Ollama API's listings say about a stored model: the manifest's weights file and
/// the GGUF header's facts (the header was read at load already; a failure here leaves the
/// facts out rather than the model).
pub fn model_card(model: &ModelFile) -> ModelCard {
    let manifest = &model.manifest;
    let weights = manifest
        .files
        .iter()
        .find(|file| file.role == moat_store::FileRole::Weights);
    let info = moat_store::inspect::inspect_gguf(&model.gguf, &manifest.name.to_string()).ok();
    let info = info.as_ref();
    ModelCard {
        format: Some("gguf".into()),
        architecture: info.and_then(|i| i.architecture.clone()),
        parameters: info.map(|i| i.parameters).filter(|n| *n > 0),
        quantization: info.and_then(|i| i.file_type.clone()),
        size_bytes: weights.map(|file| file.size),
        digest: weights.map(|file| file.digest.hex()),
        modified_unix: Some(manifest.created_unix),
        context_length: info.and_then(|i| i.context_length),
        embedding_length: info.and_then(|i| i.embedding_length),
        block_count: info.and_then(|i| i.block_count),
        head_count: info.and_then(|i| i.head_count),
        vocab_size: info.and_then(|i| i.vocab_size),
        license: manifest
            .license
            .clone()
            .or_else(|| info.and_then(|i| i.license.license.clone())),
    }
}

/// A `--cors-origin` value, checked as `moat_server::valid_origin` checks it.
fn parse_origin(origin: &str) -> Result<String, String> {
    moat_server::valid_origin(origin).map(|()| origin.to_owned())
}

/// Exit code when `moat serve` refuses an unsafe setup (as for a usage error).
const EXIT_REFUSED: u8 = 2;

/// How long shutdown waits for the last trace spans to reach the collector.
const TRACE_FLUSH_DEADLINE: Duration = Duration::from_secs(5);

pub fn run(home: &Path, args: ServeArgs) -> Result<u8> {
    configure_compute(&args.engine);
    let observability = crate::observability::section(home, args.config.as_deref())?;
    let otlp = match crate::observability::exporter_config(
        args.otlp_endpoint.as_deref(),
        |name| std::env::var(name).ok(),
        &observability,
    ) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(EXIT_REFUSED);
        }
    };
    let otlp = match otlp {
        Some(config) => {
            let endpoint = config.endpoint.clone();
            let exporter = Exporter::start(config).context("starting the trace exporter")?;
            eprintln!("traces: OTLP/HTTP to {endpoint}");
            Some(exporter)
        }
        None => None,
    };
    let auth = Arc::new(open_auth(home)?);
    let any_site = args.cors_origins.iter().any(|origin| origin == "*");
    if any_site && !auth.keys_exist()? {
        if !args.insecure {
            eprintln!(
                "error: refusing --cors-origin '*' without API keys: any web page the user opens \
                 could use the API. Create a key first (`moat keys create`), name the origins \
                 that may call it, or pass --insecure"
            );
            return Ok(EXIT_REFUSED);
        }
        eprintln!(
            "warning: --cors-origin '*' without API keys (--insecure): any web page the user \
             opens can use the API"
        );
    }
    if !args.host.is_loopback() && !auth.keys_exist()? {
        if !args.insecure {
            eprintln!(
                "error: refusing to listen on {} without API keys: anyone on the network could use \
                 the API. Create a key first (`moat keys create`), listen on 127.0.0.1, or pass \
                 --insecure to serve without keys anyway",
                args.host
            );
            return Ok(EXIT_REFUSED);
        }
        eprintln!(
            "warning: listening on {} without API keys (--insecure): the API is open to anyone \
             who can reach it",
            args.host
        );
    }
    let trust_settings = crate::trust::settings(home, args.config.as_deref())?;
    let retention = trust_settings.audit.retention_days;
    let meter = Arc::new(open_meter(home, trust_settings.audit.clone())?);
    if let Some(days) = retention {
        let removed = meter.retain(days, crate::license::unix_ms())?;
        if removed > 0 {
            eprintln!("audit log: removed {removed} entries older than {days} days");
        }
    }
    let store = open_store(home)?;
    let tables = crate::knowledge::top_level_tables(home, args.config.as_deref());
    for table in tables
        .iter()
        .filter(|t| !crate::knowledge::is_known_table(t))
    {
        eprintln!(
            "warning: moat.toml: [{table}] is not a table moat reads; it is ignored (a typo?)"
        );
    }
    let mut gateway = crate::gateway::settings(home, args.config.as_deref())?;
    if gateway.is_none() {
        for table in tables
            .iter()
            .filter(|t| matches!(t.as_str(), "cache" | "routing"))
        {
            eprintln!(
                "warning: moat.toml: [{table}] applies to aliases with targets (the gateway's), \
                 and there are none; it is ignored"
            );
        }
    }
    if let Some(config) = &mut gateway {
        crate::gateway::resolve_local_models(config, &store);
    }
    let mut names = match (&gateway, args.models.is_empty()) {
        // A gateway serves what its aliases' local targets name (none for a pure gateway).
        (Some(_), true) => Vec::new(),
        (None, true) => vec![default_model(home, &store)?],
        (_, false) => args.models.clone(),
    };
    if let Some(config) = &gateway {
        for model in crate::gateway::local_models(config) {
            let named = names.iter().any(|name| {
                store
                    .resolve(name)
                    .is_ok_and(|m| m.name.to_string() == model)
            });
            if !named {
                names.push(model);
            }
        }
    }
    let profile = crate::license::config_profile(home, args.config.as_deref())?;
    let mut models = Vec::new();
    let mut embedding_models = Vec::new();
    for name in &names {
        let manifest = store.resolve(name)?;
        if crate::license::license_gate(&store, &manifest, &profile, args.allow_forbidden_license)?
        {
            crate::license::audit_override(&meter, &manifest.name.to_string())?;
        }
        if model_kind(&store, &manifest)? == ModelKind::Embedding {
            embedding_models.push(manifest.name.to_string());
            continue;
        }
        models.push(model_file(&store, name)?);
    }
    let (knowledge, mut alias_guards) =
        knowledge(home, &store, args.config.as_deref(), embedding_models, {
            // Embedding models loaded later (a knowledge base's) pass the same license gate.
            StoreEmbedders::new(home)
                .with_license_gate(profile.clone(), args.allow_forbidden_license)
                .with_audit(Arc::clone(&meter))
        })?;
    let served: Vec<String> = models.iter().map(|m| m.manifest.name.to_string()).collect();
    let routed: Vec<&String> = gateway.iter().flat_map(|g| g.aliases.keys()).collect();
    check_aliases(&knowledge, &served, &routed)?;
    if let Some(config) = &gateway {
        for (name, alias) in &config.aliases {
            if let Some(guard) = &alias.guard {
                alias_guards.insert(name.clone(), guard.clone());
            }
        }
    }
    let guard = trust_settings.guard;
    let classifier_model = guard.classifier_model.map(|name| {
        store
            .resolve(&name)
            .map(|m| m.name.to_string())
            .unwrap_or(name)
    });
    let trust = Trust::new(TrustConfig {
        auth: Some(auth),
        meter: Some(meter),
        record_prompts: trust_settings.audit.record_prompts,
        policies: guard.policies,
        default_guard: guard.default,
        alias_guards,
        key_guards: guard.keys,
        restore_redactions: guard.restore_redactions,
        classifier_model,
        prices: Some(trust_settings.prices),
        cost: trust_settings.cost,
    })
    .context("the [guard] configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let reload = gateway.as_ref().map(|config| Reload {
        home: home.to_path_buf(),
        config: args.config.clone(),
        guards: gateway_guards(config),
    });
    let result = runtime.block_on(serve_models(
        models,
        knowledge,
        trust,
        gateway.map(|config| (config, reload)),
        otlp.clone(),
        &args,
    ));
    runtime.shutdown_timeout(Duration::from_secs(1));
    if let Some(exporter) = otlp {
        if !exporter.flush(TRACE_FLUSH_DEADLINE) {
            eprintln!(
                "warning: trace spans still queued after {} s were not sent",
                TRACE_FLUSH_DEADLINE.as_secs()
            );
        }
    }
    result
}

/// The name of the default model, pulled first if the store lacks it.
fn default_model(home: &Path, store: &Store) -> Result<String> {
    let source = Source::parse(DEFAULT_RECIPE, &recipes_dir(home))?;
    let Source::Recipe(recipe) = &source else {
        bail!("the default recipe {DEFAULT_RECIPE} is missing");
    };
    match store.resolve(&recipe.model_name) {
        Ok(manifest) => return Ok(manifest.name.to_string()),
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(error.into()),
    }
    eprintln!("pulling the default model {}", recipe.model_name);
    let mut progress = TermProgress::new(false);
    let options = PullOptions {
        name: None,
        expected_sha256: None,
        cancel: Some(&CANCEL),
        progress: &mut progress,
        recipes_dir: recipes_dir(home),
    };
    Ok(moat_store::pull(store, &source, options)?.name.to_string())
}

/// The server's knowledge side: the knowledge store, embedders from the model store, the
/// embedding models named on the command line, and `moat.toml`'s aliases (their models by
/// their full names, as the server knows them), and the aliases' guard policies.
fn knowledge(
    home: &Path,
    store: &Store,
    config: Option<&Path>,
    embedding_models: Vec<String>,
    embedders: StoreEmbedders,
) -> Result<(Knowledge, BTreeMap<String, String>)> {
    let settings = crate::knowledge::settings(home, config)?;
    let vector_store = open_vector_store(home, &settings.backend)?;
    let alias_guards = settings
        .aliases
        .iter()
        .filter_map(|(name, alias)| Some((name.clone(), alias.guard.clone()?)))
        .collect();
    let aliases = settings
        .aliases
        .into_iter()
        .map(|(name, alias)| {
            let model = store
                .resolve(&alias.model)
                .map(|manifest| manifest.name.to_string())
                .unwrap_or(alias.model);
            (
                name,
                Alias {
                    model,
                    knowledge_base: alias.knowledge_base,
                },
            )
        })
        .collect();
    let knowledge = Knowledge {
        store: Some(vector_store),
        embedders: Some(Arc::new(embedders)),
        embedding_models,
        aliases,
    };
    Ok((knowledge, alias_guards))
}

/// An alias must name a chat model this server serves (else every request to it is a 404 that
/// names a model the client never asked for), and no alias may take the name of a served model
/// (clients could then reach only one of the two, and `/v1/models` would list the name twice).
fn check_aliases(knowledge: &Knowledge, served: &[String], routed: &[&String]) -> Result<()> {
    let is_model =
        |name: &String| served.contains(name) || knowledge.embedding_models.contains(name);
    for (name, alias) in &knowledge.aliases {
        if is_model(name) {
            bail!("moat.toml: [aliases.\"{name}\"] has the name of a model this server serves; give the alias another name");
        }
        if !served.contains(&alias.model) {
            bail!(
                "moat.toml: [aliases.\"{name}\"] names the model '{}', which this server does not serve as a chat model (it serves: {}); add it to `moat serve`'s models or fix the name",
                alias.model,
                served.join(", ")
            );
        }
    }
    if let Some(name) = routed.iter().find(|name| is_model(name)) {
        bail!("moat.toml: [aliases.\"{name}\"] has the name of a model this server serves; give the alias another name");
    }
    Ok(())
}

/// Where `moat serve` re-reads the gateway's routes on SIGHUP.
#[derive(Clone)]
struct Reload {
    home: PathBuf,
    config: Option<PathBuf>,
    /// The gateway aliases' guard policies the server started with: the trust layer took
    /// them then, so a reload may not change them.
    guards: BTreeMap<String, String>,
}

/// Each gateway alias's guard policy, by alias.
fn gateway_guards(config: &moat_gateway::GatewayConfig) -> BTreeMap<String, String> {
    config
        .aliases
        .iter()
        .filter_map(|(name, alias)| Some((name.clone(), alias.guard.clone()?)))
        .collect()
}

impl Reload {
    /// Reads the routes again and swaps them in; on any error the old routes stay. A change
    /// to any alias's guard (a new alias with one included) is such an error: the guards are
    /// read once, at start, and routes whose guard did not take effect would serve unguarded.
    fn apply(&self, gateway: &moat_gateway::Gateway) -> Result<()> {
        let mut config =
            crate::gateway::settings(&self.home, self.config.as_deref())?.unwrap_or_default();
        let guards = gateway_guards(&config);
        if guards != self.guards {
            let changed: Vec<&String> = guards
                .keys()
                .chain(self.guards.keys())
                .filter(|name| guards.get(*name) != self.guards.get(*name))
                .collect();
            bail!(
                "the guard of alias {} changed; guards take effect on restart, so the new routes \
                 are not used",
                changed.first().map_or("?", |name| name.as_str())
            );
        }
        let store = open_store(&self.home)?;
        crate::gateway::resolve_local_models(&mut config, &store);
        gateway.reload(&config)?;
        Ok(())
    }
}

/// A server without gateway aliases has nothing to reload: SIGHUP says so rather than ending
/// the process (its default action), since `kill -HUP` is how a moat server reloads.
fn ignore_sighup() {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangup.recv().await.is_some() {
            eprintln!(
                "SIGHUP: this server started without gateway aliases, so there are no routes \
                 to reload; other settings take effect on restart"
            );
        }
    });
}

/// Reloads the gateway's routes on every SIGHUP, for as long as the server runs. Requests in
/// flight finish on the routes they started with.
fn reload_on_sighup(gateway: Arc<moat_gateway::Gateway>, reload: Reload) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            eprintln!("warning: cannot listen for SIGHUP; the gateway's routes will not reload");
            return;
        };
        while hangup.recv().await.is_some() {
            let gateway = Arc::clone(&gateway);
            let reload = reload.clone();
            let outcome =
                tokio::task::spawn_blocking(move || reload.apply(&gateway).map(|()| gateway)).await;
            match outcome {
                Ok(Ok(gateway)) => eprintln!(
                    "SIGHUP: gateway routes reloaded ({} aliases)",
                    gateway.aliases().len()
                ),
                Ok(Err(error)) => {
                    eprintln!("SIGHUP: keeping the old gateway routes: {error:#}")
                }
                Err(error) => eprintln!("SIGHUP: reloading failed: {error}"),
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (gateway, reload);
}

async fn serve_models(
    models: Vec<ModelFile>,
    knowledge: Knowledge,
    trust: Trust,
    gateway: Option<(moat_gateway::GatewayConfig, Option<Reload>)>,
    otlp: Option<Exporter>,
    args: &ServeArgs,
) -> Result<u8> {
    let config = ServerConfig {
        bind: SocketAddr::new(args.host, args.port),
        body_limit_bytes: args.body_limit,
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        metrics_public: args.metrics_public,
        cors_origins: args.cors_origins.clone(),
        log_format: args.log_format.into(),
        otlp,
        // -1, the one value the parser lets through that does not fit, means no limit.
        thinking_budget: u32::try_from(args.reasoning_budget).ok(),
        ..ServerConfig::default()
    };
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("listening on {}", config.bind))?;
    let address = listener.local_addr()?;
    for name in &knowledge.embedding_models {
        eprintln!("{name}: embedding model (loaded on first use)");
    }
    let state = AppState::with_trust(config, knowledge, trust);
    if let Some((config, reload)) = gateway {
        let gateway = state
            .enable_gateway(&config)
            .context("the gateway's aliases in moat.toml")?;
        eprintln!("gateway aliases: {}", gateway.aliases().join(", "));
        // The checker lives as long as the gateway: the task holds only a weak handle.
        let _ = gateway.spawn_health_checks();
        match reload {
            Some(reload) => reload_on_sighup(Arc::clone(&gateway), reload),
            None => ignore_sighup(),
        }
    } else {
        ignore_sighup();
    }
    let fatal = Arc::new(Notify::new());
    let load_failed = Arc::new(AtomicBool::new(false));
    for model in models {
        let name = model.manifest.name.to_string();
        state.add_loading(&name);
        let engine = load_engine(&model, &args.engine, args.max_queue)?;
        let (state, fatal, load_failed) =
            (state.clone(), Arc::clone(&fatal), Arc::clone(&load_failed));
        tokio::task::spawn_blocking(move || match engine.wait_until_loaded() {
            Ok(()) => {
                let info = engine.info();
                eprintln!(
                    "{name}: ready ({} tokens of context x {} sequences; on {})",
                    info.n_ctx, info.parallel, info.placement
                );
                let limits = model_limits(&model.manifest);
                let card = model_card(&model);
                let served = ServedModel::new(Arc::new(engine), limits).with_card(card);
                state.add_model(&name, served);
            }
            Err(error) => {
                eprintln!("error: {name} failed to load: {error}");
                state.set_failed(&name, error.to_string());
                load_failed.store(true, Ordering::SeqCst);
                fatal.notify_one();
            }
        });
    }
    eprintln!("moat: OpenAI-compatible API on http://{address}/v1 (health: /health)");
    let grace = args.shutdown_grace;
    let shutdown = async move {
        tokio::select! {
            () = os_signal() => eprintln!("shutting down: finishing requests in flight (at most {grace} s)"),
            () = fatal.notified() => eprintln!("shutting down: a model failed to load"),
        }
        // A second Ctrl-C does not wait for the grace period.
        tokio::spawn(async {
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(i32::from(crate::EXIT_INTERRUPTED));
            }
        });
    };
    let outcome = serve(listener, state, shutdown)
        .await
        .context("serving HTTP")?;
    match outcome {
        ShutdownOutcome::Drained => eprintln!("stopped"),
        ShutdownOutcome::DeadlinePassed => {
            eprintln!("stopped: the grace period passed with requests still running")
        }
    }
    if load_failed.load(Ordering::SeqCst) {
        bail!("a model failed to load");
    }
    Ok(0)
}

/// SIGTERM or Ctrl-C (SIGINT).
async fn os_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
