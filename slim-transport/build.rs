//! Compiles the two data-plane schemas with protox (pure Rust), so building
//! this crate never needs a `protoc` binary: `proto/data_plane.proto` (SLIM
//! v1.3) into `OUT_DIR`, and `proto/v3/data_plane.proto` (SLIM v3, same
//! package name) into `OUT_DIR/v3`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let v1 = "proto/data_plane.proto";
    let v3 = "proto/v3/data_plane.proto";
    println!("cargo:rerun-if-changed={v1}");
    println!("cargo:rerun-if-changed={v3}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);

    let fds = protox::compile([v1], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;

    let v3_out = out.join("v3");
    std::fs::create_dir_all(&v3_out)?;
    let fds = protox::compile(["data_plane.proto"], ["proto/v3"])?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .out_dir(v3_out)
        .compile_fds(fds)?;
    Ok(())
}
