//! Shared core of the SlimRPC code generators (`protoc-gen-slimrpc-{python,go,rust}`).
//!
//! Owns everything language-neutral; a language crate only maps the [`Model`] to names,
//! imports and templates. It must not know any target language.
//!
//! # How a plugin uses it
//!
//! ```no_run
//! use slimrpc_codegen::{CodegenError, GeneratedFile, Generator, Model, Parameters};
//!
//! struct MyGen;
//! impl Generator for MyGen {
//!     fn name(&self) -> &str { "protoc-gen-slimrpc-mine" }
//!     // Keys accepted; anything else is rejected in CodeGeneratorResponse.error.
//!     fn parameter_keys(&self) -> &[&str] { &["paths", "M*"] }
//!     fn generate(&self, model: &Model, params: &Parameters)
//!         -> Result<Vec<GeneratedFile>, CodegenError> {
//!         let mut out = Vec::new();
//!         for file in &model.files {             // only file_to_generate, in request order
//!             for svc in &file.services {        // svc.full_name = "pkg.Svc" (or "Svc")
//!                 for m in &svc.methods {        // m.kind, m.input/m.output: TypeRef
//!                     let _ = (&m.input.file, &m.input.nested_path, m.deprecated);
//!                 }
//!             }
//!             out.push(GeneratedFile { name: format!("{}_x.txt", file.stem()), content: String::new() });
//!         }
//!         Ok(out)
//!     }
//! }
//!
//! // The whole main.rs of a plugin:
//! fn main() -> std::process::ExitCode { slimrpc_codegen::plugin_main(&MyGen) }
//! ```
//!
//! Each language lib also exposes
//! `pub fn generate(request: &CodeGeneratorRequest) -> CodeGeneratorResponse`
//! (= [`respond`]`(request, &TheGenerator)`); the multi-language `protoc-gen-slimrpc` binary
//! calls that after taking `lang=` out of the parameter string ([`params::take_key`]).
//!
//! Templates are askama files under `templates/<lang>/` at the workspace root; a plugin crate
//! points at them with an `askama.toml` next to its `Cargo.toml`:
//! `[general]` / `dirs = ["../templates"]`.
//!
//! Tests and benchmarks can build a real request from `protoc --descriptor_set_out=x.pb
//! --include_imports --include_source_info` with [`plugin::request_from_descriptor_set`].
//!
//! # Guarantees
//! * `supported_features` = PROTO3_OPTIONAL | SUPPORTS_EDITIONS, editions PROTO2..=2024.
//! * Unknown parameter keys, missing files, unresolvable or non-message method types →
//!   `CodeGeneratorResponse.error` (exit 0). Undecodable stdin → stderr, non-zero exit.
//! * Output files are sorted by name; duplicate output names are an error.

pub mod arena;
pub mod driver;
pub mod error;
pub mod index;
pub mod model;
pub mod params;
pub mod plugin;

pub use driver::{
    DriverError, GeneratedFile, Generator, SUPPORTED_FEATURES, base_response, decode_request,
    error_response, plugin_main, respond, run_plugin, try_generate,
};
pub use error::{CodegenError, ParamError};
pub use index::{TypeIndex, TypeKind, TypeRef};
pub use model::{Comments, File, Method, MethodKind, Model, Service};
pub use params::Parameters;
pub use plugin::{CodeGeneratorRequest, CodeGeneratorResponse};
