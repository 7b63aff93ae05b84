//! The managed environment file: validation, rendering and parsing.
//!
//! The file is sourced by `/bin/sh` in login shells, so its format is shell syntax. Every value
//! is single-quoted (the only quoting in which nothing but `'` is special), and an embedded `'`
//! is written as `'\''`. That makes any string without NUL round-trip exactly, newlines included.

use std::collections::BTreeMap;

/// Where the guest keeps the managed variables.
pub const ENV_FILE_PATH: &str = "/etc/profile.d/smolvm_env.sh";

/// The lines that open the file, before one `export` line per variable.
pub const ENV_FILE_HEADER: &str = "#!/bin/sh\n# SmolVM managed environment variables\n\n";

/// Longest `KEY=value` string, counting its terminating NUL, that Linux passes through
/// `execve`: `MAX_ARG_STRLEN`, 32 pages of 4 KiB. A login shell exports every managed variable
/// to each program it starts, so one longer variable would make every later command fail
/// with "Argument list too long" (`E2BIG`).
pub const MAX_ENV_ENTRY_BYTES: usize = 32 * 4096;

/// Budget for the whole managed set: the sum over variables of `KEY=value` + NUL + one
/// 8-byte pointer, which is how the kernel charges an environment against `ARG_MAX`.
///
/// `ARG_MAX` is a quarter of the stack limit, 2 MiB with Linux's default 8 MiB stack. Half
/// of it goes to the managed set; the other half stays for the command line (one argument
/// alone may take 128 KiB), the base environment (PATH, HOME, TERM...), per-command
/// variables and whatever the command itself passes on to the programs it runs. Counting the
/// pointers keeps a million one-letter variables out as well as one huge one.
pub const MAX_ENV_TOTAL_BYTES: usize = 1 << 20;

/// Bytes of argument space one variable costs in `execve`: `KEY=value`, its NUL and a pointer.
pub fn env_entry_cost(key: &str, value: &str) -> usize {
    key.len() + 1 + value.len() + 1 + std::mem::size_of::<u64>()
}

/// Why a key or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvValidationError {
    /// The key is not a shell identifier.
    #[error(
        "Invalid environment variable key {0:?}: keys must match ^[A-Za-z_][A-Za-z0-9_]*$ \
         (start with a letter or underscore; only letters, digits and underscores)"
    )]
    InvalidKey(String),
    /// The value contains a NUL byte, which no environment can hold.
    #[error("Invalid value for environment variable {0:?}: values cannot contain NUL bytes")]
    NulInValue(String),
    /// `KEY=value` is longer than one environment string may be.
    #[error(
        "Value of environment variable {key:?} is too long: {key}=value takes {bytes} bytes \
         with its NUL, over Linux's {max}-byte limit for one environment string \
         (MAX_ARG_STRLEN), so every command would fail with \"Argument list too long\"; \
         put large data in a file instead (write_file / upload_file)"
    )]
    ValueTooLong {
        /// The variable's name.
        key: String,
        /// Length of `KEY=value` plus its NUL.
        bytes: usize,
        /// [`MAX_ENV_ENTRY_BYTES`].
        max: usize,
    },
    /// The whole set of variables would not leave room for commands to run.
    #[error(
        "Environment variables too large: the managed set would take {bytes} bytes of \
         argument space (KEY=value, NUL and pointer each), over the {max}-byte budget that \
         leaves room under ARG_MAX for the command and the base environment; unset some \
         variables or put large data in files"
    )]
    SetTooLarge {
        /// What the set would cost.
        bytes: usize,
        /// [`MAX_ENV_TOTAL_BYTES`].
        max: usize,
    },
}

impl EnvValidationError {
    /// The variable the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::InvalidKey(key) | Self::NulInValue(key) | Self::ValueTooLong { key, .. } => {
                Some(key)
            }
            Self::SetTooLarge { .. } => None,
        }
    }
}

/// Checks that `key` fully matches `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn validate_env_key(key: &str) -> Result<(), EnvValidationError> {
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(EnvValidationError::InvalidKey(key.to_string()))
    }
}

/// Checks that `value` (of variable `key`) can be stored and exported: no NUL, and
/// `KEY=value` with its NUL within [`MAX_ENV_ENTRY_BYTES`].
pub fn validate_env_value(key: &str, value: &str) -> Result<(), EnvValidationError> {
    if value.contains('\0') {
        return Err(EnvValidationError::NulInValue(key.to_string()));
    }
    let bytes = key.len() + 1 + value.len() + 1;
    if bytes > MAX_ENV_ENTRY_BYTES {
        return Err(EnvValidationError::ValueTooLong {
            key: key.to_string(),
            bytes,
            max: MAX_ENV_ENTRY_BYTES,
        });
    }
    Ok(())
}

/// Checks that a whole set of variables fits [`MAX_ENV_TOTAL_BYTES`]. Apply it to the set
/// as it will be after a merge: only the side that holds the current set (the agent) can.
pub fn validate_env_set<'a, I>(vars: I) -> Result<(), EnvValidationError>
where
    I: IntoIterator<Item = (&'a String, &'a String)>,
{
    let bytes: usize = vars
        .into_iter()
        .map(|(key, value)| env_entry_cost(key, value))
        .sum();
    if bytes > MAX_ENV_TOTAL_BYTES {
        Err(EnvValidationError::SetTooLarge {
            bytes,
            max: MAX_ENV_TOTAL_BYTES,
        })
    } else {
        Ok(())
    }
}

/// Renders the whole file: header, then `export KEY='value'` lines sorted by key.
pub fn render_env_file(vars: &BTreeMap<String, String>) -> String {
    let mut out = String::from(ENV_FILE_HEADER);
    for (key, value) in vars {
        out.push_str("export ");
        out.push_str(key);
        out.push_str("='");
        out.push_str(&value.replace('\'', r"'\''"));
        out.push_str("'\n");
    }
    out
}

/// Parses a file written by [`render_env_file`] (and simple hand-written `export K=V` lines).
///
/// Comments and blank lines are skipped. A value may be any sequence of single-quoted strings,
/// `\x` escapes and bare characters, as the shell would read it; a quote left open is an error,
/// because guessing would silently change a value on the next write.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    let mut pos = 0;
    while pos < text.len() {
        let line_end = text[pos..].find('\n').map_or(text.len(), |i| pos + i + 1);
        let line = text[pos..line_end].trim_start_matches([' ', '\t']);
        if line.trim().is_empty() || line.starts_with('#') {
            pos = line_end;
            continue;
        }
        let assignment = line.strip_prefix("export ").unwrap_or(line).trim_start();
        let eq = assignment.find('=').ok_or_else(|| {
            format!(
                "unrecognised line in {ENV_FILE_PATH}: {:?}",
                line.trim_end()
            )
        })?;
        let key = &assignment[..eq];
        validate_env_key(key).map_err(|e| e.to_string())?;
        // The value may run past this line (newlines inside quotes), so parse from the file.
        let value_start = line_end - assignment.len() + eq + 1;
        let (value, consumed) = parse_shell_word(&text[value_start..]).ok_or_else(|| {
            format!("unterminated quote in the value of {key} in {ENV_FILE_PATH}")
        })?;
        vars.insert(key.to_string(), value);
        let word_end = value_start + consumed;
        pos = text[word_end..]
            .find('\n')
            .map_or(text.len(), |i| word_end + i + 1);
    }
    Ok(vars)
}

/// Reads one shell word (up to an unquoted newline, space or `;`). Returns the value and the
/// number of bytes consumed, or `None` when a quote is left open.
fn parse_shell_word(input: &str) -> Option<(String, usize)> {
    let mut value = String::new();
    let mut chars = input.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' => loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, inner)) => value.push(inner),
                    None => return None,
                }
            },
            '"' => loop {
                match chars.next() {
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, e @ ('$' | '`' | '"' | '\\'))) => value.push(e),
                        Some((_, '\n')) => {}
                        Some((_, other)) => {
                            value.push('\\');
                            value.push(other);
                        }
                        None => return None,
                    },
                    Some((_, inner)) => value.push(inner),
                    None => return None,
                }
            },
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, escaped)) => value.push(escaped),
                None => return Some((value, i + 1)),
            },
            '\n' | ' ' | '\t' | ';' => return Some((value, i)),
            other => value.push(other),
        }
    }
    Some((value, input.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn keys_must_fully_match_the_identifier_pattern() {
        for good in ["API_KEY", "db_host", "_private", "VAR123", "_", "a"] {
            assert!(validate_env_key(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "123invalid",
            "has-dash",
            "FOO\n",
            "FOO BAR",
            "ÄPFEL",
            "A=B",
            "\nFOO",
            "A.B",
        ] {
            let err = validate_env_key(bad).unwrap_err();
            assert!(
                err.to_string().contains("Invalid environment variable key"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn nul_is_the_only_forbidden_value_byte() {
        assert!(validate_env_value("K", "a\0b").is_err());
        assert!(validate_env_value("K", "'\"$`\\\t\n\r ünï -x").is_ok());
    }

    #[test]
    fn one_variable_may_take_at_most_max_arg_strlen() {
        // "BIG=" + value + NUL == 131072 is the longest string execve takes.
        let fits = "x".repeat(MAX_ENV_ENTRY_BYTES - "BIG=".len() - 1);
        assert!(validate_env_value("BIG", &fits).is_ok());
        let over = format!("{fits}x");
        let err = validate_env_value("BIG", &over).unwrap_err();
        assert_eq!(
            err,
            EnvValidationError::ValueTooLong {
                key: "BIG".into(),
                bytes: MAX_ENV_ENTRY_BYTES + 1,
                max: MAX_ENV_ENTRY_BYTES
            }
        );
        assert_eq!(err.key(), Some("BIG"));
        assert!(err.to_string().contains("Argument list too long"), "{err}");
        // The key counts too.
        let long_key = "K".repeat(100);
        assert!(validate_env_value(&long_key, &fits).is_err());
    }

    #[test]
    fn the_whole_set_must_fit_the_budget() {
        let value = "v".repeat(100 * 1024);
        let mut vars = BTreeMap::new();
        for i in 0..10 {
            vars.insert(format!("V{i}"), value.clone());
        }
        // Ten 100 KiB values: 1000 KiB + overhead, under 1 MiB.
        assert!(validate_env_set(&vars).is_ok());
        vars.insert("V10".into(), value.clone());
        let err = validate_env_set(&vars).unwrap_err();
        assert!(
            matches!(err, EnvValidationError::SetTooLarge { bytes, max }
                if bytes > max && max == MAX_ENV_TOTAL_BYTES),
            "{err:?}"
        );
        assert_eq!(err.key(), None);
        // Many tiny variables are charged their pointers too.
        let tiny: BTreeMap<String, String> = (0..MAX_ENV_TOTAL_BYTES / 12)
            .map(|i| (format!("A{i}"), String::new()))
            .collect();
        assert!(validate_env_set(&tiny).is_err());
        assert!(validate_env_set(&BTreeMap::new()).is_ok());
    }

    #[test]
    fn renders_the_reference_format_exactly() {
        assert_eq!(
            render_env_file(&map(&[("TEST", "value")])),
            "#!/bin/sh\n# SmolVM managed environment variables\n\nexport TEST='value'\n"
        );
        assert_eq!(
            render_env_file(&map(&[("B", "it's"), ("A", "x")])),
            "#!/bin/sh\n# SmolVM managed environment variables\n\nexport A='x'\nexport B='it'\\''s'\n"
        );
        assert_eq!(render_env_file(&BTreeMap::new()), ENV_FILE_HEADER);
    }

    #[test]
    fn every_awkward_value_round_trips() {
        let vars = map(&[
            (
                "SCRIPT",
                "\n#!/bin/bash\necho \"Line 1\"\necho \"Line 2\"\n",
            ),
            ("QUOTES", "Value with 'single' and \"double\" quotes"),
            ("JSON", r#"{"key": "value", "nested": {"a": 1}}"#),
            ("SHELLY", "$HOME `id` $(reboot) \\n \\ \\\\ ;|&<>"),
            ("TABS", "\ta\tb\t"),
            ("TRAILING", "x\n\n\n"),
            ("EMPTY", ""),
            ("DASH", "-n"),
            ("ONLY_QUOTE", "'"),
            ("QUOTES_RUN", "''''\\'"),
            ("UNICODE", "héllo wörld ✓ 🦀"),
            ("CR", "a\r\nb"),
        ]);
        let text = render_env_file(&vars);
        assert_eq!(parse_env_file(&text).unwrap(), vars);
    }

    #[test]
    fn parses_hand_written_lines_and_skips_comments() {
        let text = "#!/bin/sh\n# comment\n\nexport A=plain\nB='q'\\''d'\n  export C=\"\"\n";
        let parsed = parse_env_file(text).unwrap();
        assert_eq!(parsed.get("A").unwrap(), "plain");
        assert_eq!(parsed.get("B").unwrap(), "q'd");
        assert_eq!(parsed.get("C").unwrap(), "");
        assert!(parse_env_file("export A='open\n").is_err());
        assert!(parse_env_file("export 1A='x'\n").is_err());
        assert!(parse_env_file("garbage line\n").is_err());
    }
}
