//! The drift check every service runs on its committed OpenAPI document.

use std::path::Path;

/// Asserts that `openapi/<file>` (relative to the workspace root, found from the calling
/// crate's `manifest_dir`) equals `generated`; with `UPDATE_OPENAPI` set it rewrites the file
/// instead (`make openapi`, after an intended API change).
#[track_caller]
pub fn assert_current(manifest_dir: &str, file: &str, generated: &str) {
    let dangling = dangling_refs(generated);
    assert!(
        dangling.is_empty(),
        "{file}: schemas referred to but not defined (add them to the ApiDoc's components): \
         {dangling:?}"
    );
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

/// Names of `#/components/schemas/...` references in `spec` that its components lack.
fn dangling_refs(spec: &str) -> Vec<String> {
    const PREFIX: &str = "#/components/schemas/";
    let doc: serde_json::Value = serde_json::from_str(spec).expect("the spec is JSON");
    let defined = &doc["components"]["schemas"];
    let mut missing: Vec<String> = spec
        .match_indices(PREFIX)
        .map(|(at, _)| {
            let rest = &spec[at + PREFIX.len()..];
            rest[..rest.find('"').unwrap_or(rest.len())].to_string()
        })
        .filter(|name| defined.get(name).is_none())
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_references_without_a_schema() {
        let spec = r##"{"paths": {"a": {"$ref": "#/components/schemas/Gone"},
            "b": {"$ref": "#/components/schemas/Here"}}, "components": {"schemas": {"Here": {}}}}"##;
        assert_eq!(super::dangling_refs(spec), vec!["Gone".to_string()]);
    }
}
