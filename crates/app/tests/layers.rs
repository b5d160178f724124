//! Imports point down only: each workspace crate's normal dependencies on other workspace crates
//! sit on a lower floor. bitwarden and push share floor 4, so neither may import the other; what
//! both need lives in `model`. The fakes depend on no pushwarden crate, so a fake that accepts a
//! push is evidence about our code, not an echo of it. Dev-dependencies are free: tests may use
//! anything.

use std::collections::BTreeMap;
use std::path::Path;

/// The floor of every workspace crate (its directory under `crates/`).
const FLOORS: &[(&str, u8)] = &[
    ("fakes", 0),
    ("protocol", 1),
    ("model", 1),
    ("auth", 2),
    ("client", 2),
    ("transport", 2),
    ("doctor", 2),
    ("hub", 3),
    ("bitwarden", 4),
    ("push", 4),
    ("app", 6),
    ("bench", 6),
];

fn workspace_crates(root: &Path) -> BTreeMap<String, (String, toml::Table)> {
    let mut crates = BTreeMap::new();
    for entry in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let dir = entry.expect("entry").path();
        let manifest = dir.join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let table: toml::Table = text.parse().expect("Cargo.toml parses");
        let package = table["package"]["name"]
            .as_str()
            .expect("package name")
            .to_owned();
        let dir_name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("dir name")
            .to_owned();
        crates.insert(package, (dir_name, table));
    }
    crates
}

#[test]
fn imports_point_down_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let crates = workspace_crates(&root);
    let floor = |dir: &str| {
        FLOORS
            .iter()
            .find(|(d, _)| *d == dir)
            .map(|(_, f)| *f)
            .unwrap_or_else(|| panic!("crates/{dir} has no floor in FLOORS: give it one"))
    };
    let dir_of: BTreeMap<&str, &str> = crates
        .iter()
        .map(|(name, (dir, _))| (name.as_str(), dir.as_str()))
        .collect();
    let mut violations = Vec::new();
    for (name, (dir, table)) in &crates {
        let Some(deps) = table.get("dependencies").and_then(|d| d.as_table()) else {
            continue;
        };
        for dep in deps.keys() {
            if let Some(dep_dir) = dir_of.get(dep.as_str()) {
                if floor(dep_dir) >= floor(dir) {
                    violations.push(format!(
                        "{name} (floor {}) depends on {dep} (floor {})",
                        floor(dir),
                        floor(dep_dir)
                    ));
                }
            }
        }
    }
    assert!(
        crates.len() >= FLOORS.len(),
        "found only {:?}",
        crates.keys()
    );
    assert!(violations.is_empty(), "{violations:#?}");
}
