//! protoc-gen-slimrpc-go: reads a `CodeGeneratorRequest` on stdin, writes the response on
//! stdout (see the library for parameters).

fn main() -> std::process::ExitCode {
    slimrpc_codegen::plugin_main(&protoc_gen_slimrpc_go::GoGenerator)
}
