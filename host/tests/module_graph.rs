//! The host's modules import each other in one direction only (`cli` → `server` →
//! `runtime` → `capabilities`), and a capability imports nothing of the host's: a cycle or
//! an upward import here is a design regression, not a style nit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module → the top-level modules its files name as `crate::<module>`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let module = Path::new(first)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let used = graph.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if name != module {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

#[test]
fn the_module_graph_has_no_cycle() {
    let graph = imports();
    // Depth-first search; a module met again while still on the path closes a cycle.
    fn visit<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) {
        if done.contains(module) {
            return;
        }
        assert!(
            !path.contains(&module),
            "import cycle: {} -> {module}",
            path.join(" -> ")
        );
        path.push(module);
        for next in graph.get(module).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

#[test]
fn capabilities_import_nothing_of_the_host() {
    let graph = imports();
    assert_eq!(graph["capabilities"], BTreeSet::new());
    // The lowest modules may use the process's allocator and the file writer, which import
    // nothing.
    for leaf in ["allocator", "files"] {
        assert_eq!(graph[leaf], BTreeSet::new(), "{leaf}");
    }
    let leaves = BTreeSet::from(["allocator".to_string(), "files".to_string()]);
    for low in ["engine", "compile_cache"] {
        assert!(graph[low].is_subset(&leaves), "{low}: {:?}", graph[low]);
    }
}
