#![no_main]
//! Any text a charger sends as a frame: decoding never panics, and whatever we answer a bad frame
//! with is itself a well-formed OCPP-J CALLERROR (server::ocpp::fuzzing::check_frame).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        server::ocpp::fuzzing::check_frame(text);
    }
});
