//! The committed `openapi/router.json` must equal the spec generated from the code.
//! `make openapi` (UPDATE_OPENAPI=1) rewrites it after an intended API change.

use utoipa::OpenApi;

#[test]
fn committed_spec_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi/router.json");
    let generated = vdb_router::http::ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi/router.json is stale: run `make openapi` and commit the result"
    );
}
