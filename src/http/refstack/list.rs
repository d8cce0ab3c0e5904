//! The query of `GET /v1/results`: `page`, `cpid`, `start_date`, `end_date` and `signed`, read
//! as the later Refstack API reads them (the last value of a repeated key, its date format, its
//! order of checks and its words for every refusal), into a page number and a
//! [`ResultsFilter`]. It only parses: which submissions match is the read model's business.

use std::num::NonZeroU64;

use actix_web::web;
use chrono::{DateTime, NaiveDateTime, Utc};

use super::RefstackError;
use crate::auth::Caller;
use crate::domain::results::read_model::{ResultsFilter, Visibility};

/// The format of `start_date`, `end_date` and of every `created_at` shown: upstream's
/// `input_date_format`, in UTC.
pub const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// A time as the face shows it, so that a `created_at` read back can be given as a bound.
pub fn shown_time(at: DateTime<Utc>) -> String {
    at.format(DATE_FORMAT).to_string()
}

/// The page asked for and the filter of a `GET /v1/results` query string.
pub fn parse(query: &str, caller: &Caller) -> Result<(NonZeroU64, ResultsFilter), RefstackError> {
    let pairs = web::Query::<Vec<(String, String)>>::from_query(query)
        .map_err(|e| RefstackError::bad_request(format!("bad query: {e}")))?
        .into_inner();
    // As upstream's request object answers `GET.get(key)`: the last value given.
    let last = |key: &str| {
        pairs
            .iter()
            .rev()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    };
    let start = last("start_date").map(parse_date).transpose()?;
    let end = last("end_date").map(parse_date).transpose()?;
    if let (Some(start), Some(end)) = (start, end) {
        if start > end {
            return Err(RefstackError::bad_request(
                "Invalid dates: start_date more than end_date",
            ));
        }
    }
    // Present with any value, even empty, as upstream tests it.
    let visibility = match (last("signed"), &caller.user) {
        (None, _) => Visibility::Unsigned,
        (Some(_), Some(account)) => Visibility::SignedBy(account.clone()),
        (Some(_), None) => {
            return Err(RefstackError::bad_request(
                "To see signed test results you need to authenticate",
            ))
        }
    };
    let filter = ResultsFilter {
        // An empty `cpid` filters nothing, as upstream.
        cpid: last("cpid")
            .filter(|cpid| !cpid.is_empty())
            .map(str::to_owned),
        start,
        end,
        visibility,
    };
    let page = match last("page") {
        None => NonZeroU64::MIN,
        Some(raw) => parse_page(raw)?,
    };
    Ok((page, filter))
}

/// A date in [`DATE_FORMAT`], refused in the words of Python's `strptime`, which upstream
/// calls: text after a complete date is "unconverted data", anything else does not match.
fn parse_date(raw: &str) -> Result<NaiveDateTime, RefstackError> {
    match NaiveDateTime::parse_and_remainder(raw, DATE_FORMAT) {
        Ok((date, "")) => Ok(date),
        Ok((_, rest)) => Err(RefstackError::bad_request(format!(
            "Invalid date format: unconverted data remains: {rest}"
        ))),
        Err(_) => Err(RefstackError::bad_request(format!(
            "Invalid date format: time data {} does not match format '{DATE_FORMAT}'",
            quoted(raw)
        ))),
    }
}

/// A value quoted as Python's `repr` quotes a string, as upstream's messages show it: in
/// single quotes unless it holds one and no double quote, with backslashes, that quote and
/// control characters escaped.
fn quoted(raw: &str) -> String {
    let quote = if raw.contains('\'') && !raw.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(raw.len() + 2);
    out.push(quote);
    for c in raw.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// A page number as Python's `int()` reads it (surrounding blanks, a sign, digits), refused
/// with upstream's words. A number too large for 64 bits is past any last page.
fn parse_page(raw: &str) -> Result<NonZeroU64, RefstackError> {
    let text = raw.trim();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RefstackError::bad_request(
            "Invalid page number: The page number can not be converted to an integer",
        ));
    }
    let zero = digits.bytes().all(|b| b == b'0');
    if negative || zero {
        return Err(RefstackError::bad_request(
            "Invalid page number: The page number less or equal zero.",
        ));
    }
    Ok(digits.parse::<NonZeroU64>().unwrap_or(NonZeroU64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anyone() -> Caller {
        Caller { user: None }
    }

    fn refusal(query: &str) -> String {
        match parse(query, &anyone()) {
            Err(refusal) => refusal.to_string(),
            other => panic!("{query}: {other:?}"),
        }
    }

    #[test]
    fn pages_are_read_as_python_reads_an_integer() {
        let page = |query| parse(query, &anyone()).unwrap().0.get();
        assert_eq!(page(""), 1);
        assert_eq!(page("page=2"), 2);
        assert_eq!(page("page=%20+3%20"), 3);
        assert_eq!(page("page=007"), 7);
        assert_eq!(page("page=1&page=4"), 4);
        assert_eq!(page("page=99999999999999999999999"), u64::MAX);
        for bad in ["page=x", "page=", "page=1.0", "page=2e3", "page=-"] {
            assert!(
                refusal(bad).ends_with("can not be converted to an integer"),
                "{bad}"
            );
        }
        for bad in ["page=0", "page=-1", "page=-00"] {
            assert!(refusal(bad).ends_with("less or equal zero."), "{bad}");
        }
    }

    #[test]
    fn dates_take_upstreams_format_and_order() {
        let (_, filter) = parse(
            "start_date=2015-04-24%2001:23:56&end_date=2015-04-24+01:23:57&cpid=c",
            &anyone(),
        )
        .unwrap();
        assert_eq!(
            filter.start.map(|t| t.to_string()).unwrap(),
            "2015-04-24 01:23:56"
        );
        assert_eq!(
            filter.end.map(|t| t.to_string()).unwrap(),
            "2015-04-24 01:23:57"
        );
        assert_eq!(filter.cpid.as_deref(), Some("c"));
        assert_eq!(
            refusal("start_date=2015-04-24"),
            "Invalid date format: time data '2015-04-24' does not match format \
             '%Y-%m-%d %H:%M:%S'"
        );
        assert!(refusal("end_date=").starts_with("Invalid date format: time data ''"));
        // Quoted as Python's `repr` quotes it.
        assert!(refusal("end_date=it's").contains("time data \"it's\" does"));
        assert!(refusal("end_date=a%22b'%5C%09").contains("time data 'a\"b\\'\\\\\\t' does"));
        assert!(refusal("end_date=%00").contains("time data '\\x00' does"));
        assert_eq!(
            refusal("start_date=2015-04-24+01:23:56.5"),
            "Invalid date format: unconverted data remains: .5"
        );
        assert_eq!(
            refusal("start_date=2015-04-24+01:23:57&end_date=2015-04-24+01:23:56"),
            "Invalid dates: start_date more than end_date"
        );
        // A date is checked before the page, as upstream checks them.
        assert!(refusal("page=x&end_date=x").starts_with("Invalid date format"));
    }

    #[test]
    fn signed_asks_for_an_account() {
        assert_eq!(
            refusal("signed"),
            "To see signed test results you need to authenticate"
        );
        let alice = Caller {
            user: Some("alice".into()),
        };
        let (_, filter) = parse("signed=false", &alice).unwrap();
        assert_eq!(filter.visibility, Visibility::SignedBy("alice".into()));
        let (_, filter) = parse("cpid=", &alice).unwrap();
        assert_eq!(
            (filter.visibility, filter.cpid),
            (Visibility::Unsigned, None)
        );
    }
}
