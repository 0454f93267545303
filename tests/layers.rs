//! The layering that `romp::LAYERS` declares is the real one: no top-level module of `src/`
//! imports a module in a higher layer, so the import graph between them has no cycle.
//!
//! Reads the sources (not the compiled crate): every `crate::name` path in code (comments
//! stripped), including the names inside `use crate::{a, b::c}` groups, is an import of `name`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// Top-level module of a file under `src/` (`None` for the crate root and the binaries).
fn module_of(rel: &str) -> Option<String> {
    // `cli/` holds modules of the `romp` binary (main.rs), outside the library's layers.
    if rel.starts_with("bin/") || rel.starts_with("cli/") || rel == "lib.rs" || rel == "main.rs" {
        return None;
    }
    let first = rel.split('/').next()?;
    Some(first.trim_end_matches(".rs").to_string())
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in fs::read_dir(dir).expect("read src") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Source text without `//` comments (line and doc comments) and string literals' contents
/// left as they are (a `crate::` in a string would be a false import; none exist).
fn code_only(src: &str) -> String {
    src.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

/// The module names a source imports through `crate::`.
fn imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            // Only the first segment of each comma-separated path names a module.
            for item in group[..end].split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if !name.is_empty() {
                    found.push(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn no_module_imports_one_above_it() {
    let mut layer_of = BTreeMap::new();
    for (i, layer) in romp::LAYERS.iter().enumerate() {
        for m in *layer {
            assert!(layer_of.insert(m.to_string(), i).is_none(), "{m} is declared twice in LAYERS");
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = Vec::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for f in &files {
        let rel = f.strip_prefix(&src).expect("under src").to_string_lossy().replace('\\', "/");
        let Some(module) = module_of(&rel) else { continue };
        seen_modules.insert(module.clone());
        let Some(&mine) = layer_of.get(&module) else {
            violations.push(format!("src/{rel}: module {module} is not in romp::LAYERS"));
            continue;
        };
        let code = code_only(&fs::read_to_string(f).expect("read source"));
        for target in imports(&code) {
            if target == module || target == "self" {
                continue;
            }
            match layer_of.get(&target) {
                Some(&theirs) if theirs >= mine && target != module => {
                    violations.push(format!("src/{rel}: {module} (layer {mine}) imports {target} (layer {theirs})"))
                }
                Some(_) => {}
                None => {} // a crate-root item such as `crate::LAYERS` or a re-export
            }
        }
    }
    for m in layer_of.keys() {
        assert!(seen_modules.contains(m), "LAYERS names {m}, which has no source file");
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "imports against the declared layering:\n{}", violations.join("\n"));
}

#[test]
fn the_import_scanner_sees_every_form() {
    let code = "use crate::bus::Outbox;\nuse crate::{conn::Ctx, metrics};\nfn f() { crate::worker::run(); mycrate::x(); }";
    assert_eq!(imports(code), ["bus", "conn", "metrics", "worker"]);
    assert_eq!(imports(&code_only("let a = 1; // crate::server\n/// [`crate::sim`]")), Vec::<String>::new());
}
