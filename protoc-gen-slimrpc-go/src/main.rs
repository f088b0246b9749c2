//! protoc-gen-slimrpc-go plugin entry point (not implemented yet).

fn main() {
    eprintln!("protoc-gen-slimrpc-go: not implemented yet");
    std::process::exit(2);
}
