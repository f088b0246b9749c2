//! protoc-gen-slimrpc-go: SlimRPC go stubs (not implemented yet).
