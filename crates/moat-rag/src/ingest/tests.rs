//! Unit tests of `ingest`.

use super::*;

#[test]
fn keys_keep_the_root_folder_name_and_use_slashes() {
    let root = Path::new("some/where/docs");
    let key = relative_key(root, &root.join("guide").join("install.md"), "docs");
    assert_eq!(key.as_deref(), Ok("docs/guide/install.md"));
    assert_eq!(folder_name(root).as_deref(), Ok("docs"));
    assert_eq!(
        relative_key(root, Path::new("elsewhere/x.md"), "docs").map_err(|_| ()),
        Err(())
    );
}

#[test]
fn dot_roots_are_named_after_the_resolved_folder() {
    let temp = tempfile::tempdir().expect("temp");
    let folder = temp.path().join("project");
    std::fs::create_dir(&folder).expect("mkdir");
    assert_eq!(folder_name(&folder.join(".")).as_deref(), Ok("project"));
    assert_eq!(
        folder_name(&folder.join("sub/..")).map_err(|_| ()),
        Err(()),
        "sub does not exist"
    );
}

#[test]
fn reads_are_bounded() {
    let temp = tempfile::tempdir().expect("temp");
    let path = temp.path().join("big.txt");
    std::fs::write(&path, vec![b'a'; 100]).expect("write");
    assert_eq!(read_bounded(&path, 100).map(|b| b.len()), Ok(100));
    assert_eq!(
        read_bounded(&path, 99),
        Err(ParseError::TooLarge {
            size: 100,
            limit: 99
        })
    );
}

#[test]
fn hashes_are_lowercase_hex_sha256() {
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
