//! The properties the fuzz targets in `server/fuzz` check, in one place: the targets call them with
//! what libFuzzer makes up, and the unit tests below replay the corpus the fuzzing kept, so every
//! input that once found a new path is checked on every test run.

use super::frame::{self, Frame, OcppVersion};
use super::handshake;
use app::domain::ChargerId;
use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Decoding any text as a frame never panics; a bad frame's answer is a well-formed CALLERROR
/// (an array of five, its id a string, its description at most 255 bytes) in both versions, and a
/// good CALL's id goes back in a well-formed CALLRESULT.
pub fn check_frame(text: &str) {
    match frame::decode(text) {
        Ok(Frame::Call { id, .. }) => {
            let reply = frame::call_result(&id, &serde_json::json!({}));
            let parsed: serde_json::Value = serde_json::from_str(&reply).expect("our CALLRESULT is JSON");
            assert_eq!(parsed[1].as_str(), Some(id.as_str()), "{reply}");
        }
        Ok(_) => {}
        Err(bad) => {
            for version in [OcppVersion::V16, OcppVersion::V201] {
                let reply = frame::call_error(&bad.message_id, &bad.error, version);
                let parsed: serde_json::Value = serde_json::from_str(&reply).expect("our CALLERROR is JSON");
                let parts = parsed.as_array().expect("an array");
                assert_eq!(parts.len(), 5, "{reply}");
                assert_eq!(parts[0], 4);
                assert!(parts[1].is_string() && parts[2].is_string(), "{reply}");
                assert!(parts[3].as_str().is_some_and(|d| d.len() <= 255), "{reply}");
            }
        }
    }
}

/// Reading a handshake never panics: the bytes are split into a path segment (the first line) and
/// `name: value` header lines, as a stranger's request would carry them.
pub fn check_handshake(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let id = lines.next().unwrap_or_default();
    if let Ok(charger) = ChargerId::parse(id) {
        assert!(!charger.as_str().is_empty());
    }
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(name.trim().as_bytes()), HeaderValue::from_str(value.trim()))
        {
            headers.append(name, value);
        }
    }
    let _ = handshake::negotiate(&headers);
    if let Some((user, password)) = handshake::basic_credentials(&headers) {
        // What was read is what was sent: no byte is invented.
        assert!(!user.contains(':'), "the user ends at the first colon");
        let _ = password;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .filter_map(Result::ok)
            .map(|entry| (entry.path(), std::fs::read(entry.path()).expect("readable")))
            .collect();
        inputs.sort();
        inputs
    }

    #[test]
    fn the_frame_corpus_replays_clean() {
        let inputs = corpus("ocpp_frame");
        assert!(inputs.len() >= 10, "the corpus is there ({} inputs)", inputs.len());
        for (path, bytes) in inputs {
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let outcome = std::panic::catch_unwind(|| check_frame(text));
                assert!(outcome.is_ok(), "{} fails", path.display());
            }
        }
    }

    #[test]
    fn the_handshake_corpus_replays_clean() {
        let inputs = corpus("handshake");
        assert!(inputs.len() >= 5, "the corpus is there ({} inputs)", inputs.len());
        for (path, bytes) in inputs {
            let outcome = std::panic::catch_unwind(|| check_handshake(&bytes));
            assert!(outcome.is_ok(), "{} fails", path.display());
        }
    }
}
