//! Where SLS files and templates come from: the [`FileSource`] interface that each
//! master implements (the Salt file client over the request channel, the local
//! `file_roots` directories), declared here, below the state system, so that states
//! never import a master. [`FileRoots`] is the local implementation.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

/// Largest file a state run reads (an SLS or a template), as the file server is
/// untrusted input: a runaway file must not take the process's memory.
pub const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// `..`, an absolute path or a NUL: Salt's master answers "not found" to these.
    #[error("refusing file path {0:?}: it climbs out of the file root")]
    BadPath(String),
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: String },
    #[error("{path} is not UTF-8 text")]
    NotText { path: String },
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The master could not be asked (not connected, timeout, bad reply).
    #[error("asking the master for {path}: {message}")]
    Master { path: String, message: String },
}

/// One file server, as the state system sees it. Paths are relative to the
/// saltenv's root, `/`-separated, without `salt://`.
pub trait FileSource: Send + Sync {
    /// The saltenvs the server knows (`_file_envs`).
    fn envs(&self) -> BoxFuture<'_, Result<Vec<String>, FileError>>;
    /// Every file path in `saltenv`, sorted (`_file_list`).
    fn list<'a>(&'a self, saltenv: &'a str) -> BoxFuture<'a, Result<Vec<String>, FileError>>;
    /// The file's text, `None` when it does not exist.
    fn get<'a>(
        &'a self,
        saltenv: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, FileError>>;
    /// Extra top data for one id (`_master_tops`): `{saltenv: [sls, ...]}`.
    fn master_tops<'a>(
        &'a self,
        _id: &'a str,
        _grains: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<String>>, FileError>> {
        Box::pin(async { Ok(BTreeMap::new()) })
    }
}

/// Checks a relative path the way Salt's master does before it looks anything up:
/// no absolute path, no `..` component, no NUL. Returns the cleaned path.
pub fn clean_path(path: &str) -> Result<String, FileError> {
    let p = path.strip_prefix("salt://").unwrap_or(path);
    let bad = || FileError::BadPath(path.chars().take(200).collect());
    if p.starts_with('/') || p.contains('\0') || p.contains('\\') {
        return Err(bad());
    }
    let parts: Vec<&str> = p
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    if parts.contains(&"..") || parts.is_empty() {
        return Err(bad());
    }
    Ok(parts.join("/"))
}

/// How long [`FileRoots`] serves a file it read without reading it again: a
/// fleet-wide state run reads each file once, and an edit shows within this time.
pub const FILE_TTL: Duration = Duration::from_secs(2);

type Cache = HashMap<(String, String), (Instant, Option<Arc<str>>)>;

/// The local master's file server: Salt's `file_roots` layout, `{saltenv: [dir,
/// ...]}`, the first directory holding a path wins (as Salt's roots backend).
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    roots: BTreeMap<String, Vec<PathBuf>>,
    cache: Arc<Mutex<Cache>>,
}

impl FileRoots {
    pub fn new(roots: BTreeMap<String, Vec<PathBuf>>) -> FileRoots {
        FileRoots {
            roots,
            cache: Arc::default(),
        }
    }

    fn cached(&self, env: &str, rel: &str) -> Option<Option<Arc<str>>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&(env.to_owned(), rel.to_owned()))
            .filter(|(at, _)| at.elapsed() < FILE_TTL)
            .map(|(_, text)| text.clone())
    }

    async fn read(dir: &Path, rel: &str) -> Result<Option<Arc<str>>, FileError> {
        let full = dir.join(rel);
        let io = |source| FileError::Io {
            path: rel.to_owned(),
            source,
        };
        let meta = match tokio::fs::metadata(&full).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if !meta.is_file() {
            return Ok(None);
        }
        if meta.len() > MAX_FILE_BYTES as u64 {
            return Err(FileError::TooLarge {
                path: rel.to_owned(),
            });
        }
        let bytes = tokio::fs::read(&full).await.map_err(io)?;
        String::from_utf8(bytes)
            .map(|s| Some(Arc::from(s)))
            .map_err(|_| FileError::NotText {
                path: rel.to_owned(),
            })
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>, depth: usize) {
    // A symlink loop or an absurdly deep tree stops here instead of recursing forever.
    if depth > 32 || out.len() > 100_000 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => walk(root, &p, out, depth + 1),
            Ok(t) if t.is_file() => {
                if let Some(rel) = p.strip_prefix(root).ok().and_then(Path::to_str) {
                    out.push(rel.replace('\\', "/"));
                }
            }
            _ => {}
        }
    }
}

impl FileSource for FileRoots {
    fn envs(&self) -> BoxFuture<'_, Result<Vec<String>, FileError>> {
        Box::pin(async move { Ok(self.roots.keys().cloned().collect()) })
    }

    fn list<'a>(&'a self, saltenv: &'a str) -> BoxFuture<'a, Result<Vec<String>, FileError>> {
        Box::pin(async move {
            let dirs = self.roots.get(saltenv).cloned().unwrap_or_default();
            let files = tokio::task::spawn_blocking(move || {
                let mut out = Vec::new();
                for d in &dirs {
                    walk(d, d, &mut out, 0);
                }
                out.sort();
                out.dedup();
                out
            })
            .await
            .unwrap_or_default();
            Ok(files)
        })
    }

    fn get<'a>(
        &'a self,
        saltenv: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, FileError>> {
        Box::pin(async move {
            let rel = clean_path(path)?;
            if let Some(hit) = self.cached(saltenv, &rel) {
                return Ok(hit);
            }
            let mut found = None;
            for dir in self.roots.get(saltenv).into_iter().flatten() {
                if let Some(text) = FileRoots::read(dir, &rel).await? {
                    found = Some(text);
                    break;
                }
            }
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            // Bounded: a hostile tree cannot grow the cache past its files, but
            // requests for paths that do not exist could; drop it all when large.
            if cache.len() > 10_000 {
                cache.clear();
            }
            cache.insert((saltenv.to_owned(), rel), (Instant::now(), found.clone()));
            Ok(found)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_out_are_refused() {
        assert_eq!(clean_path("salt://a/./b.sls").unwrap(), "a/b.sls");
        assert_eq!(clean_path("a//b").unwrap(), "a/b");
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "",
            "a\0b",
            "..\\x",
        ] {
            assert!(clean_path(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn roots_read_first_dir_that_has_the_file() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(a.path().join("web")).unwrap();
        std::fs::write(a.path().join("web/init.sls"), "a").unwrap();
        std::fs::write(b.path().join("top.sls"), "b").unwrap();
        std::fs::write(a.path().join("top.sls"), "first").unwrap();
        let roots = FileRoots::new(BTreeMap::from([(
            "base".to_string(),
            vec![a.path().to_owned(), b.path().to_owned()],
        )]));
        assert_eq!(
            roots.get("base", "top.sls").await.unwrap().as_deref(),
            Some("first")
        );
        assert_eq!(roots.get("base", "nope.sls").await.unwrap(), None);
        assert_eq!(roots.get("dev", "top.sls").await.unwrap(), None);
        assert!(roots.get("base", "../x").await.is_err());
        assert_eq!(
            roots.list("base").await.unwrap(),
            vec!["top.sls".to_string(), "web/init.sls".to_string()]
        );
    }
}
