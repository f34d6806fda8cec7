//! The REST driver: speaks the HTTP/JSON API of Salt's `rest_sample` proxy device
//! (`/ping`, `/id`, `/info`, `/service/...`, `/package/...`), with a per-device
//! timeout and a cap on reply size. `http://` devices use [`Http1Endpoint`] (one
//! kept-alive socket per device); `https://` devices use the fleet's pooled
//! `reqwest` client.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::http1::Http1Endpoint;
use super::{
    DeviceDriver, DriverContext, DriverError, DriverSettings, FieldError, Packages, Services,
    MAX_DEVICE_BODY,
};

/// A device speaking the REST API of Salt's `rest_sample` proxy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestConfig {
    /// Base URL; always ends with `/`.
    #[serde(deserialize_with = "de_url")]
    pub url: url::Url,
    /// Skip TLS certificate verification (self-signed device certificates).
    #[serde(default)]
    pub insecure: bool,
    /// Extra CA certificate (PEM) to trust for this device; relative to the
    /// inventory file's folder.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl DriverSettings for RestConfig {
    fn check(&mut self, base: &Path) -> Result<(), FieldError> {
        if let Some(ca) = &self.ca_file {
            if ca.is_relative() {
                self.ca_file = Some(base.join(ca));
            }
        }
        Ok(())
    }

    fn address(&self) -> Option<IpAddr> {
        match self.url.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        }
    }
}

fn de_url<'de, D: serde::Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let raw = String::deserialize(d)?;
    parse_url(&raw).map_err(serde::de::Error::custom)
}

/// A device base URL: http or https, a host, no credentials, ending in `/`.
pub fn parse_url(raw: &str) -> Result<url::Url, String> {
    let mut url = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: scheme must be http or https"));
    }
    if url.host().is_none() {
        return Err(format!("{raw:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs and error messages.
        return Err("must not carry credentials; they would leak into logs".into());
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// The fleet-wide client settings: keep-alive pools sized for one connection per
/// device (each device is its own host:port), TLS verification on.
pub(super) fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .pool_max_idle_per_host(2)
        .pool_idle_timeout(Duration::from_secs(90))
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .user_agent(concat!("drover/", env!("CARGO_PKG_VERSION")))
}

#[derive(Clone)]
pub struct RestDriver {
    client: reqwest::Client,
    base: url::Url,
    timeout: Duration,
    /// Whether the `reqwest` connection may idle in the pool after the answer.
    keep_alive: bool,
    /// For `http://` devices: the device's own connection, shared with the
    /// background driver.
    plain: Option<Arc<Http1Endpoint>>,
}

impl RestDriver {
    pub fn new(
        cfg: &RestConfig,
        timeout: Duration,
        ctx: &DriverContext,
    ) -> Result<RestDriver, DriverError> {
        let client = if let Some(ca) = &cfg.ca_file {
            // A private CA is per device, so such a device gets its own client.
            let pem = std::fs::read(ca).map_err(|source| DriverError::CaFile {
                path: ca.clone(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|source| {
                DriverError::Certificate {
                    path: ca.clone(),
                    source,
                }
            })?;
            client_builder()
                .add_root_certificate(cert)
                .danger_accept_invalid_certs(cfg.insecure)
                .build()
                .map_err(DriverError::HttpClient)?
        } else if cfg.insecure {
            ctx.http_insecure.clone()
        } else {
            ctx.http.clone()
        };
        Ok(RestDriver {
            client,
            base: cfg.url.clone(),
            timeout,
            keep_alive: true,
            plain: Http1Endpoint::new(&cfg.url).map(Arc::new),
        })
    }

    /// The same device for background traffic (first contact, health checks). An
    /// `http://` device shares its one connection, which costs only a socket while
    /// idle, so the next job finds it open. Over `https://` the connection closes
    /// after the answer instead of idling in the pool: an idle pooled hyper
    /// connection costs about 27 KiB (dispatch task, channel, read and write
    /// buffers), which a health check every 30 s does not justify.
    pub fn background(&self) -> RestDriver {
        RestDriver {
            keep_alive: false,
            ..self.clone()
        }
    }

    pub async fn ping(&self) -> Result<bool, DriverError> {
        let v = self.get(&["ping"]).await?;
        Ok(v.get("ret").and_then(Value::as_bool).unwrap_or(false))
    }

    pub async fn info(&self) -> Result<Map<String, Value>, DriverError> {
        match self.get(&["info"]).await? {
            Value::Object(m) => Ok(m),
            other => Err(DriverError::Decode(format!(
                "/info is not an object but {}",
                type_name(&other)
            ))),
        }
    }

    /// GET `base/seg1/seg2/...`; each segment is percent-encoded, so a service name
    /// like `../x` cannot walk out of the API.
    pub async fn get(&self, segments: &[&str]) -> Result<Value, DriverError> {
        let body = self.get_raw(segments).await?;
        // Every rest_sample endpoint answers with an object; anything else (a bare
        // number is valid JSON too) is a device speaking garbage.
        match serde_json::from_slice(&body).map_err(DriverError::Json)? {
            v @ Value::Object(_) => Ok(v),
            other => Err(DriverError::Decode(format!(
                "expected a JSON object, got {}",
                type_name(&other)
            ))),
        }
    }

    /// The body of a 2xx answer to GET `base/seg1/seg2/...`, as bytes.
    pub async fn get_raw(&self, segments: &[&str]) -> Result<Vec<u8>, DriverError> {
        let mut url = self.base.clone();
        {
            let mut p = url
                .path_segments_mut()
                .map_err(|_| DriverError::Setup("device URL cannot have a path"))?;
            p.pop_if_empty();
            for s in segments {
                p.push(s);
            }
        }
        let (status, body) = match &self.plain {
            Some(endpoint) => {
                let path = &url[url::Position::BeforePath..];
                // Dropping the exchange on timeout drops its connection too, so a late
                // reply can never be read as the answer to the next request.
                let reply = tokio::time::timeout(self.timeout, endpoint.get(path))
                    .await
                    .map_err(|_| DriverError::Timeout(self.timeout))??;
                (reply.status, reply.body)
            }
            None => self.get_pooled(url).await?,
        };
        if !(200..300).contains(&status) {
            return Err(DriverError::Status(status));
        }
        Ok(body)
    }

    async fn get_pooled(&self, url: url::Url) -> Result<(u16, Vec<u8>), DriverError> {
        let mut req = self.client.get(url).timeout(self.timeout);
        if !self.keep_alive {
            req = req.header(reqwest::header::CONNECTION, "close");
        }
        let resp = req.send().await.map_err(|e| self.map_err(e))?;
        let status = resp.status().as_u16();
        let body = read_capped(resp).await.map_err(|e| self.map_err(e))?;
        let Some(body) = body else {
            crate::telemetry::Limit::DeviceReply.hit();
            return Err(DriverError::TooLarge);
        };
        Ok((status, body))
    }

    fn map_err(&self, e: reqwest::Error) -> DriverError {
        if e.is_timeout() {
            DriverError::Timeout(self.timeout)
        } else {
            // Connection refused, reset, TLS failure (all say the device is not
            // there) or a broken body: the error's kind tells which.
            DriverError::Http(e)
        }
    }
}

/// Reads a body up to [`MAX_DEVICE_BODY`]; `None` when it is larger.
async fn read_capped(mut resp: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|l| l > MAX_DEVICE_BODY as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_DEVICE_BODY {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl DeviceDriver for RestDriver {
    type Settings = RestConfig;

    fn build(
        settings: &RestConfig,
        timeout: Duration,
        ctx: &DriverContext,
    ) -> Result<RestDriver, DriverError> {
        RestDriver::new(settings, timeout, ctx)
    }

    async fn ping(&self) -> Result<bool, DriverError> {
        RestDriver::ping(self).await
    }

    async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        self.info().await
    }

    fn background(&self) -> RestDriver {
        RestDriver::background(self)
    }
}

impl Services for RestDriver {
    fn service_list(&self) -> BoxFuture<'_, Result<Value, DriverError>> {
        self.get(&["service", "list"]).boxed()
    }

    fn service_action<'a>(
        &'a self,
        action: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        async move { self.get(&["service", action, name]).await }.boxed()
    }
}

impl Packages for RestDriver {
    fn package_list(&self) -> BoxFuture<'_, Result<Value, DriverError>> {
        self.get(&["package", "list"]).boxed()
    }

    fn package_install<'a>(
        &'a self,
        name: &'a str,
        version: &'a str,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        async move { self.get(&["package", "install", name, version]).await }.boxed()
    }

    fn package_remove<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, DriverError>> {
        async move { self.get(&["package", "remove", name]).await }.boxed()
    }

    fn package_status<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Value, DriverError>> {
        async move { self.get(&["package", "status", name]).await }.boxed()
    }
}

impl crate::drivers::Capabilities for RestDriver {
    fn services(&self) -> Option<&dyn Services> {
        Some(self)
    }

    fn packages(&self) -> Option<&dyn Packages> {
        Some(self)
    }

    fn rest_sample(&self) -> Option<&RestDriver> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-endpoint HTTP/1.1 device that counts the connections it accepts and
    /// closes one when the request asks for it.
    async fn device(accepted: Arc<AtomicUsize>) -> std::net::SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let Ok(n) = s.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                            buf.drain(..end + 4);
                            let body = r#"{"ret": true}"#;
                            let reply = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                            if head.contains("connection: close") {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    fn driver_for(addr: std::net::SocketAddr) -> RestDriver {
        let cfg = RestConfig {
            url: format!("http://{addr}/").parse().unwrap(),
            insecure: false,
            ca_file: None,
        };
        let ctx = DriverContext::new().unwrap();
        RestDriver::new(&cfg, Duration::from_secs(5), &ctx).unwrap()
    }

    #[tokio::test]
    async fn http_devices_keep_one_connection_for_jobs_and_background() {
        let accepted = Arc::new(AtomicUsize::new(0));
        let jobs = driver_for(device(accepted.clone()).await);
        let background = jobs.background();
        for _ in 0..3 {
            assert!(jobs.ping().await.unwrap());
            assert!(background.ping().await.unwrap());
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn pooled_background_requests_do_not_keep_their_connection() {
        let accepted = Arc::new(AtomicUsize::new(0));
        // The pooled client is what `https://` devices use; forced here over plain
        // HTTP to watch its connections.
        let jobs = RestDriver {
            plain: None,
            ..driver_for(device(accepted.clone()).await)
        };
        for _ in 0..3 {
            assert!(jobs.ping().await.unwrap());
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "jobs reuse one connection"
        );
        let background = jobs.background();
        for _ in 0..3 {
            assert!(background.ping().await.unwrap());
        }
        // The pooled connection serves the first background request, which closes
        // it; each later one needs a new connection that it closes again.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
}
