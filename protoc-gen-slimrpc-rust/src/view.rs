//! The view of one service that `templates/rust/service.rs.txt` renders: every name, type
//! path, doc line and signature already decided, so the template only lays out fixed code.
//!
//! Built from the shared model (protoc/buf plugin) or from a `prost_build::Service`
//! (`ServiceGenerator`); both paths meet here so one template serves both. It must not
//! resolve proto types itself: callers hand in Rust paths relative to the package module.

use std::collections::BTreeMap;

use slimrpc_codegen::{CodegenError, MethodKind};

use crate::layout::{self, Param, Ty};
use crate::names::{self, is_relative};

/// A method before layout: what either front end knows.
#[derive(Debug, Clone)]
pub struct MethodSpec {
    /// Name in the proto (the wire method name).
    pub proto_name: String,
    /// Interaction pattern.
    pub kind: MethodKind,
    /// Request type, relative to the package module (or absolute).
    pub input: String,
    /// Response type, same convention.
    pub output: String,
    /// Doc comment lines (not yet escaped for rustdoc).
    pub doc: Vec<String>,
    /// `option deprecated = true`.
    pub deprecated: bool,
}

/// A service before layout.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Name in the proto (`Test`).
    pub proto_name: String,
    /// Wire name (`example_service.Test`, or `Test` without a package).
    pub full_name: String,
    /// Doc comment lines.
    pub doc: Vec<String>,
    /// `option deprecated = true`.
    pub deprecated: bool,
    /// Methods in declaration order.
    pub methods: Vec<MethodSpec>,
}

/// What the template renders for one service.
#[derive(Debug, Clone)]
pub struct ServiceView {
    pub full_name: String,
    /// `pub const SERVICE_NAME: &str = "..";` (4 columns, possibly broken).
    pub service_name_const: String,
    pub trait_name: String,
    /// Item headers up to their `{` (4 columns, possibly broken): the client structs, the
    /// trait (and the whole trait when it has no method) and the server struct.
    pub client_open: String,
    pub group_client_open: String,
    pub trait_open: String,
    pub server_open: String,
    pub client: String,
    pub group_client: String,
    pub server: String,
    pub client_mod: String,
    pub server_mod: String,
    /// The client module's `use` of the server module's names (4 columns).
    pub use_names: String,
    /// `impl<T: Trait> TraitServer<T> {` (4 columns, possibly broken).
    pub server_impl: String,
    /// Doc blocks (`///` lines at 4 columns, no final newline).
    pub client_doc: String,
    pub group_doc: String,
    pub trait_doc: String,
    pub deprecated: bool,
    /// Whether the server module needs `#![allow(deprecated)]`.
    pub server_allows_deprecated: bool,
    /// Whether an rpc name starts like a conversion (`from_`, `to_`, ...), which clippy's
    /// `wrong_self_convention` would flag on the generated `&self` methods.
    pub conversion_names: bool,
    pub methods: Vec<MethodView>,
}

/// What the template renders for one method.
#[derive(Debug, Clone)]
pub struct MethodView {
    pub proto_name: String,
    pub proto_name_lit: String,
    pub const_name: String,
    pub fn_name: String,
    pub deprecated: bool,
    /// Channel method suffix: `unary`, `unary_stream`, `stream_unary`, `stream_stream`.
    pub shape: &'static str,
    /// Server registration suffix: `unary_unary`, `unary_stream`, ...
    pub kind_snake: &'static str,
    pub server_streaming: bool,
    /// `request` or `requests`.
    pub req: &'static str,
    /// `let method = method::X;` at 12 columns.
    pub let_method: String,
    /// `pub const X: &str = "X";` at 8 columns.
    pub const_item: String,
    /// Doc blocks at 8 columns (no final newline).
    pub client_doc: String,
    pub with_doc: String,
    pub group_doc: String,
    pub trait_doc: String,
    /// Signatures at 8 columns, ending in ` {`.
    pub client_sig: String,
    pub client_sig_with: String,
    pub group_sig: String,
    pub group_sig_with: String,
    pub trait_sig: String,
    /// The registration closure's last expression, at 16 columns.
    pub handler_call: String,
}

fn rust_string(s: &str) -> String {
    format!("{s:?}")
}

/// A doc comment: `///` lines at `indent` (no final newline). Lines are printed as given.
pub fn doc_block(lines: &[String], indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    for l in lines {
        if l.is_empty() {
            out.push(format!("{pad}///"));
        } else {
            out.push(format!("{pad}/// {l}"));
        }
    }
    out.join("\n")
}

/// Proto doc lines (made safe for rustdoc), a blank line, then `extra` (our own text).
fn with_note(doc: &[String], extra: &[&str]) -> Vec<String> {
    let mut out = rustdoc_safe(doc);
    if !out.is_empty() {
        out.push(String::new());
    }
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

/// Keeps a proto comment line from turning into something else in rustdoc: control
/// characters dropped, tabs expanded, bare URLs wrapped in `<>` and unescaped `[`/`]` that do
/// not form a Markdown link escaped (they would be taken as broken intra-doc links).
pub fn sanitize_doc_line(line: &str) -> String {
    let cleaned: String = line
        .replace('\t', "    ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    let cleaned = cleaned.trim_end().to_string();
    let with_urls = wrap_urls(&cleaned);
    escape_brackets(&with_urls)
}

/// Proto comment lines as rustdoc text: code blocks become ```` ```text ```` blocks (an
/// indented block or an unlabelled/`rust` fence would otherwise be compiled as a doctest in
/// the user's crate), and lines outside code get [`sanitize_doc_line`].
pub fn rustdoc_safe(lines: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(lines.len() + 2);
    let mut fence: Option<String> = None; // the marker that closes the open fence
    let mut indented = false;
    let mut prev_blank = true;
    // Column of the text of the list item the previous lines belong to.
    let mut list_content: Option<usize> = None;
    for raw in lines {
        let line: String = raw
            .replace('\t', "    ")
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim_end()
            .to_string();
        let trimmed = line.trim_start();
        if let Some(marker) = &fence {
            if trimmed.starts_with(marker.as_str()) {
                fence = None;
            }
            out.push(line);
            prev_blank = false;
            continue;
        }
        if indented {
            if line.is_empty() || line.starts_with("    ") {
                out.push(line.strip_prefix("    ").unwrap_or("").to_string());
                continue;
            }
            // Drop the blank lines that ended the block inside it, then close it.
            let mut blanks = 0;
            while out.last().is_some_and(|l: &String| l.is_empty()) {
                out.pop();
                blanks += 1;
            }
            out.push("```".to_string());
            out.extend(std::iter::repeat_n(String::new(), blanks));
            indented = false;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            let marker = &trimmed[..3];
            let info = trimmed[3..].trim();
            fence = Some(marker.to_string());
            list_content = None;
            let indent = &line[..line.len() - trimmed.len()];
            if info.is_empty() || info == "rust" {
                out.push(format!("{indent}{marker}text"));
            } else {
                out.push(line.clone());
            }
            prev_blank = false;
            continue;
        }
        if prev_blank && line.starts_with("    ") {
            indented = true;
            out.push("```text".to_string());
            out.push(line[4..].to_string());
            prev_blank = false;
            continue;
        }
        prev_blank = line.is_empty();
        let indent = line.len() - trimmed.len();
        match (list_item_content(trimmed), list_content) {
            _ if line.is_empty() => list_content = None,
            (Some(marker), _) => list_content = Some(indent + marker),
            // A lazy continuation of a list item: Markdown already reads it as part of the
            // item; indenting it to the item's text says so (clippy's doc_lazy_continuation).
            (None, Some(content)) if indent < content => {
                out.push(sanitize_doc_line(&format!(
                    "{}{trimmed}",
                    " ".repeat(content)
                )));
                continue;
            }
            (None, _) => {}
        }
        out.push(sanitize_doc_line(&line));
    }
    if indented {
        while out.last().is_some_and(|l: &String| l.is_empty()) {
            out.pop();
        }
        out.push("```".to_string());
    }
    if fence.is_some() {
        out.push("```".to_string());
    }
    out
}

/// Width of the Markdown list marker starting `line` with its space (`- `, `* `, `+ `,
/// `1. `, `12) `), if it starts with one.
fn list_item_content(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    if bytes.len() >= 2 && matches!(bytes[0], b'-' | b'*' | b'+') && bytes[1] == b' ' {
        return Some(2);
    }
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if (1..=9).contains(&digits)
        && matches!(bytes.get(digits), Some(b'.' | b')'))
        && bytes.get(digits + 1) == Some(&b' ')
    {
        return Some(digits + 2);
    }
    None
}

fn wrap_urls(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    loop {
        let pos = [rest.find("http://"), rest.find("https://")]
            .into_iter()
            .flatten()
            .min();
        let Some(pos) = pos else {
            out.push_str(rest);
            return out;
        };
        let before = &rest[..pos];
        let already = before.ends_with('<') || before.ends_with('(');
        let end = rest[pos..]
            .find(|c: char| c.is_whitespace() || c == ')' || c == '>')
            .map_or(rest.len(), |e| pos + e);
        out.push_str(before);
        if already {
            out.push_str(&rest[pos..end]);
        } else {
            out.push('<');
            out.push_str(&rest[pos..end]);
            out.push('>');
        }
        rest = &rest[end..];
    }
}

fn escape_brackets(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            out.push(c);
            out.push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '[' {
            // `[text](url)` and `[text][ref]` are links; keep them.
            if let Some(close) = chars[i + 1..].iter().position(|&x| x == ']') {
                let after = chars.get(i + 1 + close + 1);
                if matches!(after, Some('(') | Some('[')) {
                    out.extend(&chars[i..=i + 1 + close]);
                    i += close + 2;
                    continue;
                }
            }
            out.push_str("\\[");
        } else if c == ']' {
            out.push_str("\\]");
        } else {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn in_submodule(path: &str) -> String {
    if is_relative(path) {
        format!("super::{path}")
    } else {
        path.to_string()
    }
}

fn result(ok: Ty) -> Ty {
    Ty::generic("Result", vec![ok, Ty::leaf("slimrpc::RpcError")], "")
}

/// Lays out one service. Fails when two methods would get the same Rust name.
pub fn service_view(spec: &ServiceSpec) -> Result<ServiceView, CodegenError> {
    let trait_name = names::to_upper_camel(&spec.proto_name);
    let base = trait_name.trim_start_matches("r#").trim_end_matches('_');
    let snake = names::to_snake(&spec.proto_name);
    let snake = snake
        .trim_start_matches("r#")
        .trim_end_matches('_')
        .to_string();
    let mut methods = Vec::with_capacity(spec.methods.len());
    let mut taken: BTreeMap<String, String> = BTreeMap::new();
    for reserved in ["new", "channel"] {
        taken.insert(reserved.to_string(), "the client's own method".to_string());
    }
    let mut consts: BTreeMap<String, String> = BTreeMap::new();
    for m in &spec.methods {
        let fn_name = names::to_snake(&m.proto_name);
        let plain = fn_name.trim_start_matches("r#").trim_end_matches('_');
        if plain.is_empty() {
            return Err(CodegenError::Generator(format!(
                "{}: rpc `{}` has no usable Rust name",
                spec.full_name, m.proto_name
            )));
        }
        let fn_with = format!("{plain}_with");
        for n in [&fn_name, &fn_with] {
            if let Some(other) = taken.insert(n.clone(), m.proto_name.clone()) {
                return Err(CodegenError::Generator(format!(
                    "{}: rpc `{}` would generate the Rust method `{n}`, which {} already uses",
                    spec.full_name,
                    m.proto_name,
                    if other.starts_with("the ") {
                        other
                    } else {
                        format!("rpc `{other}`")
                    }
                )));
            }
        }
        let const_name = names::to_shouty(&m.proto_name);
        if let Some(other) = consts.insert(const_name.clone(), m.proto_name.clone()) {
            return Err(CodegenError::Generator(format!(
                "{}: rpcs `{other}` and `{}` would both be named `{const_name}` in Rust",
                spec.full_name, m.proto_name
            )));
        }
        methods.push(method_view(m, fn_name, fn_with, const_name));
    }
    let full = &spec.full_name;
    let client = format!("{base}Client");
    let group_client = format!("{base}GroupClient");
    let server = format!("{base}Server");
    Ok(ServiceView {
        full_name: full.clone(),
        service_name_const: layout::assignment(
            4,
            "pub const SERVICE_NAME: &str",
            &rust_string(full),
        ),
        client_open: layout::item_open(4, &format!("pub struct {client}")),
        group_client_open: layout::item_open(4, &format!("pub struct {group_client}")),
        trait_open: layout::bounded_item_open(
            4,
            &format!("pub trait {trait_name}"),
            "Send + Sync + 'static",
            spec.methods.is_empty(),
        ),
        server_open: layout::generic_item_open(4, &format!("pub struct {server}"), "T"),
        client_doc: doc_block(
            &with_note(
                &spec.doc,
                &[
                    &format!("Point-to-point client of `{full}`: each call goes to the one server"),
                    "the channel names. Methods without `_with` use default [`slimrpc::CallOptions`].",
                ],
            ),
            4,
        ),
        group_doc: doc_block(
            &with_note(
                &spec.doc,
                &[
                    &format!("Group client of `{full}`: each call goes to every member of the"),
                    "channel's group and yields every member's responses, each tagged with the member",
                    "that sent it. A member's error is an item ([`slimrpc::RpcError::MulticastRpc`])",
                    "and counts as that member's end; the stream ends once every member has ended.",
                    "",
                    "Reduce a call's responses with [`slimrpc::GroupResponsesExt`] (bring it in scope):",
                    "`first_response()` returns the first answer and cancels the call on the other",
                    "members; `majority(|r| key)` the answer more than half of the members gave;",
                    "`quorum(n)` the answers of the first `n` members; `fold_responses(init, f)` folds",
                    "every answer. Each fails with a [`slimrpc::ReduceError`] saying why (member errors,",
                    "members gone, the deadline). Members can be added and removed on the live channel",
                    "([`slimrpc::Channel::add_member`], [`slimrpc::Channel::remove_member`]).",
                ],
            ),
            4,
        ),
        trait_doc: doc_block(
            &with_note(
                &spec.doc,
                &[
                    &format!("Handlers of `{full}`, registered with [`{server}`]. Every method"),
                    "answers `Unimplemented` unless overridden (override with `async fn`). The same",
                    "implementation serves point-to-point and group callers.",
                ],
            ),
            4,
        ),
        client,
        group_client,
        server: server.clone(),
        client_mod: format!("{snake}_client"),
        use_names: {
            let one = format!("    use super::{snake}_server::{{SERVICE_NAME, method}};");
            if one.len() <= layout::MAX_WIDTH {
                one
            } else {
                format!("    use super::{snake}_server::{{\n        SERVICE_NAME, method,\n    }};")
            }
        },
        server_mod: format!("{snake}_server"),
        server_impl: layout::generic_impl_open(4, &trait_name, &server),
        trait_name,
        deprecated: spec.deprecated,
        server_allows_deprecated: spec.deprecated || spec.methods.iter().any(|m| m.deprecated),
        conversion_names: methods.iter().any(|m| {
            ["from_", "into_", "to_", "as_", "is_"]
                .iter()
                .any(|p| m.fn_name.starts_with(p))
        }),
        methods,
    })
}

fn method_view(m: &MethodSpec, fn_name: String, fn_with: String, const_name: String) -> MethodView {
    let input = in_submodule(&m.input);
    let output = in_submodule(&m.output);
    let cs = m.kind.client_streaming();
    let ss = m.kind.server_streaming();
    let (req_name, client_req, trait_req) = if cs {
        (
            "requests",
            Param::stream("requests", &input),
            Ty::generic("slimrpc::RequestStream", vec![Ty::leaf(&input)], ""),
        )
    } else {
        (
            "request",
            Param::new("request", Ty::leaf(&input)),
            Ty::leaf(&input),
        )
    };
    let client_ret = if ss {
        Ty::generic("slimrpc::ResponseStream", vec![Ty::leaf(&output)], "")
    } else {
        result(Ty::leaf(&output))
    };
    let group_ret = Ty::generic("slimrpc::MulticastStream", vec![Ty::leaf(&output)], "");
    let handler_ok = if ss {
        Ty::generic("slimrpc::ResponseStream", vec![Ty::leaf(&output)], "")
    } else {
        Ty::leaf(&output)
    };
    let trait_ret = Ty::generic(
        "impl Future",
        vec![Ty::Prefixed(
            "Output = ".into(),
            Box::new(result(handler_ok)),
        )],
        " + Send",
    );
    let asyncness = if ss { "pub fn" } else { "pub async fn" };
    let base_params = vec![Param::receiver(), client_req];
    let mut with_params = base_params.clone();
    with_params.push(Param::new("options", Ty::leaf("slimrpc::CallOptions")));
    let sig = |head: &str, params: &[Param], ret: &Ty| {
        layout::signature(8, head, params, ret, layout::PATH_RET)
    };
    let client_sig = sig(&format!("{asyncness} {fn_name}"), &base_params, &client_ret);
    let client_sig_with = sig(&format!("{asyncness} {fn_with}"), &with_params, &client_ret);
    let group_sig = sig(&format!("pub fn {fn_name}"), &base_params, &group_ret);
    let group_sig_with = sig(&format!("pub fn {fn_with}"), &with_params, &group_ret);
    let trait_sig = layout::signature(
        8,
        &format!("fn {fn_name}"),
        &[
            Param::receiver(),
            Param::new(req_name, trait_req),
            Param::new("context", Ty::leaf("slimrpc::Context")),
        ],
        &trait_ret,
        layout::IMPL_RET,
    );
    // rustfmt keeps a method-call chain on one line up to `chain_width` (60).
    let call = format!("service.{fn_name}({req_name}, context).await");
    let handler_call = if call.len() <= 60 {
        format!("                async move {{ {call} }}")
    } else {
        let call = format!("                        .{fn_name}({req_name}, context)");
        let call = if call.len() <= layout::MAX_WIDTH {
            call
        } else {
            format!(
                "                        .{fn_name}(\n                            {req_name}, context,\n                        )"
            )
        };
        format!(
            "                async move {{\n                    service\n{call}\n                        .await\n                }}"
        )
    };
    let returns = match m.kind {
        MethodKind::Unary | MethodKind::ClientStreaming => "Returns the server's response.",
        _ => "Returns the server's responses as they arrive; the stream ends after the last one.",
    };
    let group_returns = match m.kind {
        MethodKind::Unary | MethodKind::ClientStreaming => {
            "Yields one response (or error) per member."
        }
        _ => "Yields every member's responses as they arrive.",
    };
    let sends = if cs {
        "Sends every request of `requests`, then ends the request stream."
    } else {
        "Sends `request`."
    };
    let path = format!("method::{const_name}");
    MethodView {
        proto_name: m.proto_name.clone(),
        proto_name_lit: rust_string(&m.proto_name),
        let_method: layout::let_binding(12, "method", &path),
        const_item: layout::assignment(
            8,
            &format!("pub const {const_name}: &str"),
            &rust_string(&m.proto_name),
        ),
        client_doc: doc_block(&with_note(&m.doc, &[sends, returns]), 8),
        with_doc: doc_block(
            &[format!(
                "[`Self::{fn_name}`] with per-call options: timeout, request metadata, and \
                 `CallOptions::capture` for the servers' headers and trailers."
            )],
            8,
        ),
        group_doc: doc_block(&with_note(&m.doc, &[sends, group_returns]), 8),
        trait_doc: doc_block(
            &with_note(&m.doc, &["Default: answers `Unimplemented`."]),
            8,
        ),
        const_name,
        fn_name,
        deprecated: m.deprecated,
        shape: if m.kind == MethodKind::Unary {
            "unary"
        } else {
            m.kind.snake()
        },
        kind_snake: m.kind.snake(),
        server_streaming: ss,
        req: req_name,
        client_sig,
        client_sig_with,
        group_sig,
        group_sig_with,
        trait_sig,
        handler_call,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_list_continuations_are_indented_to_the_item_text() {
        let lines: Vec<String> = [
            "- first",
            "wrapped without indent",
            "  * nested",
            "  lazy in nested",
            "12. numbered",
            "lazy",
            "",
            "A paragraph after the list.",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            rustdoc_safe(&lines),
            vec![
                "- first",
                "  wrapped without indent",
                "  * nested",
                "    lazy in nested",
                "12. numbered",
                "    lazy",
                "",
                "A paragraph after the list.",
            ]
        );
    }

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn indented_code_becomes_a_text_block_so_rustdoc_never_runs_it() {
        let got = rustdoc_safe(&lines(&[
            "Example:",
            "",
            "    let x = [1];",
            "\ty()",
            "",
            "after [x]",
        ]));
        assert_eq!(
            got,
            lines(&[
                "Example:",
                "",
                "```text",
                "let x = [1];",
                "y()",
                "```",
                "",
                "after \\[x\\]"
            ])
        );
        let got = rustdoc_safe(&lines(&["    only code"]));
        assert_eq!(got, lines(&["```text", "only code", "```"]));
    }

    #[test]
    fn unlabelled_and_rust_fences_become_text_and_their_content_is_kept_verbatim() {
        let got = rustdoc_safe(&lines(&[
            "```",
            "a[0] http://x",
            "```",
            "```rust",
            "b",
            "```",
            "```json",
            "{}",
            "```",
        ]));
        assert_eq!(
            got,
            lines(&[
                "```text",
                "a[0] http://x",
                "```",
                "```text",
                "b",
                "```",
                "```json",
                "{}",
                "```"
            ])
        );
        assert_eq!(
            rustdoc_safe(&lines(&["```", "open"])),
            lines(&["```text", "open", "```"])
        );
    }

    #[test]
    fn list_continuations_are_not_code() {
        let got = rustdoc_safe(&lines(&["1. first", "  2. second", "- dash", "  * star"]));
        assert_eq!(
            got,
            lines(&["1. first", "  2. second", "- dash", "  * star"])
        );
    }

    #[test]
    fn doc_lines_escape_brackets_and_wrap_urls_but_keep_links() {
        assert_eq!(
            sanitize_doc_line("see [x] and [y](http://a.b)"),
            "see \\[x\\] and [y](http://a.b)"
        );
        assert_eq!(
            sanitize_doc_line("go to https://x.y/z now"),
            "go to <https://x.y/z> now"
        );
        assert_eq!(
            sanitize_doc_line("<https://x.y> \\[z\\]\t "),
            "<https://x.y> \\[z\\]"
        );
        assert_eq!(sanitize_doc_line("a\u{7}b"), "ab");
    }
}
