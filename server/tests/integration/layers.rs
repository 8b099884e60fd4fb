//! The server's modules import each other in layers, never in a circle: storage at the bottom, the
//! OCPP side above it knowing nothing of who hears its chargers (it speaks through
//! `ocpp::report::ReportSink`), the balancers' shell and the drivers' plans above that, and
//! `network` wiring them together. Read from the source, so a new import that closes a circle
//! fails here with the circle named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every top-level module of the server's library and the other top-level modules it names.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("server/src") {
        let path = entry.expect("entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("utf-8 name").to_owned();
        if matches!(name.as_str(), "lib" | "main") {
            continue;
        }
        let mut names = BTreeSet::new();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).expect("source");
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (at, _) in line.match_indices("crate::") {
                    let rest = &line[at + "crate::".len()..];
                    let named: String =
                        rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !named.is_empty() && named != name {
                        names.insert(named);
                    }
                }
            }
        }
        graph.insert(name, names);
    }
    graph
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).expect("dir") {
            files.extend(rust_files(&entry.expect("entry").path()));
        }
        files
    } else if path.extension().is_some_and(|e| e == "rs") {
        vec![path.to_owned()]
    } else {
        Vec::new()
    }
}

/// A circle through `from`, if there is one (the modules in order).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        target: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == target {
                return true;
            }
            if graph.contains_key(next) && seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, target, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![from.to_owned()];
    walk(graph, from, from, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_itself_through_others() {
    let graph = module_graph();
    for module in ["ocpp", "balancing", "driver", "db", "network", "http", "web", "settings"] {
        assert!(graph.contains_key(module), "no module {module}: {:?}", graph.keys());
    }
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| circle(&graph, m))
        .map(|c| format!("{} -> {}", c.join(" -> "), c[0]))
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_ocpp_side_knows_nothing_of_who_hears_its_chargers() {
    let graph = module_graph();
    let ocpp = &graph["ocpp"];
    for listener in ["balancing", "driver", "network", "http", "web"] {
        assert!(!ocpp.contains(listener), "ocpp imports {listener}: {ocpp:?}");
    }
    let db = &graph["db"];
    for above in ["ocpp", "balancing", "driver", "network", "http", "web", "settings"] {
        assert!(!db.contains(above), "storage imports {above}: {db:?}");
    }
}

#[test]
fn a_circle_is_found_when_there_is_one() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(m, to)| (m.to_owned(), to.into_iter().map(str::to_owned).collect()))
            .collect();
    assert_eq!(circle(&graph, "a"), Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]));
    assert_eq!(circle(&graph, "d"), None);
}
