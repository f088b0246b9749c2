//! Typed errors of the codegen core. Every variant ends up as text in
//! `CodeGeneratorResponse.error`; none of them aborts the plugin process.

use thiserror::Error;

/// A bad plugin parameter.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParamError {
    /// A key the plugin does not know.
    #[error("unknown parameter `{key}`; valid parameters: {valid}")]
    UnknownKey { key: String, valid: String },
    /// An entry without `=`.
    #[error("parameter `{entry}` is not of the form key=value; valid parameters: {valid}")]
    NotKeyValue { entry: String, valid: String },
    /// A known key with a value the plugin cannot use.
    #[error("parameter `{key}={value}`: expected {expected}")]
    InvalidValue {
        key: String,
        value: String,
        expected: String,
    },
}

/// Any error while turning a request into generated files.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CodegenError {
    /// See [`ParamError`].
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A file listed in `file_to_generate` has no descriptor in `proto_file`.
    #[error("file `{0}` is listed in file_to_generate but its descriptor is missing")]
    MissingFile(String),
    /// Two descriptors with the same file name.
    #[error("file `{0}` appears twice in the request")]
    DuplicateFile(String),
    /// A method's input or output type is not defined by any file of the request.
    #[error(
        "{file}: method `{method}` refers to type `{type_name}`, which no file in the request defines"
    )]
    UnresolvedType {
        file: String,
        method: String,
        type_name: String,
    },
    /// A method's input or output names an enum (or something else that is not a message).
    #[error("{file}: method `{method}` uses `{type_name}`, which is not a message")]
    NotAMessage {
        file: String,
        method: String,
        type_name: String,
    },
    /// A descriptor lacks a field every valid descriptor has (e.g. a service without a name).
    #[error("{file}: invalid descriptor: {what}")]
    InvalidDescriptor { file: String, what: String },
    /// A language generator refused the input (its own message).
    #[error("{0}")]
    Generator(String),
}
