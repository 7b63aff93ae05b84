//! Which Debian mirror to build from: the one the host's apt already uses.

use std::path::PathBuf;

use super::SUITE;

/// Mirror used when the host's apt sources name none for the suite.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// The Debian mirror: `$SMOLVM_DEBIAN_MIRROR`, else the first one the host's apt sources use
/// for the suite's `main` component, else [`DEFAULT_MIRROR`].
pub fn mirror() -> String {
    if let Some(url) = std::env::var("SMOLVM_DEBIAN_MIRROR")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        return url.trim().to_string();
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            match f.extension().and_then(|e| e.to_str()) {
                Some("sources") => mirror_in_deb822(&text),
                Some("list") => mirror_in_one_line(&text),
                _ => None,
            }
        })
        .next()
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

fn usable_uri(uri: &str) -> bool {
    uri.starts_with("http://") || uri.starts_with("https://")
}

/// The first `deb` URI serving [`SUITE`] `main` in a deb822 `.sources` file.
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (key, value) = l.split_once(':')?;
                key.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| value.trim().to_string())
            })
        };
        let types = field("Types").unwrap_or_default();
        let enabled = field("Enabled").is_none_or(|v| v != "no");
        let suites = field("Suites").unwrap_or_default();
        let components = field("Components").unwrap_or_default();
        let uri = field("URIs")?.split_whitespace().next()?.to_string();
        (enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == SUITE)
            && components.split_whitespace().any(|c| c == "main")
            && usable_uri(&uri))
        .then_some(uri)
    })
}

/// The first `deb URI SUITE ... main` line of a one-line-style `.list` file.
fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let mut words = line.split_whitespace().peekable();
        if words.next()? != "deb" {
            return None;
        }
        if words.peek()?.starts_with('[') {
            // Options such as [arch=amd64 signed-by=...], possibly several words.
            for word in words.by_ref() {
                if word.ends_with(']') {
                    break;
                }
            }
        }
        let uri = words.next()?;
        let suite = words.next()?;
        let rest: Vec<&str> = words.collect();
        (suite == SUITE && rest.contains(&"main") && usable_uri(uri)).then(|| uri.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_read_from_both_apt_formats() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: \
                      bookworm-security\nComponents: main\n\nTypes: deb\nURIs: \
                      http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main contrib\n";
        assert_eq!(
            mirror_in_deb822(deb822).as_deref(),
            Some("http://mirror.example/debian")
        );
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian \
                    bookworm main\n";
        assert_eq!(
            mirror_in_one_line(list).as_deref(),
            Some("http://m.example/debian")
        );
        assert_eq!(mirror_in_one_line("deb cdrom:/ bookworm main\n"), None);
        assert_eq!(
            mirror_in_one_line("deb http://x/debian bullseye main\n"),
            None
        );
    }
}
