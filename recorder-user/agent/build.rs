//! Builds the eBPF programs (recorder-ebpf) for the bpf target with the nightly toolchain and
//! bpf-linker, and leaves the object in `OUT_DIR` for `include_bytes_aligned!`.
//!
//! This is what aya-build does, minus its habit of replaying the whole inner build as cargo
//! warnings on every build: the inner build's output is shown only when it fails.
//!
//! `RECORDER_SKIP_EBPF=1` writes an empty object instead, so `cargo check`/clippy/doc work on a
//! machine without the eBPF toolchain; an agent built that way says so and refuses to start.
use std::{env, fs, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow, bail};

/// The toolchain the eBPF crate builds with (`-Z build-std` needs nightly).
const TOOLCHAIN: &str = "nightly";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=RECORDER_SKIP_EBPF");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = out_dir.join("recorder");
    if env::var("RECORDER_SKIP_EBPF").is_ok_and(|v| v == "1" || v == "true") {
        println!("cargo:warning=RECORDER_SKIP_EBPF set: building without eBPF programs");
        fs::write(&object, b"").context("writing the empty eBPF object")?;
        return Ok(());
    }
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let workspace = manifest.ancestors().nth(2).ok_or_else(|| {
        anyhow!(
            "{} is not two levels below the workspace",
            manifest.display()
        )
    })?;
    let ebpf_dir = workspace.join("recorder-ebpf");
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());

    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    let target_dir = out_dir.join("ebpf-target");
    // The same flags aya-build passes: the target arch for aya-ebpf's cfgs, debug info and BTF
    // in the object (aya needs BTF for the maps and globals).
    let rustflags = [
        format!("--cfg=bpf_target_arch=\"{arch}\""),
        "-Cdebuginfo=2".into(),
        "-Clink-arg=--btf".into(),
    ]
    .join("\x1f");
    let output = Command::new("rustup")
        .args([
            "run",
            TOOLCHAIN,
            "cargo",
            "build",
            "--package",
            "recorder-ebpf",
            "--bin",
            "recorder",
        ])
        .args([
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS")
        .output()
        .context("cannot run `rustup run nightly cargo`: is rustup installed?")?;
    if !output.status.success() {
        for line in String::from_utf8_lossy(&output.stderr).lines() {
            println!("cargo:warning={line}");
        }
        bail!(
            "building the eBPF programs failed (output above); run `cargo xtask setup` to install \
             the nightly rust-src component and bpf-linker, or set RECORDER_SKIP_EBPF=1 to build \
             without them"
        );
    }
    let built = target_dir.join("bpfel-unknown-none/release/recorder");
    fs::copy(&built, &object).with_context(|| format!("copying {}", built.display()))?;
    Ok(())
}
