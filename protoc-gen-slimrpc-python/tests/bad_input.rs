//! Bad input never panics the plugin: undecodable stdin is a process error (stderr, non-zero
//! exit); unknown parameters and unresolvable types are `CodeGeneratorResponse.error` with
//! exit 0; 50 000 seeded byte mutations and 5 000 structural mutations of real requests all
//! end in one of those two ways.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use prost::Message;
use protoc_gen_slimrpc_python::PythonGenerator;
use slimrpc_codegen::plugin::{CodeGeneratorResponse, request_from_descriptor_set};
use slimrpc_codegen::{CodeGeneratorRequest, run_plugin};

fn run_binary(stdin: &[u8]) -> (Option<i32>, Vec<u8>, String) {
    let mut child = Command::new(plugin())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait plugin");
    (
        out.status.code(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real request for `files` of the corpus (descriptor set from protoc).
fn corpus_request_bytes(files: &[&str], parameter: Option<&str>) -> Vec<u8> {
    let dir = scratch("descset");
    let set = dir.join("set.pb");
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    for i in corpus_includes() {
        cmd.arg(format!("-I{}", i.display()));
    }
    let out = cmd
        .arg("--include_imports")
        .arg("--include_source_info")
        .arg(format!("--descriptor_set_out={}", set.display()))
        .args(files)
        .output()
        .expect("run protoc");
    assert_ok("protoc --descriptor_set_out", &out);
    let bytes = std::fs::read(&set).expect("read descriptor set");
    request_from_descriptor_set(&bytes, files, parameter)
        .expect("protoc's descriptor set decodes")
        .encode_to_vec()
}

#[test]
fn garbage_on_stdin_exits_non_zero_with_a_message_on_stderr() {
    let (code, stdout, stderr) = run_binary(b"\xff\xff\xff\xff\xffthis is not a protobuf");
    assert_ne!(code, Some(0), "garbage was accepted");
    assert!(stdout.is_empty(), "garbage produced a response");
    assert!(
        stderr.contains("cannot decode CodeGeneratorRequest"),
        "stderr: {stderr}"
    );
}

#[test]
fn unknown_parameter_is_a_response_error_listing_the_valid_keys() {
    let (code, stdout, _) = run_binary(&corpus_request_bytes(
        &["basic/shapes.proto"],
        Some("imports=relative,colour=blue"),
    ));
    assert_eq!(code, Some(0));
    let resp = CodeGeneratorResponse::decode(stdout.as_slice()).expect("response decodes");
    let err = resp.error.expect("an error is reported");
    assert!(err.contains("unknown parameter `colour`"), "{err}");
    assert!(
        err.contains("valid parameters: runtime, imports, module_prefix, legacy_empty_package_dot"),
        "{err}"
    );
    assert!(resp.file.is_empty());
}

#[test]
fn protoc_reports_an_unknown_parameter_and_fails() {
    let out = scratch("badparam");
    let run = protoc(
        &corpus_includes(),
        &["basic/shapes.proto".into()],
        &out,
        Some("colour=blue"),
        false,
    );
    assert!(
        !run.status.success(),
        "protoc accepted an unknown parameter"
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("unknown parameter `colour`"), "{stderr}");
}

#[test]
fn unknown_runtime_is_a_response_error_naming_v3_and_v1() {
    let (code, stdout, _) = run_binary(&corpus_request_bytes(
        &["basic/shapes.proto"],
        Some("runtime=2"),
    ));
    assert_eq!(code, Some(0));
    let resp = CodeGeneratorResponse::decode(stdout.as_slice()).expect("response decodes");
    let err = resp.error.expect("an error is reported");
    assert!(err.contains("runtime=2") && err.contains("v3, v1"), "{err}");
    assert!(resp.file.is_empty());
}

#[test]
fn invalid_parameter_value_is_a_response_error() {
    let (code, stdout, _) = run_binary(&corpus_request_bytes(
        &["basic/shapes.proto"],
        Some("imports=sideways"),
    ));
    assert_eq!(code, Some(0));
    let resp = CodeGeneratorResponse::decode(stdout.as_slice()).expect("response decodes");
    let err = resp.error.expect("an error is reported");
    assert!(
        err.contains("imports=sideways") && err.contains("absolute, relative"),
        "{err}"
    );
}

#[test]
fn unresolvable_method_type_is_a_response_error() {
    let bytes = corpus_request_bytes(&["basic/shapes.proto"], None);
    let mut req = CodeGeneratorRequest::decode(bytes.as_slice()).expect("decode");
    let file = req
        .proto_file
        .iter_mut()
        .find(|f| f.name() == "basic/shapes.proto")
        .expect("shapes.proto in request");
    file.service[0].method[0].input_type = Some(".nowhere.Missing".into());
    let (code, stdout, _) = run_binary(&req.encode_to_vec());
    assert_eq!(code, Some(0));
    let resp = CodeGeneratorResponse::decode(stdout.as_slice()).expect("response decodes");
    let err = resp.error.expect("an error is reported");
    assert!(
        err.contains(".nowhere.Missing") && err.contains("basic.v1.Shapes.Unary"),
        "{err}"
    );
}

#[test]
fn response_declares_proto3_optional_and_editions_2023_to_2024() {
    let (code, stdout, _) =
        run_binary(&corpus_request_bytes(&["editions/edition2024.proto"], None));
    assert_eq!(code, Some(0));
    let resp = CodeGeneratorResponse::decode(stdout.as_slice()).expect("response decodes");
    assert_eq!(resp.error, None);
    assert_eq!(resp.supported_features, Some(3));
    assert!(resp.minimum_edition.unwrap_or(i32::MAX) <= 1000, "{resp:?}");
    assert_eq!(resp.maximum_edition, Some(1001));
    assert_eq!(resp.file.len(), 1);
}

/// xorshift64*: a seeded generator so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.next() as u8);
            }
            3 if !b.is_empty() => {
                let i = rng.below(b.len());
                let n = rng.below(16).min(b.len() - i);
                b.drain(i..i + n);
            }
            4 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            5 => {
                // Splice a chunk of another valid request in.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let s = rng.below(other.len());
                    let e = (s + rng.below(64)).min(other.len());
                    let at = rng.below(b.len() + 1);
                    b.splice(at..at, other[s..e].iter().copied());
                }
            }
            _ if !b.is_empty() => {
                // Varint-ish edge values at a random place.
                let i = rng.below(b.len());
                b[i] = [0x00, 0x7f, 0x80, 0xff][rng.below(4)];
            }
            _ => {}
        }
    }
    b
}

#[test]
fn fifty_thousand_mutated_requests_never_panic() {
    let pool = vec![
        corpus_request_bytes(&["basic/shapes.proto"], None),
        corpus_request_bytes(&["nested/NestedTypes.proto"], Some("imports=relative")),
        corpus_request_bytes(&["naming/snake-and-keywords.proto", "nopkg.proto"], None),
    ];
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let (mut decode_errors, mut response_errors, mut generated) = (0u32, 0u32, 0u32);
    const RUNS: u32 = 50_000;
    for _ in 0..RUNS {
        let seed = &pool[rng.below(pool.len())];
        let input = mutate(&mut rng, seed, &pool);
        match run_plugin(&input, &PythonGenerator) {
            Err(_) => decode_errors += 1,
            Ok(out) => {
                let resp = CodeGeneratorResponse::decode(out.as_slice())
                    .expect("our own response decodes");
                if resp.error.is_some() {
                    response_errors += 1;
                } else {
                    generated += 1;
                }
            }
        }
    }
    eprintln!(
        "mutated requests: {RUNS} runs, {decode_errors} undecodable, {response_errors} response errors, {generated} generated"
    );
    assert_eq!(decode_errors + response_errors + generated, RUNS);
    // The mutations must exercise every path, or the test proves little.
    assert!(decode_errors > 0 && response_errors > 0 && generated > 0);
}

/// Decodable but inconsistent requests: fields of a real request dropped, renamed or
/// pointed elsewhere, then run through decode, model and rendering.
#[test]
fn five_thousand_structurally_mutated_requests_never_panic() {
    let seeds: Vec<CodeGeneratorRequest> = [
        corpus_request_bytes(&["basic/shapes.proto", "basic/more_services.proto"], None),
        corpus_request_bytes(
            &["nested/NestedTypes.proto", "cross/a/v1/uses_both.proto"],
            None,
        ),
        corpus_request_bytes(&["wkt/well_known.proto"], None),
    ]
    .iter()
    .map(|b| CodeGeneratorRequest::decode(b.as_slice()).expect("decode seed"))
    .collect();
    let words = [
        "",
        ".",
        "..",
        ".basic.v1.Ping",
        ".b.v1.Shared.Nested",
        "import",
        "a/../b.proto",
        "é",
        "google/protobuf/empty.proto",
        ".google.protobuf.Empty",
        "x=y",
        "imports=relative",
        "module_prefix=gen.py",
        "module_prefix=9bad",
        "legacy_empty_package_dot=true",
        ",,=",
    ];
    let mut rng = Rng(0xdead_beef_0000_0042);
    let (mut response_errors, mut generated) = (0u32, 0u32);
    const RUNS: u32 = 5_000;
    for _ in 0..RUNS {
        let mut req = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            let w = words[rng.below(words.len())].to_string();
            let nf = req.proto_file.len();
            match rng.below(9) {
                0 if nf > 0 => {
                    req.proto_file.remove(rng.below(nf));
                }
                1 => req.parameter = Some(w),
                2 => req.file_to_generate.push(w),
                3 if nf > 0 => {
                    let f = &mut req.proto_file[rng.below(nf)];
                    f.name = Some(w);
                }
                4 if nf > 0 => {
                    let f = &mut req.proto_file[rng.below(nf)];
                    f.package = Some(w);
                }
                5 | 6 if nf > 0 => {
                    let f = &mut req.proto_file[rng.below(nf)];
                    let si = rng.below(f.service.len().max(1));
                    if let Some(s) = f.service.get_mut(si) {
                        let mi = rng.below(s.method.len().max(1));
                        if let Some(m) = s.method.get_mut(mi) {
                            match rng.below(4) {
                                0 => m.input_type = Some(w),
                                1 => m.output_type = Some(w),
                                2 => m.name = Some(w),
                                _ => s.name = Some(w),
                            }
                        }
                    }
                }
                7 if nf > 0 => {
                    let f = &mut req.proto_file[rng.below(nf)];
                    let mi = rng.below(f.message_type.len().max(1));
                    if let Some(m) = f.message_type.get_mut(mi) {
                        m.name = Some(w);
                    }
                }
                8 if nf > 0 => {
                    let dup = req.proto_file[rng.below(nf)].clone();
                    req.proto_file.push(dup);
                }
                _ => {}
            }
        }
        let out = run_plugin(&req.encode_to_vec(), &PythonGenerator)
            .expect("a re-encoded request decodes");
        let resp = CodeGeneratorResponse::decode(out.as_slice()).expect("our own response decodes");
        if resp.error.is_some() {
            response_errors += 1;
        } else {
            generated += 1;
        }
    }
    eprintln!(
        "structural mutations: {RUNS} runs, {response_errors} response errors, {generated} generated"
    );
    assert_eq!(response_errors + generated, RUNS);
    assert!(response_errors > 0 && generated > 0);
}
