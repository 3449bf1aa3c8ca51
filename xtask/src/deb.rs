//! `cargo xtask deb`: `target/debian/recorder_<version>_amd64.deb`, with `dpkg-deb --build`.
//!
//! Installs `/usr/bin/recorder`, the two systemd units (neither enabled nor started: the agent
//! needs identities configured first, the collector a PKI), the example configuration in
//! `/etc/recorder` as conffiles, and the docs.
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use anyhow::Context;

use crate::{
    image::{release_bin, strip_into, target_dir},
    util::{root, run_checked},
};

const UNITS: [&str; 2] = ["recorder-agent.service", "recorder-collector.service"];
const CONFFILES: [&str; 2] = ["agent.toml", "collector.env"];
const DOCS: [&str; 4] = [
    "README.md",
    "docs/deploy.md",
    "docs/configuration.md",
    "docs/collector.md",
];

/// Only `systemctl daemon-reload`, and only where systemd runs (not in a container or a chroot).
const RELOAD: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n\tsystemctl daemon-reload >/dev/null || true\nfi\n";

/// Before removal: stop the services if they run (a removed binary cannot be stopped cleanly).
const PRERM: &str = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ] && [ \"$1\" = remove ]; then\n\tsystemctl stop recorder-agent.service recorder-collector.service >/dev/null 2>&1 || true\nfi\n";

/// Where [`run`] puts the package.
pub fn path() -> std::path::PathBuf {
    target_dir()
        .join("debian")
        .join(format!("recorder_{}_amd64.deb", env!("CARGO_PKG_VERSION")))
}

pub fn run() -> anyhow::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    let out_dir = target_dir().join("debian");
    let tree = out_dir.join(format!("recorder_{version}_amd64"));
    if tree.exists() {
        std::fs::remove_dir_all(&tree)?;
    }
    let deploy = root().join("deploy/systemd");
    strip_into(&release_bin(), &tree.join("usr/bin/recorder"))?;
    for unit in UNITS {
        install(
            &deploy.join(unit),
            &tree.join("lib/systemd/system").join(unit),
            0o644,
        )?;
    }
    for conf in CONFFILES {
        install(
            &deploy.join(conf),
            &tree.join("etc/recorder").join(conf),
            0o644,
        )?;
    }
    let doc = tree.join("usr/share/doc/recorder");
    for file in DOCS {
        let name = Path::new(file).file_name().context("a file name")?;
        install(&root().join(file), &doc.join(name), 0o644)?;
    }
    write(
        &doc.join("copyright"),
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
         Upstream-Name: recorder\n\nFiles: *\nLicense: Apache-2.0\n \
         On Debian systems, the full text is in /usr/share/common-licenses/Apache-2.0.\n",
        0o644,
    )?;

    let control = tree.join("DEBIAN");
    let installed_kib = du_kib(&tree)?;
    write(
        &control.join("control"),
        &format!(
            "Package: recorder\nVersion: {version}\nArchitecture: amd64\n\
             Maintainer: recorder maintainers <recorder@localhost>\n\
             Depends: libc6 (>= 2.34), libgcc-s1\nSection: admin\nPriority: optional\n\
             Installed-Size: {installed_kib}\n\
             Description: eBPF recorder of what AI agents run on a host\n \
             The recorder agent captures, in the kernel, every command, SQL statement and\n \
             Kubernetes call of watched identities and ships them over mutual TLS to the\n \
             recorder collector, an append-only, tamper-evident store. The units are\n \
             installed but neither enabled nor started.\n"
        ),
        0o644,
    )?;
    let conffiles: String = CONFFILES
        .iter()
        .map(|c| format!("/etc/recorder/{c}\n"))
        .collect();
    write(&control.join("conffiles"), &conffiles, 0o644)?;
    write(&control.join("postinst"), RELOAD, 0o755)?;
    write(&control.join("postrm"), RELOAD, 0o755)?;
    write(&control.join("prerm"), PRERM, 0o755)?;

    let deb = path();
    run_checked(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "-Zxz", "--build"])
            .arg(&tree)
            .arg(&deb),
    )?;
    println!("{}", deb.display());
    Ok(())
}

fn install(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("a parent")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("a parent")?)?;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// Installed-Size, in KiB, as `du -sk` counts it (DEBIAN/ is not installed; it is not there yet).
fn du_kib(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("du").arg("-sk").arg(dir).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .context("du output")?
        .parse()
        .context("du output")
}
