//! Real chargers bend the protocol. Each bend handled here on purpose, so the handlers can
//! work with clean values and the original stays on record.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// Before this, a charger's clock has not been set yet (it boots at 1970 or at its build date).
const PLAUSIBLE_FROM_MS: i64 = 1_420_070_400_000; // 2015-01-01T00:00:00Z

/// Timestamps sent without a zone (`2025-03-03T10:00:00`) are UTC by OCPP's rules; appends the
/// `Z` so the typed decoder accepts them. Returns how many were repaired.
pub fn repair_naive_timestamps(value: &mut Value) -> usize {
    match value {
        Value::String(s) if is_naive_timestamp(s) => {
            s.push('Z');
            1
        }
        Value::Array(items) => items.iter_mut().map(repair_naive_timestamps).sum(),
        Value::Object(map) => map.values_mut().map(repair_naive_timestamps).sum(),
        _ => 0,
    }
}

fn is_naive_timestamp(s: &str) -> bool {
    let looks_like =
        s.len() >= 19 && s.as_bytes().get(10) == Some(&b'T') && s.as_bytes().get(4) == Some(&b'-');
    looks_like
        && (NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
            || NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").is_ok())
}

/// The time we keep for an event: the charger's, unless its clock was obviously unset, in which
/// case our receive time. The charger's own text is always kept beside it.
pub fn effective_time(charger: DateTime<Utc>, received_ms: i64) -> i64 {
    let ms = charger.timestamp_millis();
    if ms < PLAUSIBLE_FROM_MS {
        received_ms
    } else {
        ms
    }
}

/// A decimal string as thousandths, exactly (no floats): `"12.5"` → 12500. `None` for non-numbers.
pub fn parse_milli(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (negative, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.strip_prefix('+').unwrap_or(raw)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let mut frac_milli: i64 = 0;
    for (i, c) in frac.chars().take(3).enumerate() {
        frac_milli += i64::from(c.to_digit(10)?) * 10i64.pow(2 - i as u32);
    }
    let value = whole.checked_mul(1000)?.checked_add(frac_milli)?;
    Some(if negative { -value } else { value })
}

/// `value × 10^exponent`, exactly where it can be (no floats); `None` on overflow.
pub fn scale_by_power_of_ten(value: i64, exponent: i32) -> Option<i64> {
    let factor = 10i64.checked_pow(exponent.unsigned_abs())?;
    if exponent >= 0 {
        value.checked_mul(factor)
    } else {
        Some(value / factor)
    }
}

/// Brings a sampled value to thousandths of its base unit (Wh, W, varh, var, A, V, %, Celsius…):
/// kilo-units are multiplied out, so energy from a charger reporting kWh lands as Wh.
pub fn normalise(value_milli: i64, unit: &str) -> (i64, String) {
    match unit {
        "kWh" => (value_milli.saturating_mul(1000), "Wh".to_owned()),
        "kW" => (value_milli.saturating_mul(1000), "W".to_owned()),
        "kvarh" => (value_milli.saturating_mul(1000), "varh".to_owned()),
        "kvar" => (value_milli.saturating_mul(1000), "var".to_owned()),
        "kVA" => (value_milli.saturating_mul(1000), "VA".to_owned()),
        other => (value_milli, other.to_owned()),
    }
}

/// OCPP 1.6 meterStart/meterStop are integer Wh. Transaction ids ≤ 0 are what chargers send for a
/// session started while offline that never got an id from us.
pub fn is_placeholder_transaction_id(id: i32) -> bool {
    id <= 0
}

/// For a charger whose model is known to bend enums (its `lenient` setting): repairs the value the
/// decoder refused at `path` (as `meterValue[0].sampledValue[2].measurand`) when it is a misspelling
/// of an allowed one (case, spaces, `_` or `-`), or drops a meter sample of a kind the schema does not
/// have. Returns what was done, for the warning; `None` when there is nothing safe to do.
pub fn repair_enum(payload: &mut Value, path: &str, decoder_message: &str) -> Option<String> {
    let mut quoted = decoder_message.split('`').skip(1).step_by(2);
    let (true, Some(bad)) = (decoder_message.starts_with("unknown variant"), quoted.next()) else {
        return None;
    };
    let normal = |s: &str| {
        s.chars().filter(|c| !matches!(c, ' ' | '_' | '-')).flat_map(char::to_lowercase).collect::<String>()
    };
    let matches: Vec<&str> = quoted.filter(|allowed| normal(allowed) == normal(bad)).collect();
    let segments = parse_path(path)?;
    if let [only] = matches.as_slice() {
        let slot = walk(payload, &segments)?;
        if slot.as_str() != Some(bad) {
            return None;
        }
        *slot = Value::String((*only).to_owned());
        return Some(format!("{path}: {bad:?} read as {only:?}"));
    }
    // A sample of a kind we do not know is dropped; the rest of the reading stays.
    let at = segments.iter().rposition(|s| matches!(s, Segment::Key(k) if k == "sampledValue"))?;
    let Some(Segment::Index(index)) = segments.get(at + 1) else { return None };
    let Value::Array(samples) = walk(payload, &segments[..=at])? else { return None };
    if *index >= samples.len() || samples.len() < 2 {
        // The schema wants at least one sample: dropping the only one would empty the reading.
        return None;
    }
    samples.remove(*index);
    Some(format!("{path}: sample with {bad:?} dropped"))
}

#[derive(Debug, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` as keys and indices.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if !key.is_empty() {
            out.push(Segment::Key(key.to_owned()));
        }
        while let Some((index, after)) = rest.split_once(']') {
            out.push(Segment::Index(index.parse().ok()?));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(out)
}

fn walk<'a>(value: &'a mut Value, segments: &[Segment]) -> Option<&'a mut Value> {
    segments.iter().try_fold(value, |v, s| match s {
        Segment::Key(k) => v.get_mut(k.as_str()),
        Segment::Index(i) => v.get_mut(*i),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn naive_timestamps_become_utc_and_others_are_left_alone() {
        let mut v = json!({"timestamp": "2025-03-03T10:00:00", "nested": [{"t": "2025-03-03T10:00:00.5"}],
                           "zoned": "2025-03-03T10:00:00+01:00", "z": "2025-03-03T10:00:00Z", "text": "hello", "n": 5});
        assert_eq!(repair_naive_timestamps(&mut v), 2);
        assert_eq!(v["timestamp"], "2025-03-03T10:00:00Z");
        assert_eq!(v["nested"][0]["t"], "2025-03-03T10:00:00.5Z");
        assert_eq!(v["zoned"], "2025-03-03T10:00:00+01:00");
        assert_eq!(v["z"], "2025-03-03T10:00:00Z");
    }

    #[test]
    fn an_unset_clock_gives_way_to_our_receive_time() {
        let received = 1_763_000_000_000;
        let epoch = DateTime::<Utc>::from_timestamp(5, 0).expect("valid");
        assert_eq!(effective_time(epoch, received), received);
        let real = DateTime::<Utc>::from_timestamp(1_762_999_000, 0).expect("valid");
        assert_eq!(effective_time(real, received), 1_762_999_000_000);
    }

    #[test]
    fn decimals_parse_exactly() {
        let cases = [
            ("12.5", Some(12_500)),
            ("0", Some(0)),
            ("-3.25", Some(-3_250)),
            ("7", Some(7_000)),
            (".5", Some(500)),
            ("1.23456", Some(1_234)),
            ("abc", None),
            ("", None),
            ("1e3", None),
            ("+2", Some(2_000)),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_milli(raw), want, "{raw}");
        }
    }

    #[test]
    fn multipliers_scale_exactly() {
        assert_eq!(scale_by_power_of_ten(25_000, -1), Some(2_500));
        assert_eq!(scale_by_power_of_ten(3_000, 3), Some(3_000_000));
        assert_eq!(scale_by_power_of_ten(7, 0), Some(7));
        assert_eq!(scale_by_power_of_ten(i64::MAX, 2), None);
    }

    #[test]
    fn kilo_units_are_multiplied_out() {
        assert_eq!(normalise(12_500, "kWh"), (12_500_000, "Wh".to_owned()));
        assert_eq!(normalise(230_000, "V"), (230_000, "V".to_owned()));
    }

    #[test]
    fn a_misspelt_enum_value_is_read_as_the_one_it_means() {
        let mut p = serde_json::json!({"connectorId": 1, "status": "charging", "errorCode": "NoError"});
        let msg = "unknown variant `charging`, expected one of `Available`, `Preparing`, `Charging`, `SuspendedEVSE`";
        assert_eq!(
            repair_enum(&mut p, "status", msg).as_deref(),
            Some(r#"status: "charging" read as "Charging""#)
        );
        assert_eq!(p["status"], "Charging");
        let mut p = serde_json::json!({"a": [{"b": "Suspended_EV"}]});
        let msg = "unknown variant `Suspended_EV`, expected one of `SuspendedEV`, `SuspendedEVSE`";
        assert!(repair_enum(&mut p, "a[0].b", msg).is_some());
        assert_eq!(p["a"][0]["b"], "SuspendedEV");
    }

    #[test]
    fn a_meter_sample_of_an_unknown_kind_is_dropped_and_the_rest_kept() {
        let mut p = serde_json::json!({"meterValue": [{"sampledValue": [{"value": "1"}, {"value": "2", "measurand": "Battery.Wear"}, {"value": "3"}]}]});
        let msg = "unknown variant `Battery.Wear`, expected one of `Energy.Active.Import.Register`, `SoC`";
        let done = repair_enum(&mut p, "meterValue[0].sampledValue[1].measurand", msg).expect("dropped");
        assert!(done.contains("dropped"), "{done}");
        assert_eq!(p["meterValue"][0]["sampledValue"], serde_json::json!([{"value": "1"}, {"value": "3"}]));
    }

    #[test]
    fn nothing_is_guessed() {
        let msg = "unknown variant `Charging2`, expected one of `Charging`, `Available`";
        let mut p = serde_json::json!({"status": "Charging2"});
        assert_eq!(repair_enum(&mut p, "status", msg), None, "not a misspelling");
        let ambiguous = "unknown variant `ab`, expected one of `A_B`, `A-B`";
        assert_eq!(repair_enum(&mut serde_json::json!({"x": "ab"}), "x", ambiguous), None);
        let only = serde_json::json!({"meterValue": [{"sampledValue": [{"value": "1", "measurand": "X"}]}]});
        assert_eq!(
            repair_enum(
                &mut only.clone(),
                "meterValue[0].sampledValue[0].measurand",
                "unknown variant `X`, expected one of `SoC`"
            ),
            None
        );
        assert_eq!(
            repair_enum(&mut serde_json::json!({"n": 1}), "n", "invalid type: integer"),
            None,
            "not an enum problem"
        );
    }
}
