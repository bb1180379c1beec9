//! The layer rule (docs/DESIGN.md): a top-level module of the library refers only to modules of
//! layers below it, so the modules form no cycle. This reads the sources and finds every
//! reference to another module: `use crate::...` lines, grouped `use crate::{a, b::c}` and
//! paths written inline (`crate::train::infer_device()`). Comments and test modules are left
//! out: tests may reach across layers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The library's top-level modules, from the bottom layer up.
const LAYERS: &[&str] = &[
    "util",       // atomic writes, config errors, run-directory names, resident memory
    "device",     // devices and data-parallel collectives
    "kernels",    // CPU kernels as burn backend extensions
    "models",     // backbones and heads
    "losses",     // pure loss functions
    "data",       // readers, index, streaming, augmentation, examples, tokenizer
    "eval",       // frozen features, k-NN, PCA
    "train",      // the training loop, optimisers, checkpoints
    "error",      // the library's error type
    "npy",        // .npy files
    "encoder",    // a trained encoder saved with its spec
    "interop",    // PyTorch names, safetensors and ONNX exports, --init-from
    "collection", // a config's images: in memory or streamed
    "cluster",    // k-means and pseudo-labels
    "curate",     // the explorer page, thumbnails, neighbour grids, selection
    "methods",    // one file per self-supervised method, and the registry
    "transfer",   // probe, k-NN, fine-tune, scratch, random
    "config",     // the run configs, gathering each layer's section
    "text",       // text pretraining and transfer
    "pipeline",   // pretrain, transfer, embed
    "study",      // the few-label study and its report
    "demo",       // the demo
    "bench",      // benchmarks
];

/// Files and folders outside the layers: the crate root and the binary's.
const ROOTS: &[&str] = &["lib.rs", "main.rs", "cli.rs", "commands"];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// `code` without comments and without `#[cfg(test)]` modules.
fn without_comments_and_tests(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if code[i..].starts_with("//") {
            i += code[i..].find('\n').unwrap_or(code.len() - i);
        } else if code[i..].starts_with("/*") {
            i += code[i..].find("*/").map_or(code.len() - i, |e| e + 2);
        } else if code[i..].starts_with("#[cfg(test)]") {
            i = skip_item(code, i + "#[cfg(test)]".len());
        } else {
            let c = code[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The end of the item starting after `start`: its `{ ... }` block or its `;`.
fn skip_item(code: &str, start: usize) -> usize {
    let rest = &code[start..];
    let open = rest.find('{');
    let semi = rest.find(';');
    match (open, semi) {
        (Some(o), Some(s)) if s < o => start + s + 1,
        (Some(o), _) => {
            let mut depth = 0;
            for (j, c) in rest[o..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            return start + o + j + 1;
                        }
                    }
                    _ => {}
                }
            }
            code.len()
        }
        (None, Some(s)) => start + s + 1,
        (None, None) => code.len(),
    }
}

/// The identifier at the start of `s`.
fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `code` refers to through `crate::` (`crate::Error` is `error`'s).
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let preceded = code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if preceded {
            continue; // `pretext::crate::` cannot occur; `$crate::` and the like are not ours
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = matching_brace(group);
            for part in top_level_parts(&group[..end]) {
                found.insert(ident(part.trim()).to_string());
            }
        } else {
            found.insert(ident(rest).to_string());
        }
    }
    if found.remove("Error") {
        found.insert("error".into());
    }
    found
}

/// Index of the `}` closing a group whose `{` came just before `s`.
fn matching_brace(s: &str) -> usize {
    let mut depth = 1;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// The comma-separated parts of a `use` group, not splitting nested groups.
fn top_level_parts(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Which top-level modules each top-level module of the crate at `src` refers to.
fn module_graph(src: &Path) -> Graph {
    let mut graph = Graph::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable source folder") {
            let path = entry.expect("readable entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let first = rel.components().next().expect("a path under src");
            let is_root = ROOTS.contains(&first.as_os_str().to_string_lossy().as_ref());
            // A file of its own holding a module's tests.
            let is_tests = name == "tests.rs";
            if path.extension().is_none_or(|e| e != "rs") || is_root || is_tests {
                continue;
            }
            let top = first.as_os_str().to_string_lossy();
            let top = top.trim_end_matches(".rs").to_string();
            let code = std::fs::read_to_string(&path).expect("readable source");
            let refs = references(&without_comments_and_tests(&code));
            graph
                .entry(top.clone())
                .or_default()
                .extend(refs.into_iter().filter(|r| *r != top));
        }
    }
    graph
}

/// Every reference that goes to the same or a higher layer, or to a module with no layer.
fn violations(graph: &Graph, layers: &[&str]) -> Vec<String> {
    let rank = |m: &str| layers.iter().position(|l| *l == m);
    let mut found = Vec::new();
    for (module, refs) in graph {
        let Some(from) = rank(module) else {
            found.push(format!("module `{module}` has no layer in LAYERS"));
            continue;
        };
        for r in refs {
            match rank(r) {
                Some(to) if to < from => {}
                Some(_) => found.push(format!(
                    "`{module}` refers to `{r}`, a layer above or beside it"
                )),
                None if graph.contains_key(r) => {
                    found.push(format!("module `{r}` has no layer in LAYERS"))
                }
                // `crate::` followed by a macro or a root item (`crate::Error` is mapped).
                None => {}
            }
        }
    }
    found
}

/// The modules on a cycle of references, each cycle sorted (Tarjan's strongly connected
/// components of more than one module).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.found
}

#[test]
fn the_library_modules_follow_their_layers_and_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    assert!(graph.len() >= LAYERS.len() - 2, "found only {graph:?}");
    for layer in LAYERS {
        assert!(
            src.join(format!("{layer}.rs")).exists() || src.join(layer).is_dir(),
            "LAYERS names `{layer}`, which is not a module of src/"
        );
    }
    let cycles = cycles(&graph);
    assert!(cycles.is_empty(), "modules on a cycle: {cycles:?}");
    let wrong = violations(&graph, LAYERS);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The check itself: on a small crate with a cycle through an inline path and a grouped `use`,
/// it finds the cycle and the upward reference; comments and test modules do not count.
#[test]
fn a_cycle_through_any_kind_of_path_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("low")).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "pub mod low;\npub mod high;\npub mod side;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("low/mod.rs"),
        "// crate::side is only mentioned\npub fn f() -> u32 { crate::high::g() }\n\
         #[cfg(test)]\nmod tests { use crate::side::S; }\n",
    )
    .unwrap();
    std::fs::write(
        src.join("high.rs"),
        "use crate::{low::{self, f}, side::S};\npub fn g() -> u32 { 1 }\n",
    )
    .unwrap();
    std::fs::write(src.join("side.rs"), "pub struct S;\n/* crate::high */\n").unwrap();
    let graph = module_graph(src);
    assert_eq!(graph["low"], BTreeSet::from(["high".to_string()]));
    assert_eq!(
        graph["high"],
        BTreeSet::from(["low".to_string(), "side".to_string()])
    );
    assert!(graph["side"].is_empty());
    assert_eq!(
        cycles(&graph),
        vec![vec!["high".to_string(), "low".to_string()]]
    );
    let wrong = violations(&graph, &["side", "low", "high"]);
    assert_eq!(wrong.len(), 1, "{wrong:?}");
    assert!(wrong[0].contains("`low` refers to `high`"), "{wrong:?}");
    assert!(
        violations(&graph, &["low", "high"])
            .iter()
            .any(|w| w.contains("`side` has no layer"))
    );
}
