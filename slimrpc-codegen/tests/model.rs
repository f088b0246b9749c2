//! Model building on hand-made descriptors: nested types, comments, deprecation, errors.

use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, MethodDescriptorProto,
    MethodOptions, ServiceDescriptorProto, ServiceOptions, SourceCodeInfo,
    source_code_info::Location,
};
use slimrpc_codegen::{
    CodeGeneratorRequest, CodegenError, GeneratedFile, Generator, MethodKind, Model, Parameters,
    SUPPORTED_FEATURES, respond, run_plugin,
};

fn msg(name: &str, nested: Vec<DescriptorProto>) -> DescriptorProto {
    DescriptorProto {
        name: Some(name.into()),
        nested_type: nested,
        ..Default::default()
    }
}

fn method(name: &str, input: &str, output: &str, cs: bool, ss: bool) -> MethodDescriptorProto {
    MethodDescriptorProto {
        name: Some(name.into()),
        input_type: Some(input.into()),
        output_type: Some(output.into()),
        client_streaming: Some(cs),
        server_streaming: Some(ss),
        ..Default::default()
    }
}

fn request(methods: Vec<MethodDescriptorProto>, param: Option<&str>) -> CodeGeneratorRequest {
    let dep = FileDescriptorProto {
        name: Some("dep/shared.proto".into()),
        package: Some("dep.v1".into()),
        message_type: vec![msg("Outer", vec![msg("Inner", vec![])])],
        enum_type: vec![EnumDescriptorProto {
            name: Some("Color".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let main = FileDescriptorProto {
        name: Some("a/svc.proto".into()),
        package: Some("a.v1".into()),
        dependency: vec!["dep/shared.proto".into()],
        message_type: vec![msg("Req", vec![])],
        service: vec![ServiceDescriptorProto {
            name: Some("Svc".into()),
            method: methods,
            options: Some(ServiceOptions {
                deprecated: Some(true),
                ..Default::default()
            }),
        }],
        source_code_info: Some(SourceCodeInfo {
            location: vec![
                Location {
                    path: vec![6, 0],
                    leading_comments: Some(" The service.\n  indented\n".into()),
                    ..Default::default()
                },
                Location {
                    path: vec![6, 0, 2, 0],
                    leading_comments: Some(" First.\n".into()),
                    trailing_comments: Some(" after\n".into()),
                    ..Default::default()
                },
            ],
        }),
        ..Default::default()
    };
    CodeGeneratorRequest {
        file_to_generate: vec!["a/svc.proto".into()],
        parameter: param.map(str::to_string),
        proto_file: vec![dep, main],
        ..Default::default()
    }
}

#[test]
fn nested_types_resolve_to_their_defining_file_and_path() {
    let mut m = method("Get", ".a.v1.Req", ".dep.v1.Outer.Inner", false, true);
    m.options = Some(MethodOptions {
        deprecated: Some(true),
        ..Default::default()
    });
    let model = Model::build(&request(vec![m], None)).unwrap();
    let svc = &model.files[0].services[0];
    assert_eq!(svc.full_name, "a.v1.Svc");
    assert!(svc.deprecated);
    assert_eq!(
        svc.comments.leading_lines(),
        vec!["The service.", " indented"]
    );
    let get = &svc.methods[0];
    assert_eq!(get.kind, MethodKind::ServerStreaming);
    assert!(get.deprecated);
    assert_eq!(get.output.file, "dep/shared.proto");
    assert_eq!(get.output.package, "dep.v1");
    assert_eq!(get.output.nested_path, vec!["Outer", "Inner"]);
    assert_eq!(get.output.full_name, "dep.v1.Outer.Inner");
    assert_eq!(get.input.file, "a/svc.proto");
    assert_eq!(get.comments.doc_lines(), vec!["First.", "", "after"]);
    assert_eq!(model.index.len(), 4);
}

#[test]
fn unresolvable_type_is_an_error_naming_the_method() {
    let e = Model::build(&request(
        vec![method("Get", ".a.v1.Nope", ".a.v1.Req", false, false)],
        None,
    ))
    .unwrap_err();
    assert!(
        matches!(e, CodegenError::UnresolvedType { ref type_name, .. } if type_name == ".a.v1.Nope")
    );
    assert!(e.to_string().contains("a.v1.Svc.Get"), "{e}");
}

#[test]
fn enum_as_method_type_is_rejected() {
    let e = Model::build(&request(
        vec![method("Get", ".dep.v1.Color", ".a.v1.Req", false, false)],
        None,
    ))
    .unwrap_err();
    assert!(matches!(e, CodegenError::NotAMessage { .. }), "{e}");
}

#[test]
fn missing_file_to_generate_is_an_error() {
    let mut r = request(vec![], None);
    r.file_to_generate.push("nope.proto".into());
    assert_eq!(
        Model::build(&r).unwrap_err(),
        CodegenError::MissingFile("nope.proto".into())
    );
}

struct Echo;
impl Generator for Echo {
    fn name(&self) -> &str {
        "echo"
    }
    fn parameter_keys(&self) -> &[&str] {
        &["x"]
    }
    fn generate(&self, model: &Model, _: &Parameters) -> Result<Vec<GeneratedFile>, CodegenError> {
        Ok(model
            .files
            .iter()
            .rev()
            .flat_map(|f| {
                [
                    GeneratedFile {
                        name: format!("{}.b", f.stem()),
                        content: f.package.clone(),
                    },
                    GeneratedFile {
                        name: format!("{}.a", f.stem()),
                        content: f.package.clone(),
                    },
                ]
            })
            .collect())
    }
}

#[test]
fn response_declares_optional_and_editions_and_sorts_files() {
    let resp = respond(&request(vec![], Some("x=1")), &Echo);
    assert_eq!(resp.error, None);
    assert_eq!(resp.supported_features, Some(SUPPORTED_FEATURES));
    assert_eq!(resp.minimum_edition, Some(998));
    assert_eq!(resp.maximum_edition, Some(1001));
    let names: Vec<_> = resp.file.iter().map(|f| f.name().to_string()).collect();
    assert_eq!(names, vec!["a/svc.a", "a/svc.b"]);
}

#[test]
fn unknown_parameter_goes_into_response_error() {
    let resp = respond(&request(vec![], Some("y=1")), &Echo);
    let e = resp.error.unwrap();
    assert!(
        e.contains("unknown parameter `y`") && e.contains("valid parameters: x"),
        "{e}"
    );
    assert!(resp.file.is_empty());
}

#[test]
fn garbage_bytes_are_a_decode_error_not_a_panic() {
    assert!(run_plugin(&[0xff, 0xff, 0xff, 0xff, 0x0f], &Echo).is_err());
}

#[test]
fn output_names_escaping_the_output_directory_are_refused() {
    use slimrpc_codegen::driver::is_safe_output_name;
    assert!(is_safe_output_name("a/b_pb2_slimrpc.py"));
    for bad in ["", "/abs.py", "a/../b.py", "./a.py", "a//b.py", "a\\b.py"] {
        assert!(!is_safe_output_name(bad), "{bad:?}");
    }
    let mut r = request(vec![], None);
    r.proto_file[1].name = Some("../escape.proto".into());
    r.file_to_generate = vec!["../escape.proto".into()];
    let e = respond(&r, &Echo).error.unwrap();
    assert!(e.contains("refusing to write `../escape."), "{e}");
}
