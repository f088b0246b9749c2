//! Fuzz target: arbitrary bytes as a CodeGeneratorRequest through the whole plugin pipeline
//! (decode, parameters, model, Python rendering, encode). Any panic is a bug; undecodable
//! input must come back as an error.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = slimrpc_codegen::run_plugin(data, &protoc_gen_slimrpc_python::PythonGenerator);
});
