//! The `prost_build::ServiceGenerator` face: turns prost-build's view of a service (types
//! already resolved to Rust paths, honouring `extern_path` and well-known-type settings)
//! into the same view the plugin renders, so `build.rs` output equals plugin output.
//!
//! It must not resolve types itself; prost-build has done it. Errors (two rpcs mapping to
//! one Rust name) become a `compile_error!` in the output instead of a panic in `build.rs`.

use std::path::Path;

use crate::render::render_service;
use crate::view::{MethodSpec, ServiceSpec, service_view};
use slimrpc_codegen::{Comments, MethodKind};

/// Generates SlimRPC stubs beside prost's messages.
///
/// ```no_run
/// // build.rs
/// prost_build::Config::new()
///     .service_generator(Box::new(protoc_gen_slimrpc_rust::ServiceGenerator::new()))
///     .compile_protos(&["example.proto"], &["."])
///     .unwrap();
/// ```
#[derive(Debug, Default, Clone)]
pub struct ServiceGenerator {
    _private: (),
}

impl ServiceGenerator {
    /// A generator with default settings.
    pub fn new() -> Self {
        Self::default()
    }
}

fn doc(c: &prost_build::Comments) -> Vec<String> {
    let join = |v: &[String]| (!v.is_empty()).then(|| v.join("\n"));
    Comments {
        leading: join(&c.leading),
        trailing: join(&c.trailing),
        leading_detached: Vec::new(),
    }
    .doc_lines()
}

/// The spec of a prost-build service.
pub(crate) fn spec(service: &prost_build::Service) -> ServiceSpec {
    ServiceSpec {
        proto_name: service.proto_name.clone(),
        full_name: if service.package.is_empty() {
            service.proto_name.clone()
        } else {
            format!("{}.{}", service.package, service.proto_name)
        },
        doc: doc(&service.comments),
        deprecated: service.options.deprecated(),
        methods: service
            .methods
            .iter()
            .map(|m| MethodSpec {
                proto_name: m.proto_name.clone(),
                kind: MethodKind::from_streaming(m.client_streaming, m.server_streaming),
                input: m.input_type.clone(),
                output: m.output_type.clone(),
                doc: doc(&m.comments),
                deprecated: m.options.deprecated(),
            })
            .collect(),
    }
}

impl prost_build::ServiceGenerator for ServiceGenerator {
    fn generate(&mut self, service: prost_build::Service, buf: &mut String) {
        let spec = spec(&service);
        let code = service_view(&spec).and_then(|v| render_service(&v));
        if !buf.is_empty() && !buf.ends_with("\n\n") {
            buf.push('\n');
        }
        match code {
            Ok(code) => buf.push_str(&code),
            Err(e) => buf.push_str(&format!(
                "compile_error!({:?});\n",
                format!("protoc-gen-slimrpc-rust: {e}")
            )),
        }
    }
}

/// A prost-build configuration with the SlimRPC service generator installed.
pub fn configure() -> prost_build::Config {
    let mut config = prost_build::Config::new();
    config.service_generator(Box::new(ServiceGenerator::new()));
    config
}

/// `build.rs` one-liner: messages and SlimRPC stubs of `protos` into `OUT_DIR` (needs
/// `protoc`, found as prost-build finds it).
pub fn compile_protos(
    protos: &[impl AsRef<Path>],
    includes: &[impl AsRef<Path>],
) -> std::io::Result<()> {
    configure().compile_protos(protos, includes)
}
