//! The Go group client from the SLIM Group RPC design note compiles (go vet) against stubs
//! generated with `runtime=v1` for the note's `example.proto` (`examples/example.proto`):
//! the v1 layout (`slim_bindings` root package + `slimrpc` helpers) is the one the note uses.

mod common;

use common::*;
use protoc_gen_slimrpc_go::{PathType, Runtime};

#[test]
fn design_note_go_group_client_compiles_against_v1_stubs() {
    let scratch = Scratch::new("design-note");
    let includes = vec![slimrpc_testkit::root().join("examples")];
    let files = vec!["example.proto".to_string()];
    let mapping = (
        "example.proto".to_string(),
        "example.com/slimrpc/examples/exampleservice;pb".to_string(),
    );
    let params = vec![
        format!("M{}={}", mapping.0, mapping.1),
        "runtime=v1".to_string(),
        "paths=source_relative".to_string(),
    ];
    let set = descriptor_set_in(&includes, &files, scratch.path());
    let packages = package_map(&set, &[mapping], PathType::SourceRelative, None);
    let generated = generate_with_protoc_in(&includes, &files, &params, scratch.path());
    assert_eq!(
        generated.keys().collect::<Vec<_>>(),
        ["example_slimrpc.pb.go", "pb_slimrpc_reducers.go"],
        "output beside protoc-gen-go's example.pb.go, and the package's group reducers"
    );
    let program = std::fs::read_to_string(testdata().join("go/design-note/client_group.go.tmpl"))
        .expect("read the design note client")
        .replace("RUNTIME", "v1");
    go_vet(
        &set,
        &packages,
        &generated,
        Runtime::V1,
        scratch.path(),
        Some(("main.go", &program)),
    );
}
