//! Runs a Go program (`testdata/go/behaviour/main.go.tmpl`) against the stubs generated for
//! `testdata/protos/golang/`, their real protoc-gen-go message types and protobuf module, and
//! the slim-bindings-go shims of `testdata/go/`, for both runtime layouts.
//! It checks what the generated code does, not only that it compiles: Unimplemented answers
//! (not Internal), wrapped RpcErrors kept through errors.As, errors sent instead of closing a
//! stream, deadline/metadata passed to the channel, a cancelled context failing fast, wire
//! names, group calls where one member's error does not end the call for the others, and the
//! package's group reducers (first response, quorum, majority, fold; member errors that make a
//! quorum or majority unreachable; an error that ends the call).

mod common;

use std::collections::BTreeMap;

use common::*;
use protoc_gen_slimrpc_go::{PathType, Runtime};

fn behaviour(runtime: Runtime) {
    let scratch = Scratch::new(&format!("behaviour-{runtime:?}"));
    let mut files: Vec<String> = read_tree(&protos().join("golang"))
        .into_keys()
        .filter(|f| f.ends_with(".proto"))
        .map(|f| format!("golang/{f}"))
        .collect();
    files.sort();
    let mapping = (
        "golang/nogopkg/bare.proto".to_string(),
        "example.com/gen/go/nogopkg;bare".to_string(),
    );
    let mut params = vec![format!("M{}={}", mapping.0, mapping.1)];
    let (uniffi, helpers, names, server_stream) = match runtime {
        Runtime::V3 => {
            params.push("runtime=v3".into());
            (
                "github.com/agntcy/slim-bindings-go/v3/slim_rpc",
                "github.com/agntcy/slim-bindings-go/v3/slim_rpc",
                "github.com/agntcy/slim-bindings-go/v3",
                "ServerStream",
            )
        }
        Runtime::V1 => {
            params.push("runtime=v1".into());
            (
                "github.com/agntcy/slim-bindings-go",
                "github.com/agntcy/slim-bindings-go/slimrpc",
                "github.com/agntcy/slim-bindings-go",
                "RequestStream",
            )
        }
    };
    let set = descriptor_set(&files, scratch.path());
    let packages = package_map(&set, &[mapping], PathType::Import, None);
    let generated: BTreeMap<String, String> = generate_with_protoc(&files, &params, scratch.path());
    let program = std::fs::read_to_string(testdata().join("go/behaviour/main.go.tmpl"))
        .expect("read behaviour program")
        .replace("RUNTIME_UNIFFI", uniffi)
        .replace("RUNTIME_HELPERS", helpers)
        .replace("RUNTIME_NAMES", names)
        .replace("SERVER_STREAM", server_stream);
    let main_dir = go_vet(
        &set,
        &packages,
        &generated,
        runtime,
        scratch.path(),
        Some(("main.go", &program)),
    );
    let out = run(go_cmd().current_dir(&main_dir).args(["run", "."]));
    assert!(out.contains("behaviour OK"), "{out}");
}

#[test]
fn generated_v3_stubs_answer_unimplemented_keep_rpc_errors_and_survive_member_errors() {
    behaviour(Runtime::V3);
}

#[test]
fn generated_v1_stubs_answer_unimplemented_keep_rpc_errors_and_survive_member_errors() {
    behaviour(Runtime::V1);
}
