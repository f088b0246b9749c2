//! Plugin wall time on a large request: 50 services × 20 methods (1 000 rpcs, every shape),
//! built in memory (no protoc needed). Prints a table; asserts nothing about speed.

use std::time::{Duration, Instant};

use prost::Message;
use prost_types::{
    DescriptorProto, FileDescriptorProto, MethodDescriptorProto, ServiceDescriptorProto,
};
use protoc_gen_slimrpc_python::PythonGenerator;
use slimrpc_codegen::plugin::CodeGeneratorResponse;
use slimrpc_codegen::{CodeGeneratorRequest, Model, run_plugin};

const SERVICES: usize = 50;
const METHODS_PER_SERVICE: usize = 20;
const ITERATIONS: usize = 20;

fn request() -> CodeGeneratorRequest {
    let messages = (0..METHODS_PER_SERVICE)
        .flat_map(|m| [format!("Req{m}"), format!("Resp{m}")])
        .map(|name| DescriptorProto {
            name: Some(name),
            ..Default::default()
        })
        .collect();
    let service = (0..SERVICES)
        .map(|s| ServiceDescriptorProto {
            name: Some(format!("Service{s}")),
            method: (0..METHODS_PER_SERVICE)
                .map(|m| MethodDescriptorProto {
                    name: Some(format!("Method{m}")),
                    input_type: Some(format!(".bench.v1.Req{m}")),
                    output_type: Some(format!(".bench.v1.Resp{m}")),
                    client_streaming: Some(m % 4 >= 2),
                    server_streaming: Some(m % 2 == 1),
                    ..Default::default()
                })
                .collect(),
            options: None,
        })
        .collect();
    CodeGeneratorRequest {
        file_to_generate: vec!["bench/v1/big.proto".into()],
        proto_file: vec![FileDescriptorProto {
            name: Some("bench/v1/big.proto".into()),
            package: Some("bench.v1".into()),
            message_type: messages,
            service,
            syntax: Some("proto3".into()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    (
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1],
    )
}

fn main() {
    let req = request();
    let bytes = req.encode_to_vec();
    let mut decode = Vec::new();
    let mut model = Vec::new();
    let mut total = Vec::new();
    let mut out_len = 0;
    for _ in 0..ITERATIONS {
        let t = Instant::now();
        let decoded = CodeGeneratorRequest::decode(bytes.as_slice()).expect("decodes");
        decode.push(t.elapsed());
        let t = Instant::now();
        let m = Model::build(&decoded).expect("model");
        model.push(t.elapsed());
        assert_eq!(m.files[0].services.len(), SERVICES);
        let t = Instant::now();
        let out = run_plugin(&bytes, &PythonGenerator).expect("runs");
        total.push(t.elapsed());
        let resp = CodeGeneratorResponse::decode(out.as_slice()).expect("response");
        assert!(resp.error.is_none(), "{:?}", resp.error);
        out_len = resp.file.iter().map(|f| f.content().len()).sum();
    }
    println!(
        "protoc-gen-slimrpc-python: {SERVICES} services x {METHODS_PER_SERVICE} methods = {} rpcs, request {} bytes, output {} bytes, {ITERATIONS} iterations",
        SERVICES * METHODS_PER_SERVICE,
        bytes.len(),
        out_len
    );
    println!(
        "{:<34} {:>10} {:>10} {:>10}",
        "phase", "min", "median", "max"
    );
    for (name, s) in [
        ("decode request", decode),
        ("build model", model),
        ("run_plugin (decode+model+render)", total),
    ] {
        let (min, med, max) = stats(s);
        println!("{name:<34} {min:>10.2?} {med:>10.2?} {max:>10.2?}");
    }
}
