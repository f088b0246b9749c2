//! protoc-gen-slimrpc: one plugin for every SlimRPC target language.
//!
//! `protoc --slimrpc_out=lang=go,paths=source_relative:out` (or buf `opt: [lang=python]`)
//! takes `lang=` out of the parameter string and hands the request, with the remaining
//! parameters, to that language's generator library. It adds no generation logic of its own.
//! A missing or unknown `lang`, or a language whose generator is not available, is reported
//! in `CodeGeneratorResponse.error`.

use slimrpc_codegen::params::take_key;
use slimrpc_codegen::{CodeGeneratorRequest, CodeGeneratorResponse, error_response};

/// Values accepted for `lang=`.
pub const LANGUAGES: &[&str] = &["python", "go", "rust"];

/// Generates the stubs of the language named by the request's `lang=` parameter.
pub fn generate(request: &CodeGeneratorRequest) -> CodeGeneratorResponse {
    let (lang, rest) = take_key(request.parameter(), "lang");
    let Some(lang) = lang else {
        return error_response(format!(
            "protoc-gen-slimrpc: missing parameter `lang`; use lang={}",
            LANGUAGES.join("|")
        ));
    };
    let mut inner = request.clone();
    inner.parameter = (!rest.is_empty()).then_some(rest);
    match lang.as_str() {
        "python" => protoc_gen_slimrpc_python::generate(&inner),
        "go" => protoc_gen_slimrpc_go::generate(&inner),
        "rust" => protoc_gen_slimrpc_rust::generate(&inner),
        other => error_response(format!(
            "protoc-gen-slimrpc: unknown language `lang={other}`; valid: {}",
            LANGUAGES.join(", ")
        )),
    }
}
