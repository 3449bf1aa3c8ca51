//! The generated gRPC code for proto/recorder/v1 (never edited by hand).
#![allow(clippy::all, clippy::pedantic, missing_docs, reason = "generated code")]

pub mod v1 {
    tonic::include_proto!("recorder.v1");
}
