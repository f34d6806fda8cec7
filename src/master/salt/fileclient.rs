//! The Salt file client: SLS files and templates from the master's file server over
//! the request channel (`_file_envs`, `_file_list`, `_file_hash`, `_serve_file` in
//! chunks, `_master_tops`), as `salt/fileclient.py: RemoteClient` fetches them, with
//! one cache for the whole process keyed by (saltenv, path, hash): a thousand devices
//! applying one SLS download it once.
//!
//! File server answers do not depend on the asking id, so they go out under any
//! authenticated id; only `_master_tops` is asked under the device's own id.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use rmpv::Value;
use sha2::Digest;

use super::SaltError;
use crate::fileserver::{FileError, FileSource, MAX_FILE_BYTES};

/// How long a file's hash, once checked with the master, is trusted without asking
/// again: the requests of one fleet-wide state run share one `_file_hash`, and an
/// edit on the master shows within this time.
pub const HASH_TTL: Duration = Duration::from_secs(2);

/// `_serve_file` rounds one download may take, whatever chunk size the master uses.
const MAX_CHUNKS: usize = 4096;

/// Encrypted requests to the master, as the link sends them.
pub trait Requests: Send + Sync {
    /// `cmd` with `fields` under `id`, or under any authenticated id when `None`.
    fn request<'a>(
        &'a self,
        id: Option<&'a str>,
        cmd: &'static str,
        fields: Vec<(&'static str, Value)>,
    ) -> BoxFuture<'a, Result<Value, SaltError>>;
}

#[derive(Default)]
struct Slot {
    /// (hash type, hex digest, text) of the last download.
    file: Option<(String, String, Option<Arc<str>>)>,
    checked: Option<Instant>,
}

/// One lock per (saltenv, path).
type Slots = HashMap<(String, String), Arc<tokio::sync::Mutex<Slot>>>;

/// The master's file server as a [`FileSource`].
pub struct SaltFileClient {
    requests: Arc<dyn Requests>,
    /// One async lock per (saltenv, path), so concurrent renders of the same file
    /// wait for one request instead of each sending their own.
    slots: Mutex<Slots>,
    /// The last `_file_envs` answer: every highstate asks, so it is shared too.
    envs: tokio::sync::Mutex<Option<(Instant, Vec<String>)>>,
    ttl: Duration,
}

fn err(path: &str, e: impl std::fmt::Display) -> FileError {
    FileError::Master {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn text(v: &Value) -> Option<&str> {
    v.as_str()
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

/// `data` arrives as a msgpack str or bin (`use_bin_type=False` on the master).
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Binary(b) => Some(b),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn digest(kind: &str, data: &[u8]) -> Option<String> {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Some(match kind {
        "sha256" => hex(&sha2::Sha256::digest(data)),
        "sha512" => hex(&sha2::Sha512::digest(data)),
        "sha384" => hex(&sha2::Sha384::digest(data)),
        "sha224" => hex(&sha2::Sha224::digest(data)),
        "sha1" => hex(&sha1::Sha1::digest(data)),
        "md5" => hex(&md5::Md5::digest(data)),
        _ => return None,
    })
}

impl SaltFileClient {
    pub fn new(requests: Arc<dyn Requests>) -> SaltFileClient {
        SaltFileClient::with_ttl(requests, HASH_TTL)
    }

    pub fn with_ttl(requests: Arc<dyn Requests>, ttl: Duration) -> SaltFileClient {
        SaltFileClient {
            requests,
            slots: Mutex::new(HashMap::new()),
            envs: tokio::sync::Mutex::new(None),
            ttl,
        }
    }

    fn slot(&self, env: &str, path: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .entry((env.to_owned(), path.to_owned()))
            .or_default()
            .clone()
    }

    /// `_file_hash`: `None` when the master has no such file.
    async fn hash(&self, env: &str, path: &str) -> Result<Option<(String, String)>, FileError> {
        let v = self
            .requests
            .request(
                None,
                "_file_hash",
                vec![("path", Value::from(path)), ("saltenv", Value::from(env))],
            )
            .await
            .map_err(|e| err(path, e))?;
        if v.as_str() == Some("") || v.is_nil() {
            return Ok(None);
        }
        let kind = get(&v, "hash_type").and_then(text);
        let sum = get(&v, "hsum").and_then(text);
        match (kind, sum) {
            (Some(k), Some(s)) => Ok(Some((k.to_owned(), s.to_owned()))),
            // `{}`: found but not a regular file.
            _ => Ok(None),
        }
    }

    /// `_serve_file` from offset 0 until an empty `data`.
    async fn download(&self, env: &str, path: &str) -> Result<Vec<u8>, FileError> {
        let mut out: Vec<u8> = Vec::new();
        for _ in 0..MAX_CHUNKS {
            let v = self
                .requests
                .request(
                    None,
                    "_serve_file",
                    vec![
                        ("path", Value::from(path)),
                        ("saltenv", Value::from(env)),
                        ("loc", Value::from(out.len() as u64)),
                    ],
                )
                .await
                .map_err(|e| err(path, e))?;
            let data = get(&v, "data")
                .and_then(bytes)
                .ok_or_else(|| err(path, "malformed _serve_file reply"))?;
            if data.is_empty() {
                return Ok(out);
            }
            if out.len() + data.len() > MAX_FILE_BYTES {
                return Err(FileError::TooLarge {
                    path: path.to_owned(),
                });
            }
            out.extend_from_slice(data);
        }
        Err(err(path, "the master kept sending chunks"))
    }

    async fn fetch(&self, env: &str, path: &str) -> Result<Option<Arc<str>>, FileError> {
        let slot = self.slot(env, path);
        let mut slot = slot.lock().await;
        if let (Some(at), Some((_, _, text))) = (slot.checked, &slot.file) {
            if at.elapsed() < self.ttl {
                return Ok(text.clone());
            }
        }
        let Some((kind, sum)) = self.hash(env, path).await? else {
            slot.file = Some((String::new(), String::new(), None));
            slot.checked = Some(Instant::now());
            return Ok(None);
        };
        let unchanged = match &slot.file {
            Some((k, s, text)) if *k == kind && *s == sum => Some(text.clone()),
            _ => None,
        };
        if let Some(text) = unchanged {
            slot.checked = Some(Instant::now());
            return Ok(text);
        }
        let data = self.download(env, path).await?;
        // The master's hash of what it served: a file edited mid-download or a
        // corrupted chunk is refused, not rendered.
        if let Some(got) = digest(&kind, &data) {
            if got != sum {
                return Err(err(
                    path,
                    format!("downloaded file's {kind} {got} is not the master's {sum}"),
                ));
            }
        }
        let text: Arc<str> =
            Arc::from(String::from_utf8(data).map_err(|_| FileError::NotText {
                path: path.to_owned(),
            })?);
        tracing::debug!(saltenv = %env, path = %path, bytes = text.len(), "File fetched from the master.");
        slot.file = Some((kind, sum, Some(text.clone())));
        slot.checked = Some(Instant::now());
        Ok(Some(text))
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

impl FileSource for SaltFileClient {
    fn envs(&self) -> BoxFuture<'_, Result<Vec<String>, FileError>> {
        Box::pin(async move {
            let mut cached = self.envs.lock().await;
            if let Some((at, envs)) = cached.as_ref() {
                if at.elapsed() < self.ttl {
                    return Ok(envs.clone());
                }
            }
            let v = self
                .requests
                .request(None, "_file_envs", Vec::new())
                .await
                .map_err(|e| err("(file envs)", e))?;
            let mut envs = strings(&v);
            envs.sort();
            *cached = Some((Instant::now(), envs.clone()));
            Ok(envs)
        })
    }

    fn list<'a>(&'a self, saltenv: &'a str) -> BoxFuture<'a, Result<Vec<String>, FileError>> {
        Box::pin(async move {
            let v = self
                .requests
                .request(
                    None,
                    "_file_list",
                    vec![
                        ("saltenv", Value::from(saltenv)),
                        ("prefix", Value::from("")),
                    ],
                )
                .await
                .map_err(|e| err("(file list)", e))?;
            Ok(strings(&v))
        })
    }

    fn get<'a>(
        &'a self,
        saltenv: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, FileError>> {
        Box::pin(async move {
            let path = crate::fileserver::clean_path(path)?;
            self.fetch(saltenv, &path).await
        })
    }

    fn master_tops<'a>(
        &'a self,
        id: &'a str,
        grains: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<BTreeMap<String, Vec<String>>, FileError>> {
        Box::pin(async move {
            let opts = Value::Map(vec![
                (Value::from("id"), Value::from(id)),
                (Value::from("grains"), super::envelope::from_json(grains)),
            ]);
            let v = self
                .requests
                .request(Some(id), "_master_tops", vec![("opts", opts)])
                .await
                .map_err(|e| err("(master tops)", e))?;
            let mut out = BTreeMap::new();
            for (k, list) in v.as_map().map(Vec::as_slice).unwrap_or_default() {
                if let Some(env) = k.as_str() {
                    out.insert(env.to_owned(), strings(list));
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A master file server in memory that serves in 4-byte chunks and counts requests.
    struct FakeMaster {
        files: Mutex<BTreeMap<String, Vec<u8>>>,
        requests: AtomicUsize,
        corrupt: bool,
    }

    impl Requests for FakeMaster {
        fn request<'a>(
            &'a self,
            _id: Option<&'a str>,
            cmd: &'static str,
            fields: Vec<(&'static str, Value)>,
        ) -> BoxFuture<'a, Result<Value, SaltError>> {
            Box::pin(async move {
                self.requests.fetch_add(1, Ordering::SeqCst);
                let field = |k: &str| fields.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
                let path = field("path")
                    .and_then(|p| p.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let files = self.files.lock().unwrap();
                Ok(match cmd {
                    "_file_envs" => Value::Array(vec![Value::from("base")]),
                    "_file_hash" => match files.get(&path) {
                        Some(d) => Value::Map(vec![
                            (Value::from("hash_type"), Value::from("sha256")),
                            (
                                Value::from("hsum"),
                                Value::from(digest("sha256", d).unwrap()),
                            ),
                        ]),
                        None => Value::from(""),
                    },
                    "_serve_file" => {
                        let loc = field("loc").and_then(|l| l.as_u64()).unwrap_or(0) as usize;
                        let d = files.get(&path).cloned().unwrap_or_default();
                        let mut chunk = d
                            .get(loc..(loc + 4).min(d.len()))
                            .unwrap_or_default()
                            .to_vec();
                        if self.corrupt && !chunk.is_empty() {
                            chunk[0] ^= 1;
                        }
                        Value::Map(vec![
                            (Value::from("data"), Value::Binary(chunk)),
                            (Value::from("dest"), Value::from(path)),
                        ])
                    }
                    _ => Value::Nil,
                })
            })
        }
    }

    fn master(corrupt: bool) -> Arc<FakeMaster> {
        Arc::new(FakeMaster {
            files: Mutex::new(BTreeMap::from([(
                "web/init.sls".to_string(),
                b"a: 1\nb: 2\n".to_vec(),
            )])),
            requests: AtomicUsize::new(0),
            corrupt,
        })
    }

    #[tokio::test]
    async fn downloads_in_chunks_once_and_rechecks_after_the_ttl() {
        let m = master(false);
        let client = Arc::new(SaltFileClient::with_ttl(
            m.clone(),
            Duration::from_secs(3600),
        ));
        let text = client.get("base", "salt://web/init.sls").await.unwrap();
        assert_eq!(text.as_deref(), Some("a: 1\nb: 2\n"));
        // One hash, three 4-byte chunks and the empty end.
        assert_eq!(m.requests.load(Ordering::SeqCst), 1 + 3 + 1);
        let many: Vec<_> = (0..50)
            .map(|_| {
                let c = client.clone();
                tokio::spawn(async move { c.get("base", "web/init.sls").await.unwrap() })
            })
            .collect();
        for h in many {
            assert!(h.await.unwrap().is_some());
        }
        assert_eq!(
            m.requests.load(Ordering::SeqCst),
            5,
            "cached within the TTL"
        );
        assert_eq!(client.get("base", "nope.sls").await.unwrap(), None);
        let before = m.requests.load(Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(client.envs().await.unwrap(), ["base"]);
        }
        assert_eq!(
            m.requests.load(Ordering::SeqCst),
            before + 1,
            "envs asked once"
        );

        // Past the TTL only the hash is asked again while the file is unchanged.
        let client = SaltFileClient::with_ttl(m.clone(), Duration::ZERO);
        client.get("base", "web/init.sls").await.unwrap();
        let before = m.requests.load(Ordering::SeqCst);
        client.get("base", "web/init.sls").await.unwrap();
        assert_eq!(m.requests.load(Ordering::SeqCst), before + 1);
        m.files
            .lock()
            .unwrap()
            .insert("web/init.sls".into(), b"c: 3\n".to_vec());
        assert_eq!(
            client.get("base", "web/init.sls").await.unwrap().as_deref(),
            Some("c: 3\n")
        );
    }

    #[tokio::test]
    async fn a_download_that_does_not_match_the_hash_is_refused() {
        let client = SaltFileClient::new(master(true));
        let e = client.get("base", "web/init.sls").await.unwrap_err();
        assert!(e.to_string().contains("is not the master's"), "{e}");
        assert!(client.get("base", "../etc/shadow").await.is_err());
    }
}
