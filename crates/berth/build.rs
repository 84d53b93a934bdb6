//! Link options of the berth executable.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // Relative relocations packed as DT_RELR (glibc 2.36+, any linker since binutils 2.38 or
    // lld 15): the position-independent executable's ~75,000 relative relocations take a few
    // kB instead of a 1.8 MB `.rela.dyn` that the dynamic loader reads in every berth process
    // at start (file-backed RSS of the agent and the server alike).
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let linux_gnu = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    // Release builds place the functions a starting and idle server runs together in .text
    // (scripts/gen-symbol-order.py): the kernel maps code in blocks around each page run, so
    // scattered start-up code kept most of the executable's code resident. lld (Rust's
    // default linker on x86_64 Linux) reads the list; names no longer in the build are skipped.
    let order = std::path::Path::new(&env("CARGO_MANIFEST_DIR")).join("link/startup-symbols.txt");
    println!("cargo::rerun-if-changed={}", order.display());
    if linux_gnu && env("CARGO_CFG_TARGET_ARCH") == "x86_64" && env("PROFILE") == "release" && order.exists() {
        println!("cargo::rustc-link-arg-bin=berth=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo::rustc-link-arg-bin=berth=-Wl,--no-warn-symbol-ordering");
    }
}
