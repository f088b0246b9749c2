//! protoc-gen-slimrpc-python: SlimRPC python stubs (not implemented yet).
