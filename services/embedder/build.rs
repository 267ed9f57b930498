//! With the `torch` feature: keeps `libtorch_cuda` linked even though no symbol of it is used
//! directly (the linker's default `--as-needed` drops it, and then libtorch silently reports
//! no GPU), and records libtorch's directory as the binary's run path. With `tensorflow`:
//! records the directory of the pkg-config `tensorflow` library as a run path too.
//! `LD_LIBRARY_PATH` still wins, which is how a binary carried to another machine finds that
//! machine's libraries.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    if std::env::var_os("CARGO_FEATURE_TENSORFLOW").is_some() {
        let out = Command::new("pkg-config").args(["--variable=libdir", "tensorflow"]).output();
        if let Ok(dir) = out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()) {
            if !dir.is_empty() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
            }
        }
    }
    if std::env::var_os("CARGO_FEATURE_TORCH").is_none() {
        return;
    }
    let Some(lib) = torch_lib_dir() else { return };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    if lib.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-L{}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

/// Where libtorch's shared libraries are: `$LIBTORCH/lib`, or the active Python's torch.
fn torch_lib_dir() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    std::env::var_os("LIBTORCH_USE_PYTORCH")?;
    let python = if std::env::var_os("VIRTUAL_ENV").is_some() { "python" } else { "python3" };
    let out = Command::new(python)
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    let dir = String::from_utf8(out.stdout).ok()?;
    Some(PathBuf::from(dir.trim())).filter(|p| p.is_dir())
}
