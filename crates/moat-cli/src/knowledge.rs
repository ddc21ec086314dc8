//! Where knowledge lives and how embedding models load, shared by `moat embed`, `moat kb` and
//! `moat serve`:
//!
//! - the knowledge store: `$MOAT_HOME/moat.db` with its ANN index files under
//!   `$MOAT_HOME/vectors/` (the embedded default), or Postgres + pgvector when `moat.toml` says
//!   `[knowledge] backend = "postgres"` (its `url`, else the `MOAT_PG_URL` environment variable);
//! - model aliases (`[aliases.NAME] model = "...", knowledge_base = "...", guard = "..."`)
//!   for the server;
//! - embedders by model format: a stored sentence-transformers safetensors folder is loaded
//!   with candle ([`moat_embed::SentenceEmbedder`]), a GGUF whose header names a pooling with
//!   llama.cpp ([`moat_engine_llamacpp::LlamaEmbedder`]); a chat model is refused with a clear
//!   error.
//!
//! The store keeps a folder model's files as content-addressed blobs, but the sentence
//! embedder reads a folder. So each such model gets a folder of symbolic links to its blobs,
//! `$MOAT_HOME/embedders/<hash of the manifest's files>/`, built in a temporary folder and
//! renamed into place, so a reader never sees half of one and no weights are copied.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use moat_embed::SentenceEmbedder;
use moat_engine::Embedder;
use moat_engine_llamacpp::{EmbedderOptions, LlamaEmbedder};
use moat_license::DeploymentProfile;
use moat_meter::Meter;
use moat_server::{EmbedderLoadError, EmbedderSource, GroundingRequest};
use moat_store::{Manifest, ModelFormat, Store};
use moat_vector::{SqliteStore, VectorStore};
use moat_vector_pg::PgStore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The environment variable that gives the Postgres URL when `moat.toml` does not.
pub const PG_URL_ENV: &str = "MOAT_PG_URL";

/// The parts of `moat.toml` this module reads.
#[derive(Debug, Default, Deserialize)]
struct KnowledgeToml {
    #[serde(default)]
    knowledge: KnowledgeSection,
    /// Every alias; those with `targets` are the gateway's (crate::gateway) and skipped here.
    #[serde(default)]
    aliases: BTreeMap<String, toml::Value>,
}

/// `[knowledge]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KnowledgeSection {
    /// `sqlite` (the default) or `postgres`.
    backend: Option<String>,
    /// The Postgres URL for the `postgres` backend.
    url: Option<String>,
}

/// `[aliases.NAME]`: a name clients use for a model, optionally grounded in a knowledge base.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasToml {
    pub model: String,
    /// A knowledge base name, or a table with the retrieval settings (`name`, `top_k`, `mode`,
    /// `min_score`, `path_glob`, `tags`, `no_answer`, `no_answer_reply`).
    pub knowledge_base: Option<GroundingRequest>,
    /// The guard policy (`[guard.policies.NAME]`) for requests to this alias.
    pub guard: Option<String>,
}

/// Which knowledge store to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres { url: String },
}

/// The settings of the config file that knowledge needs.
#[derive(Clone, Debug)]
pub struct KnowledgeSettings {
    pub backend: Backend,
    pub aliases: BTreeMap<String, AliasToml>,
}

/// The config file: `explicit`, else `./moat.toml`, else `$MOAT_HOME/moat.toml` (as the license
/// gate finds it).
pub(crate) fn config_path(home: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => [PathBuf::from("moat.toml"), home.join("moat.toml")]
            .into_iter()
            .find(|p| p.is_file()),
    }
}

/// The top-level tables of moat.toml, each read by its own part of moat.
const CONFIG_TABLES: [&str; 10] = [
    "aliases",
    "audit",
    "cache",
    "cost",
    "deployment",
    "guard",
    "knowledge",
    "observability",
    "prices",
    "routing",
];

/// Whether some part of moat reads this top-level table of the config file. Each part parses
/// only its own table, so a misspelt one (`[cahce]`) would otherwise be ignored without a word.
pub(crate) fn is_known_table(name: &str) -> bool {
    CONFIG_TABLES.contains(&name)
}

/// The config file's top-level keys; empty when there is no config file or it does not parse
/// (the parts report that).
pub(crate) fn top_level_tables(home: &Path, explicit: Option<&Path>) -> Vec<String> {
    let Some(text) = config_path(home, explicit).and_then(|p| std::fs::read_to_string(p).ok())
    else {
        return Vec::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    table.keys().cloned().collect()
}

/// Reads the knowledge settings of the config file (defaults when there is none).
pub fn settings(home: &Path, explicit: Option<&Path>) -> Result<KnowledgeSettings> {
    let parsed = match config_path(home, explicit) {
        None => KnowledgeToml::default(),
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
    };
    let backend = match parsed.knowledge.backend.as_deref() {
        None | Some("sqlite") => Backend::Sqlite,
        Some("postgres") => {
            let url = parsed
                .knowledge
                .url
                .or_else(|| std::env::var(PG_URL_ENV).ok().filter(|u| !u.is_empty()))
                .with_context(|| {
                    format!(
                        "[knowledge] backend = \"postgres\" needs a url (in moat.toml, or in \
                         the {PG_URL_ENV} environment variable)"
                    )
                })?;
            Backend::Postgres { url }
        }
        Some(other) => {
            bail!("[knowledge] backend is {other:?}; use \"sqlite\" (the default) or \"postgres\"")
        }
    };
    let mut aliases = BTreeMap::new();
    for (name, value) in parsed.aliases {
        if crate::gateway::is_routed(&value) {
            continue;
        }
        let alias = AliasToml::deserialize(value).with_context(|| format!("[aliases.{name}]"))?;
        aliases.insert(name, alias);
    }
    Ok(KnowledgeSettings { backend, aliases })
}

/// Opens the knowledge store the settings name. Blocking (the Postgres client is synchronous).
pub fn open_vector_store(home: &Path, backend: &Backend) -> Result<Arc<dyn VectorStore>> {
    Ok(match backend {
        Backend::Sqlite => {
            let db = home.join("moat.db");
            Arc::new(
                SqliteStore::open(&db, &home.join("vectors"))
                    .with_context(|| format!("opening the knowledge store {}", db.display()))?,
            )
        }
        Backend::Postgres { url } => {
            Arc::new(PgStore::connect(url).context("connecting to the Postgres knowledge store")?)
        }
    })
}

/// What a stored model is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// A generative model (llama.cpp engine, chat template).
    Chat,
    /// A sentence-transformers folder or a pooling GGUF.
    Embedding,
}

/// Whether the stored model is an embedding model, from its format and, for a GGUF, its
/// header's `{arch}.pooling_type` (1 mean, 2 CLS, 3 last token).
pub fn model_kind(store: &Store, manifest: &Manifest) -> Result<ModelKind> {
    match manifest.format {
        ModelFormat::Safetensors => {
            if manifest.file("modules.json").is_some() {
                Ok(ModelKind::Embedding)
            } else {
                bail!(
                    "{} is a safetensors folder without modules.json: not a sentence-transformers \
                     embedding model, and moat runs generative models from GGUF files only",
                    manifest.name
                )
            }
        }
        ModelFormat::Gguf => {
            let weights = manifest
                .weights()
                .with_context(|| format!("{} has no weights file", manifest.name))?;
            let path = store.file_path(manifest, &weights.digest)?;
            let gguf = moat_gguf::GgufFile::open(&path)
                .with_context(|| format!("reading the GGUF header of {}", manifest.name))?;
            let pooling = gguf
                .architecture()
                .and_then(|arch| gguf.get_u64(&format!("{arch}.pooling_type")));
            Ok(match pooling {
                Some(1..=3) => ModelKind::Embedding,
                _ => ModelKind::Chat,
            })
        }
    }
}

/// Loads stored models as embedders. Cheap to clone; every call blocks.
#[derive(Clone)]
pub struct StoreEmbedders {
    home: PathBuf,
    /// The deployment's profile and `--allow-forbidden-license`: a model whose license
    /// forbids the deployment is refused, as `moat serve` refuses a chat model.
    license: Option<(DeploymentProfile, bool)>,
    /// Where a model served through `--allow-forbidden-license` is recorded (`moat serve`'s
    /// audit log), as the chat models named on its command line are.
    audit: Option<Arc<Meter>>,
}

impl StoreEmbedders {
    pub fn new(home: &Path) -> Self {
        Self {
            home: home.to_path_buf(),
            license: None,
            audit: None,
        }
    }

    /// Records every model loaded through the license override in `meter`'s audit log.
    pub fn with_audit(mut self, meter: Arc<Meter>) -> Self {
        self.audit = Some(meter);
        self
    }

    /// Refuses models whose license forbids this deployment, unless `allow_forbidden`.
    pub fn with_license_gate(mut self, profile: DeploymentProfile, allow_forbidden: bool) -> Self {
        self.license = Some((profile, allow_forbidden));
        self
    }

    /// The license gate, where there is one: an error for a forbidden model.
    fn check_license(&self, store: &Store, manifest: &Manifest) -> Result<()> {
        if let Some((profile, allow_forbidden)) = &self.license {
            let overridden =
                crate::license::license_gate(store, manifest, profile, *allow_forbidden)?;
            if let (true, Some(meter)) = (overridden, &self.audit) {
                crate::license::audit_override(meter, &manifest.name.to_string())?;
            }
        }
        Ok(())
    }

    /// The stored model `name` as an embedder, with its canonical name (`name:tag`).
    pub fn load_embedder(&self, name: &str) -> Result<Arc<dyn Embedder>> {
        let store = crate::models::open_store(&self.home)?;
        let manifest = store.resolve(name)?;
        let canonical = manifest.name.to_string();
        if model_kind(&store, &manifest)? == ModelKind::Chat {
            bail!(
                "{canonical} is a chat model, not an embedding model (embedding models are \
                 sentence-transformers folders such as all-minilm:l6-v2, or GGUF files whose \
                 header names a pooling)"
            );
        }
        self.check_license(&store, &manifest)?;
        self.build(&store, &manifest)
    }

    /// The embedder for a stored embedding model whose license was checked.
    fn build(&self, store: &Store, manifest: &Manifest) -> Result<Arc<dyn Embedder>> {
        let canonical = manifest.name.to_string();
        match manifest.format {
            ModelFormat::Safetensors => {
                let folder = self.linked_folder(store, manifest)?;
                let embedder = SentenceEmbedder::load(&folder, &canonical)
                    .with_context(|| format!("loading {canonical}"))?;
                Ok(Arc::new(embedder))
            }
            ModelFormat::Gguf => {
                let weights = manifest
                    .weights()
                    .with_context(|| format!("{canonical} has no weights file"))?;
                let path = store.file_path(manifest, &weights.digest)?;
                let embedder = LlamaEmbedder::load(&path, EmbedderOptions::new(&canonical))
                    .with_context(|| format!("loading {canonical}"))?;
                Ok(Arc::new(embedder))
            }
        }
    }

    /// The model's folder as symbolic links to its blobs, built once per distinct set of files.
    fn linked_folder(&self, store: &Store, manifest: &Manifest) -> Result<PathBuf> {
        let mut hasher = Sha256::new();
        for file in &manifest.files {
            hasher.update(file.path.as_bytes());
            hasher.update([0]);
            hasher.update(file.digest.to_string().as_bytes());
            hasher.update([0]);
        }
        let hex: String = hasher
            .finalize()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect();
        let root = self.home.join("embedders");
        let folder = root.join(&hex);
        if folder.is_dir() {
            return Ok(folder);
        }
        std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
        let tmp = root.join(format!(".tmp-{hex}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let built = link_files(store, manifest, &tmp);
        if let Err(error) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(error);
        }
        if std::fs::rename(&tmp, &folder).is_err() {
            // Another process renamed its copy first; theirs is the same links.
            let _ = std::fs::remove_dir_all(&tmp);
            if !folder.is_dir() {
                bail!("could not create {}", folder.display());
            }
        }
        Ok(folder)
    }
}

/// Links every file of `manifest` into `dir` under its relative path.
fn link_files(store: &Store, manifest: &Manifest, dir: &Path) -> Result<()> {
    for file in &manifest.files {
        let relative = Path::new(&file.path);
        if file.path.is_empty()
            || !relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)))
        {
            bail!(
                "{}: the manifest names an unsafe file path {:?}",
                manifest.name,
                file.path
            );
        }
        let blob = store.file_path(manifest, &file.digest)?;
        let target = dir.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        link(&blob, &target)
            .with_context(|| format!("linking {} to {}", target.display(), blob.display()))?;
    }
    Ok(())
}

#[cfg(unix)]
fn link(blob: &Path, target: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(blob, target)
}

#[cfg(not(unix))]
fn link(blob: &Path, target: &Path) -> std::io::Result<()> {
    std::fs::hard_link(blob, target)
}

/// The server's view of [`StoreEmbedders`]: errors classified for HTTP.
impl EmbedderSource for StoreEmbedders {
    fn load(&self, model: &str) -> Result<Arc<dyn Embedder>, EmbedderLoadError> {
        let store = crate::models::open_store(&self.home)
            .map_err(|error| EmbedderLoadError::Failed(format!("{error:#}")))?;
        let manifest = match store.resolve(model) {
            Ok(manifest) => manifest,
            Err(error) if error.kind() == moat_store::ErrorKind::NotFound => {
                return Err(EmbedderLoadError::NotFound(model.to_owned()))
            }
            Err(error) => return Err(EmbedderLoadError::Failed(error.to_string())),
        };
        match model_kind(&store, &manifest) {
            Ok(ModelKind::Embedding) => {}
            Ok(ModelKind::Chat) => {
                return Err(EmbedderLoadError::NotAnEmbedder(format!(
                    "{} is a chat model, not an embedding model",
                    manifest.name
                )))
            }
            Err(error) => return Err(EmbedderLoadError::NotAnEmbedder(format!("{error:#}"))),
        }
        self.check_license(&store, &manifest)
            .map_err(|error| EmbedderLoadError::Forbidden(format!("{error:#}")))?;
        self.build(&store, &manifest)
            .map_err(|error| EmbedderLoadError::Failed(format!("{error:#}")))
    }
}
