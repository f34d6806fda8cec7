//! The whole pipeline (top, render, include, compile, run) against an in-memory
//! device and file server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};

use super::*;
use crate::fileserver::{FileError, FileSource};

#[derive(Default)]
struct Files(BTreeMap<String, String>);

impl FileSource for Files {
    fn envs(&self) -> BoxFuture<'_, Result<Vec<String>, FileError>> {
        Box::pin(async { Ok(vec!["base".to_string()]) })
    }
    fn list<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, FileError>> {
        Box::pin(async { Ok(self.0.keys().cloned().collect()) })
    }
    fn get<'a>(
        &'a self,
        env: &'a str,
        path: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<str>>, FileError>> {
        Box::pin(async move {
            Ok((env == "base")
                .then(|| self.0.get(path).map(|s| Arc::from(s.as_str())))
                .flatten())
        })
    }
}

/// A device with services and packages in memory; every call is logged.
struct Dev {
    files: Files,
    grains: Arc<Value>,
    pillar: Arc<Value>,
    services: Mutex<BTreeMap<String, bool>>,
    pkgs: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<String>>,
}

impl Dev {
    fn new(files: &[(&str, &str)]) -> Dev {
        Dev {
            files: Files(
                files
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            grains: Arc::new(json!({"id": "sw-1", "os": "RestExampleOS", "role": "edge"})),
            pillar: Arc::new(json!({"web": {"pkg": "apache", "port": 8080}})),
            services: Mutex::new(BTreeMap::from([("apache".to_string(), false)])),
            pkgs: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    fn changing_calls(&self) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .filter(|c| {
                c.contains("start")
                    || c.contains("install")
                    || c.contains("restart")
                    || c.contains("stop")
            })
            .cloned()
            .collect()
    }
}

impl Host for Dev {
    fn id(&self) -> &str {
        "sw-1"
    }
    fn grains(&self) -> Arc<Value> {
        self.grains.clone()
    }
    fn pillar(&self) -> Arc<Value> {
        self.pillar.clone()
    }
    fn files(&self) -> Option<&dyn FileSource> {
        Some(&self.files)
    }
    fn call<'a>(
        &'a self,
        fun: &'a str,
        arg: Vec<Value>,
        kw: Map<String, Value>,
    ) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let a0 = arg
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.calls.lock().unwrap().push(format!("{fun} {a0}"));
            Ok(match fun {
                "test.ping" => json!(true),
                "pillar.get" => {
                    let mut v = &*self.pillar;
                    for k in a0.split(':') {
                        v = v.get(k).unwrap_or(&Value::Null);
                    }
                    if v.is_null() {
                        arg.get(1).cloned().unwrap_or(json!(""))
                    } else {
                        v.clone()
                    }
                }
                "service.status" => json!(self
                    .services
                    .lock()
                    .unwrap()
                    .get(&a0)
                    .copied()
                    .unwrap_or(false)),
                "service.start" | "service.restart" => {
                    self.services.lock().unwrap().insert(a0, true);
                    json!(true)
                }
                "service.stop" => {
                    self.services.lock().unwrap().insert(a0, false);
                    json!(true)
                }
                "pkg.version" => json!(self
                    .pkgs
                    .lock()
                    .unwrap()
                    .get(&a0)
                    .cloned()
                    .unwrap_or_default()),
                "pkg.install" => {
                    let v = kw
                        .get("version")
                        .and_then(Value::as_str)
                        .unwrap_or("1.0")
                        .to_string();
                    self.pkgs.lock().unwrap().insert(a0, v);
                    json!({"result": true})
                }
                _ => return Err(format!("'{fun}' is not available.")),
            })
        })
    }
}

const TOP: &str =
    "base:\n  'role:edge':\n    - match: grain\n    - web\n  'nomatch*':\n    - nothing\n";
const MAP: &str = "{% set web = {'service': 'apache', 'version': '2.4'} %}\n";
const WEB: &str = r#"{% from 'web/map.jinja' import web with context %}
include:
  - .base

{{ pillar['web']['pkg'] }}-pkg:
  pkg.installed:
    - name: {{ salt['pillar.get']('web:pkg') }}
    - version: '{{ web.version }}'

{{ web.service }}:
  service.running:
    - watch:
      - pkg: {{ pillar.get('web', {}).get('pkg') }}-pkg
"#;
const BASE: &str = "hello:\n  test.succeed_without_changes:\n    - name: {{ grains['os'] }} {{ sls }} {{ tpldir }}\n";

fn tree() -> Vec<(&'static str, &'static str)> {
    vec![
        ("top.sls", TOP),
        ("web/init.sls", WEB),
        ("web/map.jinja", MAP),
        ("web/base.sls", BASE),
    ]
}

fn opts(test: bool) -> Opts {
    Opts {
        test,
        ..Opts::default()
    }
}

async fn highstate(dev: &Dev, test: bool) -> Outcome {
    let c = compile(dev, &[], &opts(test)).await.unwrap();
    execute(dev, &c, &opts(test)).await
}

fn by_id<'a>(ret: &'a Value, id: &str) -> &'a Value {
    ret.as_object()
        .unwrap()
        .values()
        .find(|v| v["__id__"] == id)
        .unwrap_or_else(|| panic!("no {id} in {ret}"))
}

#[tokio::test]
async fn top_matches_by_pillar() {
    let top = "base:\n  'web:port:8080':\n    - match: pillar\n    - web\n  'web:pkg:ngi.*':\n    - match: pillar_pcre\n    - nothing\n  'I@web:pkg:apache and G@role:edge':\n    - web.base\n  'os:RestExampleOS':\n    - match: pillar\n    - nothing\n";
    let mut files = tree();
    files[0] = ("top.sls", top);
    let dev = Dev::new(&files);
    let top = show_top(&dev, &opts(false)).await.unwrap();
    assert_eq!(top, json!({"base": ["web", "web.base"]}));
}

#[tokio::test]
async fn highstate_test_then_real_then_idempotent() {
    let dev = Dev::new(&tree());
    let top = show_top(&dev, &opts(false)).await.unwrap();
    assert_eq!(top, json!({"base": ["web"]}));
    let low = compile(&dev, &[], &opts(false)).await.unwrap();
    let first = serde_json::to_value(&low.chunks[0]).unwrap();
    assert_eq!(first["state"], "pkg", "{first}");
    assert_eq!(
        first["version"], "2.4",
        "arguments are flat, as Salt's low chunks: {first}"
    );
    assert_eq!(first["__sls__"], "web");

    let t = highstate(&dev, true).await;
    assert_eq!(t.retcode, 0, "{}", t.ret);
    assert!(
        dev.changing_calls().is_empty(),
        "test=True changed the device: {:?}",
        dev.changing_calls()
    );
    let pkg = by_id(&t.ret, "apache-pkg");
    assert_eq!(pkg["result"], Value::Null);
    assert_eq!(
        pkg["comment"],
        "The following packages would be installed/updated: apache"
    );
    let svc = &t.ret["service_|-apache_|-apache_|-running"];
    assert_eq!(svc["comment"], "Service apache is set to start");
    assert_eq!(by_id(&t.ret, "hello")["name"], "RestExampleOS web.base web");

    let r = highstate(&dev, false).await;
    assert_eq!(r.retcode, 0, "{}", r.ret);
    let pkg = by_id(&r.ret, "apache-pkg");
    assert_eq!(pkg["changes"], json!({"apache": {"old": "", "new": "2.4"}}));
    // The package changed, so the watching service ran; it was stopped, so it started.
    let svc = &r.ret["service_|-apache_|-apache_|-running"];
    assert_eq!(svc["changes"], json!({"apache": true}), "{svc}");
    assert!(svc["__run_num__"].as_u64() > pkg["__run_num__"].as_u64());
    for v in r.ret.as_object().unwrap().values() {
        for k in [
            "result",
            "changes",
            "comment",
            "__run_num__",
            "__id__",
            "__sls__",
            "start_time",
            "duration",
            "name",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {v}");
        }
    }

    let again = highstate(&dev, false).await;
    assert_eq!(again.retcode, 0);
    for v in again.ret.as_object().unwrap().values() {
        assert_eq!(v["changes"], json!({}), "second run changed: {v}");
    }
}

#[tokio::test]
async fn failed_state_stops_its_dependents_and_gives_retcode_2() {
    let sls = "broken:\n  test.fail_without_changes: []\nneeds:\n  test.succeed_with_changes:\n    - require:\n      - test: broken\nwatcher:\n  service.running:\n    - name: apache\n    - watch:\n      - broken\nrescue:\n  test.succeed_without_changes:\n    - onfail:\n      - broken\nquiet:\n  test.nop:\n    - onchanges:\n      - rescue\n";
    let dev = Dev::new(&[("f.sls", sls)]);
    let c = compile(&dev, &["f".into()], &opts(false)).await.unwrap();
    let o = execute(&dev, &c, &opts(false)).await;
    // `needs` and `watcher` failed too, and no onfail handler covers them.
    assert_eq!(o.retcode, 2, "{}", o.ret);
    assert_eq!(
        by_id(&o.ret, "needs")["comment"],
        "One or more requisite failed: f.broken"
    );
    assert_eq!(by_id(&o.ret, "needs")["result"], false);
    assert_eq!(by_id(&o.ret, "watcher")["result"], false);
    assert_eq!(by_id(&o.ret, "rescue")["result"], true);
    assert_eq!(
        by_id(&o.ret, "quiet")["comment"],
        "State was not run because none of the onchanges reqs changed"
    );
    assert!(dev.changing_calls().is_empty());

    let covered = "broken:\n  test.fail_without_changes: []\nrescue:\n  test.succeed_without_changes:\n    - onfail:\n      - broken\n";
    let dev = Dev::new(&[("c.sls", covered)]);
    let c = compile(&dev, &["c".into()], &opts(false)).await.unwrap();
    assert_eq!(
        execute(&dev, &c, &opts(false)).await.retcode,
        0,
        "an onfail handler that succeeded covers the failure"
    );

    let dev = Dev::new(&[(
        "g.sls",
        "x:\n  test.fail_without_changes: []\ny:\n  test.nop:\n    - require: [x]\n",
    )]);
    let c = compile(&dev, &["g".into()], &opts(false)).await.unwrap();
    assert_eq!(execute(&dev, &c, &opts(false)).await.retcode, 2);
}

#[tokio::test]
async fn failhard_stops_the_run_and_prereq_runs_first() {
    let sls = "a:\n  test.fail_without_changes:\n    - failhard: True\nb:\n  test.nop: []\n";
    let dev = Dev::new(&[("h.sls", sls)]);
    let c = compile(&dev, &["h".into()], &opts(false)).await.unwrap();
    let o = execute(&dev, &c, &opts(false)).await;
    assert_eq!(o.ret.as_object().unwrap().len(), 1);
    assert_eq!(o.retcode, 2);

    let sls = "prep:\n  test.succeed_without_changes:\n    - prereq:\n      - svc\nsvc:\n  service.running:\n    - name: apache\nidle:\n  test.nop:\n    - prereq:\n      - ok\nok:\n  test.succeed_without_changes: []\n";
    let dev = Dev::new(&[("p.sls", sls)]);
    let c = compile(&dev, &["p".into()], &opts(false)).await.unwrap();
    let o = execute(&dev, &c, &opts(false)).await;
    let prep = by_id(&o.ret, "prep");
    assert_eq!(prep["result"], true);
    assert!(prep["__run_num__"].as_u64() < by_id(&o.ret, "svc")["__run_num__"].as_u64());
    assert_eq!(by_id(&o.ret, "idle")["comment"], "No changes detected");
}

#[tokio::test]
async fn errors_name_file_line_and_device() {
    let dev = Dev::new(&[
        ("bad.sls", "a:\n  test.nop:\n    - name: {{ nope }}\n"),
        ("loop/a.sls", "include:\n  - loop.b\nx:\n  test.nop: []\n"),
        ("loop/b.sls", "include:\n  - loop.a\ny:\n  test.nop: []\n"),
        ("inc.sls", "include:\n  - missing\n"),
        ("yaml.sls", "a:\n  b: [\n"),
        ("imp.sls", "{% import_yaml 'defaults.yaml' as d %}\nz:\n  test.nop:\n    - name: \"{{ d.x | join(',') }}\"\n"),
        ("defaults.yaml", "x: [1, 2]\n"),
        ("huge.sls", "{% for i in range(1000) %}{{ 'x' * 99999999 }}{% endfor %}"),
    ]);
    let Err(StateError::Compile(e)) = compile(&dev, &["bad".into()], &opts(false)).await else {
        panic!()
    };
    assert!(
        e[0].contains("Rendering SLS 'base:bad' failed")
            && e[0].contains("line 3")
            && e[0].contains("bad.sls")
            && e[0].contains("sw-1"),
        "{e:?}"
    );
    // An include loop is not an error: each SLS renders once.
    let c = compile(&dev, &["loop.a".into()], &opts(false))
        .await
        .unwrap();
    assert_eq!(c.chunks.len(), 2);
    let Err(StateError::Compile(e)) = compile(&dev, &["inc".into()], &opts(false)).await else {
        panic!()
    };
    assert_eq!(e, ["Specified SLS missing in saltenv base is not available on the salt master or through a configured fileserver"]);
    let Err(StateError::Compile(e)) = compile(&dev, &["yaml".into()], &opts(false)).await else {
        panic!()
    };
    assert!(e[0].contains("yaml.sls") && e[0].contains("line"), "{e:?}");
    let Err(StateError::Compile(e)) = compile(&dev, &["nope".into()], &opts(false)).await else {
        panic!()
    };
    assert_eq!(e, ["No matching sls found for 'nope' in env 'base'"]);
    let Err(StateError::Compile(e)) = compile(&dev, &["huge".into()], &opts(false)).await else {
        panic!()
    };
    assert!(
        e[0].contains("rendered text is over") && e[0].contains("huge.sls"),
        "{e:?}"
    );
    let c = compile(&dev, &["imp".into()], &opts(false)).await.unwrap();
    assert_eq!(c.chunks[0].name, "1,2");
}

#[tokio::test]
async fn single_and_unknown_states() {
    let dev = Dev::new(&[]);
    let mut args = Map::new();
    args.insert("name".into(), json!("vim"));
    let o = single(&dev, "pkg.installed", args.clone(), &opts(false))
        .await
        .unwrap();
    assert_eq!(
        o.ret["pkg_|-vim_|-vim_|-installed"]["changes"]["vim"]["new"],
        "1.0"
    );
    let o = single(&dev, "bogus.thing", args, &opts(false))
        .await
        .unwrap();
    assert_eq!(o.retcode, 2);
    let no = no_top_match();
    assert_eq!(no.retcode, 2);
}

#[tokio::test]
async fn a_template_past_the_inline_budget_renders_on_the_blocking_pool() {
    let sls = "{% set n = namespace(c=0) %}{% for i in range(60000) %}{% set n.c = n.c + 1 %}{% endfor %}\nx:\n  test.nop:\n    - name: \"{{ n.c }}\"\n";
    let dev = Dev::new(&[("big.sls", sls)]);
    let c = compile(&dev, &["big".into()], &opts(false)).await.unwrap();
    assert_eq!(c.chunks[0].name, "60000");
}
