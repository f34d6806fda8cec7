//! Every shipped config and inventory parses and validates.

use std::path::{Path, PathBuf};

use drover::config::Config;
use drover::inventory::Inventory;

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn shipped_configs_and_inventories_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut files = Vec::new();
    toml_files(&root, &mut files);
    assert!(!files.is_empty());
    let mut configs = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if f.parent().is_some_and(|p| p.ends_with("inventory")) {
            Inventory::load(std::slice::from_ref(f))
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        } else {
            let cfg = Config::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            let inv = Inventory::load(&cfg.inventory_paths())
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            assert!(!inv.is_empty(), "{} has devices", f.display());
            configs += 1;
            assert!(!text.is_empty());
        }
    }
    assert!(configs >= 1);
    let main = Config::load(&root.join("drover.toml")).unwrap();
    let inv = Inventory::load(&main.inventory_paths()).unwrap();
    assert_eq!(
        inv.len(),
        1000,
        "the example config matches `drover devsim -n 1000 --base-port 20001`"
    );
}
