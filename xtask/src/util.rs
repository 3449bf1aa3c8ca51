//! Running commands, and the build and test steps.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// The workspace root (xtask lives one level below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

/// Runs a command, failing with its name when it fails.
pub fn run_checked(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

pub fn recorder_bin() -> PathBuf {
    root().join("target/release/recorder")
}

pub fn build_release() -> anyhow::Result<()> {
    eprintln!("[build] cargo build --release (recorder and its eBPF programs)");
    run_checked(cargo().args([
        "build",
        "--release",
        "-p",
        "recorder-cli",
        "--bin",
        "recorder",
    ]))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Unit tests, then the end-to-end suites against the release binary. The end-to-end tests load
/// eBPF programs: they need root and fail (never skip) without it.
pub fn test(extra: &[String]) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the end-to-end tests load eBPF programs and create cgroups: run `cargo xtask test` as root"
        );
    }
    eprintln!(
        "[test] cargo test --workspace --release (end-to-end suites use {})",
        recorder_bin().display()
    );
    run_checked(
        cargo()
            .args(["test", "--workspace", "--release"])
            .args(extra)
            .env("RECORDER_BIN", recorder_bin()),
    )
}
