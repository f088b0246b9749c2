//! protoc-gen-slimrpc-go: SlimRPC Go stubs, one `<file>_slimrpc.pb.go` per proto file with
//! services, placed and packaged exactly like protoc-gen-go's `<file>.pb.go` so it compiles
//! against those message types.
//!
//! Per service it emits: wire-name constants, `XClient` (point-to-point) and `XGroupClient`
//! (group calls: one item per member response, tagged with the member; a member's error does
//! not end the call), `XServer`, `UnimplementedXServer` (answers `Unimplemented`),
//! `UnsafeXServer` and `RegisterXServer`. Proto comments and `deprecated` are carried over.
//! Each Go package with a service with methods also gets `<package>_slimrpc_reducers.go`
//! (once per package): the client-side group reducers `SlimrpcFirstResponse`,
//! `SlimrpcQuorum`, `SlimrpcMajority`, `SlimrpcFoldResponses` and `SlimrpcReduceError`.
//!
//! Parameters (anything else is an error in `CodeGeneratorResponse.error`):
//! * `paths=import|source_relative`, `module=<prefix>`, `M<file>=<import path>[;<name>]` —
//!   as protoc-gen-go;
//! * `runtime=v3|v1` — the Go runtime layout (see [`runtime::Runtime`]); default `v3`;
//! * `legacy_empty_package_dot=true` — name services of package-less files `.Svc` on the wire,
//!   as the official plugin does, instead of `Svc` (same option as the Python plugin).
//!
//! Using the output (v3 layout; `pb` is the package of the generated code):
//!
//! ```go
//! // Server: the same implementation serves point-to-point and group calls.
//! type testServer struct{ pb.UnimplementedTestServer }
//! func (testServer) ExampleUnaryUnary(ctx context.Context, in *pb.ExampleRequest) (*pb.ExampleResponse, error) { ... }
//! pb.RegisterTestServer(server, testServer{})
//!
//! // Group client: every member answers; items carry the member that sent them.
//! channel, _ := slim_rpc.ChannelNewGroupWithConnection(app, members, &connID)
//! stream, err := pb.NewTestGroupClient(channel).ExampleUnaryUnary(ctx, req)
//! for {
//!     item, err := stream.Recv()
//!     if err != nil { log.Print(err); continue } // one member failed; the others go on
//!     if item == nil { break }                    // every member has finished
//!     log.Printf("%v: %v", item.Context.Source, item.Value)
//! }
//! ```
//!
//! This crate maps the language-neutral model of `slimrpc-codegen` to Go; it does not parse
//! requests or parameters itself.

pub mod emit;
pub mod error;
pub mod imports;
pub mod naming;
pub mod packages;
pub mod reserved;
pub mod runtime;

use slimrpc_codegen::{
    CodeGeneratorRequest, CodeGeneratorResponse, CodegenError, GeneratedFile, Generator, Model,
    Parameters,
};

pub use error::GoError;
pub use packages::{GoPackage, PackageMap, PathType};
pub use runtime::Runtime;

/// Suffix of every generated file (beside protoc-gen-go's `.pb.go`).
pub const FILE_SUFFIX: &str = "_slimrpc.pb.go";

/// Suffix of the group reducers file written once per Go package with a group client:
/// `<package name>_slimrpc_reducers.go`, in that package's output directory. protoc-gen-go
/// only writes names ending in `.pb.go`, so no proto file can produce it.
pub const REDUCERS_SUFFIX: &str = "_slimrpc_reducers.go";

/// The Go generator, for the shared plugin driver.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoGenerator;

/// Parameter keys the Go generator accepts.
pub const PARAMETER_KEYS: &[&str] = &[
    "paths",
    "module",
    "runtime",
    "legacy_empty_package_dot",
    "M*",
];

/// Options decoded from the parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoOptions {
    /// `paths=`.
    pub paths: PathType,
    /// `module=`.
    pub module: Option<String>,
    /// `runtime=`.
    pub runtime: Runtime,
    /// `M<file>=<value>` as (`file`, `value`), in order.
    pub mappings: Vec<(String, String)>,
    /// `legacy_empty_package_dot=`.
    pub legacy_empty_package_dot: bool,
}

impl GoOptions {
    /// Interprets validated parameters.
    pub fn from_parameters(params: &Parameters) -> Result<Self, CodegenError> {
        let paths = match params.get("paths") {
            Some(v) => PathType::parse(v)?,
            None => PathType::Import,
        };
        let runtime = match params.get("runtime") {
            Some(v) => Runtime::parse(v)?,
            None => Runtime::V3,
        };
        let module = params
            .get("module")
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        let mappings = params
            .with_prefix("M")
            .map(|(k, v)| (k[1..].to_string(), v.to_string()))
            .collect();
        Ok(GoOptions {
            paths,
            module,
            runtime,
            mappings,
            legacy_empty_package_dot: params.get_bool("legacy_empty_package_dot", false)?,
        })
    }
}

impl Generator for GoGenerator {
    fn name(&self) -> &str {
        "protoc-gen-slimrpc-go"
    }

    fn parameter_keys(&self) -> &[&str] {
        PARAMETER_KEYS
    }

    fn generate(
        &self,
        model: &Model,
        params: &Parameters,
    ) -> Result<Vec<GeneratedFile>, CodegenError> {
        let opts = GoOptions::from_parameters(params)?;
        let mut names: Vec<&String> = model.descriptors.keys().collect();
        names.sort();
        // Go import paths are needed only for the files we emit and the files declaring
        // the request and response types of their methods.
        let mut required: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for file in model.files.iter().filter(|f| !f.services.is_empty()) {
            required.insert(file.name.as_str());
            for m in file.services.iter().flat_map(|s| &s.methods) {
                required.insert(m.input.file.as_str());
                required.insert(m.output.file.as_str());
            }
        }
        let packages = PackageMap::build_requiring(
            names.iter().filter_map(|n| model.descriptors.get(*n)),
            &opts.mappings,
            opts.paths,
            opts.module.clone(),
            |f| required.contains(f),
        )?;
        check_names(model, &packages)?;
        let mut out = Vec::new();
        for file in &model.files {
            // Like protoc-gen-go-grpc: no services, no file.
            if file.services.is_empty() {
                continue;
            }
            let content = emit::render_file(model, file, &packages, &opts)?;
            let name = packages.output_name(&file.name, FILE_SUFFIX)?;
            out.push(GeneratedFile { name, content });
        }
        for (name, package_name) in reducers_files(model, &packages)? {
            let content = emit::render_reducers(&package_name, opts.runtime)?;
            out.push(GeneratedFile { name, content });
        }
        Ok(out)
    }
}

/// Runs the Go generator on a decoded request; errors land in `response.error`. This is the
/// entry point a multi-language plugin calls after taking out its own `lang=` parameter.
pub fn generate(request: &CodeGeneratorRequest) -> CodeGeneratorResponse {
    slimrpc_codegen::respond(request, &GoGenerator)
}

/// The group reducers files of a request, as (output name, Go package name): one per Go
/// import path that has a service with methods among the generated files, named
/// `<package name>_slimrpc_reducers.go` and placed in the directory of the `_slimrpc.pb.go`
/// of the package's first such proto file (by name; with `paths=import` every file of a
/// package has the same directory). Its content depends only on the package name and the
/// runtime, so separate runs over files of one package write the same file.
fn reducers_files(model: &Model, packages: &PackageMap) -> Result<Vec<(String, String)>, GoError> {
    use std::collections::BTreeMap;

    // import path -> (first proto file, package name)
    let mut first: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for file in &model.files {
        if !file.services.iter().any(|s| !s.methods.is_empty()) {
            continue;
        }
        let pkg = packages
            .get(&file.name)
            .ok_or_else(|| GoError::NoImportPath(file.name.clone()))?;
        let entry = first
            .entry(pkg.import_path.as_str())
            .or_insert((file.name.as_str(), pkg.name.as_str()));
        if file.name.as_str() < entry.0 {
            entry.0 = file.name.as_str();
        }
    }
    // output name -> import path, to refuse two packages writing one file
    let mut written: BTreeMap<String, &str> = BTreeMap::new();
    let mut out = Vec::with_capacity(first.len());
    for (import_path, (file, name)) in first {
        let stub = packages.output_name(file, FILE_SUFFIX)?;
        let file_name = format!("{name}{REDUCERS_SUFFIX}");
        let output = match stub.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{file_name}"),
            None => file_name,
        };
        if let Some(other) = written.insert(output.clone(), import_path) {
            return Err(GoError::ReducersFileCollision {
                file: output,
                first: other.to_string(),
                second: import_path.to_string(),
            });
        }
        out.push((output, name.to_string()));
    }
    Ok(out)
}

/// Fails when two declarations in one Go package would share an identifier: generated names
/// of every service, the methods of each service, and the message and enum types that
/// protoc-gen-go declares in the same package.
fn check_names(model: &Model, packages: &PackageMap) -> Result<(), GoError> {
    use naming::go_camel_case;
    use std::collections::BTreeMap;

    // import path -> identifier -> what declares it
    let mut declared: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut declare = |path: &str, name: String, what: String| -> Result<(), GoError> {
        let names = declared.entry(path.to_string()).or_default();
        match names.get(&name) {
            Some(first) if *first != what => Err(GoError::NameCollision {
                import_path: path.to_string(),
                name,
                first: first.clone(),
                second: what,
            }),
            _ => {
                names.insert(name, what);
                Ok(())
            }
        }
    };
    let generated_paths: std::collections::BTreeSet<&str> = model
        .files
        .iter()
        .filter(|f| !f.services.is_empty())
        .filter_map(|f| packages.get(&f.name))
        .map(|p| p.import_path.as_str())
        .collect();
    for t in model.index.iter_sorted() {
        if let Some(pkg) = packages.get(&t.file)
            && generated_paths.contains(pkg.import_path.as_str())
        {
            let kind = match t.kind {
                slimrpc_codegen::TypeKind::Message => "message",
                slimrpc_codegen::TypeKind::Enum => "enum",
            };
            declare(
                &pkg.import_path,
                go_camel_case(&t.relative_name()),
                format!("{kind} {}", t.full_name),
            )?;
        }
    }
    for file in &model.files {
        let Some(pkg) = packages.get(&file.name) else {
            continue;
        };
        if file.services.iter().any(|s| !s.methods.is_empty()) {
            for name in reserved::REDUCER_IDENTIFIERS {
                declare(
                    &pkg.import_path,
                    name.to_string(),
                    "the group reducers".to_string(),
                )?;
            }
        }
        for svc in &file.services {
            let go = go_camel_case(&svc.name);
            let owner = format!("service {}", svc.full_name);
            for name in reserved::service_identifiers(&go) {
                declare(&pkg.import_path, name, owner.clone())?;
            }
            for m in &svc.methods {
                let owner = format!("rpc {}.{}", svc.full_name, m.name);
                for name in reserved::method_identifiers(&go, &go_camel_case(&m.name)) {
                    declare(&pkg.import_path, name, owner.clone())?;
                }
            }
        }
    }
    Ok(())
}
