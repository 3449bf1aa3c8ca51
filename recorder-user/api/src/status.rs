//! gRPC status codes in the words an operator reads.
use tonic::Code;

/// The name of a status code as a sentence fragment ("permission denied").
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::PermissionDenied => "permission denied",
        Code::Unauthenticated => "unauthenticated",
        Code::InvalidArgument => "invalid argument",
        Code::NotFound => "not found",
        Code::Unavailable => "unavailable",
        Code::Internal => "internal error",
        Code::FailedPrecondition => "failed precondition",
        Code::OutOfRange => "out of range",
        _ => "error",
    }
}
