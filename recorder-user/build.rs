//! Builds the eBPF programs (recorder-ebpf) for the bpf target with the nightly toolchain and
//! bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
//!
//! `RECORDER_SKIP_EBPF=1` writes an empty object instead, so `cargo check`/clippy/doc work on a
//! machine without the eBPF toolchain; an agent built that way says so and refuses to start.
use std::{env, fs, path::PathBuf};

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RECORDER_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let skip = env::var("RECORDER_SKIP_EBPF").is_ok_and(|v| v == "1" || v == "true");
    if skip {
        println!("cargo:warning=RECORDER_SKIP_EBPF set: building without eBPF programs");
        fs::write(out_dir.join("recorder"), b"").context("writing the empty eBPF object")?;
        return Ok(());
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let ebpf_dir = manifest
        .parent()
        .ok_or_else(|| anyhow!("recorder-user has no parent directory"))?
        .join("recorder-ebpf");
    // The common crate is a dependency of both sides; rebuild when it changes.
    println!(
        "cargo:rerun-if-changed={}",
        ebpf_dir.join("common/src").display()
    );
    let root = ebpf_dir.to_str().context("non-UTF-8 path")?;
    let package = aya_build::Package {
        name: "recorder-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom("nightly")).context(
        "building the eBPF programs failed; run `cargo xtask setup` to install the nightly \
         rust-src component and bpf-linker (or set RECORDER_SKIP_EBPF=1 to build without them)",
    )
}
