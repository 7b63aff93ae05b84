//! The sandbox registry: one SQLite database under the data directory.
//!
//! It records what does not change while a sandbox lives (id, name, sizing, image). What does
//! change — running or not, pids — is read live from the sandbox's directory and `/proc` (see
//! [`crate::sandbox`]), so the registry can never claim that a dead VM runs. Names are unique
//! by a database constraint, so concurrent `create`s can never hand out one name twice.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension};
use serde::Serialize;

use crate::dirs::DataDir;
use crate::error::{Error, Resource, Result};

/// One registered sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// Stable id (`vm-` + 8 hex digits); also the name of its directory.
    pub id: String,
    /// Unique, user-facing name.
    pub name: String,
    /// Image it boots.
    pub image: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub cpus: u32,
    /// Kept across stop/start (created by `smolvm create`); ephemeral sandboxes are removed
    /// when their owner goes away.
    pub persistent: bool,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
}

/// The registry.
pub struct Store {
    db: Connection,
}

fn db_error(e: rusqlite::Error) -> Error {
    Error::io("sandbox registry", std::io::Error::other(e))
}

impl Store {
    /// Opens (creating when needed) the registry of `data`.
    pub fn open(data: &DataDir) -> Result<Self> {
        data.ensure_private()?;
        let path = data.root().join("smolvm.db");
        // SQLite creates its database 0644 (minus the umask) and gives its journal the
        // database's mode: create the file 0600 first.
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(smolvm_sys::fs::PRIVATE_FILE)
                .open(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        }
        Self::open_path(&path)
    }

    fn open_path(path: &Path) -> Result<Self> {
        let db = Connection::open(path).map_err(db_error)?;
        // Several CLI invocations may write at once; wait for each other instead of failing.
        // The default rollback journal is kept: switching to WAL takes an exclusive lock that
        // concurrent first opens fight over without the busy handler's help.
        db.busy_timeout(Duration::from_secs(30)).map_err(db_error)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(db_error)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sandboxes (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                image TEXT NOT NULL,
                memory_mib INTEGER NOT NULL,
                cpus INTEGER NOT NULL,
                persistent INTEGER NOT NULL,
                created_at INTEGER NOT NULL
            );",
        )
        .map_err(db_error)?;
        Ok(Self { db })
    }

    /// Registers `record`; fails with [`Error::AlreadyExists`] when its name is taken.
    pub fn insert(&self, record: &Record) -> Result<()> {
        let inserted = self.db.execute(
            "INSERT INTO sandboxes (id, name, image, memory_mib, cpus, persistent, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                record.id,
                record.name,
                record.image,
                record.memory_mib,
                record.cpus,
                record.persistent,
                record.created_at as i64
            ],
        );
        match inserted {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Err(Error::AlreadyExists {
                    what: Resource::Sandbox,
                    name: record.name.clone(),
                    hint: format!(
                        "choose another name or remove it with `smolvm rm {}`",
                        record.name
                    ),
                })
            }
            Err(e) => Err(db_error(e)),
        }
    }

    /// Finds a sandbox by name or id.
    pub fn find(&self, name_or_id: &str) -> Result<Option<Record>> {
        self.db
            .query_row(
                "SELECT id, name, image, memory_mib, cpus, persistent, created_at FROM sandboxes
                 WHERE name = ?1 OR id = ?1",
                params![name_or_id],
                row_to_record,
            )
            .optional()
            .map_err(db_error)
    }

    /// Every sandbox, oldest first.
    pub fn list(&self) -> Result<Vec<Record>> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, name, image, memory_mib, cpus, persistent, created_at FROM sandboxes
                 ORDER BY created_at, name",
            )
            .map_err(db_error)?;
        let rows = stmt.query_map([], row_to_record).map_err(db_error)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_error)
    }

    /// Forgets the sandbox with this name or id (its files are removed by the caller).
    pub fn remove(&self, name_or_id: &str) -> Result<()> {
        self.db
            .execute(
                "DELETE FROM sandboxes WHERE id = ?1 OR name = ?1",
                params![name_or_id],
            )
            .map_err(db_error)?;
        Ok(())
    }
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: row.get(0)?,
        name: row.get(1)?,
        image: row.get(2)?,
        memory_mib: row.get(3)?,
        cpus: row.get(4)?,
        persistent: row.get(5)?,
        created_at: row.get::<_, i64>(6)? as u64,
    })
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "clever", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "lucky", "merry", "nimble", "proud", "quick", "quiet", "rapid", "shy", "silly", "swift",
    "tidy", "witty", "zesty", "bold",
];
const NOUNS: &[&str] = &[
    "otter", "falcon", "badger", "lynx", "heron", "panda", "koala", "raven", "tiger", "walrus",
    "gecko", "bison", "coyote", "dingo", "ferret", "ibis", "jaguar", "lemur", "marmot", "newt",
    "ocelot", "puffin", "quokka", "yak",
];

/// A readable random name (`adjective-noun-NNNN`).
pub fn generate_name() -> String {
    let r = smolvm_sys::random::random_u64();
    let adjective = ADJECTIVES[(r % ADJECTIVES.len() as u64) as usize];
    let noun = NOUNS[((r >> 16) % NOUNS.len() as u64) as usize];
    format!("{adjective}-{noun}-{:04}", (r >> 32) % 10_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> Record {
        Record {
            id: id.into(),
            name: name.into(),
            image: "minimal".into(),
            memory_mib: 512,
            cpus: 1,
            persistent: true,
            created_at: 1,
        }
    }

    fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("smolvm-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (Store::open_path(&dir.join("db")).unwrap(), dir)
    }

    #[test]
    fn names_are_unique_and_found_by_name_or_id() {
        let (store, dir) = temp_store("unique");
        store.insert(&record("vm-1", "web")).unwrap();
        let err = store.insert(&record("vm-2", "web")).unwrap_err();
        assert!(
            matches!(&err, Error::AlreadyExists { what: Resource::Sandbox, name, .. } if name == "web"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "invalid vm_id: a sandbox named \"web\" already exists; choose another name or \
             remove it with `smolvm rm web`"
        );
        assert_eq!(store.find("web").unwrap().unwrap().id, "vm-1");
        assert_eq!(store.find("vm-1").unwrap().unwrap().name, "web");
        assert!(store.find("nope").unwrap().is_none());
        store.remove("vm-1").unwrap();
        assert!(store.list().unwrap().is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn concurrent_writers_never_share_a_name() {
        let (_, dir) = temp_store("concurrent");
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = dir.join("db");
                std::thread::spawn(move || {
                    let store = Store::open_path(&path).unwrap();
                    store.insert(&record(&format!("vm-{i}"), "same")).is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|won| *won)
            .count();
        assert_eq!(wins, 1);
        let store = Store::open_path(&dir.join("db")).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn generated_names_are_valid_vm_ids() {
        for _ in 0..50 {
            crate::names::validate_vm_id(&generate_name()).unwrap();
        }
    }
}
