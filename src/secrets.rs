//! Files that hold secrets (private keys, bearer tokens): reading them only when no
//! other user can read them, and creating them atomically with mode 0600 from the
//! first byte, so a key is never briefly readable under the process's umask; and
//! [`Secret`], a string that redacts itself from `Debug`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rand::RngExt as _;

/// A string that must never reach logs, metrics or the API: communities, passwords.
#[derive(Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Largest secret file read: keys and tokens are a few KiB; a bigger file is a
/// mistake (a wrong path), not a secret.
const MAX_SECRET_FILE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds a secret but is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}`"
    )]
    Insecure { path: PathBuf, mode: u32 },
    #[error("{path} is larger than {MAX_SECRET_FILE} bytes; is it the right file?")]
    TooLarge { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SecretFileError + '_ {
    move |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Whether a file with this owner and mode may hold a secret: nobody but the owner
/// may have any access, except that a root-owned file may be readable by its group
/// (how systemd credentials and Kubernetes secret volumes with `fsGroup` hand a
/// secret to a service user), as PostgreSQL allows for its key files.
pub fn mode_is_private(mode: u32, owner_uid: u32) -> bool {
    let others = mode & 0o007;
    let group = mode & 0o070;
    others == 0 && (group == 0 || (owner_uid == 0 && group & !0o040 == 0))
}

/// Reads a secret file, refusing one that others can read (checked on the opened
/// file, so a swap between check and read is not possible).
pub fn read(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        if !mode_is_private(mode, meta.uid()) {
            return Err(SecretFileError::Insecure {
                path: path.to_owned(),
                mode,
            });
        }
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut data)
        .map_err(io(path))?;
    if data.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(data)
}

/// Writes `data` to `path` atomically: a temporary file in the same directory,
/// created exclusively with mode 0600, written, synced, then renamed over `path`.
/// Readers see the old file or the whole new one, never a partial or open one.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), SecretFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "secret".into());
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:08x}",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| {
        let mut f = opts.open(&tmp).map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn modes() {
        assert!(mode_is_private(0o600, 1000));
        assert!(mode_is_private(0o400, 1000));
        assert!(!mode_is_private(0o640, 1000));
        assert!(!mode_is_private(0o604, 1000));
        assert!(!mode_is_private(0o644, 0));
        assert!(mode_is_private(0o440, 0));
        assert!(mode_is_private(0o640, 0));
        assert!(!mode_is_private(0o660, 0));
        assert!(!mode_is_private(0o650, 0));
    }

    #[test]
    fn creates_0600_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_private(&p, b"one").unwrap();
        assert_eq!(mode_of(&p), 0o600);
        // An existing world-readable file is replaced by a new 0600 inode, not
        // rewritten in place under its old mode.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(mode_of(&p), 0o600);
        assert_eq!(read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }

    #[test]
    fn refuses_a_file_others_can_read_naming_it_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "t").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, SecretFileError::Insecure { mode: 0o644, .. }),
            "{msg}"
        );
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&p).unwrap(), b"t");
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read(Path::new("/nonexistent/drover/token")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/drover/token"));
    }
}
