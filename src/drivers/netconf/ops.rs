//! The NETCONF operations behind the `netconf.*` functions (RFC 6241 section 7):
//! arguments checked and turned into RPC bodies, replies into the JSON shape of
//! [`super::xml`] with the raw XML alongside. User XML (filters, config, RPCs) is
//! parsed before it is sent; datastore names and options are checked against
//! RFC 6241's lists; capability-dependent options are refused when the server did
//! not advertise them.

use serde_json::{json, Map, Value};

use super::session::Reply;
use super::xml::{self, escape};
use super::{NetconfDevice, NetconfError};

const CANDIDATE: &str = "urn:ietf:params:netconf:capability:candidate:1.0";
const CONFIRMED: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.1";
const CONFIRMED_1_0: &str = "urn:ietf:params:netconf:capability:confirmed-commit:1.0";
const VALIDATE: &str = "urn:ietf:params:netconf:capability:validate:1.1";
const VALIDATE_1_0: &str = "urn:ietf:params:netconf:capability:validate:1.0";
const XPATH: &str = "urn:ietf:params:netconf:capability:xpath:1.0";
const STARTUP: &str = "urn:ietf:params:netconf:capability:startup:1.0";

/// A subtree or XPath filter for `get` and `get-config`.
#[derive(Debug, Clone, Default)]
pub enum Filter {
    #[default]
    None,
    /// Subtree filter content, as XML text.
    Subtree(String),
    /// An XPath expression (`:xpath` capability).
    XPath(String),
}

/// Options of `<edit-config>`.
#[derive(Debug, Clone, Default)]
pub struct EditOptions {
    pub default_operation: Option<String>,
    pub test_option: Option<String>,
    pub error_option: Option<String>,
}

/// Options of `<commit>`.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    pub confirmed: bool,
    /// Seconds; RFC 6241's default is 600.
    pub confirm_timeout: Option<u32>,
    pub persist: Option<String>,
    pub persist_id: Option<String>,
}

fn arg(msg: impl Into<String>) -> NetconfError {
    NetconfError::Argument(msg.into())
}

fn one_of(what: &str, v: &str, allowed: &[&str]) -> Result<(), NetconfError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(arg(format!(
            "{what} must be one of {}, not {v:?}",
            allowed.join(", ")
        )))
    }
}

fn user_xml(name: &'static str, xml_text: &str) -> Result<(), NetconfError> {
    xml::check_fragment(xml_text).map_err(|source| NetconfError::XmlArgument { arg: name, source })
}

/// `{"ok": true, "xml": ...}` plus warnings, for replies that carry only `<ok/>`.
fn ok_reply(r: &Reply) -> Value {
    let mut m = Map::new();
    m.insert("ok".into(), json!(r.root.child("ok").is_some()));
    let w: Vec<Value> = r.warnings().iter().map(|w| w.to_json()).collect();
    if !w.is_empty() {
        m.insert("warnings".into(), Value::Array(w));
    }
    m.insert("xml".into(), json!(r.xml));
    Value::Object(m)
}

fn data_reply(r: &Reply) -> Value {
    let data = r
        .root
        .child("data")
        .map(|d| d.children_json())
        .unwrap_or_else(|| json!({}));
    json!({"data": data, "xml": r.inner_xml("data")})
}

impl NetconfDevice {
    async fn require(&self, what: &'static str, caps: &[&'static str]) -> Result<(), NetconfError> {
        let hello = self.conn.ready().await?;
        if caps.iter().any(|c| hello.has(c)) {
            Ok(())
        } else {
            Err(NetconfError::NotSupported {
                what,
                capability: caps.first().copied().unwrap_or(""),
            })
        }
    }

    fn datastore(&self, which: &str) -> Result<String, NetconfError> {
        one_of("datastore", which, &["running", "candidate", "startup"])?;
        Ok(format!("<{which}/>"))
    }

    async fn check_datastore(&self, which: &str) -> Result<String, NetconfError> {
        let ds = self.datastore(which)?;
        match which {
            "candidate" => {
                self.require("the candidate datastore", &[CANDIDATE])
                    .await?
            }
            "startup" => self.require("the startup datastore", &[STARTUP]).await?,
            _ => {}
        }
        Ok(ds)
    }

    async fn filter_xml(&self, f: &Filter) -> Result<String, NetconfError> {
        Ok(match f {
            Filter::None => String::new(),
            Filter::Subtree(x) => {
                user_xml("filter", x)?;
                format!("<filter type=\"subtree\">{x}</filter>")
            }
            Filter::XPath(x) => {
                self.require("an xpath filter", &[XPATH]).await?;
                format!("<filter type=\"xpath\" select=\"{}\"/>", escape(x))
            }
        })
    }

    /// `{"session_id", "base", "capabilities": [...]}` from the live session's hello.
    pub async fn capabilities(&self) -> Result<Value, NetconfError> {
        let h = self.conn.ready().await?;
        Ok(json!({
            "session_id": h.session_id,
            "base": if h.has(super::session::BASE_1_1) { "1.1" } else { "1.0" },
            "capabilities": h.capabilities,
        }))
    }

    pub async fn get(&self, filter: &Filter) -> Result<Value, NetconfError> {
        let f = self.filter_xml(filter).await?;
        let r = self.conn.rpc(format!("<get>{f}</get>")).await?;
        Ok(data_reply(&r))
    }

    pub async fn get_config(&self, source: &str, filter: &Filter) -> Result<Value, NetconfError> {
        let ds = self.check_datastore(source).await?;
        let f = self.filter_xml(filter).await?;
        let r = self
            .conn
            .rpc(format!("<get-config><source>{ds}</source>{f}</get-config>"))
            .await?;
        Ok(data_reply(&r))
    }

    pub async fn edit_config(
        &self,
        target: &str,
        config: &str,
        o: &EditOptions,
    ) -> Result<Value, NetconfError> {
        let ds = self.check_datastore(target).await?;
        let roots = xml::parse_fragment(config).map_err(|source| NetconfError::XmlArgument {
            arg: "config",
            source,
        })?;
        if roots.is_empty() {
            return Err(arg("config holds no element"));
        }
        let mut body = format!("<edit-config><target>{ds}</target>");
        if let Some(d) = &o.default_operation {
            one_of("default_operation", d, &["merge", "replace", "none"])?;
            body.push_str(&format!("<default-operation>{d}</default-operation>"));
        }
        if let Some(t) = &o.test_option {
            one_of("test_option", t, &["test-then-set", "set", "test-only"])?;
            self.require("test_option", &[VALIDATE, VALIDATE_1_0])
                .await?;
            body.push_str(&format!("<test-option>{t}</test-option>"));
        }
        if let Some(e) = &o.error_option {
            one_of(
                "error_option",
                e,
                &["stop-on-error", "continue-on-error", "rollback-on-error"],
            )?;
            body.push_str(&format!("<error-option>{e}</error-option>"));
        }
        // Config given with its own <config> wrapper is sent as it is.
        if roots.len() == 1 && roots[0].name == "config" {
            body.push_str(config);
        } else {
            body.push_str(&format!("<config>{config}</config>"));
        }
        body.push_str("</edit-config>");
        Ok(ok_reply(&self.conn.rpc(body).await?))
    }

    pub async fn lock(&self, target: &str) -> Result<Value, NetconfError> {
        let ds = self.check_datastore(target).await?;
        Ok(ok_reply(
            &self
                .conn
                .rpc(format!("<lock><target>{ds}</target></lock>"))
                .await?,
        ))
    }

    pub async fn unlock(&self, target: &str) -> Result<Value, NetconfError> {
        let ds = self.check_datastore(target).await?;
        Ok(ok_reply(
            &self
                .conn
                .rpc(format!("<unlock><target>{ds}</target></unlock>"))
                .await?,
        ))
    }

    pub async fn commit(&self, o: &CommitOptions) -> Result<Value, NetconfError> {
        self.require("commit", &[CANDIDATE]).await?;
        let mut body = String::from("<commit>");
        if o.confirmed || o.confirm_timeout.is_some() || o.persist.is_some() {
            self.require("a confirmed commit", &[CONFIRMED, CONFIRMED_1_0])
                .await?;
            body.push_str("<confirmed/>");
            if let Some(t) = o.confirm_timeout {
                if t == 0 {
                    return Err(arg("confirm_timeout must be at least 1 second"));
                }
                body.push_str(&format!("<confirm-timeout>{t}</confirm-timeout>"));
            }
            if let Some(p) = &o.persist {
                self.require("persist", &[CONFIRMED]).await?;
                body.push_str(&format!("<persist>{}</persist>", escape(p)));
            }
        }
        if let Some(p) = &o.persist_id {
            self.require("persist_id", &[CONFIRMED]).await?;
            body.push_str(&format!("<persist-id>{}</persist-id>", escape(p)));
        }
        body.push_str("</commit>");
        Ok(ok_reply(&self.conn.rpc(body).await?))
    }

    pub async fn discard_changes(&self) -> Result<Value, NetconfError> {
        self.require("discard-changes", &[CANDIDATE]).await?;
        Ok(ok_reply(&self.conn.rpc("<discard-changes/>".into()).await?))
    }

    pub async fn validate(&self, source: &str) -> Result<Value, NetconfError> {
        self.require("validate", &[VALIDATE, VALIDATE_1_0]).await?;
        let ds = self.check_datastore(source).await?;
        Ok(ok_reply(
            &self
                .conn
                .rpc(format!("<validate><source>{ds}</source></validate>"))
                .await?,
        ))
    }

    /// Any RPC, given as the XML inside `<rpc>` (`<get-schema ...>...</get-schema>`).
    /// `{"reply": <rpc-reply as JSON>, "xml": <inside of rpc-reply>}`.
    pub async fn rpc(&self, body: &str) -> Result<Value, NetconfError> {
        let roots = xml::parse_fragment(body)
            .map_err(|source| NetconfError::XmlArgument { arg: "rpc", source })?;
        if roots.len() != 1 {
            return Err(arg(format!(
                "rpc must be one element (the operation), found {}",
                roots.len()
            )));
        }
        let r = self.conn.rpc(body.to_owned()).await?;
        Ok(json!({"reply": r.root.children_json(), "xml": r.body_xml()}))
    }

    /// Salt-state semantics over the candidate: lock it, start from running
    /// (discard), edit, compare running with the candidate, then commit (or discard
    /// under `test`), and unlock. Returns `{result, changes, comment}`: `result` is
    /// `true` (in the desired state or committed), `null` (test, changes pending)
    /// or `false` (the device refused; `comment` says why).
    pub async fn managed(
        &self,
        config: &str,
        target: &str,
        test: bool,
        edit: &EditOptions,
    ) -> Result<Value, NetconfError> {
        if target != "candidate" {
            return Err(arg("netconf.managed edits the candidate datastore only"));
        }
        self.require("netconf.managed", &[CANDIDATE]).await?;
        user_xml("config", config)?;
        if let Err(e) = self.lock("candidate").await {
            return refused(e, "could not lock the candidate datastore");
        }
        let r = self.managed_locked(config, test, edit).await;
        if r.is_err() {
            let _ = self.discard_changes().await;
        }
        if let Err(e) = self.unlock("candidate").await {
            tracing::debug!(error = %e, "NETCONF unlock after managed failed.");
        }
        match r {
            Ok(v) => Ok(v),
            Err(e) => refused(e, "configuration refused"),
        }
    }

    async fn managed_locked(
        &self,
        config: &str,
        test: bool,
        edit: &EditOptions,
    ) -> Result<Value, NetconfError> {
        self.discard_changes().await?;
        self.edit_config("candidate", config, edit).await?;
        let running = self.get_config("running", &Filter::None).await?;
        let candidate = self.get_config("candidate", &Filter::None).await?;
        let diff = xml::diff(&running["data"], &candidate["data"]);
        if diff.is_empty() {
            self.discard_changes().await?;
            return Ok(json!({"result": true, "changes": {},
                             "comment": "Configuration already in the desired state."}));
        }
        let changes = json!({"diff": diff});
        if test {
            self.discard_changes().await?;
            return Ok(json!({"result": null, "changes": changes,
                             "comment": "Configuration would be changed (test=True); discarded."}));
        }
        self.commit(&CommitOptions::default()).await?;
        Ok(json!({"result": true, "changes": changes, "comment": "Configuration committed."}))
    }
}

/// A refusal by the device is a failed state; a broken session is an error.
fn refused(e: NetconfError, what: &str) -> Result<Value, NetconfError> {
    if e.is_device_failure() {
        Err(e)
    } else {
        Ok(json!({"result": false, "changes": {}, "comment": format!("{what}: {e}")}))
    }
}
