//! The function table: every function Drover offers, with the capability a device
//! needs for it, its docstring (for `sys.doc`) and its Python-style signature (for
//! `sys.argspec`), in one row each, sorted by name.

use serde_json::{json, Value};

use crate::drivers::Capability;

/// A function's signature as Python's `inspect` describes it, which is what Salt's
/// `sys.argspec` prints.
#[derive(Debug, Clone, Copy)]
pub struct ArgSpec {
    /// Named parameters, in order.
    pub args: &'static [&'static str],
    /// Defaults of the last `defaults.len()` parameters, as JSON text.
    pub defaults: &'static [&'static str],
    /// The `*args` name, if any.
    pub varargs: Option<&'static str>,
    /// The `**kwargs` name, if any.
    pub kwargs: Option<&'static str>,
}

impl ArgSpec {
    /// Salt 3006's `argspec_report` shape: `{"args": [...] | null, "defaults":
    /// [...] | null, "varargs": true | null, "kwargs": true | null}` (3008 adds three
    /// more keys, all null for functions like these).
    pub fn to_json(&self) -> Value {
        let defaults: Vec<Value> = self
            .defaults
            .iter()
            .map(|d| serde_json::from_str(d).unwrap_or(Value::Null))
            .collect();
        let or_null = |v: Vec<Value>| {
            if v.is_empty() {
                Value::Null
            } else {
                Value::Array(v)
            }
        };
        json!({
            "args": or_null(self.args.iter().map(|a| json!(a)).collect()),
            "defaults": or_null(defaults),
            "kwargs": self.kwargs.map(|_| true),
            "varargs": self.varargs.map(|_| true),
        })
    }
}

/// One function of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub name: &'static str,
    pub needs: Option<Capability>,
    pub doc: &'static str,
    pub argspec: ArgSpec,
}

const fn none() -> ArgSpec {
    ArgSpec {
        args: &[],
        defaults: &[],
        varargs: None,
        kwargs: None,
    }
}

const fn args(args: &'static [&'static str]) -> ArgSpec {
    ArgSpec {
        args,
        defaults: &[],
        varargs: None,
        kwargs: None,
    }
}

const fn with_defaults(
    args: &'static [&'static str],
    defaults: &'static [&'static str],
) -> ArgSpec {
    ArgSpec {
        args,
        defaults,
        varargs: None,
        kwargs: None,
    }
}

const VARARGS: ArgSpec = ArgSpec {
    args: &[],
    defaults: &[],
    varargs: Some("args"),
    kwargs: None,
};

const ARGS_KWARGS: ArgSpec = ArgSpec {
    args: &[],
    defaults: &[],
    varargs: Some("args"),
    kwargs: Some("kwargs"),
};

const fn row(
    name: &'static str,
    needs: Option<Capability>,
    doc: &'static str,
    argspec: ArgSpec,
) -> Spec {
    Spec {
        name,
        needs,
        doc,
        argspec,
    }
}

const OVS: Option<Capability> = Some(Capability::Ovs);
const PKG: Option<Capability> = Some(Capability::Pkg);
const SERVICE: Option<Capability> = Some(Capability::Service);
const SNMP: Option<Capability> = Some(Capability::Snmp);
const RS: Option<Capability> = Some(Capability::RestSample);
const NC: Option<Capability> = Some(Capability::Netconf);

/// Every function name, sorted (binary search and `sys.list_functions` rely on it).
pub const FUNCTIONS: &[Spec] = &[
    row("config.get", None, "Look a key up in the device's options (its id), then its grains, then its pillar (and the master config the pillar shares); `default` when none has it.\n\nCLI Example:\n\n    salt '*' config.get proxy:url\n", with_defaults(&["key", "default", "delimiter", "merge", "omit_opts", "omit_pillar", "omit_master", "omit_grains"], &["\"\"", "\":\"", "null", "false", "false", "false", "false"])),
    row("event.fire_master", None, "Fire an event with the given data and tag on the master's event bus.\n\nCLI Example:\n\n    salt '*' event.fire_master '{data: 1}' my/tag\n", with_defaults(&["data", "tag", "preload"], &["null"])),
    row("event.send", None, "Send an event to the master's bus: keyword arguments and `data` become its data; with_grains and with_pillar add those.\n\nCLI Example:\n\n    salt '*' event.send my/tag foo=bar\n", ArgSpec { args: &["tag", "data", "preload", "with_env", "with_grains", "with_pillar", "with_env_opts"], defaults: &["null", "null", "false", "false", "false", "false"], varargs: None, kwargs: Some("kwargs") }),
    row("grains.append", None, "Append a value (or each item of a list) to a list grain, saved for the device; nested keys with the delimiter. The new list under its top-level key, or a message when the key is not a list or the value is already there.\n\nCLI Example:\n\n    salt '*' grains.append roles edge\n", with_defaults(&["key", "val", "convert", "delimiter"], &["false", "\":\""])),
    row("grains.delkey", None, "Delete a saved grain (grains.set with None, destructive). Lists and dicts need force=True.\n\nCLI Example:\n\n    salt '*' grains.delkey role\n", with_defaults(&["key", "force"], &["false"])),
    row("grains.delval", None, "Set a saved grain to None, or delete it with destructive=True. Lists and dicts need force=True.\n\nCLI Example:\n\n    salt '*' grains.delval role\n", with_defaults(&["key", "destructive", "force"], &["false", "false"])),
    row("grains.filter_by", None, "Look a grain's value up in a dict whose keys are globs; `default` when none matches, `base` merged under the result and `merge` over it.\n\nCLI Example:\n\n    salt '*' grains.filter_by '{Debian: Debheads rule, RedHat: I love my hat}'\n", with_defaults(&["lookup_dict", "grain", "merge", "default", "base"], &["\"os_family\"", "null", "\"default\"", "null"])),
    row("grains.get", None, "Return a grain by key, walking nested dicts and lists with the delimiter (default ':'); `default` when it is missing.\n\nCLI Example:\n\n    salt '*' grains.get os\n    salt '*' grains.get net:site default=unknown\n", with_defaults(&["key", "default", "delimiter"], &["\"\"", "\":\""])),
    row("grains.has_value", None, "Whether a grain exists, walking nested dicts and lists with ':'.\n\nCLI Example:\n\n    salt '*' grains.has_value pkg:apache\n", args(&["key"])),
    row("grains.item", None, "Return one or more grains as a dict, by name.\n\nCLI Example:\n\n    salt '*' grains.item os proxytype\n", ARGS_KWARGS),
    row("grains.items", None, "Return all of the device's grains: what the device reports, merged under the inventory's static grains.\n\nCLI Example:\n\n    salt '*' grains.items\n", with_defaults(&["sanitize"], &["false"])),
    row("grains.ls", None, "Return the names of the device's grains, sorted.\n\nCLI Example:\n\n    salt '*' grains.ls\n", none()),
    row("grains.remove", None, "Remove a value from a list grain, saved for the device; nested keys with the delimiter.\n\nCLI Example:\n\n    salt '*' grains.remove roles edge\n", with_defaults(&["key", "val", "delimiter"], &["\":\""])),
    row("grains.set", None, "Set a grain, nested keys with the delimiter, refusing to replace a list or dict without force=True; Salt's {comment, changes, result}.\n\nCLI Example:\n\n    salt '*' grains.set net:site ams1\n", with_defaults(&["key", "val", "force", "destructive", "delimiter"], &["\"\"", "false", "false", "\":\""])),
    row("grains.setval", None, "Set a grain, saved for the device under the state directory (it survives restarts and wins over the device's own grains); the key is taken as written, not nested. Returns {key: val}.\n\nCLI Example:\n\n    salt '*' grains.setval role core\n", with_defaults(&["key", "val", "destructive", "refresh_pillar"], &["false", "true"])),
    row("grains.setvals", None, "Set several grains from a dict, saved for the device; a None value with destructive=True deletes the grain. Returns the dict given.\n\nCLI Example:\n\n    salt '*' grains.setvals \"{'role': 'core', 'rack': 4}\"\n", with_defaults(&["grains", "destructive", "refresh_pillar"], &["false", "true"])),
    row("mine.delete", None, "Remove one function's data from this device's mine on the master (_mine_delete). True when the master removed it.\n\nCLI Example:\n\n    salt '*' mine.delete grains.items\n", args(&["fun"])),
    row("mine.flush", None, "Remove all of this device's mine data on the master (_mine_flush).\n\nCLI Example:\n\n    salt '*' mine.flush\n", none()),
    row("mine.get", None, "Get mine data from the master for the minions tgt matches: {minion: data} for one function, {function: {minion: data}} for a list or comma-separated functions.\n\nCLI Example:\n\n    salt '*' mine.get '*' grains.items\n    salt '*' mine.get 'role:core' test.ping tgt_type=grain\n", with_defaults(&["tgt", "fun", "tgt_type", "exclude_minion"], &["\"glob\"", "false"])),
    row("mine.send", None, "Run one function on the device and send its return to the mine under `name` (mine_function=, allow_tgt=, allow_tgt_type= as in Salt). False when the function fails.\n\nCLI Example:\n\n    salt '*' mine.send grains.items\n    salt '*' mine.send os_grain mine_function=grains.get os\n", ArgSpec { args: &["name"], defaults: &[], varargs: Some("args"), kwargs: Some("kwargs") }),
    row("mine.update", None, "Run the mine_functions from the device's pillar (or given) and send them to the mine; None when there are none.\n\nCLI Example:\n\n    salt '*' mine.update\n", with_defaults(&["clear", "mine_functions"], &["false", "null"])),
    row("mine.valid", None, "The mine_functions this device would run, as Salt lists them; None when there are none.\n\nCLI Example:\n\n    salt '*' mine.valid\n", none()),
    row("netconf.capabilities", NC, "The capabilities the device announced in its hello, and the session's base version.\n\nCLI Example:\n\n    salt '*' netconf.capabilities\n", none()),
    row("netconf.commit", NC, "Commit the candidate datastore; confirmed=True with confirm_timeout (seconds) and persist/persist_id where the device has :confirmed-commit.\n\nCLI Example:\n\n    salt '*' netconf.commit confirmed=True confirm_timeout=120\n", with_defaults(&["confirmed", "confirm_timeout", "persist", "persist_id"], &["false", "null", "null", "null"])),
    row("netconf.discard_changes", NC, "Discard the candidate datastore's changes.\n\nCLI Example:\n\n    salt '*' netconf.discard_changes\n", none()),
    row("netconf.edit_config", NC, "Edit a datastore with an XML config (candidate by default), with default_operation, test_option and error_option.\n\nCLI Example:\n\n    salt '*' netconf.edit_config '<system><hostname>r1</hostname></system>'\n", with_defaults(&["config", "target", "default_operation", "test_option", "error_option"], &["\"candidate\"", "null", "null", "null"])),
    row("netconf.get", NC, "Get state and configuration data, with a subtree filter (XML) or an xpath filter; {data, xml}.\n\nCLI Example:\n\n    salt '*' netconf.get\n", with_defaults(&["filter", "xpath"], &["null", "null"])),
    row("netconf.get_config", NC, "Get a datastore's configuration (running by default), with a subtree or xpath filter; {data, xml}.\n\nCLI Example:\n\n    salt '*' netconf.get_config running\n", with_defaults(&["source", "filter", "xpath"], &["\"running\"", "null", "null"])),
    row("netconf.lock", NC, "Lock a datastore (candidate by default).\n\nCLI Example:\n\n    salt '*' netconf.lock candidate\n", with_defaults(&["target"], &["\"candidate\""])),
    row("netconf.managed", NC, "Make a datastore hold a config, idempotently: lock, edit the candidate, compare, then commit (or discard under test=True); a state-shaped result with the diff in changes.\n\nCLI Example:\n\n    salt '*' netconf.managed '<system>...</system>' test=True\n", with_defaults(&["config", "target", "test", "default_operation"], &["\"candidate\"", "false", "null"])),
    row("netconf.rpc", NC, "Send any RPC given as XML; {reply, xml}.\n\nCLI Example:\n\n    salt '*' netconf.rpc '<get-schema>...</get-schema>'\n", args(&["rpc"])),
    row("netconf.unlock", NC, "Unlock a datastore (candidate by default).\n\nCLI Example:\n\n    salt '*' netconf.unlock candidate\n", with_defaults(&["target"], &["\"candidate\""])),
    row("netconf.validate", NC, "Validate a datastore (candidate by default).\n\nCLI Example:\n\n    salt '*' netconf.validate candidate\n", with_defaults(&["source"], &["\"candidate\""])),
    row("openvswitch.bridge_create", OVS, "Create a bridge (a fake VLAN bridge with parent and vlan). True on success, False when it exists and may_exist is False.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_create br0\n", with_defaults(&["br", "may_exist", "parent", "vlan"], &["true", "null", "null"])),
    row("openvswitch.bridge_delete", OVS, "Delete a bridge and its ports. True on success.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_delete br0\n", with_defaults(&["br", "if_exists"], &["true"])),
    row("openvswitch.bridge_exists", OVS, "Whether the bridge exists.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_exists br0\n", args(&["br"])),
    row("openvswitch.bridge_list", OVS, "List the bridges.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_list\n", none()),
    row("openvswitch.bridge_to_parent", OVS, "The parent of a fake VLAN bridge, or the bridge itself; False when it does not exist.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_to_parent br0\n", args(&["br"])),
    row("openvswitch.bridge_to_vlan", OVS, "The VLAN of a fake VLAN bridge, 0 for a real bridge; False when it does not exist.\n\nCLI Example:\n\n    salt '*' openvswitch.bridge_to_vlan br0\n", args(&["br"])),
    row("openvswitch.db_get", OVS, "Read a column of a record, as ovs-vsctl get prints it.\n\nCLI Example:\n\n    salt '*' openvswitch.db_get Port br0 vlan_mode\n", with_defaults(&["table", "record", "column", "if_exists"], &["false"])),
    row("openvswitch.db_set", OVS, "Set a column of a record. None on success, else the error message.\n\nCLI Example:\n\n    salt '*' openvswitch.db_set Interface br0 mac 02:03:04:05:06:07\n", with_defaults(&["table", "record", "column", "value", "if_exists"], &["false"])),
    row("openvswitch.interface_get_options", OVS, "The options of a port's interface.\n\nCLI Example:\n\n    salt '*' openvswitch.interface_get_options vx1\n", args(&["port"])),
    row("openvswitch.interface_get_type", OVS, "The type of a port's interface.\n\nCLI Example:\n\n    salt '*' openvswitch.interface_get_type vx1\n", args(&["port"])),
    row("openvswitch.interface_stats", OVS, "Statistics, link state and MTU of every interface, or of one.\n\nCLI Example:\n\n    salt '*' openvswitch.interface_stats\n", with_defaults(&["iface"], &["null"])),
    row("openvswitch.port_add", OVS, "Add a port to a bridge.\n\nCLI Example:\n\n    salt '*' openvswitch.port_add br0 8080\n", with_defaults(&["br", "port", "may_exist", "internal"], &["false", "false"])),
    row("openvswitch.port_create_gre", OVS, "Create a GRE tunnel port.\n\nCLI Example:\n\n    salt '*' openvswitch.port_create_gre br0 gre1 5001 192.168.1.10\n", args(&["br", "port", "id", "remote"])),
    row("openvswitch.port_create_vlan", OVS, "Create a VLAN access port.\n\nCLI Example:\n\n    salt '*' openvswitch.port_create_vlan br0 vlan10 10\n", with_defaults(&["br", "port", "id", "internal"], &["false"])),
    row("openvswitch.port_create_vxlan", OVS, "Create a VXLAN tunnel port.\n\nCLI Example:\n\n    salt '*' openvswitch.port_create_vxlan br0 vx1 5001 192.168.1.10 8472\n", with_defaults(&["br", "port", "id", "remote", "dst_port"], &["null"])),
    row("openvswitch.port_get_tag", OVS, "The VLAN tag of a port.\n\nCLI Example:\n\n    salt '*' openvswitch.port_get_tag tap0\n", args(&["port"])),
    row("openvswitch.port_list", OVS, "List the ports of a bridge.\n\nCLI Example:\n\n    salt '*' openvswitch.port_list br0\n", args(&["br"])),
    row("openvswitch.port_remove", OVS, "Remove a port, from a bridge or from whichever bridge has it.\n\nCLI Example:\n\n    salt '*' openvswitch.port_remove br0 8080\n", with_defaults(&["br", "port", "if_exists"], &["true"])),
    row("pillar.get", None, "Return a pillar value by key, walking nested dicts and lists with the delimiter (default ':'); `default` when it is missing.\n\nCLI Example:\n\n    salt '*' pillar.get proxy:url\n", with_defaults(&["key", "default", "merge", "merge_nested_lists", "delimiter", "pillarenv", "saltenv"], &["\"\"", "false", "null", "\":\"", "null", "null"])),
    row("pillar.item", None, "Return one or more pillar keys as a dict.\n\nCLI Example:\n\n    salt '*' pillar.item proxy role\n", ARGS_KWARGS),
    row("pillar.items", None, "Return the whole pillar the master sent for this device.\n\nCLI Example:\n\n    salt '*' pillar.items\n", ARGS_KWARGS),
    row("pillar.keys", None, "The keys of the dict at a pillar key.\n\nCLI Example:\n\n    salt '*' pillar.keys proxy\n", with_defaults(&["key", "delimiter"], &["\":\""])),
    row("pillar.raw", None, "The pillar, or one top-level key of it, as stored.\n\nCLI Example:\n\n    salt '*' pillar.raw proxy\n", with_defaults(&["key"], &["null"])),
    row("pkg.install", PKG, "Install a package on the device (version= picks one; 1.0 when unset). Returns the device's answer.\n\nCLI Example:\n\n    salt '*' pkg.install vim version=9.1\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("pkg.list_pkgs", PKG, "List the installed packages as a dict of name to version.\n\nCLI Example:\n\n    salt '*' pkg.list_pkgs\n", ArgSpec { args: &[], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("pkg.remove", PKG, "Remove a package. Returns the device's answer.\n\nCLI Example:\n\n    salt '*' pkg.remove vim\n", args(&["name"])),
    row("pkg.version", PKG, "The installed version of one package (\"\" when not installed), or a dict for several.\n\nCLI Example:\n\n    salt '*' pkg.version vim apache\n", ARGS_KWARGS),
    row("rest_sample.fix_outage", RS, "Tell the device to fix its outage; returns the answer's body, as the proxy module does.\n\nCLI Example:\n\n    salt '*' rest_sample.fix_outage\n", none()),
    row("rest_sample.get_test_string", RS, "Return 'testvalue', a test of calls into the proxy module.\n\nCLI Example:\n\n    salt '*' rest_sample.get_test_string\n", none()),
    row("rest_sample.grains", RS, "The grains the device reports (/info).\n\nCLI Example:\n\n    salt '*' rest_sample.grains\n", none()),
    row("rest_sample.grains_refresh", RS, "Fetch the device's grains (/info) again.\n\nCLI Example:\n\n    salt '*' rest_sample.grains_refresh\n", none()),
    row("rest_sample.package_install", RS, "Install a package (version= picks one; 1.0 when unset); the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.package_install vim version=9.1\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("rest_sample.package_list", RS, "List the installed packages; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.package_list\n", none()),
    row("rest_sample.package_remove", RS, "Remove a package; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.package_remove vim\n", args(&["name"])),
    row("rest_sample.package_status", RS, "A package's installation status; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.package_status vim\n", args(&["name"])),
    row("rest_sample.ping", RS, "Whether the device answers its ping.\n\nCLI Example:\n\n    salt '*' rest_sample.ping\n", none()),
    row("rest_sample.service_list", RS, "List the services; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.service_list\n", none()),
    row("rest_sample.service_restart", RS, "Restart a service; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.service_restart apache\n", args(&["name"])),
    row("rest_sample.service_start", RS, "Start a service; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.service_start apache\n", args(&["name"])),
    row("rest_sample.service_status", RS, "A service's status; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.service_status apache\n", args(&["name"])),
    row("rest_sample.service_stop", RS, "Stop a service; the device's answer.\n\nCLI Example:\n\n    salt '*' rest_sample.service_stop apache\n", args(&["name"])),
    row("saltutil.kill_all_jobs", None, "Kill every job running on this device (see kill_job); the list of kill_job answers.\n\nCLI Example:\n\n    salt '*' saltutil.kill_all_jobs\n", none()),
    row("saltutil.kill_job", None, "End this device's part of a running job now: its return is an error saying it was killed (an operation already sent to the device completes there). \"Signal 9 sent to job <jid> at pid <pid>\", or \"\" when the job is not running here.\n\nCLI Example:\n\n    salt '*' saltutil.kill_job <job id>\n", args(&["jid"])),
    row("saltutil.refresh_grains", None, "Ask the device for its grains now, then refresh the pillar (which reports them to the master) unless refresh_pillar=False. True once done.\n\nCLI Example:\n\n    salt '*' saltutil.refresh_grains\n", ArgSpec { args: &[], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("saltutil.refresh_pillar", None, "Ask the master for this device's pillar again; True once asked.\n\nCLI Example:\n\n    salt '*' saltutil.refresh_pillar\n", with_defaults(&["wait", "timeout"], &["false", "30"])),
    row("saltutil.signal_job", None, "Like kill_job, with the signal number named in the answer.\n\nCLI Example:\n\n    salt '*' saltutil.signal_job <job id> 15\n", args(&["jid", "sig"])),
    row("saltutil.sync_all", None, "Sync every kind of custom module from the master: Drover loads none, so nothing is synced; a dict of kind to the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_all\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_beacons", None, "Sync custom beacons from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_beacons\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_clouds", None, "Sync custom clouds from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_clouds\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_engines", None, "Sync custom engines from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_engines\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_executors", None, "Sync custom executors from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_executors\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_grains", None, "Sync custom grains from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_grains\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_log_handlers", None, "Sync custom log_handlers from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_log_handlers\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_matchers", None, "Sync custom matchers from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_matchers\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_modules", None, "Sync custom modules from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_modules\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_output", None, "Sync custom output from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_output\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_proxymodules", None, "Sync custom proxymodules from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_proxymodules\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_renderers", None, "Sync custom renderers from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_renderers\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_returners", None, "Sync custom returners from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_returners\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_sdb", None, "Sync custom sdb from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_sdb\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_serializers", None, "Sync custom serializers from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_serializers\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_states", None, "Sync custom states from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_states\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_thorium", None, "Sync custom thorium from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_thorium\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.sync_utils", None, "Sync custom utils from the master: Drover loads none, so nothing is synced; the (empty) list synced.\n\nCLI Example:\n\n    salt '*' saltutil.sync_utils\n", with_defaults(&["saltenv", "refresh", "extmod_whitelist", "extmod_blacklist"], &["null", "true", "null", "null"])),
    row("saltutil.term_all_jobs", None, "Like kill_all_jobs, with signal 15 in the answers.\n\nCLI Example:\n\n    salt '*' saltutil.term_all_jobs\n", none()),
    row("saltutil.term_job", None, "Like kill_job, with signal 15 in the answer.\n\nCLI Example:\n\n    salt '*' saltutil.term_job <job id>\n", args(&["jid"])),
    row("schedule.add", None, "Add a job to this device's schedule, saved under the state directory (function=, seconds/minutes/hours/days=, job_args=, job_kwargs=, splay=, run_on_start=, return_job=, maxrunning=, enabled=). when, cron, once and range are not supported.\n\nCLI Example:\n\n    salt '*' schedule.add job1 function=test.ping seconds=3600\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("schedule.delete", None, "Delete a job added with schedule.add; pillar jobs belong to the pillar.\n\nCLI Example:\n\n    salt '*' schedule.delete job1\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("schedule.disable_job", None, "Disable a job added with schedule.add.\n\nCLI Example:\n\n    salt '*' schedule.disable_job job1\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("schedule.enable_job", None, "Enable a job added with schedule.add.\n\nCLI Example:\n\n    salt '*' schedule.enable_job job1\n", ArgSpec { args: &["name"], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("schedule.list", None, "This device's schedule: its pillar's schedule with the jobs added by schedule.add over it, as YAML text (return_yaml=False for a dict). Jobs named __* (__mine_interval) only with show_all=True.\n\nCLI Example:\n\n    salt '*' schedule.list\n", with_defaults(&["show_all", "show_disabled", "where", "return_yaml", "offline"], &["false", "true", "null", "true", "false"])),
    row("schedule.run_job", None, "Run a scheduled job now, through the fleet's scheduler; its return reaches the master like any scheduled run.\n\nCLI Example:\n\n    salt '*' schedule.run_job job1\n", with_defaults(&["name", "force"], &["false"])),
    row("service.list", SERVICE, "List the services on the device.\n\nCLI Example:\n\n    salt '*' service.list\n", none()),
    row("service.restart", SERVICE, "Restart a service. Returns the device's answer.\n\nCLI Example:\n\n    salt '*' service.restart apache\n", args(&["name"])),
    row("service.start", SERVICE, "Start a service. Returns the device's answer.\n\nCLI Example:\n\n    salt '*' service.start apache\n", args(&["name"])),
    row("service.status", SERVICE, "Whether a service is running: True, False, or None when the device does not know it.\n\nCLI Example:\n\n    salt '*' service.status apache\n", with_defaults(&["name", "sig"], &["null"])),
    row("service.stop", SERVICE, "Stop a service. Returns the device's answer.\n\nCLI Example:\n\n    salt '*' service.stop apache\n", args(&["name"])),
    row("snmp.bulkwalk", SNMP, "Walk a subtree with GETBULK (GETNEXT on SNMPv1).\n\nCLI Example:\n\n    salt '*' snmp.bulkwalk ifDescr\n", args(&["oid"])),
    row("snmp.get", SNMP, "GET one or more OIDs (numeric or MIB names); each value typed.\n\nCLI Example:\n\n    salt '*' snmp.get sysDescr.0 sysUpTime.0\n", VARARGS),
    row("snmp.get_next", SNMP, "GETNEXT one or more OIDs.\n\nCLI Example:\n\n    salt '*' snmp.get_next sysDescr\n", VARARGS),
    row("snmp.interfaces", SNMP, "The ifTable joined with the ifXTable, one dict per interface.\n\nCLI Example:\n\n    salt '*' snmp.interfaces\n", none()),
    row("snmp.set", SNMP, "SET values given as OID TYPE VALUE triples.\n\nCLI Example:\n\n    salt '*' snmp.set sysContact.0 s noc@example.net\n", VARARGS),
    row("snmp.traps", SNMP, "The device's most recent SNMP traps and informs (oldest first), as the trap listener received them.\n\nCLI Example:\n\n    salt '*' snmp.traps\n", none()),
    row("snmp.walk", SNMP, "Walk a subtree with GETNEXT.\n\nCLI Example:\n\n    salt '*' snmp.walk ifDescr\n", args(&["oid"])),
    row("state.apply", None, "Apply states: the highstate (top.sls) without arguments, or the named SLS files (comma-separated); test=True predicts without changing anything, saltenv picks the environment.\n\nCLI Example:\n\n    salt '*' state.apply\n    salt '*' state.apply vlans test=True\n", ArgSpec { args: &["mods"], defaults: &["null"], varargs: None, kwargs: Some("kwargs") }),
    row("state.highstate", None, "Apply the states the top file assigns to this device.\n\nCLI Example:\n\n    salt '*' state.highstate test=True\n", ArgSpec { args: &["test"], defaults: &["null"], varargs: None, kwargs: Some("kwargs") }),
    row("state.show_lowstate", None, "The highstate compiled into low chunks, in run order, without running it.\n\nCLI Example:\n\n    salt '*' state.show_lowstate\n", ArgSpec { args: &[], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("state.show_sls", None, "The named SLS files rendered and compiled into high data, without running them.\n\nCLI Example:\n\n    salt '*' state.show_sls vlans\n", ArgSpec { args: &["mods", "test"], defaults: &["null"], varargs: None, kwargs: Some("kwargs") }),
    row("state.show_top", None, "The SLS files the top file gives this device, by saltenv.\n\nCLI Example:\n\n    salt '*' state.show_top\n", ArgSpec { args: &[], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("state.single", None, "Run one state function with its arguments, no SLS file needed.\n\nCLI Example:\n\n    salt '*' state.single pkg.installed name=vim\n", ArgSpec { args: &["fun", "name", "test"], defaults: &["null"], varargs: None, kwargs: Some("kwargs") }),
    row("state.sls", None, "Apply the named SLS files (comma-separated or a list).\n\nCLI Example:\n\n    salt '*' state.sls vlans,snmp test=True\n", ArgSpec { args: &["mods", "test"], defaults: &["null"], varargs: None, kwargs: Some("kwargs") }),
    row("state.test", None, "state.apply with test=True: report what would change.\n\nCLI Example:\n\n    salt '*' state.test vlans\n", ArgSpec { args: &[], defaults: &[], varargs: Some("args"), kwargs: Some("kwargs") }),
    row("sys.argspec", None, "The signatures of functions, by name, module or glob, as Python's inspect describes them.\n\nCLI Example:\n\n    salt '*' sys.argspec test.arg\n    salt '*' sys.argspec 'pkg.*'\n", with_defaults(&["module"], &["\"\""])),
    row("sys.doc", None, "The docstrings of functions, by name, module or glob; all of them without arguments.\n\nCLI Example:\n\n    salt '*' sys.doc test.ping\n    salt '*' sys.doc sys\n", VARARGS),
    row("sys.list_functions", None, "The functions this device offers, optionally narrowed to modules or globs.\n\nCLI Example:\n\n    salt '*' sys.list_functions\n    salt '*' sys.list_functions test grains\n", ARGS_KWARGS),
    row("sys.list_modules", None, "The modules this device offers, optionally narrowed by globs.\n\nCLI Example:\n\n    salt '*' sys.list_modules\n", VARARGS),
    row("test.arg", None, "Return the arguments given: {\"args\": [...], \"kwargs\": {...}}.\n\nCLI Example:\n\n    salt '*' test.arg 1 two 3.1 txt=hello\n", ARGS_KWARGS),
    row("test.arg_repr", None, "Return the Python repr() of the arguments given: {\"args\": \"(...)\", \"kwargs\": \"{...}\"}.\n\nCLI Example:\n\n    salt '*' test.arg_repr 1 two 3.1 txt=hello\n", ARGS_KWARGS),
    row("test.echo", None, "Return the text given.\n\nCLI Example:\n\n    salt '*' test.echo 'foo bar'\n", args(&["text"])),
    row("test.exception", None, "Raise an exception, to test how errors travel.\n\nCLI Example:\n\n    salt '*' test.exception 'Oh noes!'\n", with_defaults(&["message"], &["\"Test Exception\""])),
    row("test.false", None, "Always return False.\n\nCLI Example:\n\n    salt '*' test.false\n", none()),
    row("test.fib", None, "Return the num-th Fibonacci number and the seconds it took to compute.\n\nCLI Example:\n\n    salt '*' test.fib 3\n", args(&["num"])),
    row("test.kwarg", None, "Return the keyword arguments given.\n\nCLI Example:\n\n    salt '*' test.kwarg num=1 txt=two\n", ArgSpec { args: &[], defaults: &[], varargs: None, kwargs: Some("kwargs") }),
    row("test.outputter", None, "Return the data given, to test outputters.\n\nCLI Example:\n\n    salt '*' test.outputter foobar\n", args(&["data"])),
    row("test.ping", None, "Ask the device whether it answers (as a Salt proxy does). True when it does.\n\nCLI Example:\n\n    salt '*' test.ping\n", none()),
    row("test.rand_sleep", None, "Sleep for a random number of seconds from 0 to max, then return True.\n\nCLI Example:\n\n    salt '*' test.rand_sleep 60\n", with_defaults(&["max"], &["60"])),
    row("test.retcode", None, "Return True with the given return code, to test the retcode system.\n\nCLI Example:\n\n    salt '*' test.retcode 42\n", with_defaults(&["code"], &["42"])),
    row("test.sleep", None, "Sleep for the given seconds, then return True.\n\nCLI Example:\n\n    salt '*' test.sleep 20\n", args(&["length"])),
    row("test.true", None, "Always return True.\n\nCLI Example:\n\n    salt '*' test.true\n", none()),
    row("test.version", None, "The version of Drover serving the device.\n\nCLI Example:\n\n    salt '*' test.version\n", none()),
    row("test.versions_report", None, "The versions of Drover and the components it is built with.\n\nCLI Example:\n\n    salt '*' test.versions_report\n", none()),
];

/// The row of `name`, if Drover has such a function.
pub fn spec(name: &str) -> Option<&'static Spec> {
    FUNCTIONS
        .binary_search_by(|s| s.name.cmp(name))
        .ok()
        .map(|i| &FUNCTIONS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_sorted_unique_documented_and_defaults_parse() {
        for w in FUNCTIONS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        for s in FUNCTIONS {
            assert!(s.name.contains('.'), "{}", s.name);
            assert!(s.doc.contains("CLI Example"), "{}", s.name);
            assert!(
                s.argspec.defaults.len() <= s.argspec.args.len(),
                "{}",
                s.name
            );
            for d in s.argspec.defaults {
                assert!(serde_json::from_str::<Value>(d).is_ok(), "{}: {d}", s.name);
            }
        }
        assert_eq!(
            spec("test.rand_sleep").map(|s| s.argspec.to_json()),
            Some(json!({"args": ["max"], "defaults": [60], "kwargs": null, "varargs": null}))
        );
        assert_eq!(
            spec("test.arg").map(|s| s.argspec.to_json()),
            Some(json!({"args": null, "defaults": null, "kwargs": true, "varargs": true}))
        );
        assert!(spec("nosuch.fun").is_none());
    }
}
