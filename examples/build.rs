//! Messages and SlimRPC stubs of `example.proto` into `OUT_DIR/example_service.rs`, through
//! prost-build with the SlimRPC service generator. protox parses the proto, so building the
//! examples needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=example.proto");
    let fds = protox::compile(["example.proto"], ["."])?;
    protoc_gen_slimrpc_rust::configure().compile_fds(fds)?;
    Ok(())
}
