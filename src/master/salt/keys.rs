//! Minion key pairs on disk (`minion.pem` PKCS#1, `minion.pub` SPKI, mode 0600), the
//! cached master public key (`minion_master.pub`), and the per-key X9.31 token.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePublicKey, EncodePublicKey, LineEnding};
use rsa::{PrivateKey, PublicKey};

use super::crypto;

/// Errors while loading or creating keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {0} is not a valid RSA key")]
    Parse(PathBuf),
    #[error("key generation failed: {0}")]
    Generate(#[source] rsa::Error),
    #[error("key encoding failed: {0}")]
    Encode(#[source] rsa::pkcs1::Error),
    #[error("public key encoding failed: {0}")]
    EncodePublic(#[source] rsa::pkcs8::spki::Error),
    #[error("key token signing failed: {0}")]
    Token(#[source] crypto::CryptoError),
    #[error("invalid minion id for a key directory")]
    InvalidId,
    #[error("key task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// A key file others can read, or a failed atomic write.
    #[error(transparent)]
    File(#[from] crate::secrets::SecretFileError),
}

/// One minion key pair plus the cached values derived from it.
pub struct MinionKey {
    pub private: PrivateKey,
    /// The SPKI PEM normalised like Salt's `clean_key` (LF, trimmed).
    pub pub_pem: String,
    /// X9.31 private-encrypt of `b"salt"` (deterministic, so computed once).
    pub tok: Vec<u8>,
}

impl std::fmt::Debug for MinionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MinionKey(<redacted>)")
    }
}

/// Salt's `clean_key`: LF line endings, surrounding whitespace removed.
pub fn clean_key(pem: &str) -> String {
    pem.replace("\r\n", "\n").trim().to_owned()
}

/// Salt rejects ids with path separators or NUL; we also refuse `.`/`..` for key dirs.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id != "." && id != ".." && !id.contains(['/', '\\', '\0']) && id.len() <= 255
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Private key material is created 0600 from the first byte and replaced
/// atomically (`secrets::write_private`), never chmod-ed after the fact.
fn write_private(path: &Path, data: &[u8]) -> Result<(), KeyError> {
    Ok(crate::secrets::write_private(path, data)?)
}

/// Loads `dir/minion.pem`, or generates and stores an RSA-2048 pair. Blocking: call it
/// from `spawn_blocking`.
pub fn load_or_create(dir: &Path) -> Result<MinionKey, KeyError> {
    let pem_path = dir.join("minion.pem");
    let pub_path = dir.join("minion.pub");
    let private = if pem_path.exists() {
        // Refuses a key that others can read: it may already be compromised, and
        // silently using it would hide that.
        let bytes = crate::secrets::read(&pem_path)?;
        let text = String::from_utf8(bytes).map_err(|_| KeyError::Parse(pem_path.clone()))?;
        PrivateKey::from_pkcs1_pem(&text).map_err(|_| KeyError::Parse(pem_path.clone()))?
    } else {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut rng = rand::rng();
        let key = PrivateKey::new(&mut rng, 2048).map_err(KeyError::Generate)?;
        let pem = key.to_pkcs1_pem(LineEnding::LF).map_err(KeyError::Encode)?;
        write_private(&pem_path, pem.as_bytes())?;
        tracing::info!(dir = %dir.display(), "Generated minion key pair.");
        key
    };
    let pub_pem = private
        .as_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(KeyError::EncodePublic)?;
    if !pub_path.exists() {
        write_private(&pub_path, pub_pem.as_bytes())?;
    }
    let tok = crypto::x931_sign(&private, b"salt").map_err(KeyError::Token)?;
    Ok(MinionKey {
        private,
        pub_pem: clean_key(&pub_pem),
        tok,
    })
}

/// Async wrapper: key work never runs on the executor.
pub async fn load_or_create_async(dir: PathBuf) -> Result<Arc<MinionKey>, KeyError> {
    tokio::task::spawn_blocking(move || load_or_create(&dir).map(Arc::new))
        .await
        .map_err(KeyError::Task)?
}

/// The cached master public key, if any.
pub fn load_master_pub(pki_dir: &Path) -> Result<Option<(PublicKey, String)>, KeyError> {
    let path = pki_dir.join("minion_master.pub");
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let key = PublicKey::from_public_key_pem(text.trim()).map_err(|_| KeyError::Parse(path))?;
    Ok(Some((key, clean_key(&text))))
}

/// Stores the master public key (trust on first use).
pub fn store_master_pub(pki_dir: &Path, pem: &str) -> Result<(), KeyError> {
    std::fs::create_dir_all(pki_dir).map_err(io_err(pki_dir))?;
    let path = pki_dir.join("minion_master.pub");
    write_private(&path, format!("{}\n", clean_key(pem)).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::master::salt::fixtures::*;

    #[test]
    fn loads_existing_key_and_writes_pub_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        std::fs::write(dir.path().join("minion.pem"), FIX_PRIV_PEM).expect("write");
        set_mode(&dir.path().join("minion.pem"), 0o600);
        let k = load_or_create(dir.path()).expect("load");
        assert_eq!(k.pub_pem, clean_key(FIX_PUB_PEM));
        assert_eq!(crypto::hex(&k.tok), FIX_X931_SALT_HEX);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("minion.pub"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        store_master_pub(dir.path(), FIX_PUB_PEM).expect("store");
        let (_, pem) = load_master_pub(dir.path()).expect("load").expect("some");
        assert_eq!(pem, clean_key(FIX_PUB_PEM));
    }

    fn set_mode(p: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
    }

    #[test]
    fn refuses_a_private_key_others_can_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let pem = dir.path().join("minion.pem");
        std::fs::write(&pem, FIX_PRIV_PEM).expect("write");
        set_mode(&pem, 0o644);
        let e = load_or_create(dir.path()).expect_err("world-readable key accepted");
        let msg = e.to_string();
        assert!(msg.contains(&pem.display().to_string()), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        // The key was not regenerated over the operator's file.
        assert_eq!(std::fs::read_to_string(&pem).expect("read"), FIX_PRIV_PEM);
    }

    #[test]
    fn generated_keys_are_created_0600() {
        let dir = tempfile::tempdir().expect("tmp");
        let k = load_or_create(&dir.path().join("new")).expect("generate");
        let pem = dir.path().join("new/minion.pem");
        assert_eq!(mode_of(&pem), 0o600);
        assert_eq!(mode_of(&dir.path().join("new/minion.pub")), 0o600);
        // What was written loads again (through the permission check).
        let again = load_or_create(&dir.path().join("new")).expect("reload");
        assert_eq!(again.pub_pem, k.pub_pem);
    }

    #[test]
    fn ids() {
        assert!(valid_id("dev-001"));
        assert!(!valid_id("../x"));
        assert!(!valid_id(".."));
        assert!(!valid_id(""));
    }
}
