//! Shared helpers of the Go generator's integration tests: running protoc and buf with the
//! plugin, and type-checking generated Go against the API-surface shims in `testdata/go/`
//! (see its README: the real Go modules cannot be downloaded here, so they are shimmed, and
//! protoc-gen-go's message types are replaced by generated stand-ins).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};
use protoc_gen_slimrpc_go::naming::{go_camel_case, path_base};
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

/// A descriptor set for `files` found under `includes`.
pub fn descriptor_set_in(
    includes: &[PathBuf],
    files: &[String],
    scratch: &Path,
) -> FileDescriptorSet {
    let out = scratch.join("descriptors.pb");
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

/// Where a Go import path lives in the type-check workspace: (module path, directory).
fn module_of(import_path: &str, runtime_module: &str) -> (String, String) {
    for shim in ["google.golang.org/protobuf", runtime_module] {
        if import_path == shim || import_path.starts_with(&format!("{shim}/")) {
            return (
                shim.to_string(),
                import_path[shim.len()..]
                    .trim_start_matches('/')
                    .to_string(),
            );
        }
    }
    let (host, rest) = import_path.split_once('/').unwrap_or((import_path, ""));
    (host.to_string(), rest.to_string())
}

/// Stand-in for protoc-gen-go's output of one file: one struct per message (nested ones
/// `Outer_Inner`, map entries skipped) with a ProtoReflect method and protoc-gen-go's field
/// names for scalar fields (message, enum and oneof fields are left out or simplified), in
/// the right package.
fn stand_in(package_name: &str, messages: &[DescriptorProto]) -> String {
    use prost_types::field_descriptor_proto::{Label, Type};
    fn scalar(t: Type) -> Option<&'static str> {
        Some(match t {
            Type::String => "string",
            Type::Bytes => "[]byte",
            Type::Bool => "bool",
            Type::Int64 | Type::Sint64 | Type::Sfixed64 => "int64",
            Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Enum => "int32",
            Type::Uint64 | Type::Fixed64 => "uint64",
            Type::Uint32 | Type::Fixed32 => "uint32",
            Type::Double => "float64",
            Type::Float => "float32",
            Type::Message | Type::Group => return None,
        })
    }
    fn collect(prefix: &str, msgs: &[DescriptorProto], out: &mut String) {
        for m in msgs {
            if m.options.as_ref().is_some_and(|o| o.map_entry()) {
                continue;
            }
            let rel = if prefix.is_empty() {
                m.name().to_string()
            } else {
                format!("{prefix}.{}", m.name())
            };
            let go = go_camel_case(&rel);
            out.push_str(&format!("\ntype {go} struct {{\n\t_ int\n"));
            for f in &m.field {
                let Some(ty) = scalar(f.r#type()) else {
                    continue;
                };
                let synthetic = f.proto3_optional();
                if f.oneof_index.is_some() && !synthetic {
                    continue;
                }
                let ty = if f.label() == Label::Repeated {
                    format!("[]{ty}")
                } else if synthetic {
                    format!("*{ty}")
                } else {
                    ty.to_string()
                };
                out.push_str(&format!("\t{} {ty}\n", go_camel_case(f.name())));
            }
            out.push_str(&format!(
                "}}\n\nfunc (x *{go}) ProtoReflect() protoreflect.Message {{ return protoimpl.Reflect(x) }}\n"
            ));
            collect(&rel, &m.nested_type, out);
        }
    }
    let mut s = format!(
        "// Stand-in for protoc-gen-go output (type-check only; see testdata/go/README.md).\n\npackage {package_name}\n\nimport (\n\tprotoreflect \"google.golang.org/protobuf/reflect/protoreflect\"\n\tprotoimpl \"google.golang.org/protobuf/runtime/protoimpl\"\n)\n"
    );
    collect("", messages, &mut s);
    s
}

/// Type-checks generated code: builds the shim workspace (runtime + protobuf shims, message
/// stand-ins for every file of `set`, the generated files placed in their Go packages), writes
/// a go.mod with `replace` directives and runs `go vet` on every generated package.
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
    for (module, shim) in [
        ("google.golang.org/protobuf", "google-protobuf"),
        (rt_module, rt_shim),
    ] {
        let dst = mods.join(shim);
        write_tree(&dst, &read_tree(&testdata().join("go").join(shim)));
        modules.insert(module.to_string(), dst);
    }
    let mut dir_of = |import_path: &str| -> PathBuf {
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
    // Message stand-ins.
    for fd in &set.file {
        if fd.message_type.is_empty() {
            continue;
        }
        let pkg = packages.get(fd.name()).expect("package of every file");
        let stem = fd.name().strip_suffix(".proto").unwrap_or(fd.name());
        let dir = dir_of(&pkg.import_path);
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join(format!("{}.pb.go", stem.replace('/', "_"))),
            stand_in(&pkg.name, &fd.message_type),
        )
        .expect("write stand-in");
    }
    // Generated files, placed by their proto file's import path.
    let mut vet_packages = BTreeSet::new();
    let mut placed = 0;
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
    }
    assert_eq!(
        placed,
        generated.len(),
        "every generated file must be placed for type-checking"
    );
    let main = ws.join("main");
    std::fs::create_dir_all(&main).expect("mkdir main");
    let mut gomod = String::from("module slimrpc.test/vet\n\ngo 1.22\n\nrequire (\n");
    for m in modules.keys() {
        gomod.push_str(&format!("\t{m} {}\n", version_for(m)));
    }
    gomod.push_str(")\n\nreplace (\n");
    for (m, d) in &modules {
        gomod.push_str(&format!("\t{m} => {}\n", d.display()));
    }
    gomod.push_str(")\n");
    std::fs::write(main.join("go.mod"), gomod).expect("write go.mod");
    let mut targets: Vec<String> = vet_packages.into_iter().collect();
    if let Some((file, content)) = extra_main {
        std::fs::write(main.join(file), content).expect("write main");
        targets.push("slimrpc.test/vet".to_string());
    }
    run(go_cmd().current_dir(&main).arg("vet").args(&targets));
    main.display().to_string()
}

fn version_for(module: &str) -> &'static str {
    match module.rsplit_once("/v") {
        Some((_, n)) if n.chars().all(|c| c.is_ascii_digit()) && n != "1" && n != "0" => match n {
            "2" => "v2.0.0",
            "3" => "v3.0.0",
            _ => "v0.0.0",
        },
        _ if module == "google.golang.org/protobuf" => "v1.36.0",
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
