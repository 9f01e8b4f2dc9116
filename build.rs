//! Linker arguments of the shipped static binaries: on x86_64 musl, calls
//! to `memcpy` go to `src/small_copy.rs` (which says why). Only the
//! binaries link with it: test binaries and crane's dependency-only build
//! (which replaces this file with a dummy) keep musl's `memcpy`.
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let env = std::env::var("CARGO_CFG_TARGET_ENV");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH");
    if env.as_deref() == Ok("musl") && arch.as_deref() == Ok("x86_64") {
        println!("cargo::rustc-link-arg-bins=-Wl,--wrap=memcpy");
    }
}
