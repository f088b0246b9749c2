//! Shared helpers of the Go generator's integration tests: running protoc and buf with the
//! plugin, and compiling generated Go (`go vet` and `go build`) against the real
//! `google.golang.org/protobuf` with message types from the real `protoc-gen-go` (both pinned in
//! `testdata/go/modules/`, downloaded once by `cargo xtask setup`; the tests run with
//! `GOPROXY=off`), and against the API-surface shims of slim-bindings-go in `testdata/go/`
//! (the Go module proxy does not serve that module; see `testdata/go/README.md`).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use prost_types::FileDescriptorSet;
use protoc_gen_slimrpc_go::naming::path_base;
use protoc_gen_slimrpc_go::{PackageMap, PathType, Runtime};

/// The plugin binary cargo built for these tests.
pub fn plugin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_protoc-gen-slimrpc-go"))
}

/// `testdata/` at the workspace root.
pub fn testdata() -> PathBuf {
    slimrpc_testkit::root().join("testdata")
}

/// A fresh, empty scratch directory (removed when dropped).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "slimrpc-go-{name}-{}-{}",
            std::process::id(),
            unique()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs a command and returns stdout; panics with the output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under `dir` (relative, `/`-separated) with its content.
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .expect("under base")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read_to_string(&p).expect("read file"));
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Writes `files` under `dir`.
pub fn write_tree(dir: &Path, files: &BTreeMap<String, String>) {
    for (name, content) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, content).expect("write");
    }
}

/// `testdata/protos` (the shared corpus, Go-specific files under `golang/`).
pub fn protos() -> PathBuf {
    testdata().join("protos")
}

/// Include paths of the corpus: the protos and their third-party imports.
pub fn includes() -> Vec<PathBuf> {
    vec![protos(), testdata().join("third_party")]
}

/// A descriptor set (imports and source info included) for corpus `files`.
pub fn descriptor_set(files: &[String], scratch: &Path) -> FileDescriptorSet {
    descriptor_set_in(&includes(), files, scratch)
}

/// Where [`descriptor_set_in`] leaves protoc's descriptor set in its scratch directory;
/// [`go_vet`] hands these bytes to protoc-gen-go unchanged (re-encoding the decoded set
/// would lose fields prost-types does not know, such as the file's `edition`).
const DESCRIPTOR_SET_FILE: &str = "descriptors.pb";

/// A descriptor set for `files` found under `includes` (also kept as
/// [`DESCRIPTOR_SET_FILE`] in `scratch`).
pub fn descriptor_set_in(
    includes: &[PathBuf],
    files: &[String],
    scratch: &Path,
) -> FileDescriptorSet {
    let out = scratch.join(DESCRIPTOR_SET_FILE);
    run(Command::new(slimrpc_testkit::protoc())
        .args(includes.iter().map(|i| format!("-I{}", i.display())))
        .arg(format!("--descriptor_set_out={}", out.display()))
        .arg("--include_imports")
        .arg("--include_source_info")
        .args(files));
    let bytes = std::fs::read(&out).expect("read descriptor set");
    FileDescriptorSet::decode(bytes.as_slice()).expect("decode descriptor set")
}

/// Runs protoc with the plugin on corpus `files`; returns the generated tree.
pub fn generate_with_protoc(
    files: &[String],
    params: &[String],
    scratch: &Path,
) -> BTreeMap<String, String> {
    generate_with_protoc_in(&includes(), files, params, scratch)
}

/// Runs protoc with the plugin on `files` found under `includes`.
pub fn generate_with_protoc_in(
    includes: &[PathBuf],
    files: &[String],
    params: &[String],
    scratch: &Path,
) -> BTreeMap<String, String> {
    let out = scratch.join("protoc-out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    cmd.args(includes.iter().map(|i| format!("-I{}", i.display())))
        .arg(format!(
            "--plugin=protoc-gen-slimrpc-go={}",
            plugin().display()
        ))
        .arg(format!("--slimrpc-go_out={}", out.display()));
    if !params.is_empty() {
        cmd.arg(format!("--slimrpc-go_opt={}", params.join(",")));
    }
    run(cmd.args(files));
    read_tree(&out)
}

/// Runs `buf generate` over the corpus (a buf v2 workspace of `protos` and `third_party`,
/// limited to `paths` under `protos/` when given) with the plugin as a local plugin; returns
/// the generated tree.
pub fn generate_with_buf(
    paths: &[&str],
    params: &[String],
    scratch: &Path,
) -> BTreeMap<String, String> {
    let work = scratch.join("buf-work");
    std::fs::create_dir_all(&work).expect("mkdir");
    std::os::unix::fs::symlink(protos(), work.join("protos")).expect("symlink protos");
    std::os::unix::fs::symlink(testdata().join("third_party"), work.join("third_party"))
        .expect("symlink third_party");
    std::fs::write(
        work.join("buf.yaml"),
        "version: v2\nmodules:\n  - path: protos\n  - path: third_party\n",
    )
    .expect("write buf.yaml");
    let out = scratch.join("buf-out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut yaml = format!(
        "version: v2\nplugins:\n  - local: {}\n    out: {}\n    strategy: directory\n",
        plugin().display(),
        out.display()
    );
    if !params.is_empty() {
        yaml.push_str("    opt:\n");
        for p in params {
            yaml.push_str(&format!("      - \"{p}\"\n"));
        }
    }
    std::fs::write(work.join("buf.gen.yaml"), yaml).expect("write buf.gen.yaml");
    let mut cmd = Command::new(slimrpc_testkit::buf());
    cmd.current_dir(&work)
        .args(["generate", "protos", "--template", "buf.gen.yaml"])
        .env("BUF_CACHE_DIR", scratch.join("buf-cache"));
    for p in paths {
        cmd.arg("--path").arg(format!("protos/{p}"));
    }
    run(&mut cmd);
    read_tree(&out)
}

/// Compares `actual` with the golden tree at `dir`, or rewrites it when `SLIMRPC_BLESS=1`.
pub fn check_golden(dir: &Path, actual: &BTreeMap<String, String>) {
    if std::env::var("SLIMRPC_BLESS").as_deref() == Ok("1") {
        let _ = std::fs::remove_dir_all(dir);
        write_tree(dir, actual);
        return;
    }
    let expected = read_tree(dir);
    let exp_names: BTreeSet<&String> = expected.keys().collect();
    let act_names: BTreeSet<&String> = actual.keys().collect();
    assert_eq!(
        exp_names,
        act_names,
        "generated file set differs from {} (rerun with SLIMRPC_BLESS=1 to update)",
        dir.display()
    );
    for (name, exp) in &expected {
        let act = &actual[name];
        if exp != act {
            let line = exp
                .lines()
                .zip(act.lines())
                .position(|(a, b)| a != b)
                .map(|i| i + 1)
                .unwrap_or_else(|| exp.lines().count().min(act.lines().count()) + 1);
            panic!(
                "{name} differs from the golden in {} at line {line}:\n  golden:    {:?}\n  generated: {:?}\n(rerun with SLIMRPC_BLESS=1 to update)",
                dir.display(),
                exp.lines().nth(line - 1).unwrap_or(""),
                act.lines().nth(line - 1).unwrap_or("")
            );
        }
    }
}

/// The `go` binary with an environment that never reaches the network.
pub fn go_cmd() -> Command {
    let mut cmd = Command::new(slimrpc_testkit::go());
    let tools = slimrpc_testkit::root().join(".tools");
    cmd.env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod");
    if std::env::var_os("GOCACHE").is_none() {
        cmd.env("GOCACHE", tools.join("go-cache"));
    }
    if std::env::var_os("GOPATH").is_none() {
        cmd.env("GOPATH", tools.join("gopath"));
    }
    cmd
}

/// `gofmt` next to the `go` binary's GOROOT.
pub fn gofmt() -> PathBuf {
    let goroot = run(go_cmd().args(["env", "GOROOT"]));
    PathBuf::from(goroot.trim()).join("bin").join("gofmt")
}

/// Asserts `gofmt -l` lists none of the `.go` files under `dir`.
pub fn assert_gofmt_clean(dir: &Path) {
    let listed = run(Command::new(gofmt()).arg("-l").arg(dir));
    assert!(
        listed.trim().is_empty(),
        "gofmt -l lists generated files:\n{listed}"
    );
}

/// The real protobuf module: its packages (well-known types included) come from the module
/// cache, never from the workspace.
const PROTOBUF_MODULE: &str = "google.golang.org/protobuf";

/// `protoc-gen-go`, built by `cargo xtask setup` from the pinned `google.golang.org/protobuf`.
pub fn protoc_gen_go() -> PathBuf {
    let p = std::env::var_os("SLIMRPC_PROTOC_GEN_GO")
        .map(PathBuf::from)
        .unwrap_or_else(|| slimrpc_testkit::root().join(".tools/bin/protoc-gen-go"));
    assert!(
        p.exists(),
        "protoc-gen-go is missing at {}; run `cargo xtask setup`",
        p.display()
    );
    p
}

/// `testdata/go/modules/`: the go.mod/go.sum that pin the real Go modules of the tests.
fn pinned_modules_dir() -> PathBuf {
    testdata().join("go/modules")
}

/// The `require` lines of the pinned go.mod: (module, version).
fn pinned_requirements() -> Vec<(String, String)> {
    let gomod =
        std::fs::read_to_string(pinned_modules_dir().join("go.mod")).expect("read pinned go.mod");
    gomod
        .lines()
        .filter_map(|l| l.trim().strip_prefix("require "))
        .filter_map(|r| {
            let mut words = r.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// Where a Go import path lives in the type-check workspace: (module path, directory).
fn module_of(import_path: &str, runtime_module: &str) -> (String, String) {
    if import_path == runtime_module || import_path.starts_with(&format!("{runtime_module}/")) {
        return (
            runtime_module.to_string(),
            import_path[runtime_module.len()..]
                .trim_start_matches('/')
                .to_string(),
        );
    }
    let (host, rest) = import_path.split_once('/').unwrap_or((import_path, ""));
    (host.to_string(), rest.to_string())
}

/// Runs real protoc with real protoc-gen-go over every file of `set` that the protobuf module
/// does not already provide, each in the Go package `packages` gives it (`M` options, so
/// protoc-gen-go and our plugin agree); returns the generated files by Go import path.
fn protoc_gen_go_output(
    set: &FileDescriptorSet,
    packages: &PackageMap,
    scratch: &Path,
) -> BTreeMap<String, Vec<(String, String)>> {
    let set_file = scratch.join(DESCRIPTOR_SET_FILE);
    assert!(
        set_file.is_file(),
        "{} is missing: make `set` with descriptor_set*(.., scratch)",
        set_file.display()
    );
    let out = scratch.join("protoc-gen-go-out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let mut files = Vec::new();
    let mut options = Vec::new();
    for fd in &set.file {
        let Some(pkg) = packages.get(fd.name()) else {
            continue;
        };
        if pkg.import_path.starts_with(&format!("{PROTOBUF_MODULE}/")) {
            continue;
        }
        files.push(fd.name().to_string());
        options.push(format!("M{}={};{}", fd.name(), pkg.import_path, pkg.name));
    }
    let mut cmd = Command::new(slimrpc_testkit::protoc());
    cmd.arg(format!("--descriptor_set_in={}", set_file.display()))
        .arg(format!(
            "--plugin=protoc-gen-go={}",
            protoc_gen_go().display()
        ))
        .arg(format!("--go_out={}", out.display()))
        .arg("--go_opt=paths=import");
    for o in options {
        cmd.arg(format!("--go_opt={o}"));
    }
    run(cmd.args(&files));
    let mut by_package: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, content) in read_tree(&out) {
        let (dir, base) = name
            .rsplit_once('/')
            .expect("protoc-gen-go writes under a package");
        by_package
            .entry(dir.to_string())
            .or_default()
            .push((base.to_string(), content));
    }
    assert!(!by_package.is_empty(), "protoc-gen-go wrote nothing");
    by_package
}

/// Compiles generated code: builds a workspace with the message types protoc-gen-go writes for
/// every file of `set` and the generated files, each in its Go package, a go.mod that requires
/// the pinned real protobuf module (go.sum copied from `testdata/go/modules/`) and the
/// runtime's API shim (`replace`), then runs `go vet` and `go build` on every generated
/// package (and on `extra_main`, when given).
///
/// `SLIMRPC_GO_BINDINGS_V3` / `SLIMRPC_GO_BINDINGS_V1` name a checkout of the real
/// slim-bindings-go module (its `/v3` line, or the 1.x line) to use instead of the shim: the
/// golden and design-note tests then compile against the real module (cgo type-checks with
/// the header it ships; non-main packages are not linked, so its native library is not
/// needed). The behaviour test needs the shims' test hooks.
///
/// `generated` maps output names (as the plugin wrote them) to contents; `outputs` maps each
/// generated proto file to its output name.
pub fn go_vet(
    set: &FileDescriptorSet,
    packages: &PackageMap,
    generated: &BTreeMap<String, String>,
    runtime: Runtime,
    scratch: &Path,
    extra_main: Option<(&str, &str)>,
) -> String {
    let rt_module = match runtime {
        Runtime::V3 => "github.com/agntcy/slim-bindings-go/v3",
        Runtime::V1 => "github.com/agntcy/slim-bindings-go",
    };
    let rt_shim = match runtime {
        Runtime::V3 => "slim-bindings-go-v3",
        Runtime::V1 => "slim-bindings-v1",
    };
    let ws = scratch.join("gows");
    let mods = ws.join("mods");
    let mut modules: BTreeMap<String, PathBuf> = BTreeMap::new();
    let dst = mods.join(rt_shim);
    let rt_source = std::env::var_os(match runtime {
        Runtime::V3 => "SLIMRPC_GO_BINDINGS_V3",
        Runtime::V1 => "SLIMRPC_GO_BINDINGS_V1",
    })
    .map(PathBuf::from);
    // A real checkout links against its native library, which is not here: main packages
    // are then only vetted (type-checked), not built.
    let link_main = rt_source.is_none();
    let rt_source = rt_source.unwrap_or_else(|| testdata().join("go").join(rt_shim));
    write_tree(&dst, &read_tree(&rt_source));
    modules.insert(rt_module.to_string(), dst);
    let mut dir_of = |import_path: &str| -> PathBuf {
        assert!(
            !import_path.starts_with(PROTOBUF_MODULE),
            "{import_path} belongs to the real protobuf module"
        );
        let (module, rel) = module_of(import_path, rt_module);
        let root = modules
            .entry(module.clone())
            .or_insert_with(|| {
                let d = mods.join(module.replace(['/', '.'], "_"));
                std::fs::create_dir_all(&d).expect("mkdir module");
                std::fs::write(d.join("go.mod"), format!("module {module}\n\ngo 1.22\n"))
                    .expect("write go.mod");
                d
            })
            .clone();
        root.join(rel)
    };
    // Message types, from the real protoc-gen-go.
    for (import_path, files) in protoc_gen_go_output(set, packages, scratch) {
        let dir = dir_of(&import_path);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for (base, content) in files {
            std::fs::write(dir.join(base), content).expect("write protoc-gen-go output");
        }
    }
    // Generated files, placed by their proto file's import path; a package's reducers file
    // by the output directory and package name of the proto files placed there.
    let mut vet_packages = BTreeSet::new();
    let mut placed = 0;
    let mut reducers_of: BTreeMap<String, String> = BTreeMap::new();
    for fd in &set.file {
        let Ok(out_name) = packages.output_name(fd.name(), protoc_gen_slimrpc_go::FILE_SUFFIX)
        else {
            continue;
        };
        let Some(content) = generated.get(&out_name) else {
            continue;
        };
        let pkg = packages.get(fd.name()).expect("package");
        let dir = dir_of(&pkg.import_path);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(path_base(&out_name)), content).expect("write generated");
        placed += 1;
        vet_packages.insert(pkg.import_path.clone());
        let reducers = format!("{}{}", pkg.name, protoc_gen_slimrpc_go::REDUCERS_SUFFIX);
        let reducers = match out_name.rsplit_once('/') {
            Some((d, _)) => format!("{d}/{reducers}"),
            None => reducers,
        };
        reducers_of.insert(reducers, pkg.import_path.clone());
    }
    for (out_name, content) in generated {
        if !out_name.ends_with(protoc_gen_slimrpc_go::REDUCERS_SUFFIX) {
            continue;
        }
        let import_path = reducers_of
            .get(out_name)
            .unwrap_or_else(|| panic!("{out_name}: no generated package in its directory"));
        let dir = dir_of(import_path);
        std::fs::write(dir.join(path_base(out_name)), content).expect("write reducers");
        placed += 1;
    }
    assert_eq!(
        placed,
        generated.len(),
        "every generated file must be placed for type-checking"
    );
    let main = ws.join("main");
    std::fs::create_dir_all(&main).expect("mkdir main");
    let mut gomod = String::from("module slimrpc.test/vet\n\ngo 1.24\n\nrequire (\n");
    for (m, v) in pinned_requirements() {
        gomod.push_str(&format!("\t{m} {v}\n"));
    }
    for m in modules.keys() {
        gomod.push_str(&format!("\t{m} {}\n", version_for(m)));
    }
    gomod.push_str(")\n\nreplace (\n");
    for (m, d) in &modules {
        gomod.push_str(&format!("\t{m} => {}\n", d.display()));
    }
    gomod.push_str(")\n");
    std::fs::write(main.join("go.mod"), gomod).expect("write go.mod");
    std::fs::copy(pinned_modules_dir().join("go.sum"), main.join("go.sum")).expect("copy go.sum");
    let mut targets: Vec<String> = vet_packages.into_iter().collect();
    let mut build_targets = targets.clone();
    if let Some((file, content)) = extra_main {
        std::fs::write(main.join(file), content).expect("write main");
        targets.push("slimrpc.test/vet".to_string());
        if link_main {
            build_targets.push("slimrpc.test/vet".to_string());
        }
    }
    run(go_cmd().current_dir(&main).arg("vet").args(&targets));
    // Non-main packages are compiled and discarded; a main package lands in the scratch dir.
    run(go_cmd()
        .current_dir(&main)
        .arg("build")
        .args(&build_targets));
    main.display().to_string()
}

/// Version of a workspace module in the `require` list (replaced, so any valid version).
fn version_for(module: &str) -> &'static str {
    match module.rsplit_once("/v") {
        Some((_, n)) if n.chars().all(|c| c.is_ascii_digit()) && n != "1" && n != "0" => match n {
            "2" => "v2.0.0",
            "3" => "v3.0.0",
            _ => "v0.0.0",
        },
        _ => "v0.0.0",
    }
}

/// Builds the package map of `set` for the given options (the same rules the plugin uses).
pub fn package_map(
    set: &FileDescriptorSet,
    mappings: &[(String, String)],
    paths: PathType,
    module: Option<&str>,
) -> PackageMap {
    PackageMap::build(set.file.iter(), mappings, paths, module.map(str::to_string))
        .expect("package map")
}
