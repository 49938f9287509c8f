//! SQL types and values: coercion on assignment, comparison, display, and timestamps.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{SolidError, SolidResult, code};

/// Longest `VARCHAR(n)` accepted.
pub const MAX_VARCHAR_LEN: u32 = 1 << 20;

/// A column type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SqlType {
    /// 32-bit signed integer.
    Integer,
    /// 64-bit signed integer.
    BigInt,
    /// IEEE 754 double.
    Double,
    /// Text of at most `n` characters.
    Varchar(u32),
    Boolean,
    /// Microseconds since 1970-01-01 00:00:00, no time zone.
    Timestamp,
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SqlType::Integer => f.write_str("INTEGER"),
            SqlType::BigInt => f.write_str("BIGINT"),
            SqlType::Double => f.write_str("DOUBLE"),
            SqlType::Varchar(n) => write!(f, "VARCHAR({n})"),
            SqlType::Boolean => f.write_str("BOOLEAN"),
            SqlType::Timestamp => f.write_str("TIMESTAMP"),
        }
    }
}

/// A SQL value. `Null` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Int(i64),
    Double(f64),
    Text(String),
    Bool(bool),
    Timestamp(i64),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Converts a value for storage in a column of type `ty`, checking range and length.
    /// `column` names the column in error messages.
    pub fn coerce_to(self, ty: SqlType, column: &str) -> SolidResult<Value> {
        let mismatch = |v: &Value| {
            SolidError::type_mismatch(format!(
                "value {} does not fit column {column} of type {ty}",
                v.literal()
            ))
        };
        Ok(match (ty, self) {
            (_, Value::Null) => Value::Null,
            (SqlType::Integer, Value::Int(i)) => {
                if i32::try_from(i).is_err() {
                    return Err(SolidError::table(
                        code::ARITHMETIC,
                        format!("value {i} is out of range for INTEGER column {column}"),
                    ));
                }
                Value::Int(i)
            }
            (SqlType::BigInt, Value::Int(i)) => Value::Int(i),
            (SqlType::Integer | SqlType::BigInt, v @ Value::Double(d)) => {
                // Accept a double only when it is integral and in range.
                if d.fract() != 0.0 || !d.is_finite() || d < i64::MIN as f64 || d >= i64::MAX as f64
                {
                    return Err(mismatch(&v));
                }
                return Value::Int(d as i64).coerce_to(ty, column);
            }
            (SqlType::Double, Value::Int(i)) => Value::Double(i as f64),
            (SqlType::Double, Value::Double(d)) => {
                // One representation for zero so that keys compare equal.
                Value::Double(if d == 0.0 { 0.0 } else { d })
            }
            (SqlType::Varchar(n), Value::Text(s)) => {
                let len = s.chars().count();
                if len > n as usize {
                    return Err(SolidError::table(
                        code::VALUE_TOO_LONG,
                        format!(
                            "value of {len} characters is too long for column {column} VARCHAR({n})"
                        ),
                    ));
                }
                Value::Text(s)
            }
            (SqlType::Boolean, Value::Bool(b)) => Value::Bool(b),
            (SqlType::Timestamp, Value::Timestamp(t)) => Value::Timestamp(t),
            (SqlType::Timestamp, v @ Value::Text(_)) => {
                let Value::Text(s) = &v else { unreachable!() };
                match parse_timestamp(s) {
                    Some(t) => Value::Timestamp(t),
                    None => return Err(mismatch(&v)),
                }
            }
            (_, v) => return Err(mismatch(&v)),
        })
    }

    /// SQL comparison: `None` when either side is NULL or the types are incomparable.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        match (self, other) {
            (Value::Null, _) | (_, Value::Null) => None,
            (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
            (Value::Int(a), Value::Double(b)) => (*a as f64).partial_cmp(b),
            (Value::Double(a), Value::Int(b)) => a.partial_cmp(&(*b as f64)),
            (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
            (Value::Text(a), Value::Text(b)) => Some(a.cmp(b)),
            (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
            (Value::Timestamp(a), Value::Text(s)) => parse_timestamp(s).map(|b| a.cmp(&b)),
            (Value::Text(s), Value::Timestamp(b)) => parse_timestamp(s).map(|a| a.cmp(b)),
            _ => None,
        }
    }

    /// A total order for ORDER BY: NULLs first, then by `sql_cmp`, incomparable values by
    /// a fixed type rank so sorting never panics.
    pub fn order_cmp(&self, other: &Value) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        self.sql_cmp(other)
            .unwrap_or_else(|| self.type_rank().cmp(&other.type_rank()))
    }

    fn type_rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Double(_) => 2,
            Value::Timestamp(_) => 3,
            Value::Text(_) => 4,
        }
    }

    /// The value as a SQL literal (used in error messages).
    pub fn literal(&self) -> String {
        match self {
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Timestamp(t) => format!("TIMESTAMP '{}'", format_timestamp(*t)),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Double(d) => {
                if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e15 {
                    write!(f, "{d:.1}")
                } else {
                    write!(f, "{d}")
                }
            }
            Value::Text(s) => f.write_str(s),
            Value::Bool(true) => f.write_str("TRUE"),
            Value::Bool(false) => f.write_str("FALSE"),
            Value::Timestamp(t) => f.write_str(&format_timestamp(*t)),
        }
    }
}

const MICROS_PER_SEC: i64 = 1_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD[ HH:MM:SS[.ffffff]]` (a `T` may separate date and time) into
/// microseconds since the epoch. Returns `None` for anything else, including invalid dates.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.find([' ', 'T']) {
        Some(i) => (&s[..i], Some(s[i + 1..].trim_start())),
        None => (s, None),
    };
    let mut dp = date.split('-');
    let y: i64 = num(dp.next()?, 4, 4)?;
    let m: i64 = num(dp.next()?, 1, 2)?;
    let d: i64 = num(dp.next()?, 1, 2)?;
    if dp.next().is_some() || !(1..=12).contains(&m) || d < 1 || d > days_in_month(y, m) {
        return None;
    }
    let (mut hh, mut mm, mut ss, mut frac) = (0, 0, 0, 0);
    if let Some(time) = time {
        let (hms, f) = match time.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (time, None),
        };
        let mut tp = hms.split(':');
        hh = num(tp.next()?, 1, 2)?;
        mm = num(tp.next()?, 1, 2)?;
        ss = match tp.next() {
            Some(x) => num(x, 1, 2)?,
            None => 0,
        };
        if tp.next().is_some() || hh > 23 || mm > 59 || ss > 59 {
            return None;
        }
        if let Some(f) = f {
            if f.is_empty() || f.len() > 6 || !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            frac = f.parse::<i64>().ok()? * 10i64.pow(6 - f.len() as u32);
        }
    }
    let secs = days_from_civil(y, m, d) * SECS_PER_DAY + hh * 3600 + mm * 60 + ss;
    Some(secs * MICROS_PER_SEC + frac)
}

fn num(s: &str, min_len: usize, max_len: usize) -> Option<i64> {
    if s.len() < min_len || s.len() > max_len || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Formats microseconds since the epoch as `YYYY-MM-DD HH:MM:SS[.ffffff]`.
pub fn format_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(MICROS_PER_SEC);
    let frac = micros.rem_euclid(MICROS_PER_SEC);
    let days = secs.div_euclid(SECS_PER_DAY);
    let sod = secs.rem_euclid(SECS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let base = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    );
    if frac == 0 {
        base
    } else {
        format!("{base}.{frac:06}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        for s in [
            "1970-01-01 00:00:00",
            "2026-12-01 22:50:39",
            "2000-02-29 23:59:59.000001",
            "1969-12-31 23:59:59.5",
            "0001-01-01 00:00:00",
        ] {
            let t = parse_timestamp(s).unwrap();
            let again = parse_timestamp(&format_timestamp(t)).unwrap();
            assert_eq!(t, again, "{s}");
        }
        assert_eq!(parse_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_timestamp("1970-01-02T00:00:01"), Some(86_401_000_000));
    }

    #[test]
    fn bad_timestamps_are_rejected() {
        for s in [
            "",
            "2021-02-29",
            "2021-13-01",
            "2021-01-01 24:00:00",
            "x",
            "2021-1-1 1:1:1.1234567",
        ] {
            assert_eq!(parse_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn coercion_checks_range_and_length() {
        assert!(
            Value::Int(1 << 40)
                .coerce_to(SqlType::Integer, "A")
                .is_err()
        );
        assert_eq!(
            Value::Int(1 << 40).coerce_to(SqlType::BigInt, "A").unwrap(),
            Value::Int(1 << 40)
        );
        let e = Value::Text("abcd".into())
            .coerce_to(SqlType::Varchar(3), "A")
            .unwrap_err();
        assert_eq!(e.code, code::VALUE_TOO_LONG);
        assert_eq!(
            Value::Int(2).coerce_to(SqlType::Double, "A").unwrap(),
            Value::Double(2.0)
        );
        assert!(
            Value::Text("x".into())
                .coerce_to(SqlType::Integer, "A")
                .is_err()
        );
        assert!(Value::Double(1.5).coerce_to(SqlType::Integer, "A").is_err());
        assert_eq!(
            Value::Null.coerce_to(SqlType::Boolean, "A").unwrap(),
            Value::Null
        );
    }

    #[test]
    fn null_compares_as_unknown_but_orders_first() {
        assert_eq!(Value::Null.sql_cmp(&Value::Int(1)), None);
        assert_eq!(Value::Null.order_cmp(&Value::Int(1)), Ordering::Less);
        assert_eq!(
            Value::Int(2).sql_cmp(&Value::Double(1.5)),
            Some(Ordering::Greater)
        );
    }
}
