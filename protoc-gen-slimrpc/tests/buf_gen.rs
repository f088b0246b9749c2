//! The workspace's `buf.gen.yaml` works: `buf generate` from the root runs our local Python
//! and Go plugins next to protoc's built-in python/pyi generators for examples/example.proto.

use std::process::Command;

#[test]
fn root_buf_gen_yaml_generates_python_and_go_stubs_for_the_example() {
    let root = slimrpc_testkit::root();
    // buf runs the plugins by their target/debug paths; make sure they are built.
    slimrpc_testkit::bin("protoc-gen-slimrpc-python");
    slimrpc_testkit::bin("protoc-gen-slimrpc-go");
    let out = root
        .join("target/test-tmp")
        .join(format!("root-buf-gen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let protoc = slimrpc_testkit::protoc();
    let protoc_dir = protoc.parent().expect("protoc has a directory");
    let run = Command::new(slimrpc_testkit::buf())
        .current_dir(&root)
        .env(
            "PATH",
            format!(
                "{}:{}",
                protoc_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("BUF_CACHE_DIR", out.join(".buf-cache"))
        .arg("generate")
        .arg("-o")
        .arg(&out)
        .output()
        .expect("run buf");
    assert!(
        run.status.success(),
        "buf generate failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "gen/python/example_pb2.py",
        "gen/python/example_pb2.pyi",
        "gen/python/example_pb2_slimrpc.py",
        "gen/go/example_slimrpc.pb.go",
        "gen/go/exampleservice_slimrpc_reducers.go",
    ] {
        assert!(out.join(f).is_file(), "buf generate did not write {f}");
    }
    let py = std::fs::read_to_string(out.join("gen/python/example_pb2_slimrpc.py"))
        .expect("read python stubs");
    assert!(py.contains("class TestGroupStub:") && py.contains("def add_TestServicer_to_server("));
    let go =
        std::fs::read_to_string(out.join("gen/go/example_slimrpc.pb.go")).expect("read go stubs");
    assert!(go.contains("package exampleservice"), "{go}");
}
