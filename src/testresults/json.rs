//! The two JSON results formats: refstack-client's results (`{"cpid", "duration_seconds",
//! "results"}`, also the body of `POST /v1/results/`) and the 2014 server's parsed results
//! (`{"summary", "data"}`). Read in one pass by hand-written visitors so that the number of tests
//! is bounded while reading, not after. Knows nothing of subunit.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};

use super::collector::{excerpt, Collector};
use super::error::ParseError;
use super::values::{
    Format, Limits, Outcome, Status, Summary, TestResult, TestRun, MAX_CLASS_NAME_BYTES,
};

/// The message the later Refstack API gives for an upload without results.
pub const EMPTY_RESULTS: &str = "Uploaded results must contain at least one passing test.";

/// One passing test as refstack-client uploads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultEntry {
    /// The test id without its `[...]` attributes.
    pub name: String,
    /// Tempest's stable test id, from the `id-<uuid>` attribute, as the text it was given:
    /// the later API's schema names a format for it but validates without a format checker,
    /// so any string is taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
}

impl ResultEntry {
    /// The entry refstack-client makes of a passing test id: `pkg.C.test_x[id-<uuid>,smoke]`
    /// gives the name `pkg.C.test_x` and that uuid (the client removes `\[.*\]` and reads the
    /// first `id-` attribute, whatever it holds, as the client does; an empty one is left out).
    pub fn from_test_id(id: &str) -> ResultEntry {
        let brackets = id.find('[').and_then(|open| {
            id.rfind(']')
                .filter(|&close| close > open)
                .map(|close| (open, close))
        });
        match brackets {
            None => ResultEntry {
                name: id.to_owned(),
                uuid: None,
            },
            Some((open, close)) => ResultEntry {
                name: format!("{}{}", &id[..open], &id[close + 1..]),
                uuid: id[open + 1..close]
                    .split(',')
                    .find_map(|attribute| attribute.strip_prefix("id-"))
                    .filter(|uuid| !uuid.is_empty())
                    .map(str::to_owned),
            },
        }
    }
}

impl TestRun {
    /// The passing tests as refstack-client uploads them: the name without its `[...]`
    /// attributes, and the uuid from an `id-<uuid>` attribute when there is one.
    pub fn passing_tests(&self) -> Vec<ResultEntry> {
        self.tests
            .iter()
            .filter(|test| test.outcome == Outcome::Success)
            .map(|test| ResultEntry::from_test_id(&test.id))
            .collect()
    }
}

/// The JSON schema (draft 4, as the later server's) of what [`UploadedResults::parse`] takes,
/// served as `GET /v1/results/schema`: upstream's schema with this parser's stricter rules
/// written in (at least one result, a non-negative duration, a result an object with a `name`
/// or a bare name). `uuid` keeps upstream's `uuid_hex` format, which, as upstream, nothing
/// checks.
pub fn upload_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "cpid": {"type": "string"},
            "duration_seconds": {"type": "integer", "minimum": 0},
            "results": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "uuid": {"type": ["string", "null"], "format": "uuid_hex"}
                            },
                            "required": ["name"]
                        },
                        {"type": "string"}
                    ]
                }
            }
        },
        "required": ["cpid", "duration_seconds", "results"],
        "additionalProperties": false
    })
}

/// refstack-client's results, checked: every key present, no other top-level key, at least
/// one result, `duration_seconds` a non-negative integer, each `uuid` a string (not checked to
/// be a UUID, as the later server does not check it). A result may be an
/// object (`{"name", "uuid"?}`, other keys ignored as the later server's schema ignores them) or
/// a bare name, the shape of refstack-client's 2014 files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UploadedResults {
    pub cpid: String,
    pub duration_seconds: u64,
    pub results: Vec<ResultEntry>,
}

impl UploadedResults {
    /// Reads a `POST /v1/results/` body.
    pub fn parse(body: &[u8], limits: &Limits) -> Result<UploadedResults, ParseError> {
        if body.len() > limits.max_input_bytes {
            return Err(ParseError::TooLarge {
                size: body.len(),
                limit: limits.max_input_bytes,
            });
        }
        match read(body, limits)? {
            Document::Results(results) => Ok(results),
            Document::Parsed { .. } => Err(ParseError::Json {
                offset: 0,
                message: "expected `cpid`, `duration_seconds` and `results`, found parsed results"
                    .into(),
            }),
        }
    }
}

/// Whether the JSON object `text` starts with has a `summary` or `data` key; keeps nothing.
pub(super) fn looks_like_parsed_results(text: &[u8]) -> bool {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
            // Read to the end: serde_json fails a map left unfinished.
            let mut found = false;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                found |= key == "summary" || key == "data";
                map.next_value::<IgnoredAny>()?;
            }
            Ok(found)
        }
    }
    serde_json::Deserializer::from_slice(text)
        .deserialize_map(Keys)
        .unwrap_or(false)
}

pub(super) fn parse(input: &[u8], limits: &Limits) -> Result<TestRun, ParseError> {
    let mut out = Collector::new(limits);
    match read(input, limits)? {
        Document::Results(results) => {
            for entry in results.results {
                out.push(
                    TestResult {
                        id: entry.name,
                        status: Status::Pass,
                        outcome: Outcome::Success,
                        duration_seconds: None,
                    },
                    input.len(),
                )?;
            }
            let mut run = out.finish(Format::ResultsJson)?;
            run.duration_seconds = Some(results.duration_seconds as f64);
            Ok(run)
        }
        Document::Parsed { data } => {
            for (class, entries) in data {
                for (name, status, seconds) in entries {
                    let id = if class.is_empty() {
                        name
                    } else {
                        format!("{class}.{name}")
                    };
                    out.push(
                        TestResult {
                            id,
                            status,
                            outcome: status.outcome(),
                            duration_seconds: seconds,
                        },
                        input.len(),
                    )?;
                }
            }
            out.finish(Format::ParsedResultsJson)
        }
    }
}

type Entries = Vec<(String, Status, Option<f64>)>;

enum Document {
    Results(UploadedResults),
    /// Classes in document order, with their entries; the summary matched them.
    Parsed {
        data: Vec<(String, Entries)>,
    },
}

/// Counts tests across the whole document and stops at the limit.
struct Budget {
    limit: usize,
    taken: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn take<E: de::Error>(&self) -> Result<(), E> {
        if self.taken.get() >= self.limit {
            self.exceeded.set(true);
            return Err(E::custom(format_args!("more than {} tests", self.limit)));
        }
        self.taken.set(self.taken.get() + 1);
        Ok(())
    }
}

fn read(input: &[u8], limits: &Limits) -> Result<Document, ParseError> {
    let budget = Budget {
        limit: limits.max_tests,
        taken: Cell::new(0),
        exceeded: Cell::new(false),
    };
    // A UTF-8 byte order mark, which some editors write and serde_json does not skip.
    let skipped = if input.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let input = &input[skipped..];
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let document = deserializer
        .deserialize_map(DocumentVisitor { budget: &budget })
        .and_then(|document| deserializer.end().map(|()| document));
    document.map_err(|error| {
        let offset = skipped + byte_offset(input, error.line(), error.column());
        if budget.exceeded.get() {
            ParseError::TooManyTests {
                limit: limits.max_tests,
                offset,
            }
        } else {
            let message = error.to_string();
            let message = match message.rfind(" at line ") {
                Some(cut) => message[..cut].to_owned(),
                None => message,
            };
            ParseError::Json { offset, message }
        }
    })
}

/// serde_json gives 1-based lines and columns; the byte they point at.
fn byte_offset(input: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        input
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(line - 2)
            .map_or(input.len(), |(at, _)| at + 1)
    };
    (line_start + column.saturating_sub(1)).min(input.len())
}

struct DocumentVisitor<'b> {
    budget: &'b Budget,
}

impl<'de> Visitor<'de> for DocumentVisitor<'_> {
    type Value = Document;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "an object with `cpid`, `duration_seconds` and `results`, or with `summary` and `data`",
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
        let mut cpid: Option<String> = None;
        let mut duration_seconds: Option<u64> = None;
        let mut results: Option<Vec<ResultEntry>> = None;
        let mut summary: Option<Summary> = None;
        let mut data: Option<Vec<(String, Entries)>> = None;
        fn once<T, E: de::Error>(slot: &mut Option<T>, key: &str, value: T) -> Result<(), E> {
            if slot.replace(value).is_some() {
                return Err(E::custom(format_args!("duplicate key `{key}`")));
            }
            Ok(())
        }
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "cpid" => once(&mut cpid, &key, map.next_value()?)?,
                "duration_seconds" => once(&mut duration_seconds, &key, map.next_value()?)?,
                "results" => once(
                    &mut results,
                    &key,
                    map.next_value_seed(ResultsSeed {
                        budget: self.budget,
                    })?,
                )?,
                "summary" => once(&mut summary, &key, map.next_value()?)?,
                "data" => once(
                    &mut data,
                    &key,
                    map.next_value_seed(DataSeed {
                        budget: self.budget,
                    })?,
                )?,
                other => {
                    return Err(de::Error::custom(format_args!(
                        "unknown key `{}`",
                        excerpt(other.as_bytes())
                    )))
                }
            }
        }
        let results_keys = cpid.is_some() || duration_seconds.is_some() || results.is_some();
        if summary.is_some() || data.is_some() {
            if results_keys {
                return Err(de::Error::custom(
                    "the object mixes the keys of results (`cpid`, `duration_seconds`, \
                     `results`) and of parsed results (`summary`, `data`)",
                ));
            }
            let summary = summary.ok_or_else(|| de::Error::missing_field("summary"))?;
            let data = data.ok_or_else(|| de::Error::missing_field("data"))?;
            let counted = Summary::of_statuses(
                data.iter()
                    .flat_map(|(_, entries)| entries.iter().map(|(_, status, _)| *status)),
            );
            if counted != summary {
                return Err(de::Error::custom(format_args!(
                    "`summary` does not match `data`, which holds {}",
                    serde_json::to_string(&counted).unwrap_or_default()
                )));
            }
            return Ok(Document::Parsed { data });
        }
        let results = UploadedResults {
            cpid: cpid.ok_or_else(|| de::Error::missing_field("cpid"))?,
            duration_seconds: duration_seconds
                .ok_or_else(|| de::Error::missing_field("duration_seconds"))?,
            results: results.ok_or_else(|| de::Error::missing_field("results"))?,
        };
        if results.results.is_empty() {
            return Err(de::Error::custom(EMPTY_RESULTS));
        }
        Ok(Document::Results(results))
    }
}

struct ResultsSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for ResultsSeed<'_> {
    type Value = Vec<ResultEntry>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ResultsSeed<'_> {
    type Value = Vec<ResultEntry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of results")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut results = Vec::new();
        while let Some(entry) = seq.next_element_seed(EntrySeed)? {
            self.budget.take()?;
            results.push(entry);
        }
        Ok(results)
    }
}

/// One result: `{"name": ..., "uuid": ...}` or a bare name.
struct EntrySeed;

impl<'de> DeserializeSeed<'de> for EntrySeed {
    type Value = ResultEntry;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed {
    type Value = ResultEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a result: an object with a `name`, or a test name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<ResultEntry, E> {
        Ok(ResultEntry {
            name: name.to_owned(),
            uuid: None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResultEntry, A::Error> {
        let mut name: Option<String> = None;
        let mut uuid: Option<Option<String>> = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "name" if name.is_none() => name = Some(map.next_value()?),
                "uuid" if uuid.is_none() => uuid = Some(map.next_value()?),
                "name" | "uuid" => {
                    return Err(de::Error::custom(format_args!("duplicate key `{key}`")))
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ResultEntry {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            uuid: uuid.flatten(),
        })
    }
}

/// `data`: per class, a list of `[test, status, seconds]`.
struct DataSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = Vec<(String, Entries)>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = Vec<(String, Entries)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of classes, each a list of [test, status, seconds]")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut classes = Vec::new();
        while let Some(class) = map.next_key::<String>()? {
            // Each class costs a string even when it lists no test: classes are bounded by the
            // test limit too, on their own count.
            if classes.len() >= self.budget.limit {
                self.budget.exceeded.set(true);
                return Err(de::Error::custom(format_args!(
                    "more than {} classes",
                    self.budget.limit
                )));
            }
            // Each of the class's tests repeats its name in its id: a long name would cost its
            // length again for every test, far more memory than the upload brought.
            if class.len() > MAX_CLASS_NAME_BYTES {
                return Err(de::Error::custom(format_args!(
                    "the class name `{}` is {} bytes, more than the limit of {} bytes",
                    excerpt(class.as_bytes()),
                    class.len(),
                    MAX_CLASS_NAME_BYTES
                )));
            }
            classes.push((
                class,
                map.next_value_seed(ClassSeed {
                    budget: self.budget,
                })?,
            ));
        }
        Ok(classes)
    }
}

struct ClassSeed<'b> {
    budget: &'b Budget,
}

impl<'de> DeserializeSeed<'de> for ClassSeed<'_> {
    type Value = Entries;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ClassSeed<'_> {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [test, status, seconds]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = seq.next_element()? {
            self.budget.take()?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_follow_refstack_client() {
        let entry = ResultEntry::from_test_id(
            "tempest.api.a.T.test_x[id-0146f675-ffbd-4208-b3a4-60eb628dbc5e,smoke]",
        );
        assert_eq!(entry.name, "tempest.api.a.T.test_x");
        assert_eq!(
            entry.uuid.as_deref(),
            Some("0146f675-ffbd-4208-b3a4-60eb628dbc5e")
        );
        let entry = ResultEntry::from_test_id("a.T.test_y[gate,id-nope]");
        assert_eq!(
            (entry.name.as_str(), entry.uuid.as_deref()),
            ("a.T.test_y", Some("nope"))
        );
        let entry = ResultEntry::from_test_id("a.T.test_y[gate,id-]");
        assert_eq!(entry.uuid, None);
        assert_eq!(ResultEntry::from_test_id("a.T.test_z").name, "a.T.test_z");
    }

    #[test]
    fn byte_offsets_come_from_lines_and_columns() {
        let input = b"{\n  \"cpid\": x\n}";
        let error = read(input, &Limits::default()).err().unwrap();
        assert_eq!(error.offset(), Some(12));
        assert_eq!(input[12], b'x');
    }
}
