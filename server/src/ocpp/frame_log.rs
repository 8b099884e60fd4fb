//! What of a frame the raw frame log keeps: the frame as it went over the wire, less its secrets.
//! Credentials sent to a charger (its AuthorizationKey, a BasicAuthPassword) are replaced, a
//! driver's id tag keeps only its last four characters (enough to match a card a driver reads out),
//! and an oversized frame keeps its head. A frame with nothing to hide is kept to the byte. Pure.

use serde_json::Value;

/// The most of one frame the log keeps, bytes.
pub const MAX_LOGGED_BYTES: usize = 16 * 1024;

const REDACTED: &str = "[redacted]";

/// Configuration keys and variables whose values are credentials (matched whatever their case).
const SECRET_SETTINGS: [&str; 3] = ["AuthorizationKey", "BasicAuthPassword", "CertificatePrivateKey"];

/// Keys whose string value is a driver's id tag.
const ID_TAG_KEYS: [&str; 4] = ["idTag", "parentIdTag", "idToken", "additionalIdToken"];

fn is_secret_setting(name: &str) -> bool {
    SECRET_SETTINGS.iter().any(|s| s.eq_ignore_ascii_case(name))
}

/// Whether a frame names anything we hide: most frames (meter values, heartbeats, statuses) do
/// not, and are kept as they came without being parsed on every message's way.
fn may_hold_secrets(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    ID_TAG_KEYS.iter().chain(SECRET_SETTINGS.iter()).any(|name| lower.contains(&name.to_ascii_lowercase()))
}

/// The frame as the log keeps it.
pub fn for_log(text: &str) -> String {
    if !may_hold_secrets(text) {
        return cut(text.to_owned());
    }
    let kept = match serde_json::from_str::<Value>(text) {
        Ok(mut frame) => {
            let mut changed = false;
            if let Value::Array(parts) = &mut frame {
                // CALL: [2, id, action, payload]; CALLRESULT: [3, id, payload]; CALLERROR: details last.
                for part in parts.iter_mut().skip(2) {
                    changed |= redact(part);
                }
            }
            if changed {
                frame.to_string()
            } else {
                text.to_owned()
            }
        }
        // Not JSON (a malformed frame support wants to see as it came), less any id tag in it.
        Err(_) => mask_tags_in_text(text),
    };
    cut(kept)
}

/// Redacts in place; true when anything was.
fn redact(value: &mut Value) -> bool {
    let mut changed = false;
    match value {
        Value::Object(map) => {
            // ChangeConfiguration {key, value}; GetConfiguration's answer [{key, readonly, value}].
            let secret_key = map.get("key").and_then(Value::as_str).is_some_and(is_secret_setting);
            if secret_key && map.contains_key("value") {
                map.insert("value".into(), Value::String(REDACTED.into()));
                changed = true;
            }
            // SetVariables' setVariableData / GetVariables' result: {variable: {name}, attributeValue}.
            let secret_variable = map
                .get("variable")
                .and_then(|v| v.get("name"))
                .and_then(Value::as_str)
                .is_some_and(is_secret_setting);
            if secret_variable && map.contains_key("attributeValue") {
                map.insert("attributeValue".into(), Value::String(REDACTED.into()));
                changed = true;
            }
            for (key, inner) in map.iter_mut() {
                match inner {
                    Value::String(tag) if ID_TAG_KEYS.contains(&key.as_str()) => {
                        let hidden = masked(tag);
                        changed |= hidden != *tag;
                        *tag = hidden;
                    }
                    other => changed |= redact(other),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                changed |= redact(item);
            }
        }
        _ => {}
    }
    changed
}

/// Text that is not JSON, with the string after each `"idTag":` (and the like) masked.
fn mask_tags_in_text(text: &str) -> String {
    let mut out = text.to_owned();
    for key in ID_TAG_KEYS {
        let needle = format!("\"{key}\"");
        let mut from = 0;
        while let Some(at) = out[from..].find(&needle).map(|i| i + from) {
            let after = at + needle.len();
            // Only `: "value"` right after the key is a tag's value.
            let gap = out[after..].find('"').filter(|&i| {
                let between = &out[after..after + i];
                between.contains(':') && between.chars().all(|c| c == ':' || c.is_whitespace())
            });
            let Some(gap) = gap else {
                from = after;
                continue;
            };
            let start = after + gap + 1;
            let Some(len) = out[start..].find('"') else { break };
            let hidden = masked(&out[start..start + len]);
            out.replace_range(start..start + len, &hidden);
            from = start + hidden.len();
        }
    }
    out
}

/// An id tag with all but its last four characters hidden.
fn masked(tag: &str) -> String {
    let chars: Vec<char> = tag.chars().collect();
    let keep = chars.len().saturating_sub(4);
    chars.iter().enumerate().map(|(i, c)| if i < keep { '*' } else { *c }).collect()
}

fn cut(mut text: String) -> String {
    if text.len() <= MAX_LOGGED_BYTES {
        return text;
    }
    let total = text.len();
    let mut end = MAX_LOGGED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… [{} of {total} bytes not kept]", total - end));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credentials_sent_to_a_charger_are_not_kept() {
        let change =
            json!([2, "1", "ChangeConfiguration", {"key": "AuthorizationKey", "value": "0123456789abcdef"}]);
        let kept = for_log(&change.to_string());
        assert!(!kept.contains("0123456789abcdef"), "{kept}");
        assert!(kept.contains("AuthorizationKey") && kept.contains(REDACTED), "{kept}");
        let set = json!([2, "2", "SetVariables", {"setVariableData": [
            {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}, "attributeValue": "s3cret-pass"},
            {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": "TxUpdatedInterval"}, "attributeValue": "10"}]}]);
        let kept = for_log(&set.to_string());
        assert!(!kept.contains("s3cret-pass"), "{kept}");
        assert!(kept.contains(r#""attributeValue":"10""#), "other settings are kept: {kept}");
        let other = r#"[2, "3", "ChangeConfiguration", {"value": "10", "key": "MeterValueSampleInterval"}]"#;
        assert_eq!(for_log(other), other, "a frame with nothing to hide is kept to the byte");
        let lowercase = json!([2, "9", "ChangeConfiguration", {"key": "authorizationkey", "value": "k3y"}]);
        assert!(!for_log(&lowercase.to_string()).contains("k3y"), "setting names match whatever their case");
    }

    #[test]
    fn a_drivers_id_tag_keeps_only_its_last_four_characters() {
        let start = json!([2, "4", "StartTransaction", {"connectorId": 1, "idTag": "04A2B3C4D5E6F7", "meterStart": 0, "timestamp": "2026-12-07T10:00:00Z"}]);
        let kept = for_log(&start.to_string());
        assert!(!kept.contains("04A2B3C4D5E6F7") && kept.contains(r#""idTag":"**********E6F7""#), "{kept}");
        let event = json!([2, "5", "TransactionEvent", {"idToken": {"idToken": "DRIVER-CARD-991", "type": "ISO14443"}}]);
        let kept = for_log(&event.to_string());
        assert!(!kept.contains("DRIVER-CARD-991") && kept.contains("-991"), "{kept}");
        let answer = json!([3, "6", {"idTagInfo": {"status": "Accepted", "parentIdTag": "PARENT-TAG-77"}}]);
        assert!(!for_log(&answer.to_string()).contains("PARENT-TAG-77"));
        assert_eq!(masked("AB"), "AB", "a tag of four or fewer shows nothing more than it is");
    }

    #[test]
    fn an_oversized_frame_keeps_its_head_and_says_how_much_was_cut() {
        let big =
            json!([2, "7", "DataTransfer", {"vendorId": "E2E", "data": "é".repeat(20_000)}]).to_string();
        let kept = for_log(&big);
        assert!(kept.len() < MAX_LOGGED_BYTES + 64, "{}", kept.len());
        assert!(kept.starts_with(r#"[2,"7","DataTransfer""#), "{}", &kept[..40]);
        assert!(kept.ends_with(&format!("bytes not kept]")), "{}", &kept[kept.len() - 60..]);
        assert_eq!(for_log("not json at all"), "not json at all");
        let broken = r#"[2, "8", "Authorize", {"idTag": "BROKEN-CARD-5555", "#;
        let kept = for_log(broken);
        assert!(!kept.contains("BROKEN-CARD") && kept.contains("5555\""), "{kept}");
    }
}
