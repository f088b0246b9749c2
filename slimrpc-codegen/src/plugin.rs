//! Wire types of protoc's plugin protocol (`google/protobuf/compiler/plugin.proto`).
//!
//! `prost-types` 0.14 ships `compiler::CodeGeneratorRequest/Response`, but they lack the fields
//! an editions-aware plugin needs: the response's `minimum_edition`/`maximum_edition` (tags 3
//! and 4) and the request's `source_file_descriptors` (tag 17). These are our own
//! definitions with the same field numbers; descriptors themselves stay `prost_types`.
//! This module only defines messages and constants; it does not interpret them.

pub use prost_types::FileDescriptorProto;
pub use prost_types::compiler::Version;

/// An encoded `CodeGeneratorRequest` is what protoc/buf write to a plugin's stdin.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CodeGeneratorRequest {
    /// Files named on the command line; only these get output.
    #[prost(string, repeated, tag = "1")]
    pub file_to_generate: Vec<String>,
    /// The `--x_out=PARAM:dir` / buf `opt:` parameter string.
    #[prost(string, optional, tag = "2")]
    pub parameter: Option<String>,
    /// Every file in `file_to_generate` and all their imports, in topological order.
    #[prost(message, repeated, tag = "15")]
    pub proto_file: Vec<FileDescriptorProto>,
    /// The files of `file_to_generate` with source-retention options kept (editions-era protoc).
    #[prost(message, repeated, tag = "17")]
    pub source_file_descriptors: Vec<FileDescriptorProto>,
    /// protoc's version (buf sends its compatible protoc version).
    #[prost(message, optional, tag = "3")]
    pub compiler_version: Option<Version>,
}

/// What a plugin writes to stdout.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct CodeGeneratorResponse {
    /// Non-empty means generation failed (the plugin still exits 0).
    #[prost(string, optional, tag = "1")]
    pub error: Option<String>,
    /// Bitwise or of the `FEATURE_*` constants.
    #[prost(uint64, optional, tag = "2")]
    pub supported_features: Option<u64>,
    /// Oldest edition handled (an `Edition` enum value), when SUPPORTS_EDITIONS is set.
    #[prost(int32, optional, tag = "3")]
    pub minimum_edition: Option<i32>,
    /// Newest edition handled, when SUPPORTS_EDITIONS is set.
    #[prost(int32, optional, tag = "4")]
    pub maximum_edition: Option<i32>,
    /// Generated files.
    #[prost(message, repeated, tag = "15")]
    pub file: Vec<ResponseFile>,
}

/// One generated file of a [`CodeGeneratorResponse`].
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ResponseFile {
    /// Path relative to the output directory, `/`-separated.
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Insertion point in a file of another generator (unused by us).
    #[prost(string, optional, tag = "2")]
    pub insertion_point: Option<String>,
    /// The file's text.
    #[prost(string, optional, tag = "15")]
    pub content: Option<String>,
}

/// `CodeGeneratorResponse.Feature.FEATURE_PROTO3_OPTIONAL`.
pub const FEATURE_PROTO3_OPTIONAL: u64 = 1;
/// `CodeGeneratorResponse.Feature.FEATURE_SUPPORTS_EDITIONS`.
pub const FEATURE_SUPPORTS_EDITIONS: u64 = 2;

/// `google.protobuf.Edition.EDITION_PROTO2`.
pub const EDITION_PROTO2: i32 = 998;
/// `google.protobuf.Edition.EDITION_PROTO3`.
pub const EDITION_PROTO3: i32 = 999;
/// `google.protobuf.Edition.EDITION_2023`.
pub const EDITION_2023: i32 = 1000;
/// `google.protobuf.Edition.EDITION_2024`.
pub const EDITION_2024: i32 = 1001;

/// Builds a request from a serialized `FileDescriptorSet` (`protoc --descriptor_set_out
/// --include_imports --include_source_info`), as protoc would send it for `file_to_generate`.
/// Meant for tests and benchmarks that want a real request without running a plugin.
pub fn request_from_descriptor_set(
    set: &[u8],
    file_to_generate: &[&str],
    parameter: Option<&str>,
) -> Result<CodeGeneratorRequest, prost::DecodeError> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(set)?;
    Ok(CodeGeneratorRequest {
        file_to_generate: file_to_generate.iter().map(|s| s.to_string()).collect(),
        parameter: parameter.map(str::to_string),
        proto_file: set.file,
        source_file_descriptors: Vec::new(),
        compiler_version: None,
    })
}
