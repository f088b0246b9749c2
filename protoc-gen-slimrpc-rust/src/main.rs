//! protoc-gen-slimrpc-rust: reads a CodeGeneratorRequest on stdin, writes the response.

/// A plugin runs once and exits: allocation is a bump in one arena.
#[global_allocator]
static ALLOCATOR: slimrpc_codegen::arena::Arena = slimrpc_codegen::arena::Arena::new();

fn main() -> std::process::ExitCode {
    slimrpc_codegen::plugin_main(&protoc_gen_slimrpc_rust::RustGenerator)
}
