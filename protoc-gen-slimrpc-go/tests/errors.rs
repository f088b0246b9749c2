//! Bad input ends in `CodeGeneratorResponse.error` (the plugin itself exits 0), never in a
//! panic: unknown or malformed parameters, bad `paths=`/`runtime=` values, files without a Go
//! import path, `module=` conflicts and unresolvable method types.

mod common;

use std::process::Command;

use prost_types::{
    FileDescriptorProto, FileOptions, MethodDescriptorProto, ServiceDescriptorProto,
};
use protoc_gen_slimrpc_go::generate;
use slimrpc_codegen::CodeGeneratorRequest;

fn message(name: &str) -> prost_types::DescriptorProto {
    prost_types::DescriptorProto {
        name: Some(name.to_string()),
        ..Default::default()
    }
}

fn file(name: &str, go_package: Option<&str>, input: &str) -> FileDescriptorProto {
    FileDescriptorProto {
        name: Some(name.to_string()),
        package: Some("demo.v1".to_string()),
        message_type: vec![message("Req"), message("Resp")],
        service: vec![ServiceDescriptorProto {
            name: Some("Demo".to_string()),
            method: vec![MethodDescriptorProto {
                name: Some("Call".to_string()),
                input_type: Some(input.to_string()),
                output_type: Some(".demo.v1.Resp".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        }],
        options: go_package.map(|g| FileOptions {
            go_package: Some(g.to_string()),
            ..Default::default()
        }),
        syntax: Some("proto3".to_string()),
        ..Default::default()
    }
}

fn request(files: Vec<FileDescriptorProto>, parameter: &str) -> CodeGeneratorRequest {
    CodeGeneratorRequest {
        file_to_generate: files.iter().map(|f| f.name().to_string()).collect(),
        parameter: Some(parameter.to_string()),
        proto_file: files,
        source_file_descriptors: vec![],
        compiler_version: None,
    }
}

fn good_file() -> FileDescriptorProto {
    file(
        "demo/v1/demo.proto",
        Some("example.com/demo/v1;demov1"),
        ".demo.v1.Req",
    )
}

/// The error text of a request that must fail.
fn error_of(req: CodeGeneratorRequest) -> String {
    let resp = generate(&req);
    assert!(resp.file.is_empty(), "no file may be written on error");
    resp.error.expect("the response must carry an error")
}

#[test]
fn valid_request_generates_one_file_and_declares_features() {
    let resp = generate(&request(vec![good_file()], ""));
    assert_eq!(resp.error, None);
    let names: Vec<_> = resp.file.iter().map(|f| f.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "example.com/demo/v1/demo_slimrpc.pb.go",
            "example.com/demo/v1/demov1_slimrpc_reducers.go"
        ]
    );
    assert_eq!(resp.supported_features, Some(3));
}

#[test]
fn the_reducers_are_written_once_per_go_package_and_only_with_methods() {
    let mut second = good_file();
    second.name = Some("demo/v1/other.proto".into());
    second.message_type.clear();
    second.service[0].name = Some("Other".into());
    let mut empty = file(
        "demo/v2/empty.proto",
        Some("example.com/demo/v2;demov2"),
        "",
    );
    empty.service[0].method.clear();
    let mut req = request(vec![good_file(), second.clone(), empty], "");
    req.file_to_generate.reverse();
    let resp = generate(&req);
    assert_eq!(resp.error, None);
    let mut names: Vec<_> = resp.file.iter().map(|f| f.name().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "example.com/demo/v1/demo_slimrpc.pb.go",
            "example.com/demo/v1/demov1_slimrpc_reducers.go",
            "example.com/demo/v1/other_slimrpc.pb.go",
            "example.com/demo/v2/empty_slimrpc.pb.go",
        ]
    );
    // The same bytes whichever files of the package a run generates.
    let reducers = |resp: &slimrpc_codegen::CodeGeneratorResponse| {
        resp.file
            .iter()
            .find(|f| f.name().ends_with("_slimrpc_reducers.go"))
            .and_then(|f| f.content.clone())
            .expect("reducers file")
    };
    let mut only_second = request(vec![good_file(), second], "");
    only_second.file_to_generate = vec!["demo/v1/other.proto".into()];
    assert_eq!(reducers(&resp), reducers(&generate(&only_second)));
}

#[test]
fn a_message_named_like_a_reducer_is_a_collision() {
    let mut f = good_file();
    f.message_type.push(message("SlimrpcQuorum"));
    let e = error_of(request(vec![f], ""));
    assert!(
        e.contains("message demo.v1.SlimrpcQuorum") && e.contains("the group reducers"),
        "{e}"
    );
}

#[test]
fn two_packages_writing_one_reducers_file_are_refused() {
    let a = file("x/a.proto", Some("example.com/a/v1;v1"), ".demo.v1.Req");
    let mut b = file("x/b.proto", Some("example.com/b/v1;v1"), ".demo.v1.Req");
    b.package = Some("demo.v2".into());
    b.service[0].method[0].output_type = Some(".demo.v2.Resp".into());
    b.service[0].method[0].input_type = Some(".demo.v2.Req".into());
    let e = error_of(request(vec![a, b], "paths=source_relative"));
    assert!(e.contains("x/v1_slimrpc_reducers.go"), "{e}");
}

#[test]
fn unknown_parameter_is_reported_with_the_valid_keys() {
    let e = error_of(request(vec![good_file()], "plugins=grpc"));
    assert!(e.contains("plugins"), "{e}");
    assert!(e.contains("paths") && e.contains("runtime"), "{e}");
}

#[test]
fn parameter_without_a_value_is_reported() {
    let e = error_of(request(vec![good_file()], "annotate_code"));
    assert!(e.contains("annotate_code"), "{e}");
}

#[test]
fn bad_paths_value_is_reported_like_protoc_gen_go() {
    let e = error_of(request(vec![good_file()], "paths=relative"));
    assert!(
        e.contains(r#"unknown path type "relative": want "import" or "source_relative""#),
        "{e}"
    );
}

#[test]
fn bad_runtime_value_is_reported() {
    let e = error_of(request(vec![good_file()], "runtime=v2"));
    assert!(e.contains(r#"unknown runtime "v2""#), "{e}");
}

#[test]
fn file_without_go_package_or_m_mapping_is_reported() {
    let e = error_of(request(vec![file("demo.proto", None, ".demo.v1.Req")], ""));
    assert!(
        e.contains(r#"unable to determine Go import path for "demo.proto""#),
        "{e}"
    );
    // An M parameter fixes it.
    let resp = generate(&request(
        vec![file("demo.proto", None, ".demo.v1.Req")],
        "Mdemo.proto=example.com/demo;demo",
    ));
    assert_eq!(resp.error, None);
}

#[test]
fn module_with_source_relative_is_reported() {
    let e = error_of(request(
        vec![good_file()],
        "paths=source_relative,module=example.com",
    ));
    assert!(
        e.contains("cannot use module= with paths=source_relative"),
        "{e}"
    );
}

#[test]
fn module_that_is_not_a_prefix_of_the_output_is_reported() {
    let e = error_of(request(vec![good_file()], "module=example.org/other"));
    assert!(
        e.contains(r#"generated file does not match prefix "example.org/other""#),
        "{e}"
    );
}

#[test]
fn unresolvable_method_type_is_reported() {
    let e = error_of(request(
        vec![file(
            "demo/v1/demo.proto",
            Some("example.com/demo/v1"),
            ".demo.v1.Missing",
        )],
        "",
    ));
    assert!(e.contains("demo.v1.Missing"), "{e}");
}

#[test]
fn files_of_one_go_package_with_different_names_are_reported() {
    let mut a = file("a.proto", Some("example.com/p;one"), ".demo.v1.Req");
    let mut b = file("b.proto", Some("example.com/p;two"), ".demo.v1.Req");
    a.package = Some("demo.v1".into());
    b.package = Some("other.v1".into());
    b.message_type.clear();
    b.service.clear();
    let e = error_of(request(vec![a, b], ""));
    assert!(e.contains("inconsistent names"), "{e}");
}

#[test]
fn rpcs_with_the_same_go_name_are_reported() {
    let mut f = good_file();
    let mut twin = f.service[0].method[0].clone();
    twin.name = Some("call".into());
    f.service[0].method.push(twin);
    let e = error_of(request(vec![f], ""));
    assert!(e.contains("Demo_Call_MethodName"), "{e}");
    assert!(e.contains("demo.v1.Demo.call"), "{e}");
}

#[test]
fn message_named_like_a_generated_identifier_is_reported() {
    let mut f = good_file();
    f.message_type.push(message("DemoClient"));
    let e = error_of(request(vec![f], ""));
    assert!(e.contains("message demo.v1.DemoClient"), "{e}");
    assert!(e.contains("service demo.v1.Demo"), "{e}");
}

#[test]
fn legacy_empty_package_dot_needs_a_boolean() {
    let e = error_of(request(vec![good_file()], "legacy_empty_package_dot=maybe"));
    assert!(e.contains("legacy_empty_package_dot"), "{e}");
}

#[test]
fn legacy_empty_package_dot_puts_a_dot_before_package_less_service_names() {
    let mut f = file("bare.proto", None, ".Req");
    f.package = None;
    f.service[0].method[0].output_type = Some(".Resp".into());
    let text = |param: &str| {
        let resp = generate(&request(vec![f.clone()], param));
        assert_eq!(resp.error, None);
        resp.file[0].content.clone().unwrap_or_default()
    };
    assert!(text("Mbare.proto=example.com/bare").contains("const Demo_ServiceName = \"Demo\"\n"));
    assert!(
        text("Mbare.proto=example.com/bare,legacy_empty_package_dot=true")
            .contains("const Demo_ServiceName = \".Demo\"\n")
    );
    // Files with a package are not affected.
    let resp = generate(&request(vec![good_file()], "legacy_empty_package_dot=true"));
    let content = resp.file[0].content.clone().unwrap_or_default();
    assert!(content.contains("const Demo_ServiceName = \"demo.v1.Demo\"\n"));
}

#[test]
fn protoc_shows_the_plugin_error_and_fails() {
    let scratch = common::Scratch::new("protoc-error");
    let root = common::protos();
    let out = Command::new(slimrpc_testkit::protoc())
        .arg(format!("-I{}", root.display()))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-go={}",
            common::plugin().display()
        ))
        .arg(format!("--slimrpc-go_out={}", scratch.path().display()))
        .arg("--slimrpc-go_opt=runtime=v9")
        .arg("golang/editions/editions.proto")
        .output()
        .expect("run protoc");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(r#"unknown runtime "v9""#), "{stderr}");
    assert!(common::read_tree(scratch.path()).is_empty());
}

#[test]
fn undecodable_stdin_fails_without_panicking() {
    let out = Command::new(common::plugin())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(b"\xff\xff\xff not a request")?;
            child.wait_with_output()
        })
        .expect("run plugin");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot decode"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
