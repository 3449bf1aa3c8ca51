//! Kubernetes semantics: what a `kubectl` command line and a Kubernetes API request mean.
//!
//! Pure code over strings, shared by the two `k8s` record sources: [`kubectl`] reads the argv of
//! a `kubectl` exec (verb, resource, names, namespace, context, files), and [`api`] reads an HTTP
//! request the way kube-apiserver's `RequestInfo` does (verb, resource, subresource, namespace,
//! name). Neither panics on any input: argv and request targets come from watched processes.

pub mod api;
mod flags;
pub mod kubectl;
mod resources;

pub use api::{ApiRequest, api_request};
pub use kubectl::{KubectlCommand, is_kubectl, parse_kubectl};

#[cfg(test)]
mod tests;
