//! `cargo xtask setup`: install what is missing, idempotently, and say exactly which step failed.
//!
//! - Debian packages: LLVM 22 (bpf-linker links against it), protobuf-compiler (gRPC code
//!   generation), and the test peers.
//! - The nightly toolchain's rust-src (the eBPF crate is built with `-Z build-std=core`).
//! - bpf-linker 0.13 built against Debian's LLVM 22 (its default LLVM 23 is not packaged).
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use crate::util::{is_root, run_checked};

/// Debian packages the build and the tests need.
const APT_PACKAGES: &[&str] = &[
    // Build: bpf-linker links LLVM 22; the gRPC API is compiled by protoc.
    "llvm-22-dev",
    "libpolly-22-dev",
    "protobuf-compiler",
    // Test peers: real database servers and clients, TLS tooling, scripting.
    "postgresql",
    "postgresql-contrib",
    "mariadb-server",
    "mariadb-client",
    "openssl",
    "curl",
    "perl",
    "python3",
    "python3-pip",
    "procps",
    "iproute2",
    // The syslog exporter's receiver in tests/tests/export.rs: rsyslog over TCP and TLS.
    "rsyslog",
    "rsyslog-openssl",
    "gzip",
    // Deployment: `cargo xtask image` builds with buildah; tests/tests/deploy.rs runs the image
    // with podman (runc as its runtime).
    "podman",
    "buildah",
    "runc",
    // The root filesystem of the container tests/tests/kubernetes.rs runs with runc.
    "busybox-static",
    // The web console's and the evidence bundles' tests (tests/tests/console.rs) drive a real
    // browser, headless, over WebDriver.
    "chromium",
    "chromium-driver",
];

/// Python packages the end-to-end tests drive real servers with (psycopg ships its own libssl
/// inside its wheel, which is the point of using it).
const PIP_PACKAGES: &[(&str, &str)] = &[
    ("psycopg[binary]", "psycopg"),
    ("PyMySQL", "pymysql"),
    ("mysql-connector-python", "mysql.connector"),
    // The OTLP receiver of tests/tests/export_otlp.rs: the official generated classes, gRPC.
    ("grpcio", "grpc"),
    ("opentelemetry-proto", "opentelemetry.proto"),
    // The S3-compatible server of tests/tests/retention.rs (with boto3, which it brings).
    ("moto[server]", "moto.server"),
    // Drives Chromium through chromedriver in tests/tests/console.rs.
    ("selenium", "selenium"),
];

const BPF_LINKER_VERSION: &str = "0.13";

pub fn run_step(name: &str, step: impl FnOnce() -> anyhow::Result<String>) -> anyhow::Result<()> {
    match step() {
        Ok(what) => {
            eprintln!("[setup] {name}: {what}");
            Ok(())
        }
        Err(e) => Err(e.context(format!("setup step `{name}` failed"))),
    }
}

pub fn run() -> anyhow::Result<()> {
    run_step("debian packages", apt_packages)?;
    run_step("nightly toolchain", nightly)?;
    run_step("rust-src (nightly)", rust_src)?;
    run_step("bpf-linker", bpf_linker)?;
    run_step("python packages", pip_packages)?;
    Ok(())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

fn apt_packages() -> anyhow::Result<String> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !installed(p))
        .collect();
    if missing.is_empty() {
        return Ok("all present".into());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {missing:?} and not root: run as root, or `apt-get install {}`",
            missing.join(" ")
        );
    }
    eprintln!("[setup] installing Debian packages: {}", missing.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-q"])).context("apt-get update")?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install")?;
    Ok(format!("installed {}", missing.join(" ")))
}

fn nightly() -> anyhow::Result<String> {
    let out = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--version"])
        .output();
    if let Ok(o) = &out
        && o.status.success()
    {
        return Ok(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    eprintln!("[setup] installing the nightly toolchain (minimal profile)");
    run_checked(Command::new("rustup").args([
        "toolchain",
        "install",
        "nightly",
        "--profile",
        "minimal",
    ]))
    .context(
        "rustup could not install the nightly toolchain (rustup must reach its dist server)",
    )?;
    Ok("installed".into())
}

fn rust_src() -> anyhow::Result<String> {
    let out = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output()
        .context("running rustup")?;
    if String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "rust-src")
    {
        return Ok("present".into());
    }
    run_checked(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))?;
    Ok("installed".into())
}

fn bpf_linker() -> anyhow::Result<String> {
    let current = Command::new("bpf-linker").arg("--version").output();
    if let Ok(o) = &current {
        let version = String::from_utf8_lossy(&o.stdout);
        if o.status.success() && version.contains(&format!(" {BPF_LINKER_VERSION}.")) {
            return Ok(version.trim().to_string());
        }
    }
    eprintln!("[setup] building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)");
    // Both variables matter: llvm-sys finds LLVM through the first, bpf-linker's build script
    // finds libLLVM through the second; without them it picks up Debian's default LLVM 14.
    run_checked(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args([
                "install",
                "bpf-linker",
                "--locked",
                "--version",
                &format!("^{BPF_LINKER_VERSION}"),
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("LLVM_SYS_221_PREFIX", "/usr/lib/llvm-22")
            .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
    )
    .context("cargo install bpf-linker (needs llvm-22-dev and libpolly-22-dev)")?;
    Ok("installed".into())
}

fn pip_packages() -> anyhow::Result<String> {
    let python = "python3";
    let missing: Vec<&str> = PIP_PACKAGES
        .iter()
        .filter(|(_, module)| {
            !Command::new(python)
                .args(["-c", &format!("import {module}")])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok("all present".into());
    }
    eprintln!("[setup] installing Python packages: {}", missing.join(" "));
    run_checked(
        Command::new(python)
            .args(["-m", "pip", "install", "--quiet"])
            .args(&missing),
    )
    .context("pip install (PyPI must be reachable)")?;
    Ok(format!("installed {}", missing.join(" ")))
}
