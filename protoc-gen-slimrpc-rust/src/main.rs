//! protoc-gen-slimrpc-rust: reads a CodeGeneratorRequest on stdin, writes the response.

fn main() -> std::process::ExitCode {
    slimrpc_codegen::plugin_main(&protoc_gen_slimrpc_rust::RustGenerator)
}
