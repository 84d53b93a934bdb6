//! Link options of the berth executable.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // Relative relocations packed as DT_RELR (glibc 2.36+, any linker since binutils 2.38 or
    // lld 15): the position-independent executable's ~75,000 relative relocations take a few
    // kB instead of a 1.8 MB `.rela.dyn` that the dynamic loader reads in every berth process
    // at start (file-backed RSS of the agent and the server alike).
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo::rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
