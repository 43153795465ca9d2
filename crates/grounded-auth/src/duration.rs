//! Durations as operators type them for key expiry and rotation grace:
//! `90d`, `24h`, `30m`, `45s`.
//!
//! One number and one unit, nothing fancier: no `1h30m`, no months (whose
//! length varies), no fractions.

use std::time::Duration;

use crate::error::DurationError;

/// Parses a whole number followed by `s`, `m`, `h` or `d`.
///
/// Surrounding whitespace is ignored; `0s` is allowed (a rotation with no
/// grace).
///
/// # Errors
/// [`DurationError::Invalid`] for anything else, [`DurationError::Overflow`]
/// for a number of seconds that does not fit in an `i64` (the store's
/// times are `i64` seconds).
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    let invalid = || DurationError::Invalid {
        input: input.to_owned(),
    };

    let split = trimmed.len().checked_sub(1).ok_or_else(invalid)?;
    let (number, unit) = trimmed.split_at_checked(split).ok_or_else(invalid)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let unit_seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(invalid()),
    };

    let overflow = || DurationError::Overflow {
        input: input.to_owned(),
    };
    let seconds = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit_seconds))
        .filter(|s| i64::try_from(*s).is_ok())
        .ok_or_else(overflow)?;
    Ok(Duration::from_secs(seconds))
}

/// Whole seconds of `duration` as the store's `i64`, `None` when too long.
pub(crate) fn whole_seconds(duration: Duration) -> Option<i64> {
    i64::try_from(duration.as_secs()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(30 * 60)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(24 * 3600)));
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_number_and_a_unit() {
        for input in [
            "", "d", "90", "90 d", "9.5h", "-1d", "+1d", "1w", "1D", "1h30m", "ten", "٣d",
        ] {
            assert_eq!(
                parse_duration(input),
                Err(DurationError::Invalid {
                    input: input.to_owned()
                }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn refuses_overflow() {
        let input = format!("{}d", u64::MAX / 2);

        assert!(matches!(
            parse_duration(&input),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999s"),
            Err(DurationError::Overflow { .. })
        ));
    }
}
