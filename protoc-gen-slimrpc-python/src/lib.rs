//! protoc-gen-slimrpc-python: SlimRPC stubs for the official `slim_bindings` Python package,
//! 3.x by default (`runtime=v3`), 1.3/1.4 with `runtime=v1`.
//!
//! For every proto file with services it writes `dir/File_pb2_slimrpc.py` next to protoc's
//! `dir/File_pb2.py`, containing per service: `XStub` (point-to-point), `XGroupStub` (group
//! calls; member errors are items, never a reason to drop other members' answers), an async
//! typed `XServicer` whose defaults answer UNIMPLEMENTED, and `add_XServicer_to_server`.
//! This crate maps the language-neutral model of `slimrpc-codegen` to Python names and
//! imports and renders `templates/python/`; it does no protobuf decoding of its own.
//!
//! Parameters (`--slimrpc-python_out=KEY=VALUE,...:dir` or buf `opt:`):
//! * `runtime=v3|v1` — the official bindings line: `v3` (default) = `slim-bindings` 3.x
//!   (checked against 3.3.8), `v1` = 1.3/1.4 (checked against 1.3.0; the output the plugin
//!   wrote before this parameter existed), the same values as the Go plugin's `runtime=`;
//! * `imports=absolute|relative` — how `_pb2` modules of the request's own files are imported
//!   (default `absolute`, like protoc's Python output; `google/*` files are always absolute);
//! * `module_prefix=pkg.gen` — prefix for absolute imports of non-`google/*` `_pb2` modules,
//!   for output trees that live inside a Python package;
//! * `legacy_empty_package_dot=true` — name services of package-less files `.Svc` on the wire,
//!   as the official plugin does, instead of `Svc`.

mod names;
mod render;

use slimrpc_codegen::{
    CodeGeneratorRequest, CodeGeneratorResponse, CodegenError, GeneratedFile, Generator, Model,
    Parameters,
};

pub use render::{Options, Runtime};

/// Accepted parameter keys.
pub const PARAMETER_KEYS: &[&str] = &[
    "runtime",
    "imports",
    "module_prefix",
    "legacy_empty_package_dot",
];

/// The Python generator.
#[derive(Debug, Default, Clone, Copy)]
pub struct PythonGenerator;

impl Generator for PythonGenerator {
    fn name(&self) -> &str {
        "protoc-gen-slimrpc-python"
    }

    fn parameter_keys(&self) -> &[&str] {
        PARAMETER_KEYS
    }

    fn generate(
        &self,
        model: &Model,
        params: &Parameters,
    ) -> Result<Vec<GeneratedFile>, CodegenError> {
        let options = Options::from_params(params)?;
        let mut out = Vec::new();
        for file in &model.files {
            if file.services.is_empty() {
                continue;
            }
            out.push(GeneratedFile {
                name: names::output_path(&file.name),
                content: render::render_file(file, &options)?,
            });
        }
        Ok(out)
    }
}

/// Runs the Python generator on a decoded request (entry point of the multi-language plugin).
pub fn generate(request: &CodeGeneratorRequest) -> CodeGeneratorResponse {
    slimrpc_codegen::respond(request, &PythonGenerator)
}
