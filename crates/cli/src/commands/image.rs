//! `smolvm image build|ls|inspect|rm`.

use anyhow::{bail, Result};
use serde::Serialize;
use smolvm::image::{self, debian, ImageMeta};
use smolvm::sandbox;
use smolvm::DataDir;

use crate::cli::{ImageBuildArgs, ImageCommand};
use crate::output::{print_json, Code, Failure};
use crate::progress::Spinner;

/// An image as `ls` and `inspect` show it.
#[derive(Debug, Serialize)]
struct ImageView {
    #[serde(flatten)]
    meta: ImageMeta,
    /// The root filesystem file.
    path: std::path::PathBuf,
    /// Host disk space it takes (image files are sparse).
    used_bytes: u64,
    /// Sandboxes (any state) created from it.
    sandboxes: Vec<String>,
}

fn view(data: &DataDir, meta: ImageMeta, users: &[sandbox::SandboxInfo]) -> ImageView {
    use std::os::unix::fs::MetadataExt;
    let path = image::rootfs_path_of(data, &meta);
    let used_bytes = std::fs::metadata(&path).map_or(0, |m| m.blocks() * 512);
    let sandboxes = users
        .iter()
        .filter(|s| s.record.image == meta.name)
        .map(|s| s.record.name.clone())
        .collect();
    ImageView {
        meta,
        path,
        used_bytes,
        sandboxes,
    }
}

pub fn image(command: ImageCommand, json: bool) -> Result<i32> {
    match command {
        ImageCommand::Build(args) => build(args, json),
        ImageCommand::Ls => ls(json),
        ImageCommand::Inspect { name } => inspect(&name, json),
        ImageCommand::Rm { name, force } => rm(&name, force, json),
    }
}

fn build(args: ImageBuildArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let spinner = Spinner::new(json);
    let (name, built) = match args.base.as_str() {
        image::DEBIAN => {
            let spec = debian::DebianSpec::new(args.name.as_deref(), &args.packages, args.size)?;
            let agent = match args.agent {
                Some(path) => path,
                None => image::find_agent()?,
            };
            let built = debian::build(&data, &spec, &agent, &spinner)?;
            (spec.name, built)
        }
        image::MINIMAL => {
            if !args.packages.is_empty() || args.size.is_some() || args.name.is_some() {
                bail!(smolvm::Error::InvalidConfig {
                    field: "base",
                    reason: "the minimal image takes no --packages, --size or --name; build a \
                             Debian image for those"
                        .into(),
                });
            }
            let agent = match args.agent {
                Some(path) => path,
                None => image::find_agent()?,
            };
            let built = image::initramfs::build(&data, &agent, &spinner)?;
            (image::MINIMAL.to_string(), built)
        }
        other => bail!(smolvm::Error::InvalidConfig {
            field: "base",
            reason: format!("unknown base {other:?}; available: debian, minimal"),
        }),
    };
    let meta = image::find_image(&data, &name)?;
    let shown = view(&data, meta, &[]);
    let template = super::template::ensure(&data, &name, &spinner);
    if json {
        print_json(&serde_json::json!({ "built": built, "image": shown, "template": template }));
        return Ok(0);
    }
    let verb = if built {
        format!("Built image {name}")
    } else {
        format!("Image {name} is up to date")
    };
    let took = match shown.meta.build_ms {
        0 => String::new(),
        ms => format!(", built in {:.1} s", ms as f64 / 1000.0),
    };
    println!(
        "{verb} ({}, {} MiB on disk{took}): {}",
        shown.meta.kind,
        shown.used_bytes >> 20,
        shown.path.display()
    );
    let example = if shown.meta.kind == image::KIND_EXT4 {
        "python3 -c 'print(6*7)'"
    } else {
        "uname -a"
    };
    template.print();
    println!("Try: smolvm run --image {name} -- {example}");
    Ok(0)
}

/// How long ago a Unix time was, briefly (`5m ago`).
pub fn age(built_at_unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match now.saturating_sub(built_at_unix) {
        _ if built_at_unix == 0 => "-".into(),
        s if s < 60 => format!("{s}s ago"),
        s if s < 3600 => format!("{}m ago", s / 60),
        s if s < 86400 => format!("{}h ago", s / 3600),
        s => format!("{}d ago", s / 86400),
    }
}

fn sandboxes(data: &DataDir) -> Vec<sandbox::SandboxInfo> {
    // Listing images must work even when the registry cannot be opened.
    sandbox::list(data).unwrap_or_default()
}

fn ls(json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let users = sandboxes(&data);
    let views: Vec<ImageView> = image::list_images(&data)
        .into_iter()
        .map(|m| view(&data, m, &users))
        .collect();
    if json {
        print_json(&views);
        return Ok(0);
    }
    println!(
        "{:<24} {:<10} {:>8} {:>8} {:>9}  PACKAGES",
        "NAME", "KIND", "SIZE", "ON DISK", "BUILT"
    );
    for v in &views {
        println!(
            "{:<24} {:<10} {:>7}M {:>7}M {:>9}  {}",
            v.meta.name,
            v.meta.kind,
            v.meta.size_bytes >> 20,
            v.used_bytes >> 20,
            age(v.meta.built_at_unix),
            if v.meta.packages.is_empty() {
                "-".to_string()
            } else {
                v.meta.packages.join(",")
            }
        );
    }
    Ok(0)
}

fn inspect(name: &str, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let v = view(&data, image::find_image(&data, name)?, &sandboxes(&data));
    if json {
        print_json(&v);
        return Ok(0);
    }
    let m = &v.meta;
    println!("name:        {}\nkind:        {}", m.name, m.kind);
    if let Some(base) = &m.base {
        println!("base:        {base}");
    }
    if !m.packages.is_empty() {
        println!("packages:    {}", m.packages.join(", "));
    }
    println!(
        "path:        {}\nsize:        {} MiB ({} MiB on disk)",
        v.path.display(),
        m.size_bytes >> 20,
        v.used_bytes >> 20
    );
    println!(
        "built:       {} (took {:.1} s)\ninputs hash: {}",
        age(m.built_at_unix),
        m.build_ms as f64 / 1000.0,
        m.inputs_hash
    );
    println!(
        "sandboxes:   {}",
        if v.sandboxes.is_empty() {
            "-".to_string()
        } else {
            v.sandboxes.join(", ")
        }
    );
    Ok(0)
}

fn rm(name: &str, force: bool, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let meta = image::find_image(&data, name)?;
    let users = view(&data, meta, &sandboxes(&data)).sandboxes;
    if !users.is_empty() && !force {
        bail!(Failure {
            code: Code::ImageInUse,
            message: format!(
                "image {name} is used by sandbox(es) {}; remove them first or pass --force",
                users.join(", ")
            ),
            hint: Some(format!("smolvm image rm --force {name}")),
        });
    }
    image::remove_image(&data, name)?;
    smolvm::template::remove_for_image(&data, name);
    if json {
        print_json(&serde_json::json!({ "removed": name }));
    } else {
        println!("{name}");
    }
    Ok(0)
}
