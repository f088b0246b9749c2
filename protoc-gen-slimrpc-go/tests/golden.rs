//! Golden tests of protoc-gen-slimrpc-go over the whole corpus (`testdata/protos`: the shared
//! cases plus the Go-specific ones under `golang/`): each case is generated through real
//! protoc and real buf (both must give the same bytes), compared with
//! `testdata/golden/go/<case>/` (`SLIMRPC_BLESS=1` rewrites them), then checked with
//! `gofmt -l`, `go vet` and `go build` against the real `google.golang.org/protobuf` and the
//! message types real `protoc-gen-go` writes for the same protos (both pinned in
//! `testdata/go/modules/`), and against the slim-bindings-go API shims of `testdata/go/`.

mod common;

use common::*;
use protoc_gen_slimrpc_go::{PathType, Runtime};

/// The one corpus file without a go_package, mapped through an `M` parameter.
const BARE_MAPPING: (&str, &str) = (
    "golang/nogopkg/bare.proto",
    "example.com/gen/go/nogopkg;bare",
);

/// Every `.proto` of the corpus, relative to `testdata/protos`, sorted.
fn corpus_files() -> Vec<String> {
    let mut out: Vec<String> = read_tree(&protos())
        .into_keys()
        .filter(|f| f.ends_with(".proto"))
        .collect();
    out.sort();
    out
}

fn run_case(name: &str, extra: &[&str], runtime: Runtime, paths: PathType, module: Option<&str>) {
    let scratch = Scratch::new(name);
    let files = corpus_files();
    let mut params = vec![format!("M{}={}", BARE_MAPPING.0, BARE_MAPPING.1)];
    params.extend(extra.iter().map(|s| s.to_string()));
    let set = descriptor_set(&files, scratch.path());
    let mapping = [(BARE_MAPPING.0.to_string(), BARE_MAPPING.1.to_string())];
    let packages = package_map(&set, &mapping, paths, module);

    let from_protoc = generate_with_protoc(&files, &params, scratch.path());
    assert!(!from_protoc.is_empty(), "protoc produced no Go file");
    let from_buf = generate_with_buf(&[], &params, scratch.path());
    assert_eq!(
        from_protoc.keys().collect::<Vec<_>>(),
        from_buf.keys().collect::<Vec<_>>(),
        "protoc and buf wrote different files"
    );
    for (file, text) in &from_protoc {
        assert_eq!(
            text, &from_buf[file],
            "{file}: protoc and buf output differ"
        );
    }

    check_golden(&testdata().join("golden/go").join(name), &from_protoc);
    assert_gofmt_clean(&scratch.path().join("protoc-out"));
    go_vet(&set, &packages, &from_protoc, runtime, scratch.path(), None);
}

#[test]
fn golden_go_v3_import_paths_match_protoc_buf_gofmt_and_vet() {
    run_case("v3-import", &[], Runtime::V3, PathType::Import, None);
}

#[test]
fn golden_go_v3_source_relative_matches_protoc_buf_gofmt_and_vet() {
    run_case(
        "v3-source-relative",
        &["paths=source_relative"],
        Runtime::V3,
        PathType::SourceRelative,
        None,
    );
}

#[test]
fn golden_go_v1_runtime_with_module_matches_protoc_buf_gofmt_and_vet() {
    run_case(
        "v1-module",
        &["runtime=v1", "module=example.com/gen"],
        Runtime::V1,
        PathType::Import,
        Some("example.com/gen"),
    );
}
