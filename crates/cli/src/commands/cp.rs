//! `smolvm cp`: files and trees between the host and a sandbox, docker-cp style.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use smolvm::files::DownloadOptions;
use smolvm::protocol::FileKind;
use smolvm::SmolVm;

use crate::cli::CpArgs;
use crate::output::print_json;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this host.
    Local(PathBuf),
    /// `NAME:/absolute/path` in a sandbox.
    Guest {
        /// Sandbox name.
        sandbox: String,
        /// Path in the guest.
        path: String,
    },
}

/// Parses `NAME:/path` (a sandbox path) or anything else (a local path). A local path that
/// contains a colon can be written `./a:b`.
pub fn parse_location(arg: &str) -> Location {
    match arg.split_once(':') {
        Some((name, path)) if !name.is_empty() && !name.contains('/') && path.starts_with('/') => {
            Location::Guest {
                sandbox: name.to_string(),
                path: path.to_string(),
            }
        }
        _ => Location::Local(PathBuf::from(arg)),
    }
}

fn base_name(path: &str) -> &str {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

pub fn cp(args: CpArgs, json: bool) -> Result<i32> {
    let (from, to) = (
        parse_location(&args.source),
        parse_location(&args.destination),
    );
    let written = match (from, to) {
        (Location::Local(local), Location::Guest { sandbox, path }) => upload(&SmolVm::attach(&sandbox)?, &local, &path, args.recursive)?,
        (Location::Guest { sandbox, path }, Location::Local(local)) => download(&SmolVm::attach(&sandbox)?, &path, &local, args.recursive, args.overwrite)?,
        _ => bail!(smolvm::Error::InvalidConfig {
            field: "cp",
            reason: "copy between this host and a sandbox: `smolvm cp LOCAL NAME:/path` or `smolvm cp NAME:/path LOCAL`".into(),
        }),
    };
    if json {
        print_json(&serde_json::json!({ "written": written }));
    } else {
        println!("{written}");
    }
    Ok(0)
}

fn upload(vm: &SmolVm, local: &Path, guest: &str, recursive: bool) -> Result<String> {
    if !local.is_dir() {
        return Ok(vm.upload_file(local, guest)?);
    }
    if !recursive {
        bail!(smolvm::Error::InvalidConfig {
            field: "cp",
            reason: format!("{} is a directory; use -r", local.display())
        });
    }
    // Like `cp -r`: into an existing directory, the tree keeps its own name.
    let name = local
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = match vm.stat(guest)? {
        Some(info) if info.kind == FileKind::Dir => {
            format!("{}/{name}", guest.trim_end_matches('/'))
        }
        _ => guest.to_string(),
    };
    vm.upload_dir(local, &target)?;
    Ok(target)
}

/// Like `docker cp`: a guest tree copied to an existing local folder `DIR` goes to
/// `DIR/NAME`; to a path that does not exist, it is created there. Unlike docker, a target
/// that exists and is not empty is never merged into: refused unless `overwrite`, which
/// replaces it. The download's own rules (see `SmolVm::download_dir_with`) apply.
fn download(
    vm: &SmolVm,
    guest: &str,
    local: &Path,
    recursive: bool,
    overwrite: bool,
) -> Result<String> {
    let is_dir = vm
        .stat(guest)?
        .is_some_and(|info| info.kind == FileKind::Dir);
    if !is_dir {
        return Ok(vm.download_file(guest, local)?.display().to_string());
    }
    if !recursive {
        bail!(smolvm::Error::InvalidConfig {
            field: "cp",
            reason: format!("{guest} is a directory; use -r")
        });
    }
    let target = if local.is_dir() {
        local.join(base_name(guest))
    } else {
        local.to_path_buf()
    };
    let options = DownloadOptions {
        overwrite,
        ..DownloadOptions::default()
    };
    let written = vm.download_dir_with(guest, &target, &options)?;
    Ok(written.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse_like_docker_cp() {
        assert_eq!(
            parse_location("web:/tmp/x"),
            Location::Guest {
                sandbox: "web".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse_location("./web:/tmp/x"),
            Location::Local("./web:/tmp/x".into())
        );
        assert_eq!(
            parse_location("web:relative"),
            Location::Local("web:relative".into())
        );
        assert_eq!(
            parse_location("/abs/file"),
            Location::Local("/abs/file".into())
        );
        assert_eq!(base_name("/srv/tree/"), "tree");
    }
}
