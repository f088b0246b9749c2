//! Builds the view of one proto file (names, signatures, doc comments, imports) and renders
//! it through the askama template `templates/go/file.go.txt`.
//!
//! The template and the strings computed here are written so that the output is already
//! gofmt-clean: tabs for indentation, imports grouped and sorted by path, no aligned columns
//! (every declaration stands alone), and doc comments that gofmt's doc-comment reformatter
//! leaves untouched (one paragraph of unindented proto text, then an optional
//! `Deprecated:` paragraph). This module does not decide file paths or package names.

use askama::Template;
use slimrpc_codegen::{Comments, File, Method, MethodKind, Model, Service, TypeRef};

use crate::GoOptions;
use crate::error::GoError;
use crate::imports::{ImportSpec, Imports};
use crate::naming::{go_camel_case, unexport};
use crate::packages::PackageMap;
use crate::reserved::{
    REDUCER_IDENTIFIERS, TEMPLATE_LOCALS, method_identifiers, service_identifiers,
};
use crate::runtime::Runtime;

#[derive(Template)]
#[template(path = "go/file.go.txt", escape = "none")]
struct FileTemplate {
    version: &'static str,
    runtime_desc: String,
    source: String,
    package_name: String,
    std_imports: Vec<ImportSpec>,
    other_imports: Vec<ImportSpec>,
    services: Vec<ServiceView>,
    /// Qualifier of the UniFFI runtime package.
    rt: String,
    /// Qualifier of the helper package (streams, context).
    h: String,
    /// Go name of the first service with methods: the file's helper functions
    /// (`_<it>_callOptions`, `_<it>_toRpcError`) are named after it, so they are declared
    /// once per file and never twice in one Go package (service names are unique there).
    /// Empty when no service has methods (no helpers then).
    helper_prefix: String,
}

/// The group reducers of one Go package (`templates/go/reducers.go.txt`). Its content
/// depends only on the package name and the runtime, so runs over different files of one
/// package write the same bytes.
#[derive(Template)]
#[template(path = "go/reducers.go.txt", escape = "none")]
struct ReducersTemplate {
    version: &'static str,
    runtime_desc: String,
    package_name: String,
    /// The runtime imports, sorted by path (gofmt's order).
    imports: Vec<ImportSpec>,
    /// Qualifier of the UniFFI runtime package.
    rt: String,
    /// Qualifier of the helper package (`MulticastItem`).
    h: String,
}

/// Renders the group reducers file of the Go package named `package_name`.
pub fn render_reducers(package_name: &str, runtime: Runtime) -> Result<String, GoError> {
    let rt = runtime.uniffi();
    let hp = runtime.helpers();
    let mut imports = vec![ImportSpec {
        name: rt.name.to_string(),
        path: rt.path.to_string(),
    }];
    if hp.path != rt.path {
        imports.push(ImportSpec {
            name: hp.name.to_string(),
            path: hp.path.to_string(),
        });
    }
    imports.sort_by(|a, b| a.path.cmp(&b.path));
    let tmpl = ReducersTemplate {
        version: env!("CARGO_PKG_VERSION"),
        runtime_desc: runtime_desc(runtime),
        package_name: package_name.to_string(),
        imports,
        rt: rt.name.to_string(),
        h: hp.name.to_string(),
    };
    let mut text = tmpl.render().map_err(|e| GoError::Render {
        file: format!("the reducers of package {package_name}"),
        message: e.to_string(),
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn runtime_desc(runtime: Runtime) -> String {
    format!(
        "{} ({})",
        match runtime {
            Runtime::V3 => "v3",
            Runtime::V1 => "v1",
        },
        runtime.uniffi().path
    )
}

struct ServiceView {
    proto_name: String,
    go_name: String,
    lower: String,
    full_name_lit: String,
    /// Proto comment (continuing the intro paragraph) and deprecation paragraph.
    doc: Vec<String>,
    /// Only the deprecation paragraph (for constructors and registration).
    deprecated_doc: Vec<String>,
    methods: Vec<MethodView>,
    /// `func (Unimplemented…Server) mustEmbedUnimplemented…Server() {}` as gofmt prints it.
    must_embed_func: String,
    /// `func (Unimplemented…Server) …EmbeddedByValue() {}` as gofmt prints it.
    by_value_func: String,
}

struct MethodView {
    proto_name: String,
    proto_name_lit: String,
    go_name: String,
    kind: &'static str,
    register_kind: &'static str,
    input: String,
    output: String,
    doc: Vec<String>,
    client_sig: String,
    group_sig: String,
    server_sig: String,
    unimplemented_sig: String,
}

/// Renders the `_slimrpc.pb.go` text for `file`.
pub fn render_file(
    model: &Model,
    file: &File,
    packages: &PackageMap,
    opts: &GoOptions,
) -> Result<String, GoError> {
    let runtime = opts.runtime;
    let own = packages
        .get(&file.name)
        .ok_or_else(|| GoError::NoImportPath(file.name.clone()))?
        .clone();

    let mut reserved: Vec<String> = TEMPLATE_LOCALS
        .iter()
        .chain(REDUCER_IDENTIFIERS)
        .map(|s| s.to_string())
        .collect();
    // Our own package-level names (an import named like one would clash with it).
    for svc in &file.services {
        let go = go_camel_case(&svc.name);
        reserved.extend(service_identifiers(&go));
        for m in &svc.methods {
            reserved.extend(method_identifiers(&go, &go_camel_case(&m.name)));
        }
    }
    // Message names of our own package are package-level identifiers too.
    let mut own_messages: Vec<String> = model
        .index
        .iter_sorted()
        .into_iter()
        .filter(|t| packages.get(&t.file).map(|p| &p.import_path) == Some(&own.import_path))
        .map(|t| go_camel_case(&t.relative_name()))
        .collect();
    reserved.append(&mut own_messages);
    let mut imports = Imports::new(&own.import_path, reserved.iter().map(String::as_str));

    let has_methods = file.services.iter().any(|s| !s.methods.is_empty());
    if has_methods {
        imports.qualifier("context", "context");
        imports.qualifier("errors", "errors");
        imports.qualifier("time", "time");
    }
    // Only bidi-streaming methods never marshal in the generated file itself.
    if file
        .services
        .iter()
        .flat_map(|s| &s.methods)
        .any(|m| m.kind != MethodKind::BidiStreaming)
    {
        imports.qualifier("google.golang.org/protobuf/proto", "proto");
    }
    let rt_pkg = runtime.uniffi();
    let rt = imports
        .qualifier(rt_pkg.path, rt_pkg.name)
        .unwrap_or_default();
    let h = if has_methods {
        let hp = runtime.helpers();
        imports.qualifier(hp.path, hp.name).unwrap_or_default()
    } else {
        rt.clone()
    };

    let mut services = Vec::with_capacity(file.services.len());
    for svc in &file.services {
        let wire_name = if opts.legacy_empty_package_dot && file.package.is_empty() {
            format!(".{}", svc.full_name)
        } else {
            svc.full_name.clone()
        };
        services.push(service_view(
            svc,
            &wire_name,
            packages,
            &mut imports,
            runtime,
            &h,
        )?);
    }
    let (std_imports, other_imports) = imports.groups();
    let tmpl = FileTemplate {
        version: env!("CARGO_PKG_VERSION"),
        runtime_desc: runtime_desc(runtime),
        source: file.name.clone(),
        package_name: own.name.clone(),
        std_imports,
        other_imports,
        helper_prefix: file
            .services
            .iter()
            .find(|s| !s.methods.is_empty())
            .map(|s| go_camel_case(&s.name))
            .unwrap_or_default(),
        services,
        rt,
        h,
    };
    let mut text = tmpl.render().map_err(|e| GoError::Render {
        file: file.name.clone(),
        message: e.to_string(),
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn service_view(
    svc: &Service,
    wire_name: &str,
    packages: &PackageMap,
    imports: &mut Imports,
    runtime: Runtime,
    h: &str,
) -> Result<ServiceView, GoError> {
    let go_name = go_camel_case(&svc.name);
    let mut methods = Vec::with_capacity(svc.methods.len());
    for m in &svc.methods {
        methods.push(method_view(m, packages, imports, runtime, h)?);
    }
    let deprecated_doc = if svc.deprecated {
        deprecation()
    } else {
        Vec::new()
    };
    let mut doc = proto_comment_lines(&svc.comments);
    doc.extend(deprecated_doc.iter().cloned());
    let lower = unexport(&go_name);
    Ok(ServiceView {
        proto_name: svc.name.clone(),
        must_embed_func: empty_func(&format!(
            "func (Unimplemented{go_name}Server) mustEmbedUnimplemented{go_name}Server()"
        )),
        by_value_func: empty_func(&format!(
            "func (Unimplemented{go_name}Server) {lower}EmbeddedByValue()"
        )),
        lower,
        go_name,
        full_name_lit: go_string_literal(wire_name),
        doc,
        deprecated_doc,
        methods,
    })
}

fn method_view(
    m: &Method,
    packages: &PackageMap,
    imports: &mut Imports,
    runtime: Runtime,
    h: &str,
) -> Result<MethodView, GoError> {
    let go_name = go_camel_case(&m.name);
    let input = go_type(&m.input, packages, imports)?;
    let output = go_type(&m.output, packages, imports)?;
    let server_stream = runtime.server_stream_type();
    let (kind, register_kind, client, group, server, unimpl) = match m.kind {
        MethodKind::Unary => (
            "unary",
            "UnaryUnary",
            format!("(ctx context.Context, in *{input}) (*{output}, error)"),
            format!(
                "(ctx context.Context, in *{input}) ({h}.MulticastResponseStream[*{output}], error)"
            ),
            format!("(ctx context.Context, in *{input}) (*{output}, error)"),
            format!("(context.Context, *{input}) (*{output}, error)"),
        ),
        MethodKind::ServerStreaming => (
            "server_streaming",
            "UnaryStream",
            format!("(ctx context.Context, in *{input}) ({h}.ResponseStream[*{output}], error)"),
            format!(
                "(ctx context.Context, in *{input}) ({h}.MulticastResponseStream[*{output}], error)"
            ),
            format!(
                "(ctx context.Context, in *{input}, stream {h}.{server_stream}[*{output}]) error"
            ),
            format!("(context.Context, *{input}, {h}.{server_stream}[*{output}]) error"),
        ),
        MethodKind::ClientStreaming => (
            "client_streaming",
            "StreamUnary",
            format!("(ctx context.Context) ({h}.ClientRequestStream[*{input}, *{output}], error)"),
            format!(
                "(ctx context.Context) ({h}.MulticastClientBidiStream[*{input}, *{output}], error)"
            ),
            format!(
                "(ctx context.Context, stream {h}.ResponseStream[*{input}]) (*{output}, error)"
            ),
            format!("(context.Context, {h}.ResponseStream[*{input}]) (*{output}, error)"),
        ),
        MethodKind::BidiStreaming => (
            "bidi_streaming",
            "StreamStream",
            format!("(ctx context.Context) ({h}.ClientBidiStream[*{input}, *{output}], error)"),
            format!(
                "(ctx context.Context) ({h}.MulticastClientBidiStream[*{input}, *{output}], error)"
            ),
            format!(
                "(ctx context.Context, stream {h}.ServerBidiStream[*{input}, *{output}]) error"
            ),
            format!("(context.Context, {h}.ServerBidiStream[*{input}, *{output}]) error"),
        ),
    };
    let mut doc = proto_comment_lines(&m.comments);
    if m.deprecated {
        if !doc.is_empty() {
            doc.push("//".to_string());
        }
        doc.push("// Deprecated: Do not use.".to_string());
    }
    Ok(MethodView {
        proto_name: m.name.clone(),
        proto_name_lit: go_string_literal(&m.name),
        client_sig: format!("{go_name}{client}"),
        group_sig: format!("{go_name}{group}"),
        server_sig: format!("{go_name}{server}"),
        unimplemented_sig: format!("{go_name}{unimpl}"),
        go_name,
        kind,
        register_kind,
        input,
        output,
        doc,
    })
}

/// `pkg.Outer_Inner`, importing `pkg` if needed.
fn go_type(t: &TypeRef, packages: &PackageMap, imports: &mut Imports) -> Result<String, GoError> {
    let pkg = packages
        .get(&t.file)
        .ok_or_else(|| GoError::NoImportPath(t.file.clone()))?;
    let ident = go_camel_case(&t.relative_name());
    Ok(imports.qualify(&pkg.import_path, &pkg.name, &ident))
}

/// A function with an empty body: gofmt keeps `{}` on the signature's line only while the
/// signature and the space after it fit in 100 bytes (go/printer's one-line limit).
fn empty_func(signature: &str) -> String {
    if signature.len() < 100 {
        format!("{signature} {{}}")
    } else {
        format!("{signature} {{\n}}")
    }
}

/// The `Deprecated:` paragraph, preceded by a blank comment line.
fn deprecation() -> Vec<String> {
    vec!["//".to_string(), "// Deprecated: Do not use.".to_string()]
}

/// Proto comments (leading, then trailing) as `// text` lines, paragraph breaks kept as `//`
/// lines. Every line is trimmed, so gofmt's doc-comment reformatter finds no list or code
/// block (both need indentation); a paragraph it would take for a heading or a block of link
/// definitions is joined to its neighbour; quote pairs are written as gofmt writes them.
fn proto_comment_lines(c: &Comments) -> Vec<String> {
    let mut paragraphs: Vec<Vec<String>> = vec![Vec::new()];
    for l in c.doc_lines() {
        // Control characters (a stray `\r`, form feeds) have no business in Go source.
        let l: String = l
            .chars()
            .map(|ch| if ch.is_control() { ' ' } else { ch })
            .collect();
        let l = l.trim().replace("``", "\u{201c}").replace("''", "\u{201d}");
        if l.is_empty() {
            if paragraphs.last().is_some_and(|p| !p.is_empty()) {
                paragraphs.push(Vec::new());
            }
        } else if let Some(p) = paragraphs.last_mut() {
            p.push(l);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    let mut merged: Vec<Vec<String>> = Vec::with_capacity(paragraphs.len());
    let mut carry: Vec<String> = Vec::new();
    for p in paragraphs {
        let special = is_special_paragraph(&p);
        carry.extend(p);
        if special && merged.is_empty() {
            continue; // joined to the next paragraph
        }
        if special && let Some(prev) = merged.last_mut() {
            prev.append(&mut carry);
            continue;
        }
        merged.push(std::mem::take(&mut carry));
    }
    if !carry.is_empty() {
        merged.push(carry);
    }
    let mut out = Vec::new();
    for (i, p) in merged.into_iter().enumerate() {
        if i > 0 {
            out.push("//".to_string());
        }
        out.extend(p.into_iter().map(|l| format!("// {l}")));
    }
    out
}

/// Whether gofmt could read the (trimmed) paragraph `p` as a heading (`# x`, or the old
/// style: one capitalised line without punctuation) or as link definitions (`[x]: url`).
fn is_special_paragraph(p: &[String]) -> bool {
    if p.iter().all(|l| l.starts_with('[') && l.contains("]:")) {
        return true;
    }
    let [line] = p else {
        return false;
    };
    if line.starts_with('#') {
        return true;
    }
    let first_upper = line.chars().next().is_some_and(char::is_uppercase);
    let last_alnum = line.chars().last().is_some_and(char::is_alphanumeric);
    first_upper && last_alnum && !line.contains(|c: char| ";:!?+*/=[]{}_^°&§~%#@<\">\\".contains(c))
}

/// A Go interpreted string literal for `s`.
fn go_string_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_become_unindented_paragraphs_and_heading_lookalikes_join_a_neighbour() {
        let c = Comments {
            leading: Some(" Says hello.\n\n   indented code\n\tform\x0cfeed\r\n".into()),
            trailing: Some(" trailing\n".into()),
            leading_detached: vec![],
        };
        assert_eq!(
            proto_comment_lines(&c),
            vec![
                "// Says hello.",
                "//",
                "// indented code",
                "// form feed",
                "//",
                "// trailing"
            ]
        );
        let c = Comments {
            leading: Some("Heading\n\nText.\n\n# Hash\n\n[a]: b\n\nQuotes '' and ``.".into()),
            trailing: None,
            leading_detached: vec![],
        };
        assert_eq!(
            proto_comment_lines(&c),
            vec![
                "// Heading",
                "// Text.",
                "// # Hash",
                "// [a]: b",
                "//",
                "// Quotes \u{201d} and \u{201c}."
            ]
        );
    }

    #[test]
    fn string_literals_are_escaped() {
        assert_eq!(go_string_literal("a.b"), "\"a.b\"");
        assert_eq!(go_string_literal("q\"\\"), "\"q\\\"\\\\\"");
    }
}
