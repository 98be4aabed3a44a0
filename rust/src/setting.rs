//! Settings as callers give them (seconds as floats, signed integers), checked and converted
//! into the core's units. A [`SettingError`] names the setting and says what is wrong, so the
//! bindings only pass values through and never re-check them.

use std::ops::RangeInclusive;

const NANOS_PER_SEC: f64 = 1e9;

/// A setting (or argument) out of range: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct SettingError {
    /// The setting as the caller names it, e.g. `window` or `endpoints[2].weight`.
    pub field: String,
    /// What is wrong, e.g. `must be > 0 seconds, got 0`.
    pub problem: String,
}

impl SettingError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        SettingError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same problem, with the field named inside `outer` (`outer.field`).
    pub fn within(self, outer: &str) -> Self {
        SettingError {
            field: format!("{outer}.{}", self.field),
            problem: self.problem,
        }
    }
}

/// Seconds (finite, >= 0) as nanoseconds, rounded; saturates at `u64::MAX`.
pub fn secs_to_nanos(field: &str, secs: f64) -> Result<u64, SettingError> {
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(SettingError::new(
            field,
            format!("must be a finite number of seconds >= 0, got {secs}"),
        ));
    }
    Ok((secs * NANOS_PER_SEC).round().min(u64::MAX as f64) as u64)
}

/// Like [`secs_to_nanos`], but `+inf` is `u64::MAX` (an upper bound that takes everything).
pub fn bound_to_nanos(field: &str, secs: f64) -> Result<u64, SettingError> {
    if secs == f64::INFINITY {
        return Ok(u64::MAX);
    }
    secs_to_nanos(field, secs)
}

/// Nanoseconds as seconds; `u64::MAX` (never, no limit) is `+inf`.
pub fn nanos_to_secs(nanos: u64) -> f64 {
    if nanos == u64::MAX {
        f64::INFINITY
    } else {
        nanos as f64 / NANOS_PER_SEC
    }
}

/// An integer checked against `range` and converted to the type the core stores.
pub fn int_in<T: TryFrom<i64>>(
    field: &str,
    value: i64,
    range: RangeInclusive<i64>,
) -> Result<T, SettingError> {
    let bad = || {
        SettingError::new(
            field,
            format!(
                "must be in {}..={}, got {value}",
                range.start(),
                range.end()
            ),
        )
    };
    if !range.contains(&value) {
        return Err(bad());
    }
    T::try_from(value).map_err(|_| bad())
}

/// A fraction in `[0, 1]` (quantiles, rates).
pub fn fraction(field: &str, value: f64) -> Result<f64, SettingError> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(SettingError::new(
            field,
            format!("must be in [0, 1], got {value}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_convert_and_bad_ones_name_the_field() {
        assert_eq!(secs_to_nanos("w", 1.5), Ok(1_500_000_000));
        assert_eq!(secs_to_nanos("w", 0.0), Ok(0));
        assert_eq!(secs_to_nanos("w", 1e30), Ok(u64::MAX));
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            let e = secs_to_nanos("window", bad).unwrap_err();
            assert_eq!(e.field, "window");
            assert!(e.to_string().starts_with("window must be"), "{e}");
        }
        assert_eq!(bound_to_nanos("b", f64::INFINITY), Ok(u64::MAX));
        assert!(bound_to_nanos("b", -0.5).is_err());
        assert_eq!(nanos_to_secs(u64::MAX), f64::INFINITY);
        assert_eq!(nanos_to_secs(2_500_000_000), 2.5);
    }

    #[test]
    fn integers_are_range_checked_before_conversion() {
        assert_eq!(int_in::<u32>("burst", 7, 1..=u32::MAX as i64), Ok(7));
        let e = int_in::<u32>("burst", 0, 1..=u32::MAX as i64).unwrap_err();
        assert_eq!(e.to_string(), "burst must be in 1..=4294967295, got 0");
        assert!(int_in::<usize>("n", -1, 0..=i64::MAX).is_err());
        assert_eq!(fraction("q", 0.5), Ok(0.5));
        assert_eq!(fraction("q", 1.5).unwrap_err().field, "q");
        assert!(fraction("q", f64::NAN).is_err());
    }

    #[test]
    fn within_prefixes_the_field() {
        let e = SettingError::new("error_rate", "must be in [0, 1], got 2").within("endpoints[1]");
        assert_eq!(e.field, "endpoints[1].error_rate");
        assert_eq!(
            e.to_string(),
            "endpoints[1].error_rate must be in [0, 1], got 2"
        );
    }
}
