//! `vdb-router`: planned, not built yet. ARCHITECTURE.md says what it will do; until then the
//! binary refuses to start rather than pretend to serve.

fn main() {
    eprintln!("vdb-router is not implemented yet; see ARCHITECTURE.md");
    std::process::exit(2);
}
