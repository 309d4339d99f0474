//! Renders the effective config back to TOML, in the spellings the reader
//! accepts, so `--check-config` output can be saved and loaded as-is.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serializer;

use super::units::format_duration;
use super::Config;

pub(crate) fn to_toml_string(c: &Config) -> String {
    // Only a programmatically built Config can fail here (an integer beyond
    // TOML's i64); parsed values never exceed it.
    toml::to_string(c).unwrap_or_else(|e| format!("# cannot render the effective config: {e}\n"))
}

pub(crate) fn ser_duration<S: Serializer>(d: &Duration, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&format_duration(*d))
}

pub(crate) fn ser_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, ser),
        None => ser.serialize_none(),
    }
}

pub(crate) fn ser_uri<S: Serializer>(uri: &http::Uri, ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_str(uri)
}

pub(crate) fn ser_ipnets<S: Serializer>(nets: &[ipnet::IpNet], ser: S) -> Result<S::Ok, S::Error> {
    ser.collect_seq(nets.iter().map(ToString::to_string))
}

pub(crate) fn ser_header_name<S: Serializer>(
    name: &Option<http::HeaderName>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    ser.serialize_str(name.as_ref().map_or("", |n| n.as_str()))
}

/// TOML has no null, so "off" stands for a disabled listener.
pub(crate) fn ser_metrics_listen<S: Serializer>(
    listen: &Option<SocketAddr>,
    ser: S,
) -> Result<S::Ok, S::Error> {
    match listen {
        Some(addr) => ser.collect_str(addr),
        None => ser.serialize_str("off"),
    }
}
