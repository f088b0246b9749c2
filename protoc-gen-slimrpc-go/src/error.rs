//! Errors of the Go generator. Each one ends up, as text, in `CodeGeneratorResponse.error`
//! (through `slimrpc_codegen::CodegenError::Generator`); none aborts the plugin.

use thiserror::Error;

/// Why Go output could not be produced.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum GoError {
    /// `paths=` with a value other than `import` / `source_relative`.
    #[error("unknown path type {0:?}: want \"import\" or \"source_relative\"")]
    UnknownPathType(String),
    /// `runtime=` with a value other than `v3` / `v1`.
    #[error(
        "unknown runtime {0:?}: want \"v3\" (slim-bindings-go/v3 slim_rpc) or \"v1\" (slim-bindings-go slim_bindings + slimrpc)"
    )]
    UnknownRuntime(String),
    /// `module=` together with `paths=source_relative` (protoc-gen-go refuses it too).
    #[error("cannot use module= with paths=source_relative")]
    ModuleWithSourceRelative,
    /// Neither `go_package` nor an `M` parameter gives the file an import path.
    #[error(
        "unable to determine Go import path for {0:?}: add option go_package to the file or pass M{0}=<import path>"
    )]
    NoImportPath(String),
    /// An import path without `.` or `/` (most likely a package name by mistake).
    #[error(
        "invalid Go import path {import_path:?} for {file:?}: the import path must contain at least one period ('.') or forward slash ('/') character"
    )]
    InvalidImportPath { import_path: String, file: String },
    /// Two files in one import path with different package names.
    #[error("Go package {import_path} has inconsistent names {first} and {second}")]
    InconsistentPackageNames {
        import_path: String,
        first: String,
        second: String,
    },
    /// `module=` is not a prefix of an output path.
    #[error("{file}: generated file does not match prefix {module:?}")]
    ModulePrefixMismatch { file: String, module: String },
    /// Two declarations of one Go package would get the same identifier (for example rpcs
    /// `get_thing` and `GetThing`, or a message named like a generated `XClient`).
    #[error("Go package {import_path}: {first} and {second} would both be named {name}")]
    NameCollision {
        import_path: String,
        name: String,
        first: String,
        second: String,
    },
    /// Two Go packages (same name, different import paths) would write their group reducers
    /// to the same file (`paths=source_relative` with both in one directory).
    #[error(
        "Go packages {first} and {second} would both write their group reducers to {file}: give them different package names or directories"
    )]
    ReducersFileCollision {
        file: String,
        first: String,
        second: String,
    },
    /// The template engine failed (a bug, reported rather than panicking).
    #[error("rendering Go output for {file}: {message}")]
    Render { file: String, message: String },
}

impl From<GoError> for slimrpc_codegen::CodegenError {
    fn from(e: GoError) -> Self {
        slimrpc_codegen::CodegenError::Generator(e.to_string())
    }
}
