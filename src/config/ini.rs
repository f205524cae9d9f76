//! Our reader for Glance's INI files (paste-deploy style, as Python 2's `ConfigParser` read them).
//!
//! Operators bring their Diablo `glance-*.conf` files, so the syntax follows `ConfigParser`:
//! `[section]` headers, `key = value` or `key: value` (split at the first `=` or `:`),
//! comment lines starting with `#` or `;`, an inline comment after whitespace and `;`,
//! indented lines continuing the previous value (joined with `\n`), `""` meaning the empty
//! string, the last of duplicate keys winning and repeated sections merging. Keys keep their
//! case, as paste-deploy kept them.
//!
//! Every value keeps its line number so that a bad value can be reported as
//! `glance-api.conf:12: bind_port: "abc" is not a port number`. The reader also remembers
//! which keys the program asked for (so a test can check that the sample configs and the code
//! agree) and which `[DEFAULT]` entries were used (so that the rest can be reported as unknown
//! options instead of being silently ignored).

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

/// Name of the section every other section falls back to.
pub const DEFAULT: &str = "DEFAULT";

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A line of a config file.
    File {
        /// The file, as it was named when loaded.
        path: PathBuf,
        /// 1-based line number of the key.
        line: usize,
    },
    /// A command-line flag that overrides the file.
    CommandLine {
        /// The flag as the user typed it, e.g. `--log-file`.
        flag: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::CommandLine { flag } => write!(f, "command line ({flag})"),
        }
    }
}

/// One `key = value` entry of a section.
#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    line: usize,
    /// Set when the program looked the entry up.
    used: Cell<bool>,
}

#[derive(Debug)]
struct Section {
    name: String,
    entries: Vec<Entry>,
}

impl Section {
    fn find(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

#[derive(Debug)]
struct Override {
    key: String,
    value: String,
    flag: String,
}

/// A value found by a lookup, with its origin.
#[derive(Debug, Clone)]
pub struct Value<'a> {
    /// The text, trimmed (continuation lines joined with `\n`).
    pub text: &'a str,
    /// Where it came from.
    pub origin: Origin,
}

impl Value<'_> {
    /// A config error about this value: `<origin>: <key>: "<value>" <problem>`.
    pub fn error(&self, key: &str, problem: &str) -> Error {
        self.error_showing(key, self.text, problem)
    }

    /// Like [`Value::error`] but showing `shown` instead of the value (for values that may
    /// hold a password).
    pub fn error_showing(&self, key: &str, shown: &str, problem: &str) -> Error {
        Error::Config(format!("{}: {key}: {shown:?} {problem}", self.origin))
    }
}

/// A parsed INI file.
#[derive(Debug)]
pub struct Ini {
    path: PathBuf,
    /// `[DEFAULT]` is always `sections[0]` (possibly empty).
    sections: Vec<Section>,
    overrides: Vec<Override>,
    requested: RefCell<BTreeSet<(String, String)>>,
    warnings: Vec<String>,
}

impl Ini {
    /// Reads and parses a file. Errors name the path (and the line for syntax errors).
    pub fn load(path: &Path) -> Result<Ini> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Config(format!("{}: cannot read: {e}", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Config(format!("{}: is not UTF-8 text", path.display())))?;
        Ini::parse(path, &text)
    }

    /// Parses `text`; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Ini> {
        let mut ini = Ini {
            path: path.to_path_buf(),
            sections: vec![Section {
                name: DEFAULT.to_string(),
                entries: Vec::new(),
            }],
            overrides: Vec::new(),
            requested: RefCell::new(BTreeSet::new()),
            warnings: Vec::new(),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // Index of the current section and of the entry a continuation line would extend.
        let mut current: Option<usize> = None;
        let mut last_entry: Option<usize> = None;
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let err = |what: String| Error::Config(format!("{}:{line_no}: {what}", path.display()));
            let trimmed = raw.trim();
            if trimmed.is_empty() || raw.starts_with('#') || raw.starts_with(';') {
                continue;
            }
            if raw.starts_with(char::is_whitespace) {
                // ConfigParser: an indented line continues the previous value.
                let (Some(s), Some(e)) = (current, last_entry) else {
                    return Err(err(format!(
                        "indented line {trimmed:?} does not continue any option \
                         (continuation lines must follow a `key = value` line)"
                    )));
                };
                let entry = &mut ini.sections[s].entries[e];
                if !entry.value.is_empty() {
                    entry.value.push('\n');
                }
                entry.value.push_str(trimmed);
                continue;
            }
            if let Some(rest) = trimmed.strip_prefix('[') {
                let Some((name, after)) = rest.split_once(']') else {
                    return Err(err(format!(
                        "section header {trimmed:?} lacks a closing `]`"
                    )));
                };
                let after = after.trim();
                if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                    return Err(err(format!(
                        "unexpected text {after:?} after section header [{name}]"
                    )));
                }
                let name = name.trim();
                if name.is_empty() {
                    return Err(err("empty section name `[]`".to_string()));
                }
                let idx = match ini.sections.iter().position(|s| s.name == name) {
                    Some(idx) => idx,
                    None => {
                        ini.sections.push(Section {
                            name: name.to_string(),
                            entries: Vec::new(),
                        });
                        ini.sections.len() - 1
                    }
                };
                current = Some(idx);
                last_entry = None;
                continue;
            }
            let Some(pos) = trimmed.find(['=', ':']) else {
                return Err(err(format!(
                    "expected `key = value`, `key: value`, a [section] header or a comment, \
                     found {trimmed:?}"
                )));
            };
            let key = trimmed[..pos].trim();
            if key.is_empty() {
                return Err(err(format!("option without a name: {trimmed:?}")));
            }
            let Some(s) = current else {
                return Err(err(format!(
                    "option {key:?} before any [section] header (options belong in [DEFAULT])"
                )));
            };
            let mut value = trimmed[pos + 1..].trim();
            // ConfigParser strips an inline comment introduced by whitespace and `;`.
            if let Some(c) = value
                .char_indices()
                .find(|&(i, ch)| ch == ';' && value[..i].ends_with(char::is_whitespace))
                .map(|(i, _)| i)
            {
                value = value[..c].trim_end();
            }
            if value == "\"\"" {
                value = "";
            }
            let section = &mut ini.sections[s];
            match section.entries.iter().position(|e| e.key == key) {
                Some(e) => {
                    let entry = &mut section.entries[e];
                    ini.warnings.push(format!(
                        "option '{key}' in [{}] is set twice ({}:{} and line {line_no}); \
                         the last one wins",
                        section.name,
                        path.display(),
                        entry.line
                    ));
                    entry.value = value.to_string();
                    entry.line = line_no;
                    last_entry = Some(e);
                }
                None => {
                    section.entries.push(Entry {
                        key: key.to_string(),
                        value: value.to_string(),
                        line: line_no,
                        used: Cell::new(false),
                    });
                    last_entry = Some(section.entries.len() - 1);
                }
            }
        }
        Ok(ini)
    }

    /// The path the file was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names of the sections, `DEFAULT` first, in file order.
    pub fn section_names(&self) -> Vec<&str> {
        self.sections.iter().map(|s| s.name.as_str()).collect()
    }

    /// Whether the file has a section of that name (`DEFAULT` always exists).
    pub fn has_section(&self, name: &str) -> bool {
        self.sections.iter().any(|s| s.name == name)
    }

    /// The keys set in a section itself (without the `[DEFAULT]` fallback), in file order.
    pub fn keys(&self, section: &str) -> Vec<&str> {
        self.sections
            .iter()
            .find(|s| s.name == section)
            .map(|s| s.entries.iter().map(|e| e.key.as_str()).collect())
            .unwrap_or_default()
    }

    /// Makes `key` read as `value` in every section, whatever the file says; `flag` names the
    /// command-line option in messages. A later override of the same key wins.
    pub fn set_override(&mut self, key: &str, value: &str, flag: &str) {
        self.overrides.retain(|o| o.key != key);
        self.overrides.push(Override {
            key: key.to_string(),
            value: value.to_string(),
            flag: flag.to_string(),
        });
    }

    /// Looks `key` up in `section`, falling back to `[DEFAULT]`; command-line overrides win.
    /// Records the request and marks the entry used.
    pub fn get(&self, section: &str, key: &str) -> Option<Value<'_>> {
        self.requested
            .borrow_mut()
            .insert((section.to_string(), key.to_string()));
        if let Some(o) = self.overrides.iter().find(|o| o.key == key) {
            // Mark the file's entries too: the option is known, just overridden.
            for s in &self.sections {
                if (s.name == section || s.name == DEFAULT)
                    && let Some(e) = s.find(key)
                {
                    e.used.set(true);
                }
            }
            return Some(Value {
                text: &o.value,
                origin: Origin::CommandLine {
                    flag: o.flag.clone(),
                },
            });
        }
        let own = self
            .sections
            .iter()
            .find(|s| s.name == section)
            .and_then(|s| s.find(key));
        let entry = own.or_else(|| self.sections[0].find(key))?;
        entry.used.set(true);
        Some(Value {
            text: &entry.value,
            origin: Origin::File {
                path: self.path.clone(),
                line: entry.line,
            },
        })
    }

    /// A view of one section (with `[DEFAULT]` fallback) offering typed getters.
    pub fn section<'a>(&'a self, name: &'a str) -> SectionView<'a> {
        SectionView { ini: self, name }
    }

    /// The `[DEFAULT]` section's view.
    pub fn defaults(&self) -> SectionView<'_> {
        self.section(DEFAULT)
    }

    /// Every `(section, key)` the program asked for, sorted.
    pub fn requested(&self) -> Vec<(String, String)> {
        self.requested.borrow().iter().cloned().collect()
    }

    /// Warnings found while parsing (duplicate keys).
    pub fn parse_warnings(&self) -> &[String] {
        &self.warnings
    }

    /// One warning per `[DEFAULT]` entry the program never looked up:
    /// `unknown option 'x' in <path>:<line>, ignored`. Other sections (`[app:*]`,
    /// `[pipeline:*]`, `[filter:*]`, ...) are not checked: Diablo configs carry them.
    pub fn unknown_options(&self) -> Vec<String> {
        self.unknown_options_in(DEFAULT)
    }

    /// Like [`Ini::unknown_options`], leaving out the entries whose key `known` accepts
    /// (options another program reads: see [`crate::config::known`]).
    pub fn unknown_options_except(&self, known: impl Fn(&str) -> bool) -> Vec<String> {
        self.unused_entries(DEFAULT, &known)
    }

    /// Like [`Ini::unknown_options`] for one named section (for sections the program owns,
    /// such as `[keystone_authtoken]`): `unknown option 'x' in [section] <path>:<line>,
    /// ignored`. Nothing when the section is absent.
    pub fn unknown_options_in(&self, section: &str) -> Vec<String> {
        self.unused_entries(section, &|_| false)
    }

    /// The warnings of [`Ini::unknown_options_in`] for the entries of `section` never
    /// looked up and not `known`.
    fn unused_entries(&self, section: &str, known: &dyn Fn(&str) -> bool) -> Vec<String> {
        let Some(s) = self.sections.iter().find(|s| s.name == section) else {
            return Vec::new();
        };
        let place = if section == DEFAULT {
            String::new()
        } else {
            format!("[{section}] ")
        };
        s.entries
            .iter()
            .filter(|e| !e.used.get() && !known(&e.key))
            .map(|e| {
                format!(
                    "unknown option '{}' in {place}{}:{}, ignored",
                    e.key,
                    self.path.display(),
                    e.line
                )
            })
            .collect()
    }
}

/// Typed access to one section (falling back to `[DEFAULT]`).
///
/// An empty value (`key =`) counts as unset and yields the default, as an empty value did
/// for Glance's optional settings.
#[derive(Debug, Clone, Copy)]
pub struct SectionView<'a> {
    ini: &'a Ini,
    name: &'a str,
}

impl<'a> SectionView<'a> {
    /// The raw value, or `None` when unset or empty.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.ini.get(self.name, key).filter(|v| !v.text.is_empty())
    }

    /// A string, or `default`.
    pub fn string(&self, key: &str, default: &str) -> String {
        self.get(key)
            .map_or_else(|| default.to_string(), |v| v.text.to_string())
    }

    /// An optional string.
    pub fn opt_string(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.text.to_string())
    }

    /// A filesystem path, or `default`.
    pub fn path(&self, key: &str, default: &str) -> PathBuf {
        PathBuf::from(self.string(key, default))
    }

    /// An optional filesystem path.
    pub fn opt_path(&self, key: &str) -> Option<PathBuf> {
        self.opt_string(key).map(PathBuf::from)
    }

    /// A boolean: `true/1/yes/on` or `false/0/no/off`, any case (Glance only knew `True`;
    /// everything else was silently false, which hid typos, so other words are errors).
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        match v.text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(v.error(key, "is not a boolean (use True or False)")),
        }
    }

    /// A TCP port, 0 to 65535 (0 = any free port).
    pub fn port(&self, key: &str, default: u16) -> Result<u16> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        v.text
            .parse::<u16>()
            .map_err(|_| v.error(key, "is not a port number"))
    }

    /// A non-negative integer.
    pub fn u64(&self, key: &str, default: u64) -> Result<u64> {
        self.u64_in(key, default, 0..=u64::MAX)
    }

    /// A non-negative integer within `range`.
    pub fn u64_in(&self, key: &str, default: u64, range: RangeInclusive<u64>) -> Result<u64> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let n = v
            .text
            .parse::<u64>()
            .map_err(|_| v.error(key, "is not a non-negative whole number"))?;
        if !range.contains(&n) {
            return Err(v.error(key, &out_of_range(&range)));
        }
        Ok(n)
    }

    /// A non-negative integer that fits a `usize`.
    pub fn usize(&self, key: &str, default: usize) -> Result<usize> {
        self.usize_in(key, default, 0..=usize::MAX)
    }

    /// A `usize` within `range`.
    pub fn usize_in(
        &self,
        key: &str,
        default: usize,
        range: RangeInclusive<usize>,
    ) -> Result<usize> {
        let (lo, hi) = (*range.start() as u64, *range.end() as u64);
        let n = self.u64_in(key, default as u64, lo..=hi)?;
        // In range of a usize by construction.
        Ok(usize::try_from(n).unwrap_or(default))
    }

    /// A whole number of seconds.
    pub fn seconds(&self, key: &str, default_secs: u64) -> Result<Duration> {
        let Some(v) = self.get(key) else {
            return Ok(Duration::from_secs(default_secs));
        };
        v.text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| v.error(key, "is not a whole number of seconds"))
    }

    /// A whole number of seconds within `range` (bounded, so that a deadline computed from
    /// it cannot overflow an `Instant`).
    pub fn seconds_in(
        &self,
        key: &str,
        default_secs: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration> {
        let Some(v) = self.get(key) else {
            return Ok(Duration::from_secs(default_secs));
        };
        let n = v
            .text
            .parse::<u64>()
            .map_err(|_| v.error(key, "is not a whole number of seconds"))?;
        if !range.contains(&n) {
            return Err(v.error(key, &out_of_range(&range)));
        }
        Ok(Duration::from_secs(n))
    }

    /// One of `allowed` (compared case-insensitively; returned as listed in `allowed`).
    pub fn choice(&self, key: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let Some(v) = self.get(key) else {
            return Ok(default.to_string());
        };
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v.text))
            .map(|a| a.to_string())
            .ok_or_else(|| v.error(key, &format!("is not one of: {}", allowed.join(", "))))
    }
}

/// The problem of a number outside `range`: `must be at least N` for an open range, else
/// `must be between A and B`.
fn out_of_range(range: &RangeInclusive<u64>) -> String {
    if *range.end() == u64::MAX {
        format!("must be at least {}", range.start())
    } else {
        format!("must be between {} and {}", range.start(), range.end())
    }
}

#[cfg(test)]
mod tests;
