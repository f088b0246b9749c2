//! Line layout of the few constructs whose length depends on the proto (function signatures
//! and the types in them), decided the way `rustfmt` (edition 2024, default configuration)
//! decides it, so generated files pass `rustfmt --check` without running rustfmt.
//!
//! Everything else in the templates has a fixed shape that rustfmt already accepts. This
//! module knows nothing about SlimRPC; it must not choose names or types.

/// rustfmt's default `max_width`.
pub const MAX_WIDTH: usize = 100;

/// A type expression that rustfmt may break across lines: a plain path, or a generic whose
/// arguments can go one per line (`Result<`, `T,`, `E,`, `>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// Printed as is (a path never breaks).
    Leaf(String),
    /// `head<args...>tail`: e.g. head `impl Future<`, args `[Output = X]`, tail `> + Send`.
    Generic {
        head: String,
        args: Vec<Ty>,
        tail: String,
    },
    /// `prefix` glued to a type: `Output = X`, `Item = X`.
    Prefixed(String, Box<Ty>),
}

impl Ty {
    /// A path.
    pub fn leaf(s: impl Into<String>) -> Self {
        Ty::Leaf(s.into())
    }

    /// `name<args>` closed by `>` + `tail`.
    pub fn generic(name: &str, args: Vec<Ty>, tail: &str) -> Self {
        Ty::Generic {
            head: format!("{name}<"),
            args,
            tail: format!(">{tail}"),
        }
    }

    /// The one-line text.
    pub fn flat(&self) -> String {
        match self {
            Ty::Leaf(s) => s.clone(),
            Ty::Generic { head, args, tail } => {
                let inner: Vec<String> = args.iter().map(Ty::flat).collect();
                format!("{head}{}{tail}", inner.join(", "))
            }
            Ty::Prefixed(p, t) => format!("{p}{}", t.flat()),
        }
    }

    /// Lays the type out starting after `first` (text already on the first line, indentation
    /// included), followed by `after` on its last line. `indent` is the indentation of the
    /// line the type starts on. Returns complete lines.
    fn lines(&self, indent: usize, first: &str, after: &str) -> Vec<String> {
        let flat = format!("{first}{}{after}", self.flat());
        if flat.len() <= MAX_WIDTH {
            return vec![flat];
        }
        match self {
            Ty::Leaf(_) => vec![flat],
            Ty::Prefixed(p, t) => t.lines(indent, &format!("{first}{p}"), after),
            Ty::Generic { head, args, tail } => {
                let mut out = vec![format!("{first}{head}")];
                let pad = " ".repeat(indent + 4);
                for a in args {
                    out.extend(a.lines(indent + 4, &pad, ","));
                }
                out.push(format!("{}{tail}{after}", " ".repeat(indent)));
                out
            }
        }
    }
}

/// One parameter of a function signature: `name: type` (or `&self`).
#[derive(Debug, Clone)]
pub struct Param {
    /// `request: ` (with the colon and space) or the whole `&self`.
    pub prefix: String,
    /// The type, if any.
    pub ty: Option<Ty>,
    /// For [`Param::stream`]: the item type.
    stream_item: Option<String>,
}

impl Param {
    /// `&self`.
    pub fn receiver() -> Self {
        Param {
            prefix: "&self".into(),
            ty: None,
            stream_item: None,
        }
    }

    /// `name: ty`.
    pub fn new(name: &str, ty: Ty) -> Self {
        Param {
            prefix: format!("{name}: "),
            ty: Some(ty),
            stream_item: None,
        }
    }

    /// `name: impl futures::Stream<Item = item> + Send + 'static`.
    pub fn stream(name: &str, item: &str) -> Self {
        Param {
            prefix: format!("{name}: "),
            ty: Some(Ty::leaf(format!(
                "impl futures::Stream<Item = {item}> + Send + 'static"
            ))),
            stream_item: Some(item.to_string()),
        }
    }

    /// The parameter on its own line(s) at `indent`, with its trailing comma.
    ///
    /// rustfmt breaks an `impl Stream<Item = T> + Send + 'static` bound in stages, measured
    /// at 12 columns: whole up to 105 columns; then the `+` bounds on their own lines while
    /// `name: impl futures::Stream<Item = T>` fits in 100; then also the generic argument;
    /// past that it gives up and leaves the line whole.
    fn vertical(&self, indent: usize) -> String {
        let pad = " ".repeat(indent);
        let whole = format!("{pad}{},", self.flat());
        let Some(item) = &self.stream_item else {
            return match &self.ty {
                Some(t) => t
                    .lines(indent, &format!("{pad}{}", self.prefix), ",")
                    .join("\n"),
                None => whole,
            };
        };
        if whole.len() <= 105 {
            return whole;
        }
        let first = format!("{pad}{}impl futures::Stream<Item = {item}>", self.prefix);
        if first.len() <= MAX_WIDTH {
            return format!("{first}\n{pad}+ Send\n{pad}+ 'static,");
        }
        let arg = format!("{pad}    Item = {item},");
        if arg.len() <= MAX_WIDTH {
            return format!(
                "{pad}{}impl futures::Stream<\n{arg}\n{pad}> + Send\n{pad}+ 'static,",
                self.prefix
            );
        }
        whole
    }

    fn flat(&self) -> String {
        match &self.ty {
            Some(t) => format!("{}{}", self.prefix, t.flat()),
            None => self.prefix.clone(),
        }
    }
}

/// How rustfmt places a return type that does not fit on the signature's first line.
///
/// Measured against rustfmt (edition 2024, defaults) for signatures indented by 8 columns,
/// which is where every generated signature sits: the `{` stays on the `) -> T` line while
/// that line is at most `100 - indent` wide; otherwise the `{` goes on its own line while
/// `) -> T` is at most `single_max` wide; beyond that the type breaks at its generics.
/// rustfmt budgets `impl Trait + Bound` types differently from paths, hence two values.
#[derive(Debug, Clone, Copy)]
pub struct RetBudget {
    /// Widest `) -> T` line (indentation included) kept on one line.
    pub single_max: usize,
}

/// Budget of a path type (`Result<..>`, `slimrpc::ResponseStream<..>`).
pub const PATH_RET: RetBudget = RetBudget { single_max: 102 };
/// Budget of an `impl Future<..> + Send` type.
pub const IMPL_RET: RetBudget = RetBudget { single_max: 107 };

/// A function signature: `head(params) -> ret {`, indented by `indent`.
///
/// rustfmt keeps it on one line when it fits in 100 columns; otherwise every parameter goes
/// on its own line and the return type follows `) -> ` as [`RetBudget`] describes.
pub fn signature(
    indent: usize,
    head: &str,
    params: &[Param],
    ret: &Ty,
    budget: RetBudget,
) -> String {
    let pad = " ".repeat(indent);
    let params_flat: Vec<String> = params.iter().map(Param::flat).collect();
    let one = format!(
        "{pad}{head}({}) -> {} {{",
        params_flat.join(", "),
        ret.flat()
    );
    if one.len() <= MAX_WIDTH {
        return one;
    }
    let mut out = vec![format!("{pad}{head}(")];
    for p in params {
        out.push(p.vertical(indent + 4));
    }
    let ret_line = format!("{pad}) -> {}", ret.flat());
    if ret_line.len() + 2 <= MAX_WIDTH - indent {
        out.push(format!("{ret_line} {{"));
    } else if ret_line.len() <= budget.single_max {
        out.push(ret_line);
        out.push(format!("{pad}{{"));
    } else {
        let mut lines = ret.lines(indent, &format!("{pad}) -> "), " {");
        // When a line inside the broken return type still overflows, rustfmt gives up on
        // the closing line's spacing and glues the brace to it (`>{`, `> + Send{`).
        if lines.iter().any(|l| l.len() > MAX_WIDTH)
            && let Some(last) = lines.last_mut()
            && let Some(stripped) = last.strip_suffix(" {")
        {
            *last = format!("{stripped}{{");
        }
        out.extend(lines);
    }
    out.join("\n")
}

/// Widest header lines rustfmt keeps whole, measured (rustfmt 1.9, edition 2024, defaults)
/// at 4 columns, where the generated items sit: rustfmt does not simply compare with
/// [`MAX_WIDTH`] here.
///
/// `pub struct Name {`
const STRUCT_OPEN_MAX: usize = 104;
/// `pub struct Name<T> {`
const GENERIC_STRUCT_OPEN_MAX: usize = 102;
/// `pub trait Name: Bounds {`
const TRAIT_OPEN_MAX: usize = 92;
/// `pub trait Name: Bounds {}`
const EMPTY_TRAIT_MAX: usize = 93;

/// `{indent}{head} {` opening a struct: the brace goes on its own line when the header is
/// too long, as rustfmt does for a name that cannot break.
pub fn item_open(indent: usize, head: &str) -> String {
    let pad = " ".repeat(indent);
    let one = format!("{pad}{head} {{");
    if one.len() <= STRUCT_OPEN_MAX {
        one
    } else {
        format!("{pad}{head}\n{pad}{{")
    }
}

/// `{indent}{head}<{param}> {` (a generic struct): the parameter list breaks, one per line
/// with a trailing comma, when the header is too long.
pub fn generic_item_open(indent: usize, head: &str, param: &str) -> String {
    let pad = " ".repeat(indent);
    let one = format!("{pad}{head}<{param}> {{");
    if one.len() <= GENERIC_STRUCT_OPEN_MAX {
        one
    } else {
        format!("{pad}{head}<\n{pad}    {param},\n{pad}> {{")
    }
}

/// `{indent}{head}: {bounds} {` (a trait with supertraits), `{}` closing it at once when
/// `empty`: the bounds go on their own line and the brace on the next when it is too long.
pub fn bounded_item_open(indent: usize, head: &str, bounds: &str, empty: bool) -> String {
    let pad = " ".repeat(indent);
    let (close, max) = if empty {
        ("}", EMPTY_TRAIT_MAX)
    } else {
        ("", TRAIT_OPEN_MAX)
    };
    let one = format!("{pad}{head}: {bounds} {{{close}");
    if one.len() <= max {
        one
    } else if empty {
        format!("{pad}{head}:\n{pad}    {bounds}\n{pad}{{\n{pad}}}")
    } else {
        format!("{pad}{head}:\n{pad}    {bounds}\n{pad}{{")
    }
}

/// `{indent}impl<T: {bound}> {ty}<T> {`: whole when it fits; else the type on its own line,
/// and its parameter list broken too while that line is 1 to 3 columns too wide (measured,
/// rustfmt 1.9 at 4 columns; past that rustfmt gives up and keeps the type line as is).
pub fn generic_impl_open(indent: usize, bound: &str, ty: &str) -> String {
    let pad = " ".repeat(indent);
    let one = format!("{pad}impl<T: {bound}> {ty}<T> {{");
    if one.len() <= MAX_WIDTH {
        return one;
    }
    let inner = " ".repeat(indent + 4);
    let ty_line = format!("{inner}{ty}<T>");
    if ty_line.len() <= MAX_WIDTH || ty_line.len() > MAX_WIDTH + 3 {
        format!("{pad}impl<T: {bound}>\n{ty_line}\n{pad}{{")
    } else {
        format!("{pad}impl<T: {bound}>\n{inner}{ty}<\n{inner}    T,\n{inner}>\n{pad}{{")
    }
}

/// `{indent}{head} = value;` (a `let` or `const` item), with the value moved to the next
/// line after `=` when too long, as rustfmt does for a path or literal that cannot break.
///
/// A string literal moves only when that makes it fit; rustfmt keeps an overflowing literal
/// on the `=` line. When `{head} =` itself is 1 to 4 columns too wide, rustfmt breaks after
/// the colon of `name: Type` instead; past that it leaves the item whole (measured, rustfmt
/// 1.9, at 4 and 8 columns).
pub fn assignment(indent: usize, head: &str, value: &str) -> String {
    let pad = " ".repeat(indent);
    let one = format!("{pad}{head} = {value};");
    let literal = value.starts_with('"');
    let head_eq = indent + head.len() + 2;
    if head_eq > MAX_WIDTH {
        return match head.split_once(": ") {
            Some((name, ty)) if head_eq <= MAX_WIDTH + 4 => {
                format!("{pad}{name}:\n{pad}    {ty} = {value};")
            }
            _ => one,
        };
    }
    if one.len() <= MAX_WIDTH || (literal && indent + 4 + value.len() + 1 > MAX_WIDTH) {
        one
    } else {
        format!("{pad}{head} =\n{}{value};", " ".repeat(indent + 4))
    }
}

/// `let name = value;` at `indent`, moved to the next line after `=` when too long (as rustfmt
/// does for a path that cannot break).
pub fn let_binding(indent: usize, name: &str, value: &str) -> String {
    let pad = " ".repeat(indent);
    let one = format!("{pad}let {name} = {value};");
    if one.len() <= MAX_WIDTH {
        one
    } else {
        format!("{pad}let {name} =\n{}{value};", " ".repeat(indent + 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_signature_stays_on_one_line() {
        let s = signature(
            4,
            "pub async fn ping",
            &[
                Param::receiver(),
                Param::new("request", Ty::leaf("super::Ping")),
            ],
            &Ty::leaf("Result<super::Pong, slimrpc::RpcError>"),
            PATH_RET,
        );
        assert_eq!(
            s,
            "    pub async fn ping(&self, request: super::Ping) -> Result<super::Pong, slimrpc::RpcError> {"
        );
    }

    #[test]
    fn very_long_return_type_breaks_at_its_generics() {
        let ret = Ty::generic(
            "impl Future",
            vec![Ty::Prefixed(
                "Output = ".into(),
                Box::new(Ty::generic(
                    "Result",
                    vec![
                        Ty::generic(
                            "slimrpc::ResponseStream",
                            vec![Ty::leaf(
                                "super::super::super::cross::b::v1::ExampleResponseLong",
                            )],
                            "",
                        ),
                        Ty::leaf("slimrpc::RpcError"),
                    ],
                    "",
                )),
            )],
            " + Send",
        );
        let s = signature(
            4,
            "fn example_unary_stream",
            &[
                Param::receiver(),
                Param::new("request", Ty::leaf("super::ExampleRequest")),
                Param::new("context", Ty::leaf("slimrpc::Context")),
            ],
            &ret,
            IMPL_RET,
        );
        let want = "    fn example_unary_stream(
        &self,
        request: super::ExampleRequest,
        context: slimrpc::Context,
    ) -> impl Future<
        Output = Result<
            slimrpc::ResponseStream<super::super::super::cross::b::v1::ExampleResponseLong>,
            slimrpc::RpcError,
        >,
    > + Send {";
        assert_eq!(s, want);
    }

    #[test]
    fn item_headers_break_where_rustfmt_breaks_them() {
        let name = |n: usize| "A".repeat(n);
        // `    pub struct ` is 15 columns, ` {` 2: 104 columns stay whole.
        assert!(!item_open(4, &format!("pub struct {}", name(87))).contains('\n'));
        assert!(item_open(4, &format!("pub struct {}", name(88))).ends_with("\n    {"));
        let t = bounded_item_open(4, &format!("pub trait {}", name(54)), "Send", false);
        assert_eq!(t.len(), 4 + 10 + 54 + 2 + 4 + 2);
        let long = bounded_item_open(4, "pub trait Long", &"B".repeat(80), false);
        assert_eq!(
            long,
            format!("    pub trait Long:\n        {}\n    {{", "B".repeat(80))
        );
        let g = generic_item_open(4, &format!("pub struct {}", name(90)), "T");
        assert!(g.ends_with("<\n        T,\n    > {"), "{g}");
    }

    #[test]
    fn constants_break_after_the_equals_then_after_the_colon_then_not_at_all() {
        let lit = "\"v\"";
        let head = |n: usize| format!("pub const {}: &str", "N".repeat(n));
        // `{8}pub const N…: &str =` is 100 columns at n = 74.
        assert!(assignment(8, &head(74), lit).ends_with(&format!("=\n            {lit};")));
        assert!(assignment(8, &head(75), lit).ends_with(&format!(":\n            &str = {lit};")));
        assert!(assignment(8, &head(78), lit).contains(":\n"));
        assert!(!assignment(8, &head(79), lit).contains('\n'));
    }

    #[test]
    fn generic_impl_headers_break_the_type_parameters_only_just_past_the_width() {
        let ty = |n: usize| "S".repeat(n);
        assert!(!generic_impl_open(4, "B", &ty(10)).contains('\n'));
        // `{8}S…<T>` is 100 columns at n = 89.
        assert!(generic_impl_open(4, "B", &ty(89)).contains("<T>\n"));
        assert!(generic_impl_open(4, "B", &ty(90)).contains("<\n            T,\n        >\n"));
        assert!(generic_impl_open(4, "B", &ty(93)).contains("<T>\n"));
    }

    #[test]
    fn long_let_value_moves_to_the_next_line() {
        let v = format!("method::{}", "X".repeat(90));
        assert_eq!(
            let_binding(8, "method", &v),
            format!("        let method =\n            {v};")
        );
    }
}
