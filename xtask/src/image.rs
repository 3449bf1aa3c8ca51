//! `cargo xtask image`: the container image `localhost/recorder:<version>`, FROM scratch.
//!
//! The release binary links glibc dynamically (a static glibc would need the NSS modules for
//! name resolution at run time); the image gets exactly the libraries `ldd` names, at the same
//! paths, and the dynamic loader. Built with Debian's buildah, offline (nothing is pulled).
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::util::{root, run_checked};

/// `localhost/recorder:<workspace version>`.
pub fn tag() -> String {
    format!("localhost/recorder:{}", env!("CARGO_PKG_VERSION"))
}

/// Cargo's target directory (`$CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The release binary `cargo xtask build` made.
pub fn release_bin() -> PathBuf {
    target_dir().join("release/recorder")
}

pub fn run() -> anyhow::Result<()> {
    let bin = release_bin();
    let context = target_dir().join("image");
    if context.exists() {
        std::fs::remove_dir_all(&context).context("clearing the previous image context")?;
    }
    let rootfs = context.join("rootfs");
    strip_into(&bin, &rootfs.join("usr/bin/recorder"))?;
    for lib in linked_libraries(&bin)? {
        copy_into(&lib, &rootfs.join(lib.strip_prefix("/")?))?;
    }
    // The agent's default config path; the DaemonSet mounts its ConfigMap over this directory.
    std::fs::create_dir_all(rootfs.join("etc/recorder"))?;
    std::fs::copy(
        root().join("deploy/container/Containerfile"),
        context.join("Containerfile"),
    )?;
    let tag = tag();
    let previous = image_id(&tag);
    eprintln!("[image] buildah bud -t {tag}");
    run_checked(
        Command::new("buildah")
            .args([
                "bud",
                "--quiet",
                "--pull=never",
                "--layers=false",
                "-t",
                &tag,
            ])
            .arg("-f")
            .arg(context.join("Containerfile"))
            .arg(&context),
    )
    .context("buildah bud (cargo xtask setup installs buildah)")?;
    // The image this tag named before would stay behind, untagged, at every build.
    if let Some(old) = previous.filter(|old| image_id(&tag).as_ref() != Some(old)) {
        let _ = Command::new("podman").args(["rmi", &old]).output();
    }
    let size = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Size}}", &tag])
        .output()
        .context("podman image inspect")?;
    let bytes: u64 = String::from_utf8_lossy(&size.stdout)
        .trim()
        .parse()
        .with_context(|| format!("size of {tag}: {}", String::from_utf8_lossy(&size.stderr)))?;
    println!(
        "image {tag}: {:.1} MiB ({bytes} bytes)",
        bytes as f64 / 1024.0 / 1024.0
    );
    Ok(())
}

/// The ID of the image `tag` names, if any.
fn image_id(tag: &str) -> Option<String> {
    let out = Command::new("podman")
        .args(["image", "inspect", "--format", "{{.Id}}", tag])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The shared libraries and the loader `ldd` resolves for `bin`, as absolute paths.
fn linked_libraries(bin: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("running ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed", bin.display());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or `/lib64/ld-linux-x86-64.so.2 (0x...)`;
        // linux-vdso has no file.
        let path = line
            .split_once("=>")
            .map_or(line, |(_, right)| right)
            .split_whitespace()
            .next()
            .unwrap_or("");
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        } else if line.contains("not found") {
            bail!("ldd {}: {line}", bin.display());
        }
    }
    if !libs
        .iter()
        .any(|l| l.to_string_lossy().contains("ld-linux"))
    {
        bail!("ldd {} names no dynamic loader:\n{text}", bin.display());
    }
    Ok(libs)
}

/// Copies the file `from` resolves to (libraries are symlinks) to `to`, keeping its mode.
fn copy_into(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("a parent")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

/// Copies the binary without its symbol table (a quarter of its size; the embedded eBPF object
/// is data, untouched).
pub fn strip_into(bin: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("a parent")?)?;
    run_checked(Command::new("strip").arg("-o").arg(to).arg(bin)).context("strip (binutils)")
}
