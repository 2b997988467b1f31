//! Fixture-driven tests of the public API (fixtures live in the repository's
//! `tests/fixtures/whatsapp`, shared with the other crates' tests).

mod error_fixtures;
mod graph_client;
mod signature_fixtures;
mod split_fixtures;

use std::path::PathBuf;

/// The fixture root.
pub fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/whatsapp"))
}

/// The raw bytes of a fixture, by path relative to the fixture root.
pub fn fixture_bytes(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A fixture parsed as JSON.
pub fn fixture_json(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture_bytes(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The sorted file names (without extension) of the `*.{ext}` files of a fixture directory,
/// skipping `_`-prefixed metadata files.
pub fn fixture_stems(dir: &str, ext: &str) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(fixtures().join(dir))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|stem| !stem.starts_with('_'))
        .collect();
    stems.sort();
    assert!(!stems.is_empty(), "no fixtures in {dir}");
    stems
}
