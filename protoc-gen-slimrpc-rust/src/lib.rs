//! protoc-gen-slimrpc-rust: SlimRPC rust stubs (not implemented yet).
