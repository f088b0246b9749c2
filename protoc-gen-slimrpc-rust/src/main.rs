//! protoc-gen-slimrpc-rust plugin entry point (not implemented yet).

fn main() {
    eprintln!("protoc-gen-slimrpc-rust: not implemented yet");
    std::process::exit(2);
}
