#![no_main]
//! Any path and headers a stranger opens the OCPP endpoint with: reading the charger id, the
//! offered subprotocols and the Basic credentials never panics.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    server::ocpp::fuzzing::check_handshake(data);
});
