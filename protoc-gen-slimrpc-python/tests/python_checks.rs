//! Every generated Python file passes `ruff check`, `ruff format --check` and `mypy --strict`
//! (against protoc's `.pyi` types and the typing of the official bindings it targets) and
//! imports under those bindings: `runtime=v3` (the default) under slim-bindings 3.3.8
//! (`.venv3`), `runtime=v1` under 1.3.0 (`.venv`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

/// Generates the corpus plus `examples/example.proto` with protoc's Python and pyi output,
/// with the plugin parameter `param`.
fn generate_all(out: &Path, param: Option<&str>) -> Vec<String> {
    let run = protoc(&corpus_includes(), &corpus_files(), out, param, true);
    assert_ok("protoc (corpus)", &run);
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        out,
        param,
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
fn generated_python_of_both_runtimes_is_ruff_clean_and_ruff_formatted() {
    for (runtime, param) in RUNTIMES {
        let work = scratch(&format!("ruff-{runtime}"));
        let out = work.join("gen");
        std::fs::create_dir_all(&out).expect("mkdir gen");
        let stubs = generate_all(&out, param);
        let paths: Vec<String> = stubs.iter().map(|s| format!("gen/{s}")).collect();
        let args: Vec<&str> = paths.iter().map(String::as_str).collect();
        // Run from the parent of the output so the _pb2 modules are third-party imports, as
        // in a project that generates into a sub-directory.
        let mut check = vec!["check", "--no-cache"];
        check.extend(&args);
        assert_ok(
            &format!("ruff check ({runtime})"),
            &run_in(&work, &venv_bin("ruff"), &check),
        );
        let mut format = vec!["format", "--check", "--no-cache"];
        format.extend(&args);
        assert_ok(
            &format!("ruff format --check ({runtime})"),
            &run_in(&work, &venv_bin("ruff"), &format),
        );
    }
}

/// `mypy --strict` on every stub of `runtime`, with the site-packages of the Python that has
/// that runtime's official bindings (`--python-executable`): slim_bindings and protobuf's
/// types come from there, so the stubs are checked against the typing they will run on.
fn mypy_strict(runtime: &str, param: Option<&str>) {
    let out = scratch(&format!("mypy-{runtime}"));
    let stubs = generate_all(&out, param);
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
    let python = python_for(runtime);
    let python = python.display().to_string();
    let mut args = vec!["--config-file", "mypy.ini", "--python-executable", &python];
    args.extend(stubs.iter().map(String::as_str));
    let run = run_in(&out, &venv_bin("mypy"), &args);
    assert_ok(&format!("mypy --strict ({runtime})"), &run);
    assert!(
        String::from_utf8_lossy(&run.stdout)
            .contains(&format!("no issues found in {} source files", stubs.len())),
        "mypy did not check every stub: {}",
        String::from_utf8_lossy(&run.stdout)
    );
}

#[test]
fn generated_python_v3_passes_mypy_strict_against_slim_bindings_3_3_8_typing() {
    mypy_strict(RUNTIMES[0].0, RUNTIMES[0].1);
}

#[test]
fn generated_python_v1_passes_mypy_strict_against_slim_bindings_1_3_0_typing() {
    mypy_strict(RUNTIMES[1].0, RUNTIMES[1].1);
}

/// Imports every stub of `runtime` under the Python with its official bindings and counts
/// the classes and registration functions.
fn imports_under_official_bindings(runtime: &str, param: Option<&str>) {
    let out = scratch(&format!("import-{runtime}"));
    let stubs = generate_all(&out, param);
    let modules: Vec<String> = stubs
        .iter()
        .map(|s| s.trim_end_matches(".py").replace('/', "."))
        .collect();
    let version = bindings_version(runtime);
    let script = format!(
        "import importlib, importlib.metadata, inspect\n\
         assert importlib.metadata.version('slim-bindings') == '{version}', importlib.metadata.version('slim-bindings')\n\
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
    let run = run_in(&out, &python_for(runtime), &["-c", &script]);
    assert_ok(&format!("python import ({runtime})"), &run);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        stdout.contains(&format!("imported {} modules", modules.len())),
        "{stdout}"
    );
}

#[test]
fn generated_python_v3_imports_under_official_slim_bindings_3_3_8() {
    imports_under_official_bindings(RUNTIMES[0].0, RUNTIMES[0].1);
}

#[test]
fn generated_python_v1_imports_under_official_slim_bindings_1_3_0() {
    imports_under_official_bindings(RUNTIMES[1].0, RUNTIMES[1].1);
}

#[test]
fn example_programs_are_ruff_clean_and_pass_mypy_strict_with_generated_v1_stubs() {
    // examples/python/ is written for slim-bindings 1.3.0 (.venv), so it gets runtime=v1.
    let out = scratch("examples-check");
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        &out,
        Some("runtime=v1"),
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

#[test]
fn relative_imports_mode_is_ruff_clean_and_imports_inside_a_package() {
    let work = scratch("relative");
    // The whole corpus: lint only (protoc's own _pb2 files import their deps absolutely,
    // so a corpus with cross-file imports cannot live inside one package).
    let out = work.join("gen");
    std::fs::create_dir_all(&out).expect("mkdir gen");
    let run = protoc(
        &corpus_includes(),
        &corpus_files(),
        &out,
        Some("imports=relative"),
        false,
    );
    assert_ok("protoc imports=relative", &run);
    let mut stubs = Vec::new();
    walk(&out, &out, &mut stubs, "py");
    let rel =
        std::fs::read_to_string(out.join("cross/a/v1/uses_both_pb2_slimrpc.py")).expect("stub");
    assert!(
        rel.contains("from ...b.v1 import common_pb2 as cross_dot_b_dot_v1_dot_common__pb2"),
        "{rel}"
    );
    assert!(
        rel.contains("from ...c.v1 import common_pb2 as cross_dot_c_dot_v1_dot_common__pb2"),
        "{rel}"
    );
    let wkt = std::fs::read_to_string(out.join("wkt/well_known_pb2_slimrpc.py")).expect("stub");
    assert!(
        wkt.contains("from google.protobuf import empty_pb2 as google_dot_protobuf_dot_empty__pb2")
    );
    let paths: Vec<String> = stubs.iter().map(|s| format!("gen/{s}")).collect();
    let mut check = vec!["check", "--no-cache"];
    check.extend(paths.iter().map(String::as_str));
    assert_ok(
        "ruff check (relative)",
        &run_in(&work, &venv_bin("ruff"), &check),
    );
    let mut format = vec!["format", "--check", "--no-cache"];
    format.extend(paths.iter().map(String::as_str));
    assert_ok(
        "ruff format (relative)",
        &run_in(&work, &venv_bin("ruff"), &format),
    );

    // The example inside a package imports and exposes its stubs.
    let pkg = work.join("app/protos");
    std::fs::create_dir_all(&pkg).expect("mkdir package");
    std::fs::write(work.join("app/__init__.py"), "").expect("init");
    std::fs::write(pkg.join("__init__.py"), "").expect("init");
    let run = protoc(
        &[root().join("examples")],
        &["example.proto".to_string()],
        &pkg,
        Some("imports=relative"),
        true,
    );
    assert_ok("protoc example imports=relative", &run);
    let stub = std::fs::read_to_string(pkg.join("example_pb2_slimrpc.py")).expect("stub");
    assert!(
        stub.contains("from . import example_pb2 as example__pb2"),
        "{stub}"
    );
    let run = run_in(
        &work,
        &slimrpc_testkit::python3(),
        &[
            "-c",
            "from app.protos.example_pb2_slimrpc import TestGroupStub, TestStub, add_TestServicer_to_server; print('ok')",
        ],
    );
    assert_ok("import app.protos.example_pb2_slimrpc", &run);
}

#[test]
fn module_prefix_prefixes_absolute_imports_except_google() {
    let out = scratch("prefix");
    let run = protoc(
        &corpus_includes(),
        &[
            "wkt/well_known.proto".into(),
            "cross/a/v1/uses_both.proto".into(),
        ],
        &out,
        Some("module_prefix=myapp.gen"),
        false,
    );
    assert_ok("protoc module_prefix", &run);
    let cross =
        std::fs::read_to_string(out.join("cross/a/v1/uses_both_pb2_slimrpc.py")).expect("stub");
    assert!(
        cross.contains(
            "from myapp.gen.cross.b.v1 import (\n    common_pb2 as myapp_dot_gen_dot_cross_dot_b_dot_v1_dot_common__pb2,\n)"
        ),
        "{cross}"
    );
    let wkt = std::fs::read_to_string(out.join("wkt/well_known_pb2_slimrpc.py")).expect("stub");
    assert!(
        wkt.contains("from google.protobuf import empty_pb2 as google_dot_protobuf_dot_empty__pb2"),
        "{wkt}"
    );
    // Long prefixed imports are wrapped the way ruff's isort and formatter want them.
    let files = [
        "cross/a/v1/uses_both_pb2_slimrpc.py",
        "wkt/well_known_pb2_slimrpc.py",
    ];
    let mut check = vec!["check", "--no-cache"];
    check.extend(files);
    assert_ok(
        "ruff check (prefix)",
        &run_in(&out, &venv_bin("ruff"), &check),
    );
    let mut format = vec!["format", "--check", "--no-cache"];
    format.extend(files);
    assert_ok(
        "ruff format (prefix)",
        &run_in(&out, &venv_bin("ruff"), &format),
    );
}

#[test]
fn deprecated_service_and_rpc_emit_deprecation_warnings_and_others_do_not() {
    let out = scratch("deprecation");
    let run = protoc(
        &corpus_includes(),
        &["basic/shapes.proto".into()],
        &out,
        None,
        true,
    );
    assert_ok("protoc", &run);
    // The channel is never reached: the warning comes first (the stub is given None).
    let script = r#"
import asyncio, warnings
from basic import shapes_pb2_slimrpc as m

def caught(fn):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            fn()
        except AttributeError:
            pass  # None has no call_* methods
    return [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)]

assert caught(lambda: m.LegacyStub(None)) == ["service basic.v1.Legacy is deprecated"], caught(lambda: m.LegacyStub(None))
assert caught(lambda: m.LegacyGroupStub(None)) == ["service basic.v1.Legacy is deprecated"]
assert caught(lambda: m.ShapesStub(None)) == []
stub = m.ShapesStub(None)
got = caught(lambda: asyncio.run(stub.Bidi([]).__anext__()))
assert got == ["basic.v1.Shapes/Bidi is deprecated"], got
assert caught(lambda: asyncio.run(stub.Unary(None))) == []
print("deprecation ok")
"#;
    let run = run_in(&out, &slimrpc_testkit::python3(), &["-c", script]);
    assert_ok("python deprecation script", &run);
    assert!(String::from_utf8_lossy(&run.stdout).contains("deprecation ok"));
}

#[test]
fn legacy_empty_package_dot_names_package_less_services_with_a_leading_dot() {
    let out = scratch("legacy-dot");
    let plain = out.join("plain");
    let legacy = out.join("legacy");
    std::fs::create_dir_all(&plain).expect("mkdir");
    std::fs::create_dir_all(&legacy).expect("mkdir");
    let files = ["nopkg.proto".to_string(), "basic/shapes.proto".to_string()];
    assert_ok(
        "protoc",
        &protoc(&corpus_includes(), &files, &plain, None, false),
    );
    assert_ok(
        "protoc legacy",
        &protoc(
            &corpus_includes(),
            &files,
            &legacy,
            Some("legacy_empty_package_dot=true"),
            false,
        ),
    );
    let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).expect("stub");
    assert!(read(&plain, "nopkg_pb2_slimrpc.py").contains("BARE_SERVICE_NAME: Final = \"Bare\""));
    assert!(read(&legacy, "nopkg_pb2_slimrpc.py").contains("BARE_SERVICE_NAME: Final = \".Bare\""));
    // Files with a package are not affected.
    assert_eq!(
        read(&plain, "basic/shapes_pb2_slimrpc.py"),
        read(&legacy, "basic/shapes_pb2_slimrpc.py")
    );
}
