//! Generates the gRPC client and server from proto/recorder/v1/collector.proto (tonic + prost;
//! needs `protoc`, from Debian's protobuf-compiler, which `cargo xtask setup` installs).
use std::{env, path::PathBuf};

use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest.join("../../proto");
    let file = proto_root.join("recorder/v1/collector.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    tonic_prost_build::configure()
        .compile_protos(&[file], &[proto_root])
        .context("compiling proto/recorder/v1/collector.proto (is protoc installed? apt-get install protobuf-compiler)")
}
