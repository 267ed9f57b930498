//! The drift check every service runs on its committed OpenAPI document.

use std::path::Path;

/// Asserts that `openapi/<file>` (relative to the workspace root, found from the calling
/// crate's `manifest_dir`) equals `generated`; with `UPDATE_OPENAPI` set it rewrites the file
/// instead (`make openapi`, after an intended API change).
#[track_caller]
pub fn assert_current(manifest_dir: &str, file: &str, generated: &str) {
    let path = Path::new(manifest_dir).join("../../openapi").join(file);
    let generated = format!("{generated}\n");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(&path, &generated).expect("openapi file writable");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/{file} is stale: run `make openapi` and commit the result"
    );
}
