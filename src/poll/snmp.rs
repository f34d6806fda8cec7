//! One SNMP poll of one module: walk its columns side by side (lookup columns only
//! when the cached labels are missing or the guards say the table changed), then
//! render the rows.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

use super::cache::{LookupState, Sample};
use super::module::Module;
use super::render::{self, Labels};
use crate::drivers::snmp::device::SnmpDevice;
use crate::drivers::snmp::{Oid, SnmpError, SnmpValue, VarBind};

/// The new sample, and the lookup labels when they were read again.
pub async fn poll(
    dev: &SnmpDevice,
    module: &Module,
    cached: Option<&LookupState>,
) -> Result<(Sample, Option<LookupState>), SnmpError> {
    let started = Instant::now();
    let metric_cols = module.metric_columns();
    let lookup_cols = module.lookup_only_columns();
    let mut cols = metric_cols.clone();
    if cached.is_none() {
        cols.extend(lookup_cols.iter().cloned());
    }
    let walk = dev
        .walk_columns(&module.guards, &cols, module.max_repetitions)
        .await?;
    let mut requests = walk.requests;
    let mut pdus = walk.varbinds();
    let guards: Vec<SnmpValue> = walk.scalars.iter().map(|vb| vb.value.clone()).collect();
    let rows: Vec<(Oid, Vec<VarBind>)> = cols.into_iter().zip(walk.columns).collect();

    let mut fresh = None;
    let labels: Labels = match cached {
        Some(c) if !changed(&c.guards, &guards) && covers(module, &rows, &c.labels) => {
            c.labels.clone()
        }
        Some(_) => {
            let again = dev
                .walk_columns(&[], &lookup_cols, module.max_repetitions)
                .await?;
            requests += again.requests;
            pdus += again.varbinds();
            let l = to_labels(lookup_cols.iter().cloned().zip(again.columns));
            fresh = Some(LookupState {
                guards: guards.clone(),
                labels: l.clone(),
            });
            l
        }
        None => {
            let l = to_labels(
                rows.iter()
                    .filter(|(c, _)| lookup_cols.contains(c))
                    .map(|(c, r)| (c.clone(), r.clone())),
            );
            fresh = Some(LookupState {
                guards: guards.clone(),
                labels: l.clone(),
            });
            l
        }
    };
    let walked = started.elapsed();
    // Lookups that are metrics too (sysORDescr) come from this walk.
    let mut all = labels;
    for (c, r) in &rows {
        if module
            .metrics
            .iter()
            .any(|m| m.lookups.iter().any(|(_, l)| l == c))
        {
            all.extend(to_labels(std::iter::once((c.clone(), r.clone()))));
        }
    }
    let body = render::module(module, &rows, &all);
    Ok((
        Sample {
            body,
            polled_at: SystemTime::now(),
            walk: walked,
            total: started.elapsed(),
            pdus,
            requests,
        },
        fresh,
    ))
}

/// The agent restarted (sysUpTime went back) or the interface count changed.
fn changed(old: &[SnmpValue], new: &[SnmpValue]) -> bool {
    if old.len() != new.len() {
        return true;
    }
    old.iter().zip(new).any(|(o, n)| match (o, n) {
        (SnmpValue::TimeTicks(a), SnmpValue::TimeTicks(b)) => b < a,
        (a, b) => a != b,
    })
}

/// Every indexed row of the walk has its lookup labels in the cache.
fn covers(module: &Module, rows: &[(Oid, Vec<VarBind>)], labels: &Labels) -> bool {
    module.metrics.iter().all(|m| {
        let Some((_, r)) = rows.iter().find(|(c, _)| *c == m.oid) else {
            return true;
        };
        let depth = m.oid.arcs().len();
        m.lookups.iter().all(|(_, col)| {
            let Some(known) = labels.get(col) else {
                // A lookup that is also a metric is read on every walk.
                return module.metrics.iter().any(|x| &x.oid == col);
            };
            r.iter().all(|vb| match vb.oid.arcs().get(depth..) {
                Some([i]) => known.contains_key(i),
                _ => true,
            })
        })
    })
}

fn to_labels(cols: impl Iterator<Item = (Oid, Vec<VarBind>)>) -> Labels {
    let mut out = Labels::new();
    for (col, rows) in cols {
        let depth = col.arcs().len();
        let mut m = BTreeMap::new();
        for vb in rows {
            if let Some([i]) = vb.oid.arcs().get(depth..) {
                m.insert(
                    *i,
                    render::text(&super::module::Kind::DisplayString, &vb.value),
                );
            }
        }
        out.insert(col, m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_say_when_labels_must_be_read_again() {
        let t = |n| SnmpValue::TimeTicks(n);
        let i = |n| SnmpValue::Integer(n);
        assert!(!changed(&[t(100), i(2)], &[t(200), i(2)]));
        assert!(changed(&[t(100), i(2)], &[t(50), i(2)]), "agent restarted");
        assert!(changed(&[t(100), i(2)], &[t(200), i(3)]), "interface added");
        assert!(changed(&[], &[t(1)]));
    }
}
