//! What a minion keeps about itself between runs, per device id: the grains set by
//! `grains.setval` and friends (Salt's `grains` file) and the jobs added with
//! `schedule.add` (Salt's `_schedule.conf`). Kept in memory and, with a state
//! directory, in `<state_dir>/minions/<id>/{grains,schedule}.json`, written whole
//! to a temporary file and renamed, so a crash never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid minion id {0:?} for a state file")]
    BadId(String),
}

/// Which per-minion document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Doc {
    Grains,
    Schedule,
}

impl Doc {
    fn file(self) -> &'static str {
        match self {
            Doc::Grains => "grains.json",
            Doc::Schedule => "schedule.json",
        }
    }
}

/// One saved document: a JSON object.
pub type DocMap = Arc<Map<String, Value>>;

/// Every device's saved documents; cheap to share.
#[derive(Default)]
pub struct MinionState {
    dir: Option<PathBuf>,
    docs: DashMap<(Arc<str>, Doc), DocMap>,
}

impl MinionState {
    /// Documents kept under `dir` (created on first write); in memory only without.
    pub fn new(dir: Option<PathBuf>) -> Arc<MinionState> {
        Arc::new(MinionState {
            dir,
            docs: DashMap::new(),
        })
    }

    fn path(&self, id: &str, doc: Doc) -> Option<PathBuf> {
        Some(self.dir.as_ref()?.join("minions").join(id).join(doc.file()))
    }

    /// `id`'s document, read from disk the first time (an unreadable or corrupt file
    /// counts as empty and is logged: a device must come up regardless).
    pub fn get(&self, id: &str, doc: Doc) -> Arc<Map<String, Value>> {
        let key = (Arc::<str>::from(id), doc);
        if let Some(d) = self.docs.get(&key) {
            return d.clone();
        }
        let loaded = Arc::new(self.read(id, doc));
        self.docs.entry(key).or_insert(loaded).clone()
    }

    fn read(&self, id: &str, doc: Doc) -> Map<String, Value> {
        if !valid_id(id) {
            return Map::new();
        }
        let Some(path) = self.path(id, doc) else {
            return Map::new();
        };
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => m,
                _ => {
                    tracing::warn!(path = %path.display(), "Saved minion state is not a JSON object; ignored.");
                    Map::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "Saved minion state unreadable; ignored.");
                Map::new()
            }
        }
    }

    /// Replaces `id`'s document, on disk first so memory never claims what a
    /// restart would lose.
    pub fn set(&self, id: &str, doc: Doc, value: Map<String, Value>) -> Result<(), StateError> {
        if !valid_id(id) {
            return Err(StateError::BadId(id.to_owned()));
        }
        if let Some(path) = self.path(id, doc) {
            write_atomic(&path, &Value::Object(value.clone()))?;
        }
        self.docs.insert((Arc::from(id), doc), Arc::new(value));
        Ok(())
    }
}

/// An id that is one path component (Salt's own rule for minion ids on disk).
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0']) && id.len() <= 255
}

fn write_atomic(path: &Path, value: &Value) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| err(std::io::Error::other(e)))?;
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents_survive_a_new_store_on_the_same_dir() {
        let dir = tempfile::tempdir().unwrap();
        let s = MinionState::new(Some(dir.path().to_owned()));
        assert!(s.get("r1", Doc::Grains).is_empty());
        let Value::Object(m) = json!({"role": "core"}) else {
            unreachable!()
        };
        s.set("r1", Doc::Grains, m.clone()).unwrap();
        assert_eq!(*s.get("r1", Doc::Grains), m);
        let again = MinionState::new(Some(dir.path().to_owned()));
        assert_eq!(*again.get("r1", Doc::Grains), m);
        assert!(again.get("r1", Doc::Schedule).is_empty());
        assert!(again.set("../x", Doc::Grains, Map::new()).is_err());
    }

    #[test]
    fn a_corrupt_file_reads_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("minions/r1");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("grains.json"), b"{not json").unwrap();
        let s = MinionState::new(Some(dir.path().to_owned()));
        assert!(s.get("r1", Doc::Grains).is_empty());
    }
}
