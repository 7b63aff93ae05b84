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

/// Checks that `value` (of variable `key`) can be stored: anything but NUL.
pub fn validate_env_value(key: &str, value: &str) -> Result<(), EnvValidationError> {
    if value.contains('\0') {
        Err(EnvValidationError::NulInValue(key.to_string()))
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
