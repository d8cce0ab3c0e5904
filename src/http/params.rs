//! Query parameters shared by the faces, parsed into types that cannot hold a bad value:
//! durations in Go's syntax (`300ms`, `1m30s`) and capped limits.

use std::time::Duration;

/// A duration in Go's syntax: a sequence of decimal numbers, each with a unit (`ns`, `us`, `µs`,
/// `ms`, `s`, `m`, `h`), such as `300ms`, `1.5s` or `2h45m`; `0` alone is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn parse(raw: &str) -> Result<GoDuration, String> {
        let bad = || format!("{raw:?} is not a duration such as 300ms, 1.5s or 2m");
        if raw == "0" {
            return Ok(GoDuration(Duration::ZERO));
        }
        let mut rest = raw;
        let mut total = 0f64;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let number_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(bad)?;
            let number: f64 = rest[..number_end].parse().map_err(|_| bad())?;
            rest = &rest[number_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let seconds_per_unit = match &rest[..unit_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            total += number * seconds_per_unit;
            rest = &rest[unit_end..];
        }
        Duration::try_from_secs_f64(total)
            .map(GoDuration)
            .map_err(|_| bad())
    }
}

/// The form [`GoDuration::parse`] reads, as a regular expression for the OpenAPI document.
pub const GO_DURATION_PATTERN: &str = r"^(0|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)$";

/// How long a long-poll may wait: at most [`MAX_WAIT`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait(pub Duration);

/// The longest a long-poll request waits for an event.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

impl Wait {
    /// A `timeout` parameter; none is no wait. Errors name the parameter.
    pub fn parse(raw: Option<&str>) -> Result<Wait, String> {
        let Some(raw) = raw else {
            return Ok(Wait(Duration::ZERO));
        };
        let GoDuration(wait) =
            GoDuration::parse(raw).map_err(|reason| format!("timeout: {reason}"))?;
        if wait > MAX_WAIT {
            return Err(format!("timeout {raw} is over the limit of 5m"));
        }
        Ok(Wait(wait))
    }
}

/// How many events one page may hold: 1 to [`MAX_LIMIT`], 100 when not given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub usize);

/// The most events one page of the event API holds.
pub const MAX_LIMIT: usize = 1000;

impl Limit {
    pub fn parse(raw: Option<usize>) -> Result<Limit, String> {
        match raw {
            None => Ok(Limit(100)),
            Some(0) => Err("limit must be at least 1".into()),
            Some(n) if n > MAX_LIMIT => Err(format!("limit {n} is over the limit of {MAX_LIMIT}")),
            Some(n) => Ok(Limit(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let ms = Duration::from_millis;
        for (raw, expected) in [
            ("0", ms(0)),
            ("300ms", ms(300)),
            ("1.5s", ms(1500)),
            ("2m", ms(120_000)),
            ("1h30m", ms(5_400_000)),
            ("250us", Duration::from_micros(250)),
        ] {
            assert_eq!(GoDuration::parse(raw), Ok(GoDuration(expected)), "{raw}");
        }
        for bad in ["", "5", "ms", "5x", "1..5s", "-1s", "1e3s"] {
            assert!(GoDuration::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn waits_and_limits_are_capped() {
        assert_eq!(Wait::parse(None), Ok(Wait(Duration::ZERO)));
        assert_eq!(Wait::parse(Some("5m")), Ok(Wait(MAX_WAIT)));
        assert!(Wait::parse(Some("5m1s")).is_err());
        assert_eq!(Limit::parse(None), Ok(Limit(100)));
        assert_eq!(Limit::parse(Some(1000)), Ok(Limit(1000)));
        assert!(Limit::parse(Some(1001)).is_err());
        assert!(Limit::parse(Some(0)).is_err());
    }
}
