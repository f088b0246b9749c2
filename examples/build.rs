//! Messages and SlimRPC stubs of `example.proto` into `OUT_DIR/example_service.rs`, and of
//! the gRPC interoperability protos (`testdata/grpc_testing`, package `grpc.testing`) into
//! `OUT_DIR/grpc.testing.rs`, and of grpc's `health.proto` into `OUT_DIR/grpc.health.v1.rs`,
//! through prost-build with the SlimRPC service generator. protox
//! parses the protos, so building the examples needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=example.proto");
    let fds = protox::compile(["example.proto"], ["."])?;
    protoc_gen_slimrpc_rust::configure().compile_fds(fds)?;

    let interop = "../testdata/grpc_testing";
    println!("cargo:rerun-if-changed={interop}");
    let fds = protox::compile(["test.proto"], [interop])?;
    protoc_gen_slimrpc_rust::configure().compile_fds(fds)?;

    // grpc's health.proto, as the runtime carries it (`slimrpc-runtime/src/health/`;
    // tests/health.rs checks that copy is what our plugin generates).
    let health = "../testdata/grpc_health";
    println!("cargo:rerun-if-changed={health}");
    let fds = protox::compile(["grpc/health/v1/health.proto"], [health])?;
    protoc_gen_slimrpc_rust::configure().compile_fds(fds)?;
    Ok(())
}
