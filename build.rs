// The AMR decoders are Debian's opencore libraries (installed by .ci/setup); see src/audio/amr.rs.
fn main() {
    println!("cargo:rustc-link-lib=opencore-amrnb");
    println!("cargo:rustc-link-lib=opencore-amrwb");
    println!("cargo:rerun-if-changed=build.rs");
}
