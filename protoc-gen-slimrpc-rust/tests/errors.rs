//! Inputs the Rust generator refuses, through real protoc: the plugin answers with
//! `CodeGeneratorResponse.error` (protoc prints it and fails), never a panic or bad code.

mod common;

use std::process::Command;

use common::*;

fn generate(file: &str, param: Option<&str>) -> (bool, String) {
    let data = root().join("protoc-gen-slimrpc-rust/tests/data/collisions");
    let out = scratch("errors");
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    cmd.arg(format!("-I{}", data.display())).arg(format!(
        "--plugin=protoc-gen-slimrpc-rust={}",
        plugin().display()
    ));
    match param {
        Some(p) => cmd.arg(format!("--slimrpc-rust_out={p}:{}", out.display())),
        None => cmd.arg(format!("--slimrpc-rust_out={}", out.display())),
    };
    let run = cmd.arg(file).output().expect("run protoc");
    (
        run.status.success(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

#[test]
fn rpcs_mapping_to_one_rust_method_are_refused_with_both_names() {
    let (ok, err) = generate("snake.proto", None);
    assert!(!ok);
    assert!(
        err.contains("collide.v1.Twins") && err.contains("get_thing"),
        "{err}"
    );
    assert!(err.contains("GetThing"), "{err}");
}

#[test]
fn rpc_clashing_with_another_rpcs_with_variant_is_refused() {
    let (ok, err) = generate("with.proto", None);
    assert!(!ok);
    assert!(err.contains("fetch_with") && err.contains("Fetch"), "{err}");
}

#[test]
fn rpc_clashing_with_the_client_constructor_is_refused() {
    let (ok, err) = generate("new.proto", None);
    assert!(!ok);
    assert!(
        err.contains("`new`") && err.contains("the client's own method"),
        "{err}"
    );
}

#[test]
fn unknown_or_malformed_parameters_are_refused() {
    let (ok, err) = generate("new.proto", Some("colour=blue"));
    assert!(!ok);
    assert!(
        err.contains("unknown parameter `colour`") && err.contains("extern_path"),
        "{err}"
    );
    let (ok, err) = generate("new.proto", Some("extern_path=nodot"));
    assert!(!ok);
    assert!(err.contains("extern_path"), "{err}");
}

#[test]
fn extern_path_parameter_redirects_message_paths() {
    let data = root().join("protoc-gen-slimrpc-rust/tests/data/long_names");
    let out = scratch("extern");
    let run = Command::new(slimrpc_testkit::protoc())
        .arg(format!("-I{}", data.display()))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-rust={}",
            plugin().display()
        ))
        // `::` cannot go in `--x_out=PARAM:DIR` (protoc splits at the first `:`).
        .arg("--slimrpc-rust_opt=extern_path=.far.away=::far_crate")
        .arg(format!("--slimrpc-rust_out={}", out.display()))
        .arg("long.proto")
        .output()
        .expect("run protoc");
    assert_ok("protoc", &run);
    let text: String = read_outputs(&out).into_values().collect();
    assert!(
        text.contains("::far_crate::package::name::FarMessage"),
        "{text}"
    );
    assert!(!text.contains("super::far::away"), "{text}");
}
