//! The multi-language plugin: `lang=python` and `lang=go` through real protoc give exactly
//! what the single-language plugins give; a missing, unknown or unavailable language is a
//! `CodeGeneratorResponse.error`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prost::Message;
use slimrpc_codegen::CodeGeneratorRequest;
use slimrpc_codegen::plugin::CodeGeneratorResponse;

fn root() -> PathBuf {
    slimrpc_testkit::root()
}

fn scratch(name: &str) -> PathBuf {
    let d = root()
        .join("target/test-tmp")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// protoc over `basic/shapes.proto` with `plugin` registered as `protoc-gen-<flag>`.
fn protoc(plugin: &str, flag: &str, param: &str, out: &Path) -> Output {
    std::fs::create_dir_all(out).expect("mkdir out");
    Command::new(slimrpc_testkit::protoc())
        .arg(format!("-I{}", root().join("testdata/protos").display()))
        .arg(format!(
            "--plugin=protoc-gen-{flag}={}",
            slimrpc_testkit::bin(plugin).display()
        ))
        .arg(format!("--{flag}_out={param}:{}", out.display()))
        .arg("basic/shapes.proto")
        .output()
        .expect("run protoc")
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "protoc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lang_python_equals_the_python_plugin_output() {
    let dir = scratch("lang-python");
    assert_ok(&protoc(
        "protoc-gen-slimrpc",
        "slimrpc",
        "lang=python",
        &dir.join("multi"),
    ));
    assert_ok(&protoc(
        "protoc-gen-slimrpc-python",
        "slimrpc-python",
        "imports=absolute",
        &dir.join("single"),
    ));
    let multi = std::fs::read_to_string(dir.join("multi/basic/shapes_pb2_slimrpc.py"))
        .expect("lang=python wrote basic/shapes_pb2_slimrpc.py");
    let single = std::fs::read_to_string(dir.join("single/basic/shapes_pb2_slimrpc.py"))
        .expect("python plugin output");
    assert!(multi.contains("class ShapesGroupStub:"));
    assert_eq!(multi, single);
}

#[test]
fn lang_go_equals_the_go_plugin_output_with_the_remaining_parameters() {
    let dir = scratch("lang-go");
    assert_ok(&protoc(
        "protoc-gen-slimrpc",
        "slimrpc",
        "lang=go,paths=source_relative",
        &dir.join("multi"),
    ));
    assert_ok(&protoc(
        "protoc-gen-slimrpc-go",
        "slimrpc-go",
        "paths=source_relative",
        &dir.join("single"),
    ));
    let multi = std::fs::read_to_string(dir.join("multi/basic/shapes_slimrpc.pb.go"))
        .expect("lang=go wrote basic/shapes_slimrpc.pb.go");
    let single = std::fs::read_to_string(dir.join("single/basic/shapes_slimrpc.pb.go"))
        .expect("go plugin output");
    assert!(multi.contains("package "));
    assert_eq!(multi, single);
    let reducers = |sub: &str| {
        std::fs::read_to_string(dir.join(sub).join("basic/basicv1_slimrpc_reducers.go"))
            .expect("the package's group reducers")
    };
    assert!(reducers("multi").contains("func SlimrpcQuorum["));
    assert_eq!(reducers("multi"), reducers("single"));
}

fn respond(parameter: Option<&str>) -> CodeGeneratorResponse {
    let request = CodeGeneratorRequest {
        parameter: parameter.map(str::to_string),
        ..Default::default()
    };
    let bytes = protoc_gen_slimrpc::generate(&request).encode_to_vec();
    CodeGeneratorResponse::decode(bytes.as_slice()).expect("response decodes")
}

#[test]
fn missing_or_unknown_language_is_a_response_error() {
    let e = respond(None).error.expect("missing lang is an error");
    assert!(
        e.contains("missing parameter `lang`") && e.contains("python|go|rust"),
        "{e}"
    );
    let e = respond(Some("lang=cobol"))
        .error
        .expect("unknown lang is an error");
    assert!(e.contains("unknown language `lang=cobol`"), "{e}");
    let e = respond(Some("lang=rust,colour=blue"))
        .error
        .expect("rust keys are checked by the rust generator");
    assert!(e.contains("protoc-gen-slimrpc-rust"), "{e}");
    let e = respond(Some("lang=python,colour=blue"))
        .error
        .expect("inner keys are checked");
    assert!(e.contains("unknown parameter `colour`"), "{e}");
}

#[test]
fn lang_rust_equals_the_rust_plugin_output() {
    let dir = scratch("lang-rust");
    assert_ok(&protoc(
        "protoc-gen-slimrpc",
        "slimrpc",
        "lang=rust",
        &dir.join("multi"),
    ));
    assert_ok(&protoc(
        "protoc-gen-slimrpc-rust",
        "slimrpc-rust",
        "compile_well_known_types=false",
        &dir.join("single"),
    ));
    let multi = std::fs::read_to_string(dir.join("multi/basic.v1.slimrpc.rs"))
        .expect("lang=rust wrote basic.v1.slimrpc.rs");
    let single = std::fs::read_to_string(dir.join("single/basic.v1.slimrpc.rs"))
        .expect("rust plugin output");
    assert!(multi.contains("pub struct ShapesGroupClient"));
    assert_eq!(multi, single);
}
