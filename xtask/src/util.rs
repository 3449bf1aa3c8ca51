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

/// Clippy with every lint of the workspace, as errors.
pub fn clippy() -> anyhow::Result<()> {
    eprintln!("[lint] cargo clippy --workspace --all-targets --release -- -D warnings");
    run_checked(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The crates that make no eBPF object build without the eBPF toolchain: cargo runs with a
/// `PATH` of the stable toolchain and the system only (no rustup, so no nightly; no
/// bpf-linker), in a target directory of its own, and the collector's dependency tree holds no
/// aya.
pub fn build_without_ebpf_toolchain() -> anyhow::Result<()> {
    const CRATES: [&str; 2] = ["recorder-collector", "recorder-protocol"];
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bin = sysroot.join("bin");
    let path = format!("{}:/usr/bin:/bin", bin.display());
    for tool in ["bpf-linker", "rustup"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .env("PATH", &path)
            .output()
            .is_ok_and(|o| o.status.success());
        if found {
            bail!("{tool} is on the stripped PATH {path}: the check would prove nothing");
        }
    }
    eprintln!(
        "[lint] {} build without the eBPF toolchain (PATH={path})",
        CRATES.join(" and ")
    );
    let cargo = |args: &[&str]| {
        let mut cmd = Command::new(bin.join("cargo"));
        cmd.current_dir(root())
            .args(args)
            .env("CARGO_TARGET_DIR", root().join("target/without-ebpf"))
            .env("PATH", &path)
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("RUSTC")
            .env_remove("CARGO");
        cmd
    };
    let mut build = cargo(&["build"]);
    for krate in CRATES {
        build.args(["-p", krate]);
    }
    run_checked(&mut build)?;
    let tree = cargo(&[
        "tree",
        "-p",
        "recorder-collector",
        "-e",
        "normal",
        "--prefix",
        "none",
    ])
    .output()
    .context("running cargo tree")?;
    if !tree.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&tree.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&tree.stdout);
    if let Some(aya) = tree.lines().find(|l| l.starts_with("aya")) {
        bail!("recorder-collector depends on {aya}");
    }
    Ok(())
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
