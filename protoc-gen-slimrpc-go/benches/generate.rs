//! Generation speed of protoc-gen-slimrpc-go on synthetic requests (in-process, no protoc):
//! prints a table of request sizes and the time per request. Measures only; asserts nothing.
//!
//! `cargo bench -p protoc-gen-slimrpc-go`

use std::time::Instant;

use prost_types::{
    DescriptorProto, FileDescriptorProto, FileOptions, MethodDescriptorProto,
    ServiceDescriptorProto,
};
use protoc_gen_slimrpc_go::generate;
use slimrpc_codegen::CodeGeneratorRequest;

/// `files` files, each with `services` services of `methods` methods (all four shapes).
fn request(files: usize, services: usize, methods: usize) -> CodeGeneratorRequest {
    let mut protos = Vec::new();
    for f in 0..files {
        let package = format!("bench.f{f}.v1");
        let svcs = (0..services)
            .map(|s| ServiceDescriptorProto {
                name: Some(format!("Service{s}")),
                method: (0..methods)
                    .map(|m| MethodDescriptorProto {
                        name: Some(format!("method_{m}")),
                        input_type: Some(format!(".{package}.Req")),
                        output_type: Some(format!(".{package}.Resp.Inner")),
                        client_streaming: Some(m % 4 >= 2),
                        server_streaming: Some(m % 2 == 1),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        protos.push(FileDescriptorProto {
            name: Some(format!("bench/f{f}/v1/bench.proto")),
            package: Some(package),
            message_type: vec![
                DescriptorProto {
                    name: Some("Req".into()),
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Resp".into()),
                    nested_type: vec![DescriptorProto {
                        name: Some("Inner".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            service: svcs,
            options: Some(FileOptions {
                go_package: Some(format!("example.com/bench/f{f}/v1;benchv1")),
                ..Default::default()
            }),
            syntax: Some("proto3".into()),
            ..Default::default()
        });
    }
    CodeGeneratorRequest {
        file_to_generate: protos.iter().map(|p| p.name().to_string()).collect(),
        parameter: Some("paths=source_relative".into()),
        proto_file: protos,
        source_file_descriptors: vec![],
        compiler_version: None,
    }
}

fn main() {
    println!(
        "{:>6} {:>9} {:>8} {:>12} {:>12} {:>14}",
        "files", "services", "methods", "output KiB", "runs", "ms/request"
    );
    for (files, services, methods) in [(1, 1, 4), (1, 10, 20), (10, 5, 20), (50, 2, 10)] {
        let req = request(files, services, methods);
        let first = generate(&req);
        assert!(first.error.is_none(), "{:?}", first.error);
        let bytes: usize = first
            .file
            .iter()
            .map(|f| f.content.as_deref().map_or(0, str::len))
            .sum();
        let runs = 20;
        let start = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(generate(std::hint::black_box(&req)));
        }
        let per = start.elapsed().as_secs_f64() * 1000.0 / runs as f64;
        println!(
            "{files:>6} {:>9} {:>8} {:>12.1} {runs:>12} {per:>14.3}",
            files * services,
            files * services * methods,
            bytes as f64 / 1024.0
        );
    }
}
