//! protoc-gen-slimrpc-rust: SlimRPC stubs for Rust, over the message types prost generates.
//!
//! Two ways in, one renderer:
//! * **protoc / buf plugin** (`protoc-gen-slimrpc-rust`): one `<package>.slimrpc.rs` per proto
//!   package with services, beside protoc-gen-prost's `<package>.rs`. Include it in the same
//!   module as the messages (`include!("example_service.slimrpc.rs")`). Message types are
//!   named as prost names them from that module (`super::other::Msg`, `outer::Inner`,
//!   `::prost_types::Timestamp`, `()` for `google.protobuf.Empty`). Parameters:
//!   `extern_path=.proto.pkg=::rust::path` (repeatable) and `compile_well_known_types=true`,
//!   with prost-build's meaning. With buf, use `strategy: all` (as for buf's prost plugins):
//!   a package's services must arrive in one request to land in one file.
//! * **prost-build** (feature `prost-build`): [`ServiceGenerator`] goes into
//!   `prost_build::Config::service_generator`, so services land in the same `OUT_DIR` file as
//!   the package's messages; [`configure`] and [`compile_protos`] are the tonic-build-style
//!   shortcuts.
//!
//! Per service `Test` of package `example_service` the output has two modules:
//!
//! ```text
//! pub mod test_client {
//!     pub struct TestClient;       // point-to-point: one async method per rpc
//!     pub struct TestGroupClient;  // group: every method yields MulticastItem per member
//! }
//! pub mod test_server {
//!     pub const SERVICE_NAME: &str = "example_service.Test";
//!     pub mod method { pub const EXAMPLE_UNARY_UNARY: &str = "ExampleUnaryUnary"; }
//!     pub trait Test;               // handlers, default answer Unimplemented
//!     pub struct TestServer<T>;     // TestServer::new(impl).register(&mut server)
//! }
//! ```
//!
//! Client methods: `example_unary_unary(req).await -> Result<Res, RpcError>`; server-streaming
//! methods return `slimrpc::ResponseStream<Res>` (lazy: the call starts when polled);
//! client-streaming methods take any `Stream<Item = Req> + Send + 'static`. Each has an
//! `_with(.., slimrpc::CallOptions)` twin for a timeout and metadata. Group methods return
//! `slimrpc::MulticastStream<Res>` (`Result<MulticastItem<Res>, RpcError>` items). Trait
//! methods are declared `fn .. -> impl Future<Output = ..> + Send` and implemented with
//! `async fn`. The user crate depends on `slimrpc` (package `slimrpc-runtime`), `prost` and
//! `futures` (for `futures::Stream`).

pub mod layout;
pub mod names;
mod render;
#[cfg(feature = "prost-build")]
mod service_generator;
pub mod view;

use std::collections::BTreeMap;

use slimrpc_codegen::{
    CodeGeneratorRequest, CodeGeneratorResponse, CodegenError, GeneratedFile, Generator, Model,
    Parameters,
};

pub use names::ExternPaths;
pub use render::{render_file, render_service};
#[cfg(feature = "prost-build")]
pub use service_generator::{ServiceGenerator, compile_protos, configure};
pub use view::{MethodSpec, ServiceSpec, ServiceView, service_view};

/// Accepted parameter keys.
pub const PARAMETER_KEYS: &[&str] = &["extern_path", "compile_well_known_types"];

/// The Rust generator, for the shared plugin driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct RustGenerator;

impl Generator for RustGenerator {
    fn name(&self) -> &str {
        "protoc-gen-slimrpc-rust"
    }

    fn parameter_keys(&self) -> &[&str] {
        PARAMETER_KEYS
    }

    fn generate(
        &self,
        model: &Model,
        params: &Parameters,
    ) -> Result<Vec<GeneratedFile>, CodegenError> {
        let externs = ExternPaths::from_params(params)?;
        // package → (source files, services). Files in name order: protoc and buf list them
        // differently, and the output must not depend on that.
        let mut files: Vec<_> = model.files.iter().collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        let mut packages: BTreeMap<&str, (Vec<&str>, Vec<ServiceView>)> = BTreeMap::new();
        for file in files {
            if file.services.is_empty() {
                continue;
            }
            let entry = packages.entry(file.package.as_str()).or_default();
            entry.0.push(file.name.as_str());
            for svc in &file.services {
                let spec = ServiceSpec {
                    proto_name: svc.name.clone(),
                    full_name: svc.full_name.clone(),
                    doc: svc.comments.doc_lines(),
                    deprecated: svc.deprecated,
                    methods: svc
                        .methods
                        .iter()
                        .map(|m| MethodSpec {
                            proto_name: m.name.clone(),
                            kind: m.kind,
                            input: names::message_path(&m.input, &file.package, &externs),
                            output: names::message_path(&m.output, &file.package, &externs),
                            doc: m.comments.doc_lines(),
                            deprecated: m.deprecated,
                        })
                        .collect(),
                };
                entry.1.push(service_view(&spec)?);
            }
        }
        packages
            .into_iter()
            .map(|(package, (sources, services))| {
                Ok(GeneratedFile {
                    name: names::output_file(package),
                    content: render_file(&sources, &services)?,
                })
            })
            .collect()
    }
}

/// Runs the Rust generator on a decoded request (entry point of the multi-language plugin).
pub fn generate(request: &CodeGeneratorRequest) -> CodeGeneratorResponse {
    slimrpc_codegen::respond(request, &RustGenerator)
}
