//! Sizes and durations as operators write them.
//!
//! Both are parsed from human spellings ("16 MiB", "1m30s") and rendered back
//! to the same spellings, so `--check-config` prints a file that re-parses to
//! the identical value.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// A byte count. The constructors use exact powers of 1024 and saturate
/// rather than wrap, so a typo in a constant can never shrink a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn bytes(n: u64) -> Self {
        Self(n)
    }

    pub const fn kib(n: u64) -> Self {
        Self(n.saturating_mul(KIB))
    }

    pub const fn mib(n: u64) -> Self {
        Self(n.saturating_mul(MIB))
    }

    pub const fn gib(n: u64) -> Self {
        Self(n.saturating_mul(GIB))
    }

    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Saturates on 32-bit targets: a limit too large for memory is
    /// effectively unlimited there anyway.
    pub const fn as_usize(self) -> usize {
        if self.0 > usize::MAX as u64 {
            usize::MAX
        } else {
            self.0 as usize
        }
    }

    /// The largest binary unit dividing the size exactly, if any.
    fn exact_unit(self) -> Option<(u64, &'static str)> {
        if self.0 == 0 {
            return None;
        }
        [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")]
            .into_iter()
            .find(|(unit, _)| self.0 % unit == 0)
            .map(|(unit, name)| (self.0 / unit, name))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.exact_unit() {
            Some((n, unit)) => write!(f, "{n} {unit}"),
            None => write!(f, "{} B", self.0),
        }
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s)
    }
}

/// Exact sizes as "16 MiB"; others as a plain integer, which TOML can only
/// hold up to i64::MAX, so larger odd sizes fall back to a digit string.
impl serde::Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        match (self.exact_unit(), i64::try_from(self.0)) {
            (Some(_), _) => ser.collect_str(self),
            (None, Ok(n)) => ser.serialize_i64(n),
            (None, Err(_)) => ser.collect_str(&self.0),
        }
    }
}

fn size_error(s: &str) -> String {
    format!("invalid size \"{s}\": expected bytes or e.g. \"16 MiB\", \"512 KiB\", \"10 MB\"")
}

/// Parses "16 MiB", "512 KiB", "10 MB" (SI, 10^6), "1000000", "1_000_000".
pub(crate) fn parse_size(s: &str) -> Result<ByteSize, String> {
    let text = s.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '_'))
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(split);
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if text.starts_with('-') {
        return Err(format!("invalid size \"{s}\": must not be negative"));
    }
    if digits.is_empty() {
        return Err(size_error(s));
    }
    if rest.starts_with(['.', ',']) {
        return Err(format!(
            "invalid size \"{s}\": fractions are not supported, use a smaller unit (e.g. \"1536 KiB\")"
        ));
    }
    let unit = rest.trim();
    let multiplier = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => KIB,
        "mib" => MIB,
        "gib" => GIB,
        "tib" => TIB,
        "k" | "m" | "g" | "t" => {
            let up = unit.to_ascii_uppercase();
            return Err(format!(
                "invalid size \"{s}\": ambiguous unit \"{unit}\", write \"{up}iB\" (powers of 1024) or \"{up}B\" (powers of 1000)"
            ));
        }
        _ => return Err(size_error(s)),
    };
    let too_large = || format!("invalid size \"{s}\": too large (the limit is 2^64-1 bytes)");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier)
        .map(ByteSize)
        .ok_or_else(too_large)
}

fn duration_error(s: &str) -> String {
    format!("invalid duration \"{s}\": expected e.g. \"10s\", \"250ms\"")
}

/// Parses "10s", "250ms", "1m30s", "2h", "0s" (also "us" and "ns").
///
/// A unit is mandatory: a bare "10" could mean seconds or milliseconds
/// depending on which other proxy the operator last configured.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid duration \"{s}\": missing unit, write e.g. \"{text}s\" or \"{text}ms\""
        ));
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(duration_error(s));
        }
        if after.starts_with(['.', ',']) {
            return Err(format!(
                "invalid duration \"{s}\": fractions are not supported, use a smaller unit (e.g. \"1500ms\")"
            ));
        }
        let unit_end = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let n: u64 = digits.parse().map_err(|_| duration_error(s))?;
        let part = match unit {
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "s" => Some(Duration::from_secs(n)),
            "ms" => Some(Duration::from_millis(n)),
            "us" | "µs" => Some(Duration::from_micros(n)),
            "ns" => Some(Duration::from_nanos(n)),
            _ => return Err(duration_error(s)),
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration \"{s}\": too large"))?;
        parts += 1;
        rest = after.trim_start();
    }
    if parts == 0 {
        return Err(duration_error(s));
    }
    Ok(total)
}

/// Renders the shortest exact spelling `parse_duration` reads back:
/// 90s -> "1m30s", 1.5s -> "1s500ms", zero -> "0s".
pub(crate) fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    let secs = d.as_secs();
    let nanos = u64::from(d.subsec_nanos());
    let parts = [
        (secs / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (nanos / 1_000_000, "ms"),
        (nanos / 1_000 % 1_000, "us"),
        (nanos % 1_000, "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_are_exact_powers_of_1024() {
        assert_eq!(ByteSize::bytes(7).as_u64(), 7);
        assert_eq!(ByteSize::kib(1).as_u64(), 1024);
        assert_eq!(ByteSize::kib(16).as_u64(), 16_384);
        assert_eq!(ByteSize::mib(1).as_u64(), 1_048_576);
        assert_eq!(ByteSize::mib(16).as_u64(), 16 * 1024 * 1024);
        assert_eq!(ByteSize::mib(32).as_u64(), 33_554_432);
        assert_eq!(ByteSize::mib(256).as_u64(), 268_435_456);
        assert_eq!(ByteSize::gib(1).as_u64(), 1_073_741_824);
        assert_eq!(ByteSize::kib(64).as_usize(), 65_536);
    }

    #[test]
    fn constructors_saturate() {
        assert_eq!(ByteSize::kib(u64::MAX).as_u64(), u64::MAX);
        assert_eq!(ByteSize::mib(u64::MAX / 2).as_u64(), u64::MAX);
        assert_eq!(ByteSize::gib(1 << 40).as_u64(), u64::MAX);
    }

    #[test]
    fn display_prefers_exact_binary_units() {
        assert_eq!(ByteSize::mib(16).to_string(), "16 MiB");
        assert_eq!(ByteSize::kib(512).to_string(), "512 KiB");
        assert_eq!(ByteSize::gib(1).to_string(), "1 GiB");
        assert_eq!(ByteSize::kib(1536).to_string(), "1536 KiB");
        assert_eq!(ByteSize::bytes(1_000_000).to_string(), "1000000 B");
        assert_eq!(ByteSize::bytes(0).to_string(), "0 B");
        assert_eq!(ByteSize::bytes(1 << 40).to_string(), "1 TiB");
    }

    #[test]
    fn parses_sizes() {
        let ok = |s: &str| parse_size(s).unwrap().as_u64();
        assert_eq!(ok("16 MiB"), 16 * 1024 * 1024);
        assert_eq!(ok("16MiB"), 16 * 1024 * 1024);
        assert_eq!(ok("512 KiB"), 512 * 1024);
        assert_eq!(ok("1 GiB"), 1 << 30);
        assert_eq!(ok("1000000"), 1_000_000);
        assert_eq!(ok("1_000_000"), 1_000_000);
        assert_eq!(ok("10 MB"), 10_000_000);
        assert_eq!(ok("64 KB"), 64_000);
        assert_eq!(ok("2 gb"), 2_000_000_000);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok(" 12 B "), 12);
        assert_eq!(ok("18446744073709551615"), u64::MAX);
    }

    #[test]
    fn rejects_bad_sizes() {
        for bad in [
            "",
            "MiB",
            "-1",
            "-1 MiB",
            "1.5 MiB",
            "16 parsecs",
            "16 M",
            "1e6",
            "12 MiB x",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("16 M").unwrap_err().contains("\"MiB\""));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("17179869184 GiB")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn sizes_display_and_parse_round_trip() {
        for n in [
            0,
            1,
            1000,
            1024,
            16_384,
            1_000_000,
            1 << 30,
            (1 << 30) + 1,
            u64::MAX,
        ] {
            let size = ByteSize::bytes(n);
            assert_eq!(parse_size(&size.to_string()), Ok(size));
        }
    }

    #[test]
    fn parses_durations() {
        let ok = |s: &str| parse_duration(s).unwrap();
        assert_eq!(ok("10s"), Duration::from_secs(10));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1m"), Duration::from_secs(60));
        assert_eq!(ok("2h"), Duration::from_secs(7200));
        assert_eq!(ok("1m30s"), Duration::from_secs(90));
        assert_eq!(ok("1m 30s"), Duration::from_secs(90));
        assert_eq!(ok("1s500ms"), Duration::from_millis(1500));
        assert_eq!(ok("0s"), Duration::ZERO);
        assert_eq!(ok("5us"), Duration::from_micros(5));
        assert_eq!(ok("7ns"), Duration::from_nanos(7));
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in [
            "",
            "10",
            "0",
            "s",
            "10 parsecs",
            "1.5s",
            "10 s",
            "-1s",
            "1d",
            "10sec",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert_eq!(
            parse_duration("10 parsecs").unwrap_err(),
            "invalid duration \"10 parsecs\": expected e.g. \"10s\", \"250ms\""
        );
        assert!(parse_duration("10").unwrap_err().contains("\"10s\""));
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("5124095576030432h")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn durations_format_and_parse_round_trip() {
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(7200)), "2h");
        for d in [
            Duration::from_millis(1500),
            Duration::from_secs(3661),
            Duration::new(5, 1_002_003),
            Duration::from_secs(u64::MAX / 4000),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
