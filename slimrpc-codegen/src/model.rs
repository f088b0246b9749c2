//! The language-neutral model: files to generate → services → methods, with resolved
//! input/output types, comments from `source_code_info` and deprecation flags.
//!
//! Built once per request by [`Model::build`]; generators only read it. It never decides a
//! target-language name, import or file path.

use std::collections::HashMap;

use prost_types::FileDescriptorProto;

use crate::error::CodegenError;
use crate::index::{TypeIndex, TypeKind, TypeRef};
use crate::plugin::{CodeGeneratorRequest, Version};

/// The four RPC interaction patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// Single request → single response.
    Unary,
    /// Single request → stream of responses.
    ServerStreaming,
    /// Stream of requests → single response.
    ClientStreaming,
    /// Stream of requests → stream of responses.
    BidiStreaming,
}

impl MethodKind {
    /// From the descriptor's two streaming flags.
    pub fn from_streaming(client_streaming: bool, server_streaming: bool) -> Self {
        match (client_streaming, server_streaming) {
            (false, false) => MethodKind::Unary,
            (false, true) => MethodKind::ServerStreaming,
            (true, false) => MethodKind::ClientStreaming,
            (true, true) => MethodKind::BidiStreaming,
        }
    }

    /// Whether the client sends a stream.
    pub fn client_streaming(self) -> bool {
        matches!(
            self,
            MethodKind::ClientStreaming | MethodKind::BidiStreaming
        )
    }

    /// Whether the server answers with a stream.
    pub fn server_streaming(self) -> bool {
        matches!(
            self,
            MethodKind::ServerStreaming | MethodKind::BidiStreaming
        )
    }

    /// The SlimRPC/gRPC spelling: `unary_unary`, `unary_stream`, `stream_unary`, `stream_stream`.
    pub fn snake(self) -> &'static str {
        match self {
            MethodKind::Unary => "unary_unary",
            MethodKind::ServerStreaming => "unary_stream",
            MethodKind::ClientStreaming => "stream_unary",
            MethodKind::BidiStreaming => "stream_stream",
        }
    }
}

/// Comments attached to a declaration, as protoc records them (`//` and `/* */` stripped,
/// lines kept). Use [`Comments::leading_lines`] for text ready to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comments {
    /// Comment block directly above the declaration.
    pub leading: Option<String>,
    /// Comment after the declaration (same line or the line below).
    pub trailing: Option<String>,
    /// Comment blocks above the leading one, separated from it by blank lines.
    pub leading_detached: Vec<String>,
}

impl Comments {
    /// Leading comment as lines: the single space protoc keeps after `//` removed, trailing
    /// whitespace and leading/trailing blank lines dropped. Empty when there is none.
    pub fn leading_lines(&self) -> Vec<String> {
        self.leading.as_deref().map(normalize).unwrap_or_default()
    }

    /// Trailing comment as lines (same normalisation).
    pub fn trailing_lines(&self) -> Vec<String> {
        self.trailing.as_deref().map(normalize).unwrap_or_default()
    }

    /// Leading then trailing lines, separated by an empty line when both exist: what a
    /// docstring or doc comment should say.
    pub fn doc_lines(&self) -> Vec<String> {
        let mut lines = self.leading_lines();
        let trailing = self.trailing_lines();
        if !lines.is_empty() && !trailing.is_empty() {
            lines.push(String::new());
        }
        lines.extend(trailing);
        lines
    }

    /// Whether there is neither a leading nor a trailing comment.
    pub fn is_empty(&self) -> bool {
        self.leading_lines().is_empty() && self.trailing_lines().is_empty()
    }
}

fn normalize(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l).trim_end().to_string())
        .collect();
    while lines.first().is_some_and(|l| l.is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines
}

/// One rpc of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Method {
    /// The rpc's name exactly as written in the proto; this is the wire method name.
    pub name: String,
    /// Interaction pattern.
    pub kind: MethodKind,
    /// Request message.
    pub input: TypeRef,
    /// Response message.
    pub output: TypeRef,
    /// Comments on the `rpc` line.
    pub comments: Comments,
    /// `option deprecated = true;` on the rpc.
    pub deprecated: bool,
}

/// One service of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's proto name (`Test`).
    pub name: String,
    /// `package.Service`, or just `Service` when the file has no package. Generators that must
    /// interoperate with the official plugin's `".Service"` spelling for package-less files
    /// add the dot themselves (behind an explicit option).
    pub full_name: String,
    /// Methods in declaration order.
    pub methods: Vec<Method>,
    /// Comments on the `service` line.
    pub comments: Comments,
    /// `option deprecated = true;` on the service.
    pub deprecated: bool,
}

/// One file to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    /// The proto path as protoc names it (`a/v1/MyService.proto`).
    pub name: String,
    /// Proto package (`""` when none).
    pub package: String,
    /// Services in declaration order (may be empty).
    pub services: Vec<Service>,
    /// `option deprecated = true;` on the file.
    pub deprecated: bool,
    /// Comments on the `syntax`/`edition` line (file header comments).
    pub syntax_comments: Comments,
    /// The raw descriptor, for language options (`go_package`, …).
    pub descriptor: FileDescriptorProto,
}

impl File {
    /// The proto path without its `.proto` suffix (`a/v1/MyService`).
    pub fn stem(&self) -> &str {
        self.name.strip_suffix(".proto").unwrap_or(&self.name)
    }

    /// The file's `go_package` option, if set.
    pub fn go_package(&self) -> Option<&str> {
        self.descriptor
            .options
            .as_ref()
            .and_then(|o| o.go_package.as_deref())
    }
}

/// Everything a generator needs from one request.
#[derive(Debug, Clone)]
pub struct Model {
    /// Files to generate, in `file_to_generate` order.
    pub files: Vec<File>,
    /// Every message and enum of the request (all files, not only those generated).
    pub index: TypeIndex,
    /// Every descriptor of the request by file name (imports included).
    pub descriptors: HashMap<String, FileDescriptorProto>,
    /// protoc's version, if sent.
    pub compiler_version: Option<Version>,
}

// Field numbers used in source_code_info paths.
const FILE_SERVICE: i32 = 6;
const FILE_SYNTAX: i32 = 12;
const SERVICE_METHOD: i32 = 2;

impl Model {
    /// Builds the model; fails on a missing file or an unresolvable or non-message type.
    pub fn build(request: &CodeGeneratorRequest) -> Result<Self, CodegenError> {
        let mut descriptors: HashMap<String, FileDescriptorProto> = HashMap::new();
        for f in &request.proto_file {
            if descriptors
                .insert(f.name().to_string(), f.clone())
                .is_some()
            {
                return Err(CodegenError::DuplicateFile(f.name().to_string()));
            }
        }
        let index = TypeIndex::build(&request.proto_file);
        let mut files = Vec::with_capacity(request.file_to_generate.len());
        for name in &request.file_to_generate {
            let fd = descriptors
                .get(name)
                .ok_or_else(|| CodegenError::MissingFile(name.clone()))?;
            files.push(build_file(fd, &index)?);
        }
        Ok(Model {
            files,
            index,
            descriptors,
            compiler_version: request.compiler_version.clone(),
        })
    }

    /// The descriptor of any file of the request.
    pub fn descriptor(&self, file: &str) -> Option<&FileDescriptorProto> {
        self.descriptors.get(file)
    }

    /// Resolves a type name (`.pkg.Msg` or `pkg.Msg`).
    pub fn resolve(&self, name: &str) -> Option<&TypeRef> {
        self.index.get(name)
    }
}

fn build_file(fd: &FileDescriptorProto, index: &TypeIndex) -> Result<File, CodegenError> {
    let file_name = fd.name().to_string();
    let package = fd.package().to_string();
    let comments = collect_comments(fd);
    let mut services = Vec::with_capacity(fd.service.len());
    for (si, svc) in fd.service.iter().enumerate() {
        let name = svc.name();
        if name.is_empty() {
            return Err(CodegenError::InvalidDescriptor {
                file: file_name.clone(),
                what: format!("service #{si} has no name"),
            });
        }
        let full_name = if package.is_empty() {
            name.to_string()
        } else {
            format!("{package}.{name}")
        };
        let mut methods = Vec::with_capacity(svc.method.len());
        for (mi, m) in svc.method.iter().enumerate() {
            let mname = m.name();
            if mname.is_empty() {
                return Err(CodegenError::InvalidDescriptor {
                    file: file_name.clone(),
                    what: format!("method #{mi} of service `{name}` has no name"),
                });
            }
            let qualified = format!("{full_name}.{mname}");
            let resolve = |t: &str| -> Result<TypeRef, CodegenError> {
                let r = index.get(t).ok_or_else(|| CodegenError::UnresolvedType {
                    file: file_name.clone(),
                    method: qualified.clone(),
                    type_name: t.to_string(),
                })?;
                if r.kind != TypeKind::Message {
                    return Err(CodegenError::NotAMessage {
                        file: file_name.clone(),
                        method: qualified.clone(),
                        type_name: t.to_string(),
                    });
                }
                Ok(r.clone())
            };
            methods.push(Method {
                name: mname.to_string(),
                kind: MethodKind::from_streaming(m.client_streaming(), m.server_streaming()),
                input: resolve(m.input_type())?,
                output: resolve(m.output_type())?,
                comments: comments
                    .get(&[FILE_SERVICE, si as i32, SERVICE_METHOD, mi as i32][..])
                    .cloned()
                    .unwrap_or_default(),
                deprecated: m.options.as_ref().is_some_and(|o| o.deprecated()),
            });
        }
        services.push(Service {
            name: name.to_string(),
            full_name,
            methods,
            comments: comments
                .get(&[FILE_SERVICE, si as i32][..])
                .cloned()
                .unwrap_or_default(),
            deprecated: svc.options.as_ref().is_some_and(|o| o.deprecated()),
        });
    }
    Ok(File {
        name: file_name,
        package,
        services,
        deprecated: fd.options.as_ref().is_some_and(|o| o.deprecated()),
        syntax_comments: comments
            .get(&[FILE_SYNTAX][..])
            .cloned()
            .unwrap_or_default(),
        descriptor: fd.clone(),
    })
}

fn collect_comments(fd: &FileDescriptorProto) -> HashMap<Vec<i32>, Comments> {
    let mut map = HashMap::new();
    let Some(info) = fd.source_code_info.as_ref() else {
        return map;
    };
    for loc in &info.location {
        let c = Comments {
            leading: loc.leading_comments.clone(),
            trailing: loc.trailing_comments.clone(),
            leading_detached: loc.leading_detached_comments.clone(),
        };
        if c.leading.is_none() && c.trailing.is_none() && c.leading_detached.is_empty() {
            continue;
        }
        // The first location for a path is the declaration itself.
        map.entry(loc.path.clone()).or_insert(c);
    }
    map
}
