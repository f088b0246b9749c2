//! Golden tests of protoc-gen-slimrpc-go: each case is generated through real protoc and real
//! buf (both must give the same bytes), compared with `testdata/golden/go/<case>/`
//! (`SLIMRPC_BLESS=1` rewrites them), then checked with `gofmt -l` and type-checked with
//! `go vet` against the API-surface shims of `testdata/go/` plus stand-in message types.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use protoc_gen_slimrpc_go::{PathType, Runtime};

struct Case {
    /// Golden directory name.
    name: &'static str,
    /// Proto root (`-I`).
    root: PathBuf,
    /// Files to generate, relative to `root`.
    files: Vec<String>,
    /// buf `--path` / `--exclude-path` (relative to `root`).
    buf_paths: Vec<&'static str>,
    buf_excludes: Vec<&'static str>,
    /// Plugin parameters.
    params: Vec<String>,
    runtime: Runtime,
    paths: PathType,
    module: Option<&'static str>,
}

fn protos() -> PathBuf {
    testdata().join("protos")
}

/// Every `.proto` under `root/sub` (relative to root), sorted; `skip` subdirectories excluded.
fn protos_under(root: &Path, sub: &str, skip: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = read_tree(&root.join(sub))
        .into_keys()
        .filter(|f| f.ends_with(".proto"))
        .map(|f| {
            if sub.is_empty() {
                f
            } else {
                format!("{sub}/{f}")
            }
        })
        .filter(|f| !skip.iter().any(|s| f.starts_with(&format!("{s}/"))))
        .collect();
    out.sort();
    out
}

/// The Go-specific corpus (`testdata/protos/go/`), with `go/nogopkg/bare.proto` (no
/// go_package) mapped through an `M` parameter.
fn go_corpus(
    name: &'static str,
    extra: &[&str],
    runtime: Runtime,
    paths: PathType,
    module: Option<&'static str>,
) -> Case {
    let mut params = vec!["Mgo/nogopkg/bare.proto=example.com/gen/go/nogopkg;bare".to_string()];
    params.extend(extra.iter().map(|s| s.to_string()));
    Case {
        name,
        root: protos(),
        files: protos_under(&protos(), "go", &[]),
        buf_paths: vec!["go"],
        buf_excludes: vec![],
        params,
        runtime,
        paths,
        module,
    }
}

fn run_case(case: Case) {
    let scratch = Scratch::new(case.name);
    let set = descriptor_set(&case.root, &case.files, scratch.path());
    let mappings: Vec<(String, String)> = case
        .params
        .iter()
        .filter_map(|p| p.strip_prefix('M'))
        .filter_map(|p| p.split_once('='))
        .map(|(f, v)| (f.to_string(), v.to_string()))
        .collect();
    let packages = package_map(&set, &mappings, case.paths, case.module);

    let from_protoc = generate_with_protoc(&case.root, &case.files, &case.params, scratch.path());
    assert!(!from_protoc.is_empty(), "protoc produced no Go file");
    let from_buf = generate_with_buf(
        &case.root,
        &case.buf_paths,
        &case.buf_excludes,
        &case.params,
        scratch.path(),
    );
    assert_eq!(
        from_protoc.keys().collect::<Vec<_>>(),
        from_buf.keys().collect::<Vec<_>>(),
        "protoc and buf wrote different files"
    );
    for (name, text) in &from_protoc {
        assert_eq!(
            text, &from_buf[name],
            "{name}: protoc and buf output differ"
        );
    }

    check_golden(&testdata().join("golden/go").join(case.name), &from_protoc);
    assert_gofmt_clean(&scratch.path().join("protoc-out"));
    go_vet(
        &set,
        &packages,
        &from_protoc,
        case.runtime,
        scratch.path(),
        None,
    );
}

#[test]
fn golden_go_corpus_v3_import_paths_matches_protoc_buf_gofmt_and_vet() {
    run_case(go_corpus(
        "go-v3-import",
        &[],
        Runtime::V3,
        PathType::Import,
        None,
    ));
}

#[test]
fn golden_go_corpus_v3_source_relative_matches_protoc_buf_gofmt_and_vet() {
    run_case(go_corpus(
        "go-v3-source-relative",
        &["paths=source_relative"],
        Runtime::V3,
        PathType::SourceRelative,
        None,
    ));
}

#[test]
fn golden_go_corpus_v1_runtime_with_module_matches_protoc_buf_gofmt_and_vet() {
    run_case(go_corpus(
        "go-v1-module",
        &["runtime=v1", "module=example.com/gen"],
        Runtime::V1,
        PathType::Import,
        Some("example.com/gen"),
    ));
}

/// The shared corpus (`testdata/protos/` minus `go/`), when present: files without a
/// go_package are mapped to `slimrpc.test/gen/<dir>` through `M` parameters.
#[test]
fn golden_shared_corpus_v3_matches_protoc_buf_gofmt_and_vet() {
    let root = protos();
    let files = protos_under(&root, "", &["go"]);
    if files.is_empty() {
        // The shared corpus lives on the core branch; nothing to check until it is merged.
        assert!(
            !testdata().join("golden/go/shared-v3").exists(),
            "goldens exist for a shared corpus that is missing"
        );
        return;
    }
    let scratch = Scratch::new("shared-probe");
    let set = descriptor_set(&root, &files, scratch.path());
    let mut params: Vec<String> = Vec::new();
    let mut seen = BTreeMap::new();
    for fd in &set.file {
        let has_go_package = fd
            .options
            .as_ref()
            .and_then(|o| o.go_package.as_ref())
            .is_some();
        if !has_go_package {
            let dir = fd.name().rsplit_once('/').map(|(d, _)| d).unwrap_or("root");
            seen.insert(fd.name().to_string(), format!("slimrpc.test/gen/{dir}"));
        }
    }
    for (f, p) in seen {
        params.push(format!("M{f}={p}"));
    }
    run_case(Case {
        name: "shared-v3",
        root,
        files,
        buf_paths: vec![],
        buf_excludes: vec!["go"],
        params,
        runtime: Runtime::V3,
        paths: PathType::Import,
        module: None,
    });
}
