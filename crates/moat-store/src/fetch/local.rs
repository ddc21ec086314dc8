//! Pulls from the local filesystem: one `.gguf` file, or a folder in Hugging Face layout
//! (`*.safetensors` + `config.json` + `tokenizer.json`, and whatever LICENSE, README and
//! tokenizer files sit beside them).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::fetch::{FetchContext, Fetched};
use crate::manifest::{FileRole, ModelFormat, SourceRecord};

/// Files in a folder that duplicate safetensors weights in other frameworks' formats.
const SKIPPED_WEIGHT_EXTENSIONS: [&str; 7] = ["bin", "pt", "pth", "h5", "msgpack", "onnx", "ot"];
const MAX_DEPTH: usize = 3;

pub(crate) fn fetch_file(ctx: &mut FetchContext<'_>, path: &Path) -> Result<Fetched> {
    check_gguf_magic(path)?;
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model.gguf".into());
    let blob = ctx.ingest_path(&file_name, path)?;
    let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    Ok(Fetched {
        format: ModelFormat::Gguf,
        files: vec![(gguf_file_name(&file_name), blob)],
        source: SourceRecord {
            uri: absolute.display().to_string(),
            revision: None,
        },
        default_name: file_name.trim_end_matches(".gguf").to_string(),
    })
}

/// The manifest path of a GGUF: always ends in `.gguf` so its role is clear.
pub(crate) fn gguf_file_name(name: &str) -> String {
    if name.to_ascii_lowercase().ends_with(".gguf") {
        name.to_string()
    } else {
        format!("{name}.gguf")
    }
}

fn check_gguf_magic(path: &Path) -> Result<()> {
    let mut magic = [0u8; 4];
    let mut file =
        fs::File::open(path).map_err(StoreError::io(format!("opening {}", path.display())))?;
    let read = file
        .read(&mut magic)
        .map_err(StoreError::io(format!("reading {}", path.display())))?;
    if read == 4 && &magic == b"GGUF" {
        Ok(())
    } else {
        Err(StoreError::NotAModel(
            path.display().to_string(),
            "not a GGUF file (it does not start with 'GGUF'); pull a .gguf file or a folder \
             with safetensors, config.json and tokenizer.json"
                .into(),
        ))
    }
}

pub(crate) fn fetch_folder(ctx: &mut FetchContext<'_>, dir: &Path) -> Result<Fetched> {
    let files = model_folder_files(dir)?;
    let mut fetched = Vec::with_capacity(files.len());
    for relative in files {
        let blob = ctx.ingest_path(&relative, &dir.join(&relative))?;
        fetched.push((relative, blob));
    }
    let absolute = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let default_name = absolute
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Ok(Fetched {
        format: ModelFormat::Safetensors,
        files: fetched,
        source: SourceRecord {
            uri: absolute.display().to_string(),
            revision: None,
        },
        default_name,
    })
}

/// The files of a Hugging Face folder worth storing, as relative `/` paths, weights first.
/// Fails with a clear message when the folder is not a model.
pub(crate) fn model_folder_files(dir: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    walk(dir, dir, 0, &mut files)?;
    select_model_files(&dir.display().to_string(), files)
}

/// Picks the files of a model from a listing (a folder or a hub repo) and checks the layout.
pub(crate) fn select_model_files(what: &str, mut files: Vec<String>) -> Result<Vec<String>> {
    let has = |name: &str| files.iter().any(|f| f == name);
    let has_safetensors = files.iter().any(|f| f.ends_with(".safetensors"));
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    if !has_safetensors {
        let hint = if ggufs.is_empty() {
            String::new()
        } else {
            format!(
                "; it holds GGUF files, name one of them: {}",
                join_some(&ggufs)
            )
        };
        return Err(StoreError::NotAModel(
            what.into(),
            format!("no *.safetensors weights{hint}"),
        ));
    }
    for required in ["config.json", "tokenizer.json"] {
        if !has(required) {
            return Err(StoreError::NotAModel(
                what.into(),
                format!("Hugging Face layout needs {required} beside the safetensors weights"),
            ));
        }
    }
    files.retain(|f| {
        let extension = f.rsplit('.').next().unwrap_or("");
        !SKIPPED_WEIGHT_EXTENSIONS.contains(&extension) && !f.ends_with(".gguf")
    });
    files.sort_by_key(|f| (FileRole::for_path(f) != FileRole::Weights, f.clone()));
    Ok(files)
}

fn join_some(names: &[&String]) -> String {
    let shown: Vec<&str> = names.iter().take(5).map(|s| s.as_str()).collect();
    let more = names.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} (and {more} more)", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

fn walk(root: &Path, dir: &Path, depth: usize, out: &mut Vec<String>) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(StoreError::io(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path: PathBuf = entry.path();
        let file_type = entry
            .file_type()
            .map_err(StoreError::io("reading a folder entry"))?;
        if file_type.is_dir() && depth < MAX_DEPTH {
            walk(root, &path, depth + 1, out)?;
        } else if path.is_file() {
            if let Ok(relative) = path.strip_prefix(root) {
                let parts: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(parts.join("/"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn picks_weights_first_and_drops_duplicate_formats() {
        let files = names(&[
            "config.json",
            "pytorch_model.bin",
            "model.safetensors",
            "tokenizer.json",
            "1_Pooling/config.json",
            "onnx/model.onnx",
        ]);
        let picked = select_model_files("demo", files).expect("model");
        assert_eq!(
            picked,
            names(&[
                "model.safetensors",
                "1_Pooling/config.json",
                "config.json",
                "tokenizer.json"
            ])
        );
    }

    #[test]
    fn explains_what_is_missing() {
        let err = select_model_files("d", names(&["model.safetensors", "config.json"]))
            .expect_err("no tokenizer");
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        let err =
            select_model_files("d", names(&["a.Q4_K_M.gguf", "b.Q8_0.gguf"])).expect_err("gguf");
        assert!(err.to_string().contains("a.Q4_K_M.gguf"), "{err}");
    }
}
