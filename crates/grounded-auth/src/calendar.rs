//! Time as access control counts it: Unix seconds, and UTC days
//! (`YYYY-MM-DD`), the unit of the usage ledger and of daily quotas.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::DayError;

/// Seconds in a UTC day.
pub const DAY_SECONDS: i64 = 86_400;

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
}

/// The UTC day of Unix time `seconds`, as `YYYY-MM-DD`.
pub fn utc_day(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(DAY_SECONDS));
    format!("{year:04}-{month:02}-{day:02}")
}

/// Unix seconds as a UTC date and time, `separator` between the two:
/// `2025-01-31T09:05:00Z` with `'T'`.
pub fn utc_time(seconds: i64, separator: char) -> String {
    let of_day = seconds.rem_euclid(DAY_SECONDS);
    let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
    format!(
        "{}{separator}{hour:02}:{minute:02}:{second:02}Z",
        utc_day(seconds)
    )
}

/// Checks that `value` is a day of the calendar written `YYYY-MM-DD`.
///
/// # Errors
/// [`DayError::Malformed`] for another shape, [`DayError::NotOnCalendar`]
/// for a month or day that does not exist (`2025-02-29`).
pub fn check_day(value: &str) -> Result<(), DayError> {
    let malformed = || DayError::Malformed {
        value: value.to_owned(),
    };
    let parts: Vec<&str> = value.split('-').collect();
    let [year, month, day] = parts[..] else {
        return Err(malformed());
    };
    let digits =
        |part: &str, len: usize| part.len() == len && part.bytes().all(|b| b.is_ascii_digit());
    if !(digits(year, 4) && digits(month, 2) && digits(day, 2)) {
        return Err(malformed());
    }

    let number = |part: &str| part.parse::<u32>().unwrap_or(0);
    let (year, month, day) = (number(year), number(month), number(day));
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(DayError::NotOnCalendar {
            value: value.to_owned(),
        });
    }
    Ok(())
}

fn days_in_month(year: u32, month: u32) -> u32 {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The Gregorian calendar date of a count of days since 1970-01-01.
///
/// Counted in eras of 400 years (146,097 days, after which the calendar
/// repeats) from 0000-03-01, so that the leap day falls at the end of each
/// year of the count and needs no special case.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);

    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_calendar_times() {
        assert_eq!(utc_time(0, ' '), "1970-01-01 00:00:00Z");
        assert_eq!(utc_time(951_782_400, ' '), "2000-02-29 00:00:00Z");
        assert_eq!(utc_time(1_700_000_000, ' '), "2023-11-14 22:13:20Z");
        assert_eq!(utc_time(4_102_444_799, 'T'), "2099-12-31T23:59:59Z");
        assert_eq!(utc_time(-1, ' '), "1969-12-31 23:59:59Z");
    }

    #[test]
    fn utc_days_are_calendar_days() {
        assert_eq!(utc_day(0), "1970-01-01");
        assert_eq!(utc_day(951_782_400), "2000-02-29");
        assert_eq!(utc_day(1_798_761_599), "2026-12-31");
        assert_eq!(utc_day(1_798_761_600), "2027-01-01");
    }

    #[test]
    fn every_day_follows_the_one_before() {
        let mut previous = civil_from_days(-800_000);
        for days in -799_999..800_000 {
            let (year, month, day) = civil_from_days(days);
            let next_day = (year, month, day) == (previous.0, previous.1, previous.2 + 1);
            let next_month = day == 1 && (year, month) == (previous.0, previous.1 + 1);
            let next_year = (month, day) == (1, 1) && year == previous.0 + 1;

            assert!(next_day || next_month || next_year, "{previous:?} {days}");
            previous = (year, month, day);
        }
    }

    #[test]
    fn a_checked_day_is_on_the_calendar() {
        for day in ["2025-01-31", "2024-02-29", "2000-02-29"] {
            assert_eq!(check_day(day), Ok(()));
        }
        for day in ["2025-02-29", "1900-02-29", "2025-04-31", "2025-13-01"] {
            assert!(
                matches!(check_day(day), Err(DayError::NotOnCalendar { .. })),
                "{day}"
            );
        }
        for day in ["2025-1-31", "20250131", "yesterday"] {
            assert!(
                matches!(check_day(day), Err(DayError::Malformed { .. })),
                "{day}"
            );
        }
    }
}
