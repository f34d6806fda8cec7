//! `GET /sd`: Prometheus's http_sd format, one target group per device (the target
//! is the device id, for `__param_target`), labelled with its driver and its static
//! `site` and `role` grains, and the modules to ask for (`__param_module`). It is
//! built from the registry, so it follows inventory reloads and shards.

use serde_json::{json, Map, Value};

use super::module::Modules;
use crate::fleet::registry::Registry;

/// Static grains copied to labels when a device has them.
const GRAIN_LABELS: [&str; 2] = ["site", "role"];

pub fn targets(registry: &Registry, modules: &Modules) -> Value {
    let mut groups: Vec<(String, Value)> = registry
        .iter()
        .filter_map(|e| {
            let driver = e.spec.proxytype();
            let wanted = modules.names_for(driver);
            if wanted.is_empty() {
                return None;
            }
            let mut labels = Map::new();
            labels.insert("driver".into(), json!(driver));
            labels.insert("__param_module".into(), json!(wanted));
            for g in GRAIN_LABELS {
                if let Some(v) = e.spec.grains.get(g).and_then(Value::as_str) {
                    labels.insert(g.into(), json!(v));
                }
            }
            let id = e.key().to_string();
            Some((id.clone(), json!({"targets": [id], "labels": labels})))
        })
        .collect();
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    Value::Array(groups.into_iter().map(|(_, g)| g).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PollConfig;
    use crate::inventory::Inventory;
    use std::path::Path;

    #[test]
    fn one_group_per_pollable_device_with_its_labels() {
        let inv = Inventory::parse(
            "[[device]]\nid = \"r2\"\nproxytype = \"snmp\"\nhost = \"127.0.0.1\"\n\
             grains = { site = \"par1\", role = \"edge\", secret = \"x\" }\n\
             [[device]]\nid = \"d1\"\nproxytype = \"dummy\"\n",
            Path::new("<test>"),
        )
        .unwrap();
        let reg = Registry::new();
        for d in &inv.devices {
            reg.upsert(d.clone(), 1, None);
        }
        let mods = Modules::from_config(&PollConfig::default()).unwrap();
        let sd = targets(&reg, &mods);
        assert_eq!(
            sd,
            json!([{"targets": ["r2"], "labels": {
                "driver": "snmp", "__param_module": "if_mib,system",
                "site": "par1", "role": "edge"}}])
        );
    }
}
