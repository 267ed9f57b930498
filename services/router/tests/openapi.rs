//! The committed `openapi/router.json` must equal the spec generated from the code.
//! `make openapi` (UPDATE_OPENAPI=1) rewrites it after an intended API change.

use utoipa::OpenApi;

#[test]
fn committed_spec_matches_the_code() {
    let generated = vdb_router::http::ApiDoc::openapi().to_pretty_json().unwrap();
    vdb_common::openapi::assert_current(env!("CARGO_MANIFEST_DIR"), "router.json", &generated);
}
