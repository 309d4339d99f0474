//! Walks a parsed `toml::Table` section by section, collecting every problem.
//!
//! serde's `deny_unknown_fields` stops at the first mistake and reports it
//! without a key path, so instead each section is read key by key: the keys a
//! reader asks for become the section's known set, and whatever is left over
//! is reported as unknown, with the known set and a spelling suggestion.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use toml::{Table, Value};

use super::error::{ConfigError, ConfigErrors};
use super::units::{parse_duration, parse_size, ByteSize};

/// Problems found so far, plus the paths that failed so cross-field checks
/// do not pile a second, misleading error on top of a value never read, and the
/// paths the file sets, so that a default never refuses what the user wrote.
#[derive(Default)]
pub(crate) struct Problems {
    errors: Vec<ConfigError>,
    failed: BTreeSet<String>,
    set: BTreeSet<String>,
}

impl Problems {
    pub(crate) fn report(&mut self, path: &str, message: impl Into<String>) {
        self.failed.insert(path.to_string());
        self.errors.push(ConfigError::new(path, message));
    }

    /// True when `path` itself, or a section containing it, failed to read.
    pub(super) fn failed(&self, path: &str) -> bool {
        self.failed.iter().any(|f| {
            path == f
                || f.is_empty()
                || path
                    .strip_prefix(f.as_str())
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }

    /// True when the file wrote `path` (well or badly); false when it holds its default.
    pub(super) fn is_set(&self, path: &str) -> bool {
        self.set.contains(path)
    }

    pub(super) fn finish<T>(self, value: T) -> Result<T, ConfigErrors> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors(self.errors))
        }
    }
}

/// A table being read at `path`. Absent sections are read as empty so every
/// field keeps its default.
pub(crate) struct Section<'t> {
    path: String,
    table: Option<&'t Table>,
    known: Vec<&'static str>,
}

impl<'t> Section<'t> {
    pub(super) fn new(path: impl Into<String>, table: Option<&'t Table>) -> Self {
        Self {
            path: path.into(),
            table,
            known: Vec::new(),
        }
    }

    /// Reads `value` as a table at `path`, reporting any other type.
    pub(super) fn of(p: &mut Problems, path: String, value: Option<&'t Value>) -> Self {
        match value {
            None => Self::new(path, None),
            Some(Value::Table(t)) => Self::new(path, Some(t)),
            Some(other) => {
                p.report(&path, format!("expected a table, got {}", other.type_str()));
                Self::new(path, None)
            }
        }
    }

    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub(super) fn contains(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.contains_key(key))
    }

    /// The raw value of `key`, which becomes a known key of this section.
    pub(super) fn value(&mut self, key: &'static str) -> Option<&'t Value> {
        self.known.push(key);
        self.table.and_then(|t| t.get(key))
    }

    /// Reads `key` into `out` when present; a bad value is reported and
    /// `out` keeps its default.
    pub(super) fn read<T>(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        out: &mut T,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) {
        if let Some(v) = self.value(key) {
            match parse(v) {
                Ok(parsed) => *out = parsed,
                Err(message) => p.report(&self.path_of(key), message),
            }
        }
    }

    /// Like `read` for fields with no default worth guessing.
    pub(crate) fn require<T>(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let path = self.path_of(key);
        match self.value(key).map(parse) {
            Some(Ok(v)) => Some(v),
            Some(Err(message)) => {
                p.report(&path, message);
                None
            }
            None => {
                p.report(&path, "missing required key");
                None
            }
        }
    }

    /// Reads a nested section and checks it for unknown keys afterwards.
    pub(super) fn section(
        &mut self,
        p: &mut Problems,
        key: &'static str,
        read: impl FnOnce(&mut Section<'t>, &mut Problems),
    ) {
        let value = self.value(key);
        let mut sub = Section::of(p, self.path_of(key), value);
        read(&mut sub, p);
        sub.finish(p);
    }

    /// Records the keys the file sets, and reports every key nobody asked for.
    pub(super) fn finish(self, p: &mut Problems) {
        let Some(table) = self.table else { return };
        for key in table.keys() {
            if self.known.contains(&key.as_str()) {
                p.set.insert(self.path_of(key));
                continue;
            }
            let hint = closest(key, &self.known)
                .map(|k| format!("; did you mean \"{k}\"?"))
                .unwrap_or_default();
            p.report(
                &self.path_of(key),
                format!(
                    "unknown key (expected one of: {}){hint}",
                    self.known.join(", ")
                ),
            );
        }
    }
}

/// Reads `[[name]]` tables at `path` with `entry` (given each table's own path), keeping
/// those it returns; anything but an array of tables is reported. `None` when the key
/// is absent or is not an array, so the caller keeps its default.
pub(crate) fn tables<T>(
    p: &mut Problems,
    path: &str,
    name: &str,
    value: Option<&Value>,
    mut entry: impl FnMut(&mut Problems, String, &Value) -> Option<T>,
) -> Option<Vec<T>> {
    let value = value?;
    let Value::Array(entries) = value else {
        p.report(
            path,
            format!("expected [[{name}]] tables, got {}", value.type_str()),
        );
        return None;
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, item) in entries.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        if !item.is_table() {
            p.report(
                &item_path,
                format!("expected a table, got {}", item.type_str()),
            );
            continue;
        }
        out.extend(entry(p, item_path, item));
    }
    Some(out)
}

/// The candidate within a small edit distance of `word`, if any.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(2, 3);
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

fn expected(what: &str, v: &Value) -> String {
    match v {
        Value::String(s) => format!("expected {what}, got the string \"{s}\""),
        other => format!("expected {what}, got {}", other.type_str()),
    }
}

pub(crate) fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| expected("true or false (without quotes)", v))
}

/// Any unsigned integer type; TOML integers are i64.
pub(crate) fn unsigned<T: TryFrom<i64>>(v: &Value) -> Result<T, String> {
    match v {
        Value::Integer(i) if *i < 0 => Err(format!("must not be negative, got {i}")),
        Value::Integer(i) => T::try_from(*i).map_err(|_| format!("{i} is too large")),
        Value::String(s) if s.trim().parse::<i64>().is_ok() => Err(format!(
            "expected an integer, got the string \"{s}\" (remove the quotes)"
        )),
        other => Err(expected("a non-negative integer", other)),
    }
}

pub(crate) fn string(v: &Value) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| expected("a string", v))
}

pub(crate) fn string_list(v: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = v else {
        return Err(expected("an array of strings", v));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| string(item).map_err(|e| format!("item {i}: {e}")))
        .collect()
}

pub(crate) fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => parse_duration(s),
        Value::Integer(i) => Err(format!(
            "got the bare integer {i}; durations need a unit, e.g. \"{i}s\" or \"{i}ms\""
        )),
        other => Err(expected("a duration such as \"10s\" or \"250ms\"", other)),
    }
}

pub(crate) fn size(v: &Value) -> Result<ByteSize, String> {
    match v {
        Value::Integer(i) if *i < 0 => Err(format!("invalid size {i}: must not be negative")),
        Value::Integer(i) => Ok(ByteSize::bytes(i.unsigned_abs())),
        Value::String(s) => parse_size(s),
        other => Err(expected(
            "a size in bytes or a string such as \"16 MiB\"",
            other,
        )),
    }
}

pub(crate) fn socket_addr(v: &Value) -> Result<SocketAddr, String> {
    let s = v
        .as_str()
        .ok_or_else(|| expected("an address such as \"127.0.0.1:26658\"", v))?;
    s.trim().parse().map_err(|_| {
        format!("invalid address \"{s}\": expected IP:port such as \"127.0.0.1:26658\" or \"[::1]:26658\" (host names are not resolved)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_misses_only() {
        let known = ["listen", "max_body_bytes", "write_timeout"];
        assert_eq!(closest("lisen", &known), Some("listen"));
        assert_eq!(closest("max_body_byte", &known), Some("max_body_bytes"));
        assert_eq!(closest("frobnicate", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn unknown_keys_are_reported_with_the_known_set() {
        let table: Table = "listen = \"127.0.0.1:1\"\nlisen = 1\n".parse().unwrap();
        let mut p = Problems::default();
        let mut s = Section::new("server", Some(&table));
        let mut addr = "0.0.0.0:0".parse().unwrap();
        s.read(&mut p, "listen", &mut addr, socket_addr);
        s.value("max_body_bytes");
        s.finish(&mut p);
        let errs = p.finish(()).unwrap_err();
        assert_eq!(
            errs.to_string(),
            "server.lisen: unknown key (expected one of: listen, max_body_bytes); did you mean \"listen\"?"
        );
    }

    #[test]
    fn failed_covers_nested_paths() {
        let mut p = Problems::default();
        p.report("server", "x");
        assert!(p.failed("server"));
        assert!(p.failed("server.listen"));
        assert!(!p.failed("server_x"));
        assert!(!p.failed("upstream.url"));
    }

    #[test]
    fn scalar_messages() {
        assert!(unsigned::<u32>(&Value::Integer(-1))
            .unwrap_err()
            .contains("negative"));
        assert!(unsigned::<u32>(&Value::Integer(1 << 40))
            .unwrap_err()
            .contains("too large"));
        assert!(unsigned::<u32>(&Value::String("5".into()))
            .unwrap_err()
            .contains("quotes"));
        assert!(duration(&Value::Integer(10))
            .unwrap_err()
            .contains("\"10s\""));
        assert!(size(&Value::Integer(-5)).unwrap_err().contains("negative"));
        assert!(size(&Value::Float(1.5)).is_err());
        assert!(socket_addr(&Value::String("localhost:1".into())).is_err());
        assert!(boolean(&Value::String("true".into()))
            .unwrap_err()
            .contains("quotes"));
    }
}
