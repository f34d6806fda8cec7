//! The dummy driver: an in-process device with no network, for tests and for
//! measuring the fleet's own overhead. Its `behaviour` makes it succeed, fail, hang
//! or panic on every call after start-up, so supervision can be exercised the way
//! vector tests its components with mock sources.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{DeviceDriver, DriverContext, DriverError, DriverSettings, FieldError, Services};

/// A dummy device's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DummyConfig {
    #[serde(default)]
    pub behaviour: DummyBehaviour,
}

impl DriverSettings for DummyConfig {
    fn check(&mut self, _base: &std::path::Path) -> Result<(), FieldError> {
        Ok(())
    }
}

/// What a dummy device does on every call after start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DummyBehaviour {
    #[default]
    Ok,
    Fail,
    Hang,
    Panic,
    /// Unreachable from the first contact on, so it never comes up.
    Down,
}

#[derive(Clone)]
pub struct DummyDriver {
    behaviour: DummyBehaviour,
    services: Arc<Mutex<BTreeMap<String, String>>>,
}

impl DummyDriver {
    pub fn new(behaviour: DummyBehaviour) -> DummyDriver {
        let services = [("apache", "running"), ("postgresql", "stopped")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        DummyDriver {
            behaviour,
            services: Arc::new(Mutex::new(services)),
        }
    }

    /// First contact works (but for `down`), so the device comes up and the
    /// behaviour shows on the calls that follow.
    pub fn info(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("os".into(), json!("DummyOS"));
        m.insert("kernel".into(), json!("dummy"));
        m
    }

    async fn misbehave(&self) -> Result<(), DriverError> {
        match self.behaviour {
            DummyBehaviour::Ok => Ok(()),
            DummyBehaviour::Fail | DummyBehaviour::Down => {
                Err(DriverError::Connect(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "dummy device set to fail",
                )))
            }
            DummyBehaviour::Hang => std::future::pending().await,
            DummyBehaviour::Panic => panic!("dummy device set to panic"),
        }
    }

    pub async fn ping(&self) -> Result<bool, DriverError> {
        self.misbehave().await?;
        Ok(true)
    }

    pub async fn service(&self, action: &str, name: Option<&str>) -> Result<Value, DriverError> {
        self.misbehave().await?;
        let mut s = self
            .services
            .lock()
            .map_err(|_| DriverError::Setup("dummy state poisoned"))?;
        let Some(name) = name else {
            return Ok(json!(*s));
        };
        let known = s.contains_key(name);
        Ok(match (action, known) {
            (_, false) => json!({"comment": "not present", "ret": false}),
            ("start", true) => {
                s.insert(name.into(), "running".into());
                json!({"comment": "running", "ret": true})
            }
            ("stop", true) => {
                s.insert(name.into(), "stopped".into());
                json!({"comment": "stopped", "ret": true})
            }
            ("restart", true) => json!({"comment": "restarted", "ret": true}),
            (_, true) => json!({"comment": s.get(name).cloned().unwrap_or_default(), "ret": true}),
        })
    }
}

impl DeviceDriver for DummyDriver {
    type Settings = DummyConfig;

    fn build(
        settings: &DummyConfig,
        _timeout: std::time::Duration,
        _ctx: &DriverContext,
    ) -> Result<DummyDriver, DriverError> {
        Ok(DummyDriver::new(settings.behaviour))
    }

    async fn ping(&self) -> Result<bool, DriverError> {
        DummyDriver::ping(self).await
    }

    async fn grains(&self) -> Result<Map<String, Value>, DriverError> {
        if self.behaviour == DummyBehaviour::Down {
            self.misbehave().await?;
        }
        Ok(self.info())
    }
}

impl Services for DummyDriver {
    fn service_list(&self) -> BoxFuture<'_, Result<Value, DriverError>> {
        self.service("list", None).boxed()
    }

    fn service_action<'a>(
        &'a self,
        action: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Value, DriverError>> {
        self.service(action, Some(name)).boxed()
    }
}

impl crate::drivers::Capabilities for DummyDriver {
    fn services(&self) -> Option<&dyn Services> {
        Some(self)
    }
}
