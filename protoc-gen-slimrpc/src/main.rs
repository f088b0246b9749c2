//! protoc-gen-slimrpc: reads a CodeGeneratorRequest on stdin, dispatches on `lang=`, writes
//! the response. Undecodable input: message on stderr, non-zero exit.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use prost::Message;

fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut input) {
        eprintln!("protoc-gen-slimrpc: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let request = match slimrpc_codegen::decode_request(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("protoc-gen-slimrpc: {e}");
            if std::io::stdin().is_terminal() {
                eprintln!("protoc-gen-slimrpc is a protoc plugin: run it through protoc or buf");
            }
            return ExitCode::FAILURE;
        }
    };
    let response = protoc_gen_slimrpc::generate(&request).encode_to_vec();
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(&response).and_then(|()| out.flush()) {
        eprintln!("protoc-gen-slimrpc: cannot write stdout: {e}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
