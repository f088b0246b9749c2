//! protoc-gen-slimrpc-python plugin entry point (not implemented yet).

fn main() {
    eprintln!("protoc-gen-slimrpc-python: not implemented yet");
    std::process::exit(2);
}
