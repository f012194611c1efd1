//! Command-line arguments for the exercise binaries, without a CLI crate:
//! an optional subcommand, `--name value` options, `--flag`s, positional
//! words, and `--help`.
//!
//! ```
//! use sockbook::kit::args::Args;
//! let args = Args::parse_from(["server", "--addr", "127.0.0.1:0", "-v"], &["--addr"]).unwrap();
//! assert_eq!(args.command.as_deref(), Some("server"));
//! assert_eq!(args.value("--addr"), Some("127.0.0.1:0"));
//! assert!(args.flag("-v"));
//! ```

use std::ops::RangeInclusive;

use nix::sys::socket::SockaddrStorage;

use super::addr;
use super::error::{Error, Result};

/// Parsed arguments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Args {
    /// The first word that is not an option: `server`, `client`, …
    pub command: Option<String>,
    /// Words after the command that are not options.
    pub positional: Vec<String>,
    /// `(--name, value)` pairs in order; `value` is `None` for a flag.
    pub options: Vec<(String, Option<String>)>,
    /// Was `--help` or `-h` given?
    pub help: bool,
}

impl Args {
    /// Parse `words`; `takes_value` lists the options followed by a value
    /// (`--addr A` or `--addr=A`). Every other `-x`/`--xyz` is a flag.
    pub fn parse_from<I, S>(words: I, takes_value: &[&str]) -> Result<Args>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut args = Args::default();
        let mut words = words.into_iter().map(Into::into);
        while let Some(word) = words.next() {
            if word == "--help" || word == "-h" {
                args.help = true;
            } else if let Some((name, value)) =
                word.split_once('=').filter(|_| word.starts_with("--"))
            {
                args.options
                    .push((name.to_string(), Some(value.to_string())));
            } else if takes_value.contains(&word.as_str()) {
                let value = words
                    .next()
                    .ok_or_else(|| Error::msg(format!("{word} needs a value")))?;
                args.options.push((word, Some(value)));
            } else if word.starts_with('-') && word.len() > 1 {
                args.options.push((word, None));
            } else if args.command.is_none() {
                args.command = Some(word);
            } else {
                args.positional.push(word);
            }
        }
        Ok(args)
    }

    /// Parse the process's own arguments. On `--help` print `usage` and exit
    /// 0; on a malformed line print the error and `usage` and exit 2.
    pub fn from_env(usage: &str, takes_value: &[&str]) -> Args {
        match Args::parse_from(std::env::args().skip(1), takes_value) {
            Ok(args) if args.help => {
                print!("{usage}");
                std::process::exit(0);
            }
            Ok(args) => args,
            Err(e) => usage_error(usage, &e.to_string()),
        }
    }

    /// The value of option `name`, the last one given wins.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Was flag `name` given?
    pub fn flag(&self, name: &str) -> bool {
        self.options.iter().any(|(n, _)| n == name)
    }

    /// The number given with option `name` (`--backlog 4`), or `default`
    /// when it is absent; an error unless it is a whole number in `range`.
    pub fn number(&self, name: &str, default: i64, range: RangeInclusive<i64>) -> Result<i64> {
        let Some(text) = self.value(name) else {
            return Ok(default);
        };
        match text.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(Error::msg(format!(
                "{name} {text}: want a whole number in {}..={}",
                range.start(),
                range.end()
            ))),
        }
    }

    /// A count given with option `name` (`--workers 8`), or `default`.
    pub fn count(&self, name: &str, default: u64) -> Result<u64> {
        self.number(name, default as i64, 0..=i64::MAX)
            .map(|n| n as u64)
    }

    /// `--addr`, parsed, or `default` when it is absent.
    pub fn addr_or(&self, default: &str) -> Result<SockaddrStorage> {
        addr::parse(self.value("--addr").unwrap_or(default))
    }

    /// Options that are not in `known`: a binary reports them as errors.
    pub fn unknown_options(&self, known: &[&str]) -> Vec<&str> {
        self.options
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !known.contains(n))
            .collect()
    }
}

/// Print `problem` and the usage to stderr and exit 2.
pub fn usage_error(usage: &str, problem: &str) -> ! {
    eprintln!("error: {problem}\n\n{usage}");
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_range_or_a_clear_error() -> Result<()> {
        let args = Args::parse_from(
            ["demo", "--backlog", "4", "--bad", "x"],
            &["--backlog", "--bad"],
        )?;
        assert_eq!(args.number("--backlog", 1, 0..=64)?, 4);
        assert_eq!(args.number("--absent", 7, 0..=64)?, 7);
        assert!(args.number("--backlog", 1, 5..=64).is_err());
        assert!(args.count("--bad", 1).is_err());
        Ok(())
    }
}
