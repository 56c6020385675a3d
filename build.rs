//! Build script: links the AMR decoders and compiles the default needs library into the binary.

use std::path::Path;

fn main() {
    // Debian's opencore AMR decoders (installed by .ci/setup); see src/audio/amr.rs.
    println!("cargo:rustc-link-lib=opencore-amrnb");
    println!("cargo:rustc-link-lib=opencore-amrwb");
    println!("cargo:rerun-if-changed=build.rs");
    embed_library();
}

/// Writes `embedded_library.rs`: every library file of `need-library/` as (relative path, content).
fn embed_library() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("need-library");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    for sub in ["", "needs", "packs"] {
        let dir = root.join(sub);
        println!("cargo:rerun-if-changed={}", dir.display());
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let verifier = sub.is_empty() && path.file_name().is_some_and(|n| n == "verifier.json");
            if path.extension().is_some_and(|e| e == "toml") || verifier {
                println!("cargo:rerun-if-changed={}", path.display());
                let rel = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.push((rel, path));
            }
        }
    }
    files.sort();
    let mut out = String::from("/// The default library's files, compiled in by build.rs.\npub static EMBEDDED_LIBRARY: &[(&str, &str)] = &[\n");
    for (rel, path) in files {
        out.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            path.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("embedded_library.rs");
    std::fs::write(dest, out).unwrap();
}
