//! What the command line prints: JSON documents for scripts, tables sized to the
//! terminal for people, one-line errors, and the documented exit codes.

use std::fmt;

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// The exit codes (README, `strata --help`).
pub mod exit {
    pub const OK: i32 = 0;
    /// The job failed or was cancelled.
    pub const JOB_FAILED: i32 = 1;
    /// Bad usage: arguments, or a request the API refused as invalid.
    pub const USAGE: i32 = 2;
    /// Authentication or permission.
    pub const AUTH: i32 = 3;
    pub const NOT_FOUND: i32 = 4;
    pub const CONFLICT: i32 = 5;
    /// The server failed, or could not be reached.
    pub const SERVER: i32 = 6;
}

/// Why a command failed: a one-line message and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: exit::USAGE,
            message: message.into(),
        }
    }

    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<strata_client::Error> for Failure {
    fn from(e: strata_client::Error) -> Self {
        use strata_client::ErrorKind;
        let code = match (e.kind(), e.status()) {
            (_, Some(401 | 403)) => exit::AUTH,
            (_, Some(404)) => exit::NOT_FOUND,
            (_, Some(409)) => exit::CONFLICT,
            (_, Some(429)) => exit::SERVER,
            (_, Some(s)) if s >= 500 => exit::SERVER,
            (_, Some(_)) => exit::USAGE,
            (ErrorKind::Network | ErrorKind::InvalidResponse, None) => exit::SERVER,
            _ => exit::USAGE,
        };
        let mut message = e.message().trim_end_matches('.').to_string();
        if message.is_empty() {
            message = "the server gave no reason".into();
        }
        if let Some(field) = e.field() {
            if !message.contains(field) {
                message = format!("{field}: {message}");
            }
        }
        Self {
            code,
            message: format!("{message} ({})", e.code()),
        }
    }
}

pub type CmdResult<T = ()> = Result<T, Failure>;

/// Prints a value as one pretty JSON document.
pub fn json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// [`json`], as a command's result.
pub fn print_json(value: &impl Serialize) -> CmdResult {
    json(value);
    Ok(())
}

/// Prints a value as one JSON line (`watch`).
pub fn json_line(value: &impl Serialize) {
    println!("{}", serde_json::to_string(value).expect("serializable"));
}

/// A table with a header, fitted to the terminal's width when stdout is one.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    if rows.is_empty() {
        return;
    }
    let mut t = Table::new();
    t.load_style(presets::NOTHING);
    t.set_header(header.iter().map(|h| h.to_uppercase()));
    if let Some((_, width)) = console::Term::stdout().size_checked() {
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_width(width);
    }
    for row in rows {
        t.add_row(row);
    }
    // comfy-table pads every cell; trailing spaces are noise in a terminal.
    for line in t.to_string().lines() {
        println!("{}", line.trim_end().trim_start_matches(' '));
    }
}

/// `key: value` lines, keys aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:width$}  {v}");
    }
}

pub fn bytes(n: impl TryInto<u64>) -> String {
    indicatif::BinaryBytes(n.try_into().unwrap_or(0)).to_string()
}

pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

pub fn opt_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "-".into())
}

/// `3h ago`, `2d ago`.
pub fn age(t: &chrono::DateTime<chrono::Utc>) -> String {
    let secs = (chrono::Utc::now() - *t).num_seconds().max(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// The wire name of a generated enum value (`full`, `succeeded`…).
pub fn name(v: &impl Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) => "-".into(),
        Ok(other) => other.to_string(),
        Err(_) => "?".into(),
    }
}
