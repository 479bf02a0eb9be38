//! Wire-format helpers shared by REST and DDP: Meteor-style ids and secrets, JavaScript `Date`
//! semantics (how a real server formats and parses times), and the one conversion between the
//! stored EJSON documents and their REST form.
//!
//! Documents are stored the way they travel over DDP: every date is EJSON `{"$date": <ms>}`.
//! REST serialises the same document with JSON.stringify, which turns each date into an ISO
//! string (`2026-04-24T17:40:00.000Z`); [`to_rest`] does exactly that.

use rand::Rng;
use serde_json::{json, Map, Value};

/// The alphabet of Meteor's `Random.id()` (no look-alike characters).
const UNMISTAKABLE: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz";
/// The alphabet of Meteor's `Random.secret()` (base64url).
const BASE64URL: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

/// A Meteor document id: 17 characters of the unmistakable alphabet, like `Random.id()`.
pub(crate) fn random_id() -> String {
    random_from(UNMISTAKABLE, 17)
}

/// A login token: 43 base64url characters, like `Accounts._generateStampedLoginToken()`.
pub(crate) fn random_secret() -> String {
    random_from(BASE64URL, 43)
}

fn random_from(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| alphabet[rng.gen_range(0..alphabet.len())] as char)
        .collect()
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// An EJSON date, the form dates take over DDP.
pub(crate) fn ejson_date(ms: i64) -> Value {
    json!({ "$date": ms })
}

/// `Date.prototype.toISOString()`: always UTC, always milliseconds.
pub(crate) fn iso(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Out of range for a JS Date as well; JS would throw, we print something recognisable.
        Err(_) => "Invalid Date".to_owned(),
    }
}

/// The milliseconds of an EJSON date value, if it is one.
pub(crate) fn ejson_ms(v: &Value) -> Option<i64> {
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.get("$date")?.as_i64()
}

/// Converts a stored (EJSON) document to what the REST API prints: every `{"$date": ms}`
/// becomes its ISO string, everything else is unchanged.
pub(crate) fn to_rest(v: &Value) -> Value {
    if let Some(ms) = ejson_ms(v) {
        return Value::String(iso(ms));
    }
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_rest(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_rest).collect()),
        other => other.clone(),
    }
}

/// `new Date(s)` as V8 parses the ISO-like strings clients send: `YYYY`, `YYYY-MM`,
/// `YYYY-MM-DD` (UTC), and `YYYY-MM-DD[T| ]HH:mm[:ss[.fff…]]` with `Z`, `±HH:mm` or nothing
/// (then local time; the fake's server time zone is UTC, like the official container image).
/// Anything else is an Invalid Date, which the server's MongoDB driver stores as epoch 0 — so
/// callers map `None` to `0`, as a real server effectively does.
pub(crate) fn parse_js_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i64> {
        let part = s.get(from..from + n)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let year = digits(0, 4)?;
    let (mut month, mut day) = (1, 1);
    let mut i = 4;
    if b.get(i) == Some(&b'-') {
        month = digits(i + 1, 2)?;
        i += 3;
        if b.get(i) == Some(&b'-') {
            day = digits(i + 1, 2)?;
            i += 3;
        }
    }
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0i64);
    // Date-only forms are UTC; date-time forms without an offset are local (= UTC here).
    let mut offset_minutes = 0i64;
    if i < b.len() {
        if i != 10 || !(b[i] == b'T' || b[i] == b't' || b[i] == b' ') {
            return None;
        }
        hour = digits(i + 1, 2)?;
        if b.get(i + 3) != Some(&b':') {
            return None;
        }
        minute = digits(i + 4, 2)?;
        i += 6;
        if b.get(i) == Some(&b':') {
            second = digits(i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
                if end == start {
                    return None;
                }
                let frac = &s[start..end.min(start + 9)];
                let scale = 10i64.pow(9 - frac.len() as u32);
                nanos = frac.parse::<i64>().ok()? * scale;
                i = end;
            }
        }
        match b.get(i) {
            None => {}
            Some(b'Z') | Some(b'z') if i + 1 == b.len() => {}
            Some(sign @ (b'+' | b'-')) => {
                let oh = digits(i + 1, 2)?;
                let om = if b.get(i + 3) == Some(&b':') {
                    digits(i + 4, 2)?
                } else {
                    digits(i + 3, 2)?
                };
                let used = if b.get(i + 3) == Some(&b':') { 6 } else { 5 };
                if i + used != b.len() {
                    return None;
                }
                offset_minutes = (oh * 60 + om) * if *sign == b'-' { -1 } else { 1 };
            }
            _ => return None,
        }
    }
    let dt = jiff::civil::DateTime::new(
        year as i16,
        month as i8,
        day as i8,
        hour as i8,
        minute as i8,
        second as i8,
        nanos as i32,
    )
    .ok()?;
    let utc = dt.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(utc.timestamp().as_millisecond() - offset_minutes * 60_000)
}

/// JavaScript's `String.prototype.length`: UTF-16 code units, which is what Rocket.Chat compares
/// with `Message_MaxAllowedSize`.
pub(crate) fn js_length(s: &str) -> usize {
    s.encode_utf16().count()
}

/// JavaScript's `String.prototype.trim()` (Unicode white space and line terminators).
pub(crate) fn js_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// `encodeURI()`, used by Rocket.Chat for the file name in `/file-upload/<id>/<name>`.
pub(crate) fn encode_uri(s: &str) -> String {
    const KEEP: &[u8] = b";,/?:@&=+$-_.!~*'()#";
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || KEEP.contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_look_like_meteor_ids() {
        let id = random_id();
        assert_eq!(id.len(), 17);
        assert!(id.bytes().all(|c| UNMISTAKABLE.contains(&c)));
        assert_eq!(random_secret().len(), 43);
    }

    #[test]
    fn iso_matches_js_to_iso_string() {
        assert_eq!(iso(1_777_052_400_000), "2026-04-24T17:40:00.000Z");
        assert_eq!(iso(1_777_052_400_123), "2026-04-24T17:40:00.123Z");
    }

    #[test]
    fn rest_form_replaces_ejson_dates_everywhere() {
        let doc =
            json!({"ts": {"$date": 0}, "a": [{"b": {"$date": 1}}], "c": {"$date": 1, "x": 2}});
        assert_eq!(
            to_rest(&doc),
            json!({"ts": "1970-01-01T00:00:00.000Z", "a": [{"b": "1970-01-01T00:00:00.001Z"}],
                   "c": {"$date": 1, "x": 2}})
        );
    }

    #[test]
    fn js_date_parsing_follows_v8_for_iso_forms() {
        assert_eq!(
            parse_js_date("2026-04-24T17:40:00Z"),
            Some(1_777_052_400_000)
        );
        assert_eq!(
            parse_js_date("2026-04-24T17:40:00.123Z"),
            Some(1_777_052_400_123)
        );
        assert_eq!(
            parse_js_date("2026-04-24T19:40:00.123+02:00"),
            Some(1_777_052_400_123)
        );
        assert_eq!(parse_js_date("2026-04-24T17:40"), Some(1_777_052_400_000));
        assert_eq!(parse_js_date("2026-04-24"), Some(1_776_988_800_000));
        // Epoch milliseconds are not a date string for V8: Invalid Date.
        assert_eq!(parse_js_date("1777052400000"), None);
        assert_eq!(parse_js_date("yesterday"), None);
        assert_eq!(parse_js_date("2026-04-24T17:40:00Zjunk"), None);
    }

    #[test]
    fn lengths_are_utf16_like_javascript() {
        assert_eq!(js_length("abc"), 3);
        assert_eq!(js_length("é"), 1);
        assert_eq!(js_length("😀"), 2);
    }

    #[test]
    fn encode_uri_keeps_reserved_and_escapes_the_rest() {
        assert_eq!(encode_uri("a b/ü.txt"), "a%20b/%C3%BC.txt");
    }
}
