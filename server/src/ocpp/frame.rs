//! OCPP-J RPC framing (OCPP 1.6 JSON §4, OCPP 2.0.1 Part 4 §4): CALL `[2, id, action, payload]`,
//! CALLRESULT `[3, id, payload]`, CALLERROR `[4, id, code, description, details]`.
//!
//! Pure: text in, typed frame or the CALLERROR to answer out. Never panics on any input.

use serde_json::{json, Value};
use std::fmt;

/// The OCPP version negotiated in the WebSocket subprotocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OcppVersion {
    V16,
    V201,
}

impl OcppVersion {
    /// In order of preference when a charger offers several.
    pub const PREFERRED: [OcppVersion; 2] = [OcppVersion::V201, OcppVersion::V16];

    pub fn subprotocol(self) -> &'static str {
        match self {
            OcppVersion::V16 => "ocpp1.6",
            OcppVersion::V201 => "ocpp2.0.1",
        }
    }

    pub fn from_subprotocol(name: &str) -> Option<Self> {
        Self::PREFERRED.into_iter().find(|v| v.subprotocol().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for OcppVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OcppVersion::V16 => "1.6",
            OcppVersion::V201 => "2.0.1",
        })
    }
}

/// The RPC error codes. 1.6 and 2.0.1 name some differently; [`ErrorCode::as_str`] knows how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame or payload is not syntactically valid (1.6: FormationViolation).
    FormatViolation,
    /// The payload does not match the PDU's structure.
    ProtocolError,
    /// A field has the wrong JSON type.
    TypeConstraintViolation,
    /// A field has a value outside what the schema allows (enum, length, range).
    PropertyConstraintViolation,
    /// A required field is missing (1.6 spells it OccurenceConstraintViolation).
    OccurrenceConstraintViolation,
    /// The action is unknown to us.
    NotImplemented,
    /// The action is known but we do not support it.
    NotSupported,
    /// The message type number is not 2, 3 or 4 (2.0.1 only; 1.6 gets FormationViolation).
    MessageTypeNotSupported,
    /// The frame is not an RPC message at all, e.g. the message id cannot be read (2.0.1 only).
    RpcFrameworkError,
    InternalError,
    SecurityError,
    GenericError,
}

impl ErrorCode {
    pub fn as_str(self, version: OcppVersion) -> &'static str {
        use ErrorCode::*;
        match (self, version) {
            (FormatViolation, OcppVersion::V16) => "FormationViolation",
            (FormatViolation, OcppVersion::V201) => "FormatViolation",
            (OccurrenceConstraintViolation, OcppVersion::V16) => "OccurenceConstraintViolation",
            (OccurrenceConstraintViolation, OcppVersion::V201) => "OccurrenceConstraintViolation",
            (MessageTypeNotSupported | RpcFrameworkError, OcppVersion::V16) => "FormationViolation",
            (MessageTypeNotSupported, OcppVersion::V201) => "MessageTypeNotSupported",
            (RpcFrameworkError, OcppVersion::V201) => "RpcFrameworkError",
            (ProtocolError, _) => "ProtocolError",
            (TypeConstraintViolation, _) => "TypeConstraintViolation",
            (PropertyConstraintViolation, _) => "PropertyConstraintViolation",
            (NotImplemented, _) => "NotImplemented",
            (NotSupported, _) => "NotSupported",
            (InternalError, _) => "InternalError",
            (SecurityError, _) => "SecurityError",
            (GenericError, _) => "GenericError",
        }
    }
}

/// A failure to answer with a CALLERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: ErrorCode,
    pub description: String,
}

impl RpcError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        // CALLERROR descriptions are free text, but keep them short and single-line.
        let mut description: String = description.into().replace('\n', " ");
        // At most 255 bytes, cut on a character's boundary: the text may echo a charger's own
        // (an unknown action's name), and cutting inside a character would panic.
        let mut end = description.len().min(255);
        while !description.is_char_boundary(end) {
            end -= 1;
        }
        description.truncate(end);
        Self { code, description }
    }
}

/// A frame that could not be decoded, with the message id when it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    /// `-1` when the id could not be read (OCPP 2.0.1 Part 4 §4.2.3).
    pub message_id: String,
    pub error: RpcError,
    /// A broken CALLRESULT or CALLERROR must not be answered (that would loop); only logged.
    pub answerable: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Call { id: String, action: String, payload: Value },
    CallResult { id: String, payload: Value },
    CallError { id: String, code: String, description: String, details: Value },
}

/// Message ids are at most 36 characters (2.0.1 Part 4 §4.1.3); 1.6 sets no limit but chargers follow it.
const MAX_MESSAGE_ID: usize = 36;

pub fn decode(text: &str) -> Result<Frame, BadFrame> {
    let unreadable = |code, description: &str| BadFrame {
        message_id: "-1".to_owned(),
        error: RpcError::new(code, description),
        answerable: true,
    };
    let value: Value = serde_json::from_str(text)
        .map_err(|e| unreadable(ErrorCode::FormatViolation, &format!("not valid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return Err(unreadable(ErrorCode::RpcFrameworkError, "an OCPP-J message is a JSON array"));
    };
    let Some(type_id) = items.first().and_then(Value::as_u64) else {
        return Err(unreadable(
            ErrorCode::RpcFrameworkError,
            "the first element must be the message type number",
        ));
    };
    let Some(id) = items.get(1).and_then(Value::as_str) else {
        return Err(unreadable(
            ErrorCode::RpcFrameworkError,
            "the second element must be the message id string",
        ));
    };
    let bad = |code, description: &str, answerable| BadFrame {
        message_id: id.to_owned(),
        error: RpcError::new(code, description),
        answerable,
    };
    if id.is_empty() {
        // Nothing to echo: answered like an unreadable id.
        return Err(unreadable(ErrorCode::RpcFrameworkError, "the message id must be 1 to 36 characters"));
    }
    if id.chars().count() > MAX_MESSAGE_ID {
        return Err(bad(ErrorCode::RpcFrameworkError, "the message id must be 1 to 36 characters", true));
    }
    let id = id.to_owned();
    match type_id {
        2 => {
            let [_, _, Value::String(action), payload] = items.as_slice() else {
                return Err(bad(ErrorCode::FormatViolation, "a CALL is [2, id, action, payload]", true));
            };
            if !payload.is_object() {
                return Err(bad(ErrorCode::FormatViolation, "a CALL's payload must be a JSON object", true));
            }
            Ok(Frame::Call { id, action: action.clone(), payload: payload.clone() })
        }
        3 => match items.as_slice() {
            [_, _, payload] if payload.is_object() => Ok(Frame::CallResult { id, payload: payload.clone() }),
            _ => Err(bad(ErrorCode::FormatViolation, "a CALLRESULT is [3, id, payload]", false)),
        },
        4 => match items.as_slice() {
            [_, _, Value::String(code), Value::String(description), details] => Ok(Frame::CallError {
                id,
                code: code.clone(),
                description: description.clone(),
                details: details.clone(),
            }),
            _ => Err(bad(
                ErrorCode::FormatViolation,
                "a CALLERROR is [4, id, code, description, details]",
                false,
            )),
        },
        other => Err(bad(
            ErrorCode::MessageTypeNotSupported,
            &format!("message type {other} is not 2, 3 or 4"),
            true,
        )),
    }
}

pub fn call(id: &str, action: &str, payload: &Value) -> String {
    json!([2, id, action, payload]).to_string()
}

pub fn call_result(id: &str, payload: &Value) -> String {
    json!([3, id, payload]).to_string()
}

pub fn call_error(id: &str, error: &RpcError, version: OcppVersion) -> String {
    json!([4, id, error.code.as_str(version), error.description, {}]).to_string()
}

/// Classifies a serde error from decoding a payload into the OCPP error it means.
pub fn classify_payload_error(err: &serde_json::Error) -> ErrorCode {
    let text = err.to_string();
    if text.starts_with("missing field") {
        ErrorCode::OccurrenceConstraintViolation
    } else if text.starts_with("unknown variant")
        || text.starts_with("unknown field")
        || text.starts_with("invalid value")
    {
        ErrorCode::PropertyConstraintViolation
    } else if text.starts_with("invalid type") || text.starts_with("invalid number") {
        // "invalid number": a number that does not fit the field's integer type (e.g. -1 for a count).
        ErrorCode::TypeConstraintViolation
    } else if err.is_syntax() || err.is_eof() {
        ErrorCode::FormatViolation
    } else {
        // Out-of-range numbers, unparseable dates and the like: the type is right, the value is not.
        ErrorCode::PropertyConstraintViolation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_long_description_is_cut_on_a_character_boundary() {
        // 239 ASCII letters and a two-byte letter after "unknown action " straddle byte 255.
        let action = format!("{}é", "A".repeat(239));
        let err = RpcError::new(ErrorCode::NotImplemented, format!("unknown action {action}"));
        assert!(err.description.len() <= 255, "{}", err.description.len());
        assert!(err.description.starts_with("unknown action AAA"));
        let all_multibyte = RpcError::new(ErrorCode::GenericError, "é".repeat(300));
        assert_eq!(all_multibyte.description.len(), 254, "127 whole two-byte letters");
    }

    fn err(text: &str) -> (String, &'static str, bool) {
        let bad = decode(text).expect_err("should be refused");
        (bad.message_id, bad.error.code.as_str(OcppVersion::V201), bad.answerable)
    }

    #[test]
    fn decodes_the_three_message_types() {
        assert_eq!(
            decode(r#"[2,"a1","Heartbeat",{}]"#),
            Ok(Frame::Call { id: "a1".into(), action: "Heartbeat".into(), payload: json!({}) })
        );
        assert_eq!(
            decode(r#"[3,"a1",{"x":1}]"#),
            Ok(Frame::CallResult { id: "a1".into(), payload: json!({"x":1}) })
        );
        assert!(matches!(decode(r#"[4,"a1","NotSupported","no",{}]"#), Ok(Frame::CallError { .. })));
    }

    #[test]
    fn refuses_each_kind_of_malformed_frame_with_the_right_code() {
        let cases: &[(&str, (&str, &str, bool))] = &[
            ("not json", ("-1", "FormatViolation", true)),
            (r#"{"a":1}"#, ("-1", "RpcFrameworkError", true)),
            ("[]", ("-1", "RpcFrameworkError", true)),
            (r#"[2]"#, ("-1", "RpcFrameworkError", true)),
            (r#"[2, 5, "Heartbeat", {}]"#, ("-1", "RpcFrameworkError", true)),
            (r#"[2, "", "Heartbeat", {}]"#, ("-1", "RpcFrameworkError", true)),
            (r#"[7,"m1",{}]"#, ("m1", "MessageTypeNotSupported", true)),
            (r#"[2,"m2","Heartbeat"]"#, ("m2", "FormatViolation", true)),
            (r#"[2,"m3","Heartbeat",[]]"#, ("m3", "FormatViolation", true)),
            (r#"[2,"m4",5,{}]"#, ("m4", "FormatViolation", true)),
            (r#"[3,"m5"]"#, ("m5", "FormatViolation", false)),
            (r#"[4,"m6","x"]"#, ("m6", "FormatViolation", false)),
        ];
        for (text, (id, code, answerable)) in cases {
            let got = err(text);
            assert_eq!((got.0.as_str(), got.1, got.2), (*id, *code, *answerable), "{text}");
        }
        let long = format!(r#"[2,"{}","Heartbeat",{{}}]"#, "x".repeat(37));
        assert_eq!(err(&long).1, "RpcFrameworkError");
    }

    #[test]
    fn version_specific_spellings() {
        assert_eq!(ErrorCode::FormatViolation.as_str(OcppVersion::V16), "FormationViolation");
        assert_eq!(
            ErrorCode::OccurrenceConstraintViolation.as_str(OcppVersion::V16),
            "OccurenceConstraintViolation"
        );
        assert_eq!(ErrorCode::MessageTypeNotSupported.as_str(OcppVersion::V16), "FormationViolation");
        assert_eq!(
            ErrorCode::OccurrenceConstraintViolation.as_str(OcppVersion::V201),
            "OccurrenceConstraintViolation"
        );
    }

    #[test]
    fn payload_errors_are_classified() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct P {
            n: u32,
            e: E,
        }
        #[derive(serde::Deserialize, Debug)]
        enum E {
            A,
        }
        let code = |v: Value| {
            let err = serde_json::from_value::<P>(v).expect_err("bad");
            classify_payload_error(&err)
        };
        assert_eq!(code(json!({"e": "A"})), ErrorCode::OccurrenceConstraintViolation);
        assert_eq!(code(json!({"n": "x", "e": "A"})), ErrorCode::TypeConstraintViolation);
        assert_eq!(code(json!({"n": 1, "e": "B"})), ErrorCode::PropertyConstraintViolation);
        assert_eq!(code(json!({"n": -1, "e": "A"})), ErrorCode::TypeConstraintViolation);
    }

    #[test]
    fn subprotocols_round_trip() {
        for v in OcppVersion::PREFERRED {
            assert_eq!(OcppVersion::from_subprotocol(v.subprotocol()), Some(v));
        }
        assert_eq!(OcppVersion::from_subprotocol("ocpp2.1"), None);
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = decode(&text);
        }

        #[test]
        fn decoding_arbitrary_json_arrays_never_panics(items in proptest::collection::vec(
            prop_oneof![
                any::<i64>().prop_map(|n| json!(n)),
                ".{0,40}".prop_map(|s| json!(s)),
                Just(json!({})),
                Just(json!(null)),
                Just(json!([1, "x"])),
            ], 0..6)) {
            let text = Value::Array(items).to_string();
            match decode(&text) {
                Ok(frame) => {
                    // Whatever decodes re-encodes to the same message.
                    let again = match &frame {
                        Frame::Call { id, action, payload } => call(id, action, payload),
                        Frame::CallResult { id, payload } => call_result(id, payload),
                        Frame::CallError { .. } => text.clone(),
                    };
                    prop_assert_eq!(decode(&again), Ok(frame));
                }
                Err(bad) => prop_assert!(!bad.message_id.is_empty()),
            }
        }

        #[test]
        fn calls_round_trip(id in "[a-zA-Z0-9-]{1,36}", action in "[A-Za-z]{1,30}") {
            let text = call(&id, &action, &json!({"k": 1}));
            prop_assert_eq!(decode(&text), Ok(Frame::Call { id, action, payload: json!({"k": 1}) }));
        }
    }
}
