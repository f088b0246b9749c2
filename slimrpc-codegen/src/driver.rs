//! The plugin driver every `protoc-gen-slimrpc-*` main uses: decode the request, validate
//! parameters, build the model, call the language [`Generator`], encode the response.
//!
//! Only undecodable input is a process-level failure (message on stderr, non-zero exit), as
//! protoc's plugin contract says; every other problem goes into `CodeGeneratorResponse.error`
//! with exit status 0. Nothing here panics on input.

use std::io::{Read, Write};
use std::process::ExitCode;

use prost::Message;
use thiserror::Error;

use crate::error::CodegenError;
use crate::model::Model;
use crate::params::Parameters;
use crate::plugin::{
    CodeGeneratorRequest, CodeGeneratorResponse, EDITION_2023, EDITION_2024, EDITION_PROTO2,
    FEATURE_PROTO3_OPTIONAL, FEATURE_SUPPORTS_EDITIONS, ResponseFile,
};

/// Features every SlimRPC plugin declares: stubs never look at field presence, so proto3
/// `optional` and editions need nothing special.
pub const SUPPORTED_FEATURES: u64 = FEATURE_PROTO3_OPTIONAL | FEATURE_SUPPORTS_EDITIONS;
/// Oldest edition declared (protoc only checks the range for editions files; proto2/proto3
/// files are always accepted).
pub const MINIMUM_EDITION: i32 = EDITION_PROTO2;
/// Newest edition declared.
pub const MAXIMUM_EDITION: i32 = EDITION_2024;
/// First real edition (documentation aid).
pub const FIRST_EDITION: i32 = EDITION_2023;

/// One generated output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the output directory, `/`-separated.
    pub name: String,
    /// Full text.
    pub content: String,
}

/// A language generator.
///
/// Implementations are pure: the same model and parameters give byte-identical files in the
/// same order.
pub trait Generator {
    /// Program name used in messages (`protoc-gen-slimrpc-python`).
    fn name(&self) -> &str;
    /// Parameter keys accepted (a trailing `*` accepts every key with that prefix).
    fn parameter_keys(&self) -> &[&str];
    /// Produces the output files for `model.files`.
    fn generate(
        &self,
        model: &Model,
        params: &Parameters,
    ) -> Result<Vec<GeneratedFile>, CodegenError>;
}

/// Standard input that is not a `CodeGeneratorRequest`.
#[derive(Debug, Error)]
pub enum DriverError {
    /// The bytes do not decode.
    #[error("cannot decode CodeGeneratorRequest from stdin: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Reading stdin or writing stdout failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes a request (the fuzz target's entry point).
pub fn decode_request(bytes: &[u8]) -> Result<CodeGeneratorRequest, DriverError> {
    Ok(CodeGeneratorRequest::decode(bytes)?)
}

/// An empty response carrying the features declaration.
pub fn base_response() -> CodeGeneratorResponse {
    CodeGeneratorResponse {
        supported_features: Some(SUPPORTED_FEATURES),
        minimum_edition: Some(MINIMUM_EDITION),
        maximum_edition: Some(MAXIMUM_EDITION),
        ..Default::default()
    }
}

/// A response that reports `message` as the generation error.
pub fn error_response(message: impl Into<String>) -> CodeGeneratorResponse {
    CodeGeneratorResponse {
        error: Some(message.into()),
        ..base_response()
    }
}

/// Runs `generator` on a decoded request. Never fails: errors become `response.error`.
pub fn respond(request: &CodeGeneratorRequest, generator: &dyn Generator) -> CodeGeneratorResponse {
    match try_generate(request, generator) {
        Ok(files) => CodeGeneratorResponse {
            file: files
                .into_iter()
                .map(|f| ResponseFile {
                    name: Some(f.name),
                    insertion_point: None,
                    content: Some(f.content),
                })
                .collect(),
            ..base_response()
        },
        Err(e) => error_response(format!("{}: {e}", generator.name())),
    }
}

/// Parameters, model, generation; the files sorted by name for deterministic output.
pub fn try_generate(
    request: &CodeGeneratorRequest,
    generator: &dyn Generator,
) -> Result<Vec<GeneratedFile>, CodegenError> {
    let params = Parameters::parse(request.parameter(), generator.parameter_keys())?;
    let model = Model::build(request)?;
    let mut files = generator.generate(&model, &params)?;
    if let Some(bad) = files.iter().find(|f| !is_safe_output_name(&f.name)) {
        return Err(CodegenError::Generator(format!(
            "refusing to write `{}`: output names must be relative paths without `.` or `..` parts",
            bad.name
        )));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(w) = files.windows(2).find(|w| w[0].name == w[1].name) {
        return Err(CodegenError::Generator(format!(
            "two outputs would be written to `{}`",
            w[0].name
        )));
    }
    Ok(files)
}

/// What protoc accepts as an output file name: relative, `/`-separated, no empty, `.` or
/// `..` component.
pub fn is_safe_output_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('\\')
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Bytes in → bytes out: decode, [`respond`], encode. Err only for undecodable input.
pub fn run_plugin(stdin: &[u8], generator: &dyn Generator) -> Result<Vec<u8>, DriverError> {
    let request = decode_request(stdin)?;
    Ok(respond(&request, generator).encode_to_vec())
}

/// A plugin's whole `main`: stdin → [`run_plugin`] → stdout. Prints a message to stderr and
/// returns a failure code for undecodable input or i/o errors.
pub fn plugin_main(generator: &dyn Generator) -> ExitCode {
    let outcome = (|| -> Result<(), DriverError> {
        let mut input = Vec::new();
        std::io::stdin().lock().read_to_end(&mut input)?;
        let output = run_plugin(&input, generator)?;
        let mut out = std::io::stdout().lock();
        out.write_all(&output)?;
        out.flush()?;
        Ok(())
    })();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e}", generator.name());
            if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                eprintln!(
                    "{} is a protoc plugin: run it through `protoc --plugin=...` or `buf generate`",
                    generator.name()
                );
            }
            ExitCode::FAILURE
        }
    }
}
