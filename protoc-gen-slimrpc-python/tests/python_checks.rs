//! Every generated Python file passes `ruff check`, `ruff format --check` and `mypy --strict`
//! (against protoc's `.pyi` types and the installed slim_bindings) and imports under the
//! official slim-bindings 1.3.0.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Generates the corpus plus `examples/example.proto` with protoc's Python and pyi output.
fn generate_all(out: &Path) -> Vec<String> {
    let run = protoc(&corpus_includes(), &corpus_files(), out, None, true);
    assert_ok("protoc (corpus)", &run);
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        out,
        None,
        true,
    );
    assert_ok("protoc (example.proto)", &run);
    let mut stubs = Vec::new();
    walk(out, out, &mut stubs, "py");
    stubs.retain(|f| f.ends_with("_pb2_slimrpc.py"));
    stubs.sort();
    assert!(
        stubs.len() >= 12,
        "expected the corpus stubs, got {stubs:?}"
    );
    stubs
}

fn run_in(dir: &Path, program: &Path, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

#[test]
fn generated_python_is_ruff_clean_and_ruff_formatted() {
    let work = scratch("ruff");
    let out = work.join("gen");
    std::fs::create_dir_all(&out).expect("mkdir gen");
    let stubs = generate_all(&out);
    let paths: Vec<String> = stubs.iter().map(|s| format!("gen/{s}")).collect();
    let args: Vec<&str> = paths.iter().map(String::as_str).collect();
    // Run from the parent of the output so the _pb2 modules are third-party imports, as in
    // a project that generates into a sub-directory.
    let mut check = vec!["check", "--no-cache"];
    check.extend(&args);
    assert_ok("ruff check", &run_in(&work, &venv_bin("ruff"), &check));
    let mut format = vec!["format", "--check", "--no-cache"];
    format.extend(&args);
    assert_ok(
        "ruff format --check",
        &run_in(&work, &venv_bin("ruff"), &format),
    );
}

#[test]
fn generated_python_passes_mypy_strict() {
    let out = scratch("mypy");
    let stubs = generate_all(&out);
    // Strict for our stubs; protoc's own .pyi files are not ours to fix, and
    // googleapis-common-protos ships .pyi files without a py.typed marker.
    let mut config = String::from(
        "[mypy]\nstrict = True\nexplicit_package_bases = True\ncache_dir = .mypy_cache\n\
         [mypy-google.rpc.*,google.type.*]\nfollow_untyped_imports = True\n",
    );
    let mut pyi = Vec::new();
    walk(&out, &out, &mut pyi, "pyi");
    for p in pyi {
        let module = p.trim_end_matches(".pyi").replace('/', ".");
        config.push_str(&format!("[mypy-{module}]\nignore_errors = True\n"));
    }
    std::fs::write(out.join("mypy.ini"), config).expect("write mypy.ini");
    let mut args = vec!["--config-file", "mypy.ini"];
    args.extend(stubs.iter().map(String::as_str));
    let run = run_in(&out, &venv_bin("mypy"), &args);
    assert_ok("mypy --strict", &run);
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains(&format!("no issues found in {} source files", stubs.len())),
        "mypy did not check every stub: {}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn generated_python_imports_under_official_slim_bindings_1_3_0() {
    let out = scratch("import");
    let stubs = generate_all(&out);
    let modules: Vec<String> = stubs
        .iter()
        .map(|s| s.trim_end_matches(".py").replace('/', "."))
        .collect();
    let script = format!(
        "import importlib, importlib.metadata, inspect\n\
         assert importlib.metadata.version('slim-bindings') == '1.3.0', importlib.metadata.version('slim-bindings')\n\
         count = 0\n\
         for name in {modules:?}:\n\
         \x20   m = importlib.import_module(name)\n\
         \x20   for attr, value in vars(m).items():\n\
         \x20       if inspect.isclass(value) and attr.endswith(('Stub', 'GroupStub', 'Servicer')):\n\
         \x20           count += 1\n\
         \x20   adds = [a for a in vars(m) if a.startswith('add_') and a.endswith('Servicer_to_server')]\n\
         \x20   assert adds, name\n\
         print('imported', len({modules:?}), 'modules with', count, 'classes')\n"
    );
    let run = run_in(&out, &slimrpc_testkit::python(), &["-c", &script]);
    assert_ok("python import", &run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("imported {} modules", modules.len())),
        "{stdout}"
    );
}

#[test]
fn example_programs_are_ruff_clean_and_pass_mypy_strict_with_generated_stubs() {
    let out = scratch("examples-check");
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        &out,
        None,
        true,
    );
    assert_ok("protoc (example.proto)", &run);
    let examples = root().join("examples/python");
    let mut scripts = Vec::new();
    walk(&examples, &examples, &mut scripts, "py");
    scripts.sort();
    assert!(scripts.len() >= 4, "{scripts:?}");
    let paths: Vec<String> = scripts
        .iter()
        .map(|s| examples.join(s).display().to_string())
        .collect();
    let mut check = vec!["check", "--no-cache"];
    check.extend(paths.iter().map(String::as_str));
    assert_ok(
        "ruff check examples",
        &run_in(&root(), &venv_bin("ruff"), &check),
    );
    let mut format = vec!["format", "--check", "--no-cache"];
    format.extend(paths.iter().map(String::as_str));
    assert_ok(
        "ruff format examples",
        &run_in(&root(), &venv_bin("ruff"), &format),
    );
    let mut mypy = Command::new(venv_bin("mypy"));
    mypy.current_dir(&out)
        .env("MYPYPATH", &examples)
        .args(["--strict", "--cache-dir", ".mypy_cache"])
        .args(&paths);
    let run = mypy.output().expect("run mypy");
    assert_ok("mypy --strict examples", &run);
}
