//! Issue 17: the stubs generated for the stress corpus (`testdata/stress/protos`: identifiers
//! of 10 to 120 characters, 33 imports, six levels of nesting, comments with lists, code,
//! trailing whitespace, non-ASCII, `*/` and triple quotes) and for a real proto set from the
//! package registries (every `.proto` of googleapis-common-protos from PyPI; gRPC's health and
//! reflection APIs from npm) are `ruff format` fixed points, `ruff check` clean and pass
//! `mypy --strict` against the official bindings' typing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use slimrpc_testkit::{
    googleapis_proto_files, googleapis_protos, grpc_proto_sets, stress_proto_files, stress_protos,
};

/// Generates every stub of the sets into `out` (protoc's `_pb2` modules and `.pyi` too, but
/// for googleapis, whose own are installed in the venv); returns the stubs, relative to `out`.
fn generate(out: &Path, param: Option<&str>) -> Vec<String> {
    let mut includes = vec![stress_protos(), googleapis_protos()];
    let mut files = stress_proto_files();
    for (include, set) in grpc_proto_sets() {
        includes.push(include);
        files.extend(set);
    }
    let stress = protoc(&includes, &files, out, param, true);
    assert_ok("protoc (stress corpus and gRPC sets)", &stress);
    let real = protoc(
        &[googleapis_protos()],
        &googleapis_proto_files(),
        out,
        param,
        false,
    );
    assert_ok("protoc (googleapis-common-protos)", &real);
    let mut stubs = Vec::new();
    walk(out, out, &mut stubs, "py");
    stubs.retain(|f| f.ends_with("_pb2_slimrpc.py"));
    stubs.sort();
    // 11 stress files with services, 2 of googleapis, 3 of the gRPC sets.
    assert_eq!(stubs.len(), 16, "expected every stub, got {stubs:?}");
    assert!(
        stubs.iter().any(|s| s.starts_with("google/longrunning/")),
        "{stubs:?}"
    );
    stubs
}

fn run_in(dir: &Path, program: &Path, args: &[String]) -> Output {
    Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

#[test]
fn stress_and_real_api_stubs_of_both_runtimes_are_ruff_format_fixed_points_and_ruff_clean() {
    for (runtime, param) in RUNTIMES {
        let work = scratch(&format!("stress-ruff-{runtime}"));
        let out = work.join("gen");
        std::fs::create_dir_all(&out).expect("mkdir gen");
        let stubs = generate(&out, param);
        let paths: Vec<String> = stubs.iter().map(|s| format!("gen/{s}")).collect();
        // From the parent of the output: the _pb2 modules are third-party imports.
        let mut check = vec!["check".to_string(), "--no-cache".into()];
        check.extend(paths.iter().cloned());
        assert_ok(
            &format!("ruff check ({runtime})"),
            &run_in(&work, &venv_bin("ruff"), &check),
        );
        let mut format = vec!["format".to_string(), "--check".into(), "--no-cache".into()];
        format.extend(paths.iter().cloned());
        let run = run_in(&work, &venv_bin("ruff"), &format);
        if !run.status.success() {
            let mut diff = vec!["format".to_string(), "--diff".into(), "--no-cache".into()];
            diff.extend(paths.iter().cloned());
            let d = run_in(&work, &venv_bin("ruff"), &diff);
            panic!(
                "ruff format would change generated stubs ({runtime}):\n{}",
                String::from_utf8_lossy(&d.stdout)
            );
        }
    }
}

#[test]
fn stress_and_real_api_stubs_pass_mypy_strict_against_slim_bindings_3_3_8_typing() {
    let (runtime, param) = RUNTIMES[0];
    assert_eq!(runtime, "v3");
    mypy_strict(runtime, param);
}

#[test]
fn stress_and_real_api_stubs_of_the_v1_runtime_pass_mypy_strict_against_slim_bindings_1_3_0_typing()
{
    let (runtime, param) = RUNTIMES[1];
    assert_eq!(runtime, "v1");
    mypy_strict(runtime, param);
}

/// `mypy --strict` on every stub of the sets generated for `runtime`, with the site-packages
/// of the Python that has that runtime's official bindings installed.
fn mypy_strict(runtime: &str, param: Option<&str>) {
    let out = scratch(&format!("stress-mypy-{runtime}"));
    let stubs = generate(&out, param);
    // Strict for our stubs; protoc's .pyi files are not ours, and googleapis-common-protos
    // ships .pyi files without a py.typed marker.
    let mut config = String::from(
        "[mypy]\nstrict = True\nexplicit_package_bases = True\ncache_dir = .mypy_cache\n\
         [mypy-google.api.*,google.cloud.*,google.longrunning.*,google.rpc.*,google.type.*]\n\
         follow_untyped_imports = True\n",
    );
    let mut pyi = Vec::new();
    walk(&out, &out, &mut pyi, "pyi");
    for p in pyi {
        let module = p.trim_end_matches(".pyi").replace('/', ".");
        config.push_str(&format!("[mypy-{module}]\nignore_errors = True\n"));
    }
    std::fs::write(out.join("mypy.ini"), config).expect("write mypy.ini");
    let python: PathBuf = python_for(runtime);
    let mut args = vec![
        "--config-file".to_string(),
        "mypy.ini".into(),
        "--python-executable".into(),
        python.display().to_string(),
    ];
    args.extend(stubs.iter().cloned());
    let run = run_in(&out, &venv_bin("mypy"), &args);
    assert_ok(
        &format!("mypy --strict (stress + real APIs, {runtime})"),
        &run,
    );
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains(&format!("no issues found in {} source files", stubs.len())),
        "mypy did not check every stub: {}",
        String::from_utf8_lossy(&run.stdout)
    );
}
