#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::run(recorder_protocol::sql::Protocol::Postgresql, data);
});
