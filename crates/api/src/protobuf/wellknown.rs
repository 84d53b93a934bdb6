//! The messages whose JSON form is not an object of their fields: IntOrString, Quantity,
//! Time, MicroTime, Duration, RawExtension, FieldsV1, apiextensions' JSON and the
//! `JSONSchemaPropsOr*` unions, and string-list wrappers (ExtraValue, Verbs); plus the
//! calendar arithmetic that Time needs.

use super::ProtobufError;

/// The well-known messages, by full proto name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WellKnown {
    IntOrString,
    Quantity,
    Time,
    MicroTime,
    Duration,
    /// A message whose bytes field 1 holds JSON (RawExtension, FieldsV1, apiextensions JSON).
    RawJson,
    /// A message whose repeated string field 1 is its JSON array form.
    StringList,
    /// JSONSchemaPropsOrArray: schema (1) or jSONSchemas (2).
    PropsOrArray,
    /// JSONSchemaPropsOrBool: allows (1) or schema (2).
    PropsOrBool,
    /// JSONSchemaPropsOrStringArray: schema (1) or property (2).
    PropsOrStringArray,
}

const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.";

impl WellKnown {
    pub(super) fn of(message: &str) -> Option<WellKnown> {
        if let Some(name) = message.strip_prefix(META) {
            return match name {
                "Time" => Some(WellKnown::Time),
                "MicroTime" => Some(WellKnown::MicroTime),
                "Duration" => Some(WellKnown::Duration),
                "FieldsV1" => Some(WellKnown::RawJson),
                "Verbs" => Some(WellKnown::StringList),
                _ => None,
            };
        }
        match message {
            "k8s.io.apimachinery.pkg.util.intstr.IntOrString" => Some(WellKnown::IntOrString),
            "k8s.io.apimachinery.pkg.api.resource.Quantity" => Some(WellKnown::Quantity),
            "k8s.io.apimachinery.pkg.runtime.RawExtension" => Some(WellKnown::RawJson),
            _ if message.starts_with("k8s.io.apiextensions-apiserver.") => match message.rsplit('.').next() {
                Some("JSON") => Some(WellKnown::RawJson),
                Some("JSONSchemaPropsOrArray") => Some(WellKnown::PropsOrArray),
                Some("JSONSchemaPropsOrBool") => Some(WellKnown::PropsOrBool),
                Some("JSONSchemaPropsOrStringArray") => Some(WellKnown::PropsOrStringArray),
                _ => None,
            },
            _ if message.ends_with(".ExtraValue") => Some(WellKnown::StringList),
            _ => None,
        }
    }
}

/// The first and last instants a metav1.Time may hold (0001-01-01 and 9999-12-31).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01, proleptic Gregorian.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats seconds and nanoseconds since the epoch as Kubernetes' JSON does: RFC 3339 in
/// UTC, with `micros` six fractional digits (MicroTime) or none (Time).
pub(super) fn format_time(seconds: i64, nanos: i32, micros: bool) -> Result<String, ProtobufError> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(ProtobufError::InvalidTime { seconds, nanos });
    }
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let secs = seconds.rem_euclid(86_400);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    if micros {
        out.push_str(&format!(".{:06}", nanos / 1000));
    }
    out.push('Z');
    Ok(out)
}

/// Parses an RFC 3339 time (`2024-05-06T07:08:09Z`, `…09.123456+02:00`) to seconds and
/// nanoseconds since the epoch.
pub(super) fn parse_time(text: &str) -> Option<(i64, i32)> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, m, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut pos = 19;
    let mut nanos = 0i64;
    if b[pos] == b'.' {
        let start = pos + 1;
        pos = start;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = pos - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        nanos = num(start..pos)? * 10i64.pow(9 - digits as u32);
    }
    let offset = match b.get(pos..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes = num(pos + 1..pos + 3)? * 60 + num(pos + 4..pos + 6)?;
            if *sign == b'+' { minutes * 60 } else { -minutes * 60 }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month as u32, day as u32);
    let seconds = days * 86_400 + h * 3600 + m * 60 + s - offset;
    Some((seconds, nanos as i32))
}

/// Formats nanoseconds as Go's `time.Duration.String()` does: `1h2m3.5s`, `150ms`, `0s`.
pub(super) fn format_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_string();
    }
    if u < 1_000 {
        return format!("{sign}{u}ns");
    }
    if u < 1_000_000 {
        return format!("{sign}{}µs", decimal(u, 3));
    }
    if u < 1_000_000_000 {
        return format!("{sign}{}ms", decimal(u, 6));
    }
    let secs = u / 1_000_000_000;
    let (h, m) = (secs / 3600, secs / 60 % 60);
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&decimal(u % 60_000_000_000, 9));
    out.push('s');
    out
}

/// `value / 10^digits` as a decimal without trailing zeros.
fn decimal(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, frac) = (value / scale, value % scale);
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Parses a Go duration string (`1h2m3.5s`, `-150ms`, `0`) to nanoseconds.
pub(super) fn parse_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * scale;
    }
    if total > i64::MAX as f64 {
        return None;
    }
    let nanos = total.round() as i64;
    Some(if negative { -nanos } else { nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_and_parse() {
        for (seconds, nanos, micros, text) in [
            (0, 0, false, "1970-01-01T00:00:00Z"),
            (1_700_000_000, 0, false, "2023-11-14T22:13:20Z"),
            (1_700_000_000, 123_456_789, true, "2023-11-14T22:13:20.123456Z"),
            (951_782_400, 0, false, "2000-02-29T00:00:00Z"),
            (MIN_SECONDS, 0, false, "0001-01-01T00:00:00Z"),
            (MAX_SECONDS, 0, false, "9999-12-31T23:59:59Z"),
            (-1, 0, false, "1969-12-31T23:59:59Z"),
        ] {
            assert_eq!(format_time(seconds, nanos, micros).unwrap(), text);
            let parsed = parse_time(text).unwrap();
            assert_eq!(parsed.0, seconds, "{text}");
        }
        assert_eq!(parse_time("2023-11-14T23:13:20+01:00"), Some((1_700_000_000, 0)));
        assert_eq!(parse_time("2023-11-14T22:13:20.5Z"), Some((1_700_000_000, 500_000_000)));
    }

    #[test]
    fn bad_times_are_rejected() {
        assert!(format_time(MAX_SECONDS + 1, 0, false).is_err());
        assert!(format_time(0, -1, false).is_err());
        assert!(format_time(0, 1_000_000_000, true).is_err());
        for text in [
            "",
            "2023-11-14",
            "2023-11-14T22:13:20",
            "2023-13-14T22:13:20Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20+0100",
            "2023-11-14T22:1x:20Z",
            "２０２3-11-14T22:13:20Z",
        ] {
            assert_eq!(parse_time(text), None, "{text}");
        }
    }

    #[test]
    fn durations_format_like_go() {
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (150_000_000, "150ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-90_000_000_000, "-1m30s"),
        ] {
            assert_eq!(format_duration(nanos), text);
            assert_eq!(parse_duration(text), Some(nanos), "{text}");
        }
        for bad in ["", "5", "1x", "h", "-", "1e400h"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
