//! Builds the view of one proto file for `templates/python/stubs.py.jinja` and renders it.
//!
//! Every name, import and line that depends on the input's length is decided here so the
//! output is already what `ruff format` would print (88 columns); the template only lays
//! out fixed code. It must not resolve types itself: the model's `TypeRef`s say where each
//! message lives.

use std::collections::{BTreeMap, BTreeSet};

use askama::Template;
use slimrpc_codegen::{CodegenError, Comments, File, MethodKind, Parameters, TypeRef};

use crate::names;

const LINE_LENGTH: usize = 88;

/// The official `slim_bindings` line the stubs are written for (`runtime=`).
///
/// Both lines expose the same asynchronous RPC surface the stubs call (`call_*_async`,
/// `send_async`, `finalize_stream_async`, the handler base classes, `StreamMessage`,
/// `MulticastStreamMessage`), so the code is the same; what differs is what the module
/// promises and documents: 3.x moved that surface into `slim_bindings.slim_rpc` (re-exported
/// from `slim_bindings`, which is what the stubs use), renamed the blocking calls the stubs
/// never make (`serve_blocking`, `close_blocking`) and gave handlers the caller's verified
/// identity (`Context.peer_subject()` / `peer_issuer()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Runtime {
    /// slim-bindings 3.x (v3 wire), checked against 3.3.8.
    #[default]
    V3,
    /// slim-bindings 1.3/1.4 (v1 wire), checked against 1.3.0; output as before `runtime=`.
    V1,
}

impl Runtime {
    /// The parameter values, default first.
    pub const CHOICES: &[&str] = &["v3", "v1"];
}

/// Generator options from the plugin parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Which official bindings line the stubs target.
    pub runtime: Runtime,
    /// Import the request's own `_pb2` modules relatively.
    pub relative_imports: bool,
    /// Prefix for absolute imports of non-`google/*` modules.
    pub module_prefix: Option<String>,
    /// Use `.Svc` as the wire name of services in package-less files.
    pub legacy_empty_package_dot: bool,
}

impl Options {
    /// Reads and validates the parameters.
    pub fn from_params(params: &Parameters) -> Result<Self, CodegenError> {
        let imports = params.get_choice("imports", &["absolute", "relative"], "absolute")?;
        let module_prefix = match params.get("module_prefix") {
            None => None,
            Some(p) => {
                let p = p.trim().trim_end_matches('.');
                if p.is_empty()
                    || !p.split('.').all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !part.starts_with(|c: char| c.is_ascii_digit())
                    })
                {
                    return Err(slimrpc_codegen::ParamError::InvalidValue {
                        key: "module_prefix".into(),
                        value: p.into(),
                        expected: "a dotted Python package name such as `gen.protos`".into(),
                    }
                    .into());
                }
                Some(p.to_string())
            }
        };
        let runtime = match params.get_choice("runtime", Runtime::CHOICES, "v3")? {
            "v1" => Runtime::V1,
            _ => Runtime::V3,
        };
        Ok(Options {
            runtime,
            relative_imports: imports == "relative",
            module_prefix,
            legacy_empty_package_dot: params.get_bool("legacy_empty_package_dot", false)?,
        })
    }
}

#[derive(Template)]
#[template(path = "python/stubs.py.jinja", escape = "none")]
struct FileView {
    source: String,
    v3: bool,
    import_groups: Vec<Vec<String>>,
    constants: Vec<ConstView>,
    helpers: Helpers,
    services: Vec<ServiceView>,
}

struct ConstView {
    line: String,
    doc: String,
}

#[derive(Default)]
struct Helpers {
    type_var: bool,
    rpc_error: bool,
    aiter: bool,
    messages: bool,
    group_results: bool,
}

struct ServiceView {
    name: String,
    service_const: String,
    deprecated: bool,
    deprecation_message: String,
    stub_doc: String,
    group_doc: String,
    servicer_doc: String,
    add_doc: String,
    methods: Vec<MethodView>,
}

struct MethodView {
    py_name: String,
    kind: &'static str,
    client_streaming: bool,
    input: String,
    method_const: String,
    deprecated: bool,
    deprecation_message: String,
    unimplemented_message: String,
    stub_doc: String,
    group_doc: String,
    servicer_doc: String,
    handler_class_line: String,
    handler_init: String,
    register_handler: String,
    stub_request_iterator: String,
    servicer_request_iterator: String,
    stub_returns: String,
    group_returns: String,
    servicer_returns: String,
    return_decoded: String,
    p2p_reader_loop: String,
    p2p_stream_loop: String,
    group_reader_loop: String,
    group_stream_loop_8: String,
    group_stream_loop_12: String,
    handler_request_arg: String,
    handler_stream_arg: String,
}

/// Import bookkeeping: module → alias, plus how to import it.
struct Imports {
    own_module: String,
    options: Options,
    /// alias → import line
    modules: BTreeMap<String, ImportLine>,
}

struct ImportLine {
    /// Sort key inside its isort section.
    key: (u8, String, u8, String),
    /// Section: 0 third-party, 1 relative (local folder).
    section: u8,
    text: String,
}

impl Imports {
    fn type_expr(&mut self, t: &TypeRef) -> String {
        let module = self.module_of(&t.file);
        let alias = names::module_alias(&module);
        if !self.modules.contains_key(&alias) {
            let line = self.import_line(&t.file, &module, &alias);
            self.modules.insert(alias.clone(), line);
        }
        format!("{alias}.{}", t.relative_name())
    }

    fn is_google(file: &str) -> bool {
        file.starts_with("google/")
    }

    fn module_of(&self, file: &str) -> String {
        let module = names::module_name(file, "_pb2");
        match &self.options.module_prefix {
            Some(prefix) if !Self::is_google(file) && !self.options.relative_imports => {
                format!("{prefix}.{module}")
            }
            _ => module,
        }
    }

    fn import_line(&self, file: &str, module: &str, alias: &str) -> ImportLine {
        if self.options.relative_imports && !Self::is_google(file) {
            let from: Vec<&str> = self.own_module.split('.').collect();
            let from_pkg = &from[..from.len().saturating_sub(1)];
            let to: Vec<&str> = module.split('.').collect();
            let (to_pkg, to_name) = to.split_at(to.len().saturating_sub(1));
            let common = from_pkg
                .iter()
                .zip(to_pkg.iter())
                .take_while(|(a, b)| a == b)
                .count();
            let ups = from_pkg.len() - common;
            let dots = ".".repeat(ups + 1);
            let rest = to_pkg[common..].join(".");
            let name = to_name.first().copied().unwrap_or_default();
            return ImportLine {
                // ruff: furthest-to-closest, then by module path.
                key: (
                    0,
                    format!("{:05}{}", 99_999 - ups, rest.to_lowercase()),
                    0,
                    name.to_lowercase(),
                ),
                section: 1,
                text: wrap_from_import(&format!("{dots}{rest}"), name, alias),
            };
        }
        match module.rsplit_once('.') {
            None => ImportLine {
                key: (0, module.to_lowercase(), 0, String::new()),
                section: 0,
                text: format!("import {module} as {alias}"),
            },
            Some((pkg, name)) => ImportLine {
                key: (
                    1,
                    pkg.to_lowercase(),
                    member_rank(name),
                    name.to_lowercase(),
                ),
                section: 0,
                text: wrap_from_import(pkg, name, alias),
            },
        }
    }
}

/// isort's `order-by-type`: CONSTANTS, then Classes, then everything else.
fn member_rank(name: &str) -> u8 {
    let letters: Vec<char> = name.chars().filter(|c| c.is_alphabetic()).collect();
    if name.len() > 1 && letters.iter().all(|c| c.is_uppercase()) {
        0
    } else if name.starts_with(|c: char| c.is_uppercase()) {
        1
    } else {
        2
    }
}

/// `from module import a, b, c`, one name per line (isort's vertical hanging indent, as
/// ruff wants it) when the line would be too long.
fn wrap_from_names(from: &str, names: &[&str]) -> String {
    let line = format!("from {from} import {}", names.join(", "));
    if line.len() <= LINE_LENGTH {
        line
    } else {
        let body: String = names.iter().map(|n| format!("    {n},\n")).collect();
        format!("from {from} import (\n{body})")
    }
}

fn wrap_from_import(from: &str, name: &str, alias: &str) -> String {
    let line = format!("from {from} import {name} as {alias}");
    if line.len() <= LINE_LENGTH {
        line
    } else {
        format!("from {from} import (\n    {name} as {alias},\n)")
    }
}

/// Lays out `head(args...)tail` starting at column `indent` the way ruff format does:
/// one line if it fits, else the arguments on one indented line, else one per line with a
/// trailing comma. The first line carries no indentation (the template provides it).
fn fmt_call(indent: usize, head: &str, args: &[&str], tail: &str) -> String {
    fmt_bracketed(indent, head, ('(', ')'), args, tail)
}

/// [`fmt_call`] with any bracket pair (`[`/`]` for subscripted annotations).
fn fmt_bracketed(
    indent: usize,
    head: &str,
    (open, close): (char, char),
    args: &[&str],
    tail: &str,
) -> String {
    let joined = args.join(", ");
    if indent + head.len() + joined.len() + 2 + tail.len() <= LINE_LENGTH {
        return format!("{head}{open}{joined}{close}{tail}");
    }
    let inner = " ".repeat(indent + 4);
    let outer = " ".repeat(indent);
    if indent + 4 + joined.len() <= LINE_LENGTH {
        return format!("{head}{open}\n{inner}{joined}\n{outer}{close}{tail}");
    }
    let mut s = format!("{head}{open}\n");
    for a in args {
        s.push_str(&format!("{inner}{a},\n"));
    }
    s.push_str(&format!("{outer}{close}{tail}"));
    s
}

/// `name: Generic[inner],` as ruff lays it out at `indent`.
fn fmt_annotated(indent: usize, head: &str, inner: &str, tail: &str) -> String {
    fmt_bracketed(indent, head, ('[', ']'), &[inner], tail)
}

/// `) -> {ty}:` closing a signature at `indent`: ruff parenthesizes a return annotation
/// that does not fit when that makes it fit, and leaves it alone when nothing would.
fn fmt_return(indent: usize, ty: &str) -> String {
    let flat = format!(") -> {ty}:");
    if indent + flat.len() <= LINE_LENGTH || indent + 4 + ty.len() > LINE_LENGTH {
        return flat;
    }
    let outer = " ".repeat(indent);
    format!(") -> (\n{outer}    {ty}\n{outer}):")
}

/// `head[inner_head[ty]]tail` at `indent` (a generic of a generic): the outer brackets break
/// first; when the inner generic does not fit on its own line either, it breaks too, and the
/// outer one keeps a magic trailing comma (the layout ruff keeps).
fn fmt_nested_annotation(
    indent: usize,
    head: &str,
    inner_head: &str,
    ty: &str,
    tail: &str,
) -> String {
    let inner = format!("{inner_head}[{ty}]");
    if indent + head.len() + inner.len() + 2 + tail.len() <= LINE_LENGTH
        || indent + 4 + inner.len() <= LINE_LENGTH
    {
        return fmt_annotated(indent, head, &inner, tail);
    }
    let outer = " ".repeat(indent);
    let mid = " ".repeat(indent + 4);
    let deep = " ".repeat(indent + 8);
    format!("{head}[\n{mid}{inner_head}[\n{deep}{ty}\n{mid}],\n{outer}]{tail}")
}

/// A docstring as ruff format prints it, at `indent` (first line unindented).
fn docstring(lines: &[String], indent: usize) -> String {
    let mut lines: Vec<String> = lines
        .iter()
        .map(|l| {
            l.replace('\t', "    ")
                .replace('\\', "\\\\")
                .replace("\"\"\"", "\\\"\\\"\\\"")
                .trim_end()
                .to_string()
        })
        .collect();
    while lines.first().is_some_and(|l| l.trim().is_empty()) {
        lines.remove(0);
    }
    while lines.last().is_some_and(|l| l.trim().is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return String::new();
    }
    lines[0] = lines[0].trim_start().to_string();
    // Continuation lines are dedented by their common indentation, like ruff does.
    let common = lines[1..]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    for l in lines.iter_mut().skip(1) {
        if l.trim().is_empty() {
            l.clear();
        } else {
            *l = l[common..].to_string();
        }
    }
    let pad = " ".repeat(indent);
    if lines.len() == 1 {
        let mut one = lines.remove(0);
        if one.ends_with('"') {
            one.push(' ');
        }
        return format!("\"\"\"{one}\"\"\"");
    }
    let mut s = format!("\"\"\"{}\n", lines[0]);
    for l in &lines[1..] {
        if l.is_empty() {
            s.push('\n');
        } else {
            s.push_str(&format!("{pad}{l}\n"));
        }
    }
    s.push_str(&format!("{pad}\"\"\""));
    s
}

/// Text put inside a one-line Python string literal.
fn py_str(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn doc_with(summary: Vec<String>, comments: &Comments, deprecated: Option<&str>) -> Vec<String> {
    let mut lines = summary;
    let extra = comments.doc_lines();
    if !extra.is_empty() {
        lines.push(String::new());
        lines.extend(extra);
    }
    if let Some(what) = deprecated {
        lines.push(String::new());
        lines.push(format!(
            ".. deprecated:: {what} is marked deprecated in the proto."
        ));
    }
    lines
}

fn shape(kind: MethodKind) -> &'static str {
    match kind {
        MethodKind::Unary => "one request, one response",
        MethodKind::ServerStreaming => "one request, a stream of responses",
        MethodKind::ClientStreaming => "a stream of requests, one response",
        MethodKind::BidiStreaming => "a stream of requests, a stream of responses",
    }
}

/// Renders the stubs of `file` (which has at least one service).
pub fn render_file(file: &File, options: &Options) -> Result<String, CodegenError> {
    let own_module = names::module_name(&file.name, "_pb2_slimrpc");
    let mut imports = Imports {
        own_module: own_module.clone(),
        options: options.clone(),
        modules: BTreeMap::new(),
    };
    let mut helpers = Helpers::default();
    let mut constants = Vec::new();
    let mut seen_constants: BTreeMap<String, String> = BTreeMap::new();
    let mut std_straight: BTreeSet<&str> = BTreeSet::new();
    let mut abc: BTreeSet<&str> = BTreeSet::new();
    let mut typing: BTreeSet<&str> = BTreeSet::new();
    let mut need_timedelta = false;
    let mut need_decode_error = false;
    let mut services = Vec::new();

    let mut add_const =
        |name: String, value: String, doc: String| -> Result<String, CodegenError> {
            if let Some(prev) = seen_constants.insert(name.clone(), value.clone()) {
                return Err(CodegenError::Generator(format!(
                    "{}: constant `{name}` would name both `{prev}` and `{value}`",
                    file.name
                )));
            }
            let value_lit = format!("\"{}\"", py_str(&value));
            let mut line = format!("{name}: Final = {value_lit}");
            // ruff parenthesizes the value only when both the head and the value then fit.
            if line.len() > LINE_LENGTH
                && name.len() + ": Final = (".len() <= LINE_LENGTH
                && 4 + value_lit.len() <= LINE_LENGTH
            {
                line = format!("{name}: Final = (\n    {value_lit}\n)");
            }
            constants.push(ConstView {
                line,
                doc: docstring(&[doc], 0),
            });
            Ok(name)
        };

    for svc in &file.services {
        typing.insert("Final");
        let wire_service = if file.package.is_empty() && options.legacy_empty_package_dot {
            format!(".{}", svc.name)
        } else {
            svc.full_name.clone()
        };
        let svc_prefix = names::constant(&svc.name);
        let service_const = add_const(
            format!("{svc_prefix}_SERVICE_NAME"),
            wire_service.clone(),
            format!("Wire name of service ``{}``.", svc.full_name),
        )?;
        if svc.deprecated {
            std_straight.insert("warnings");
        }
        let mut methods = Vec::new();
        for m in &svc.methods {
            need_timedelta = true;
            need_decode_error = true;
            helpers.rpc_error = true;
            let py_name = names::escape_keyword(&m.name);
            let method_const = add_const(
                format!("{svc_prefix}_{}_METHOD", names::constant(&m.name)),
                m.name.clone(),
                format!("Wire name of rpc ``{}.{}``.", svc.full_name, m.name),
            )?;
            let input = imports.type_expr(&m.input);
            let output = imports.type_expr(&m.output);
            let kind = m.kind.snake();
            let client_streaming = m.kind.client_streaming();
            let server_streaming = m.kind.server_streaming();
            helpers.type_var = true;
            helpers.group_results = true;
            abc.insert("AsyncIterator");
            abc.insert("Awaitable");
            abc.insert("Callable");
            abc.insert("Hashable");
            typing.insert("TypeVar");
            // Servicer and handlers of streamed requests use _messages; so do stub streams.
            if client_streaming || server_streaming {
                helpers.messages = true;
                abc.insert("AsyncIterable");
            }
            if client_streaming {
                helpers.aiter = true;
                abc.insert("AsyncIterable");
                abc.insert("Iterable");
            }
            if m.kind == MethodKind::BidiStreaming {
                std_straight.insert("asyncio");
                std_straight.insert("contextlib");
            }
            if m.deprecated {
                std_straight.insert("warnings");
            }
            let rpc = format!("{}/{}", svc.full_name, m.name);
            let deprecated_what = m.deprecated.then(|| format!("rpc ``{rpc}``"));
            let handler = format!("_{}Servicer_{}_Handler", svc.name, m.name);
            let handler_base = match m.kind {
                MethodKind::Unary => "UnaryUnaryHandler",
                MethodKind::ServerStreaming => "UnaryStreamHandler",
                MethodKind::ClientStreaming => "StreamUnaryHandler",
                MethodKind::BidiStreaming => "StreamStreamHandler",
            };
            let decode_out = format!("{output}.FromString");
            let decode_in = format!("{input}.FromString");
            methods.push(MethodView {
                py_name: py_name.clone(),
                kind,
                client_streaming,
                method_const,
                deprecated: m.deprecated,
                deprecation_message: py_str(&format!("{rpc} is deprecated")),
                unimplemented_message: py_str(&format!("method {rpc} is not implemented")),
                stub_doc: docstring(
                    &doc_with(
                        vec![format!("Calls ``{rpc}`` ({}).", shape(m.kind))],
                        &m.comments,
                        deprecated_what.as_deref(),
                    ),
                    8,
                ),
                group_doc: docstring(
                    &doc_with(
                        vec![
                            format!("Calls ``{rpc}`` on every member ({}).", shape(m.kind)),
                            String::new(),
                            "Yields ``(member, response or that member's RpcError)``.".into(),
                        ],
                        &m.comments,
                        deprecated_what.as_deref(),
                    ),
                    8,
                ),
                servicer_doc: docstring(
                    &doc_with(
                        vec![format!("Handles ``{rpc}`` ({}).", shape(m.kind))],
                        &m.comments,
                        deprecated_what.as_deref(),
                    ),
                    8,
                ),
                handler_class_line: fmt_call(
                    0,
                    &format!("class {handler}"),
                    &[&format!("slim_bindings.{handler_base}")],
                    ":",
                ),
                stub_request_iterator: fmt_annotated(
                    8,
                    "request_iterator: RequestIterable",
                    &input,
                    ",",
                ),
                servicer_request_iterator: fmt_annotated(
                    8,
                    "request_iterator: AsyncIterator",
                    &input,
                    ",",
                ),
                stub_returns: if server_streaming {
                    fmt_annotated(4, ") -> AsyncIterator", &output, ":")
                } else {
                    fmt_return(4, &output)
                },
                group_returns: fmt_nested_annotation(
                    4,
                    ") -> AsyncIterator",
                    "GroupResult",
                    &output,
                    ":",
                ),
                servicer_returns: if server_streaming {
                    fmt_annotated(4, ") -> AsyncIterable", &output, ":")
                } else {
                    fmt_return(4, &output)
                },
                handler_init: fmt_call(
                    4,
                    "def __init__",
                    &["self", &format!("servicer: {}Servicer", svc.name)],
                    " -> None:",
                ),
                register_handler: fmt_call(8, &handler, &["servicer"], ","),
                return_decoded: fmt_call(8, &format!("return {decode_out}"), &["response"], ""),
                p2p_reader_loop: fmt_call(
                    8,
                    "async for response in _messages",
                    &["reader.next_async", &decode_out],
                    ":",
                ),
                p2p_stream_loop: fmt_call(
                    12,
                    "async for response in _messages",
                    &["stream.recv_async", &decode_out],
                    ":",
                ),
                group_reader_loop: fmt_call(
                    8,
                    "async for result in _group_results",
                    &["reader.next_async", &decode_out],
                    ":",
                ),
                group_stream_loop_8: fmt_call(
                    8,
                    "async for result in _group_results",
                    &["stream.recv_async", &decode_out],
                    ":",
                ),
                group_stream_loop_12: fmt_call(
                    12,
                    "async for result in _group_results",
                    &["stream.recv_async", &decode_out],
                    ":",
                ),
                handler_request_arg: fmt_call(16, &decode_in, &["request"], ","),
                handler_stream_arg: fmt_call(
                    16,
                    "_messages",
                    &["stream.next_async", &decode_in],
                    ",",
                ),
                input,
            });
        }
        let deprecated_svc = svc
            .deprecated
            .then(|| format!("service ``{}``", svc.full_name));
        services.push(ServiceView {
            name: svc.name.clone(),
            service_const,
            deprecated: svc.deprecated,
            deprecation_message: py_str(&format!("service {} is deprecated", svc.full_name)),
            stub_doc: docstring(
                &doc_with(
                    vec![format!("Point-to-point client of ``{}``.", svc.full_name)],
                    &svc.comments,
                    deprecated_svc.as_deref(),
                ),
                4,
            ),
            group_doc: docstring(
                &doc_with(
                    vec![
                        format!("Group client of ``{}``.", svc.full_name),
                        String::new(),
                        "Each method yields one ``GroupResult`` per member answer; a member's"
                            .into(),
                        "error is an item and does not end the call.".into(),
                    ],
                    &svc.comments,
                    deprecated_svc.as_deref(),
                ),
                4,
            ),
            servicer_doc: docstring(
                &doc_with(
                    vec![
                        format!("Server side of ``{}``.", svc.full_name),
                        String::new(),
                        "Override the methods as ``async def``; the others answer UNIMPLEMENTED."
                            .into(),
                    ],
                    &svc.comments,
                    deprecated_svc.as_deref(),
                ),
                4,
            ),
            add_doc: docstring(
                &[format!(
                    "Registers every rpc of ``{}`` on ``server``, served by ``servicer``.",
                    svc.full_name
                )],
                4,
            ),
            methods,
        });
    }

    // Import groups in isort order: __future__ (in the template), stdlib, third-party, local.
    let mut stdlib = Vec::new();
    for m in &std_straight {
        stdlib.push(format!("import {m}"));
    }
    if !abc.is_empty() {
        stdlib.push(wrap_from_names(
            "collections.abc",
            &abc.iter().copied().collect::<Vec<_>>(),
        ));
    }
    if need_timedelta {
        stdlib.push("from datetime import timedelta".to_string());
    }
    if !typing.is_empty() {
        stdlib.push(format!(
            "from typing import {}",
            typing.iter().copied().collect::<Vec<_>>().join(", ")
        ));
    }
    let mut third: Vec<(u8, String, u8, String, String)> = vec![(
        0,
        "slim_bindings".into(),
        0,
        String::new(),
        "import slim_bindings".into(),
    )];
    if need_decode_error {
        third.push((
            1,
            "google.protobuf.message".into(),
            1,
            "decodeerror".into(),
            "from google.protobuf.message import DecodeError".into(),
        ));
    }
    let mut local = Vec::new();
    for line in imports.modules.into_values() {
        if line.section == 0 {
            third.push((line.key.0, line.key.1, line.key.2, line.key.3, line.text));
        } else {
            local.push((line.key, line.text));
        }
    }
    third.sort();
    local.sort();
    let mut import_groups = vec![stdlib];
    import_groups.push(third.into_iter().map(|t| t.4).collect());
    if !local.is_empty() {
        import_groups.push(local.into_iter().map(|t| t.1).collect());
    }
    import_groups.retain(|g| !g.is_empty());

    let view = FileView {
        source: file.name.clone(),
        v3: options.runtime == Runtime::V3,
        import_groups,
        constants,
        helpers,
        services,
    };
    let mut text = view
        .render()
        .map_err(|e| CodegenError::Generator(format!("rendering {}: {e}", file.name)))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}
