//! Which Go package each proto file belongs to, and where our output file goes.
//!
//! Follows protoc-gen-go's (`protogen`) rules exactly, so our `<file>_slimrpc.pb.go` lands in
//! the same directory and package as protoc-gen-go's `<file>.pb.go` for the same options:
//! `M<file>=<import path>[;<name>]` beats `go_package`; the package name comes from `;name`,
//! else from the base of the import path (sanitized); files sharing an import path must agree
//! on the name; `paths=import` (default) puts output under the import path,
//! `paths=source_relative` beside the proto path; `module=` strips a prefix.
//!
//! It does not decide identifiers inside the file (see `naming`, `imports`).

use std::collections::{BTreeMap, HashMap};

use prost_types::FileDescriptorProto;

use crate::error::GoError;
use crate::naming::{clean_package_name, path_base, split_import_path_and_package_name};

/// `paths=` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathType {
    /// Output path derived from the Go import path (protoc-gen-go's default).
    #[default]
    Import,
    /// Output path derived from the proto file path.
    SourceRelative,
}

impl PathType {
    /// Parses the `paths=` value with protoc-gen-go's wording on error.
    pub fn parse(value: &str) -> Result<Self, GoError> {
        match value {
            "import" => Ok(PathType::Import),
            "source_relative" => Ok(PathType::SourceRelative),
            other => Err(GoError::UnknownPathType(other.to_string())),
        }
    }
}

/// The Go package of one proto file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoPackage {
    /// Import path (`example.com/gen/a/v1`).
    pub import_path: String,
    /// Package name (`a1` / `v1`).
    pub name: String,
}

/// Go packages of every file in a request, plus the output-path options.
#[derive(Debug, Clone)]
pub struct PackageMap {
    packages: HashMap<String, GoPackage>,
    path_type: PathType,
    module: Option<String>,
}

impl PackageMap {
    /// Applies protogen's rules to every file of the request.
    ///
    /// `mappings` are the `M<file>=<value>` parameters as (`file`, `value`), in order.
    pub fn build<'a>(
        files: impl IntoIterator<Item = &'a FileDescriptorProto>,
        mappings: &[(String, String)],
        path_type: PathType,
        module: Option<String>,
    ) -> Result<Self, GoError> {
        Self::build_requiring(files, mappings, path_type, module, |_| true)
    }

    /// [`PackageMap::build`] where only the files for which `required` holds must have a
    /// valid Go import path (the files we emit and the files whose types we reference);
    /// any other file without one is left out of the map instead of failing the request.
    pub fn build_requiring<'a>(
        files: impl IntoIterator<Item = &'a FileDescriptorProto>,
        mappings: &[(String, String)],
        path_type: PathType,
        module: Option<String>,
        required: impl Fn(&str) -> bool,
    ) -> Result<Self, GoError> {
        if module.is_some() && path_type == PathType::SourceRelative {
            return Err(GoError::ModuleWithSourceRelative);
        }
        let mut import_paths: HashMap<String, String> = HashMap::new();
        let mut package_names: HashMap<String, String> = HashMap::new();
        for (file, value) in mappings {
            let (imp, name) = split_import_path_and_package_name(value);
            if !name.is_empty() {
                package_names.insert(file.clone(), name.to_string());
            }
            if !imp.is_empty() {
                import_paths.insert(file.clone(), imp.to_string());
            }
        }
        let mut packages = HashMap::new();
        for fd in files {
            let filename = fd.name().to_string();
            let go_package = fd
                .options
                .as_ref()
                .and_then(|o| o.go_package.as_deref())
                .unwrap_or("");
            let (opt_imp, opt_name) = split_import_path_and_package_name(go_package);
            let import_path = match import_paths.get(&filename) {
                Some(p) => p.clone(),
                None if !opt_imp.is_empty() => opt_imp.to_string(),
                None if !required(&filename) => continue,
                None => return Err(GoError::NoImportPath(filename)),
            };
            if !import_path.contains('.') && !import_path.contains('/') {
                if !required(&filename) {
                    continue;
                }
                return Err(GoError::InvalidImportPath {
                    import_path,
                    file: filename,
                });
            }
            let name = match package_names.get(&filename) {
                Some(n) => n.clone(),
                None if !opt_name.is_empty() => opt_name.to_string(),
                None => {
                    // Derived from go_package's import path first, then the M value (protogen).
                    let base_of = if opt_imp.is_empty() {
                        import_path.as_str()
                    } else {
                        opt_imp
                    };
                    clean_package_name(path_base(base_of))
                }
            };
            packages.insert(filename, GoPackage { import_path, name });
        }
        // Every file with the same import path must have the same package name.
        let mut by_path: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
        for (file, pkg) in &packages {
            by_path
                .entry(pkg.import_path.as_str())
                .or_default()
                .push((file.as_str(), pkg.name.as_str()));
        }
        for (path, mut files) in by_path {
            files.sort();
            if let Some(other) = files.iter().find(|(_, n)| *n != files[0].1) {
                return Err(GoError::InconsistentPackageNames {
                    import_path: path.to_string(),
                    first: format!("{} ({})", files[0].1, files[0].0),
                    second: format!("{} ({})", other.1, other.0),
                });
            }
        }
        Ok(PackageMap {
            packages,
            path_type,
            module,
        })
    }

    /// The Go package of a file of the request.
    pub fn get(&self, file: &str) -> Option<&GoPackage> {
        self.packages.get(file)
    }

    /// Output path of the file generated for `proto_file` with `suffix` (`_slimrpc.pb.go`),
    /// exactly where protoc-gen-go would put `<stem>.pb.go` with the same options.
    pub fn output_name(&self, proto_file: &str, suffix: &str) -> Result<String, GoError> {
        let pkg = self
            .get(proto_file)
            .ok_or_else(|| GoError::NoImportPath(proto_file.to_string()))?;
        let mut prefix = proto_file;
        for ext in [".proto", ".protodevel"] {
            if let Some(p) = prefix.strip_suffix(ext) {
                prefix = p;
                break;
            }
        }
        let prefix = match self.path_type {
            PathType::Import => path_join(&pkg.import_path, path_base(prefix)),
            PathType::SourceRelative => prefix.to_string(),
        };
        let name = format!("{prefix}{suffix}");
        match &self.module {
            Some(module) => {
                let trim = format!("{module}/");
                name.strip_prefix(&trim).map(str::to_string).ok_or_else(|| {
                    GoError::ModulePrefixMismatch {
                        file: name.clone(),
                        module: module.clone(),
                    }
                })
            }
            None => Ok(name),
        }
    }
}

/// Go's `path.Join` for two relative parts (cleans `.`/`..` and duplicate slashes).
fn path_join(a: &str, b: &str) -> String {
    let joined = format!("{a}/{b}");
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::FileOptions;

    fn file(name: &str, go_package: Option<&str>) -> FileDescriptorProto {
        FileDescriptorProto {
            name: Some(name.to_string()),
            options: go_package.map(|g| FileOptions {
                go_package: Some(g.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn go_package_with_name_sets_import_path_and_package_name() {
        let f = file("a/v1/x.proto", Some("example.com/gen/a/v1;apb"));
        let m = PackageMap::build([&f], &[], PathType::Import, None).unwrap();
        let p = m.get("a/v1/x.proto").unwrap();
        assert_eq!(p.import_path, "example.com/gen/a/v1");
        assert_eq!(p.name, "apb");
        assert_eq!(
            m.output_name("a/v1/x.proto", "_slimrpc.pb.go").unwrap(),
            "example.com/gen/a/v1/x_slimrpc.pb.go"
        );
    }

    #[test]
    fn package_name_is_the_sanitized_base_of_the_import_path() {
        let f = file("x.proto", Some("example.com/my-pkg.v2"));
        let m = PackageMap::build([&f], &[], PathType::SourceRelative, None).unwrap();
        assert_eq!(m.get("x.proto").unwrap().name, "my_pkg_v2");
        assert_eq!(
            m.output_name("x.proto", "_slimrpc.pb.go").unwrap(),
            "x_slimrpc.pb.go"
        );
    }

    #[test]
    fn m_mapping_beats_go_package_and_missing_import_path_is_an_error() {
        let a = file("a.proto", Some("example.com/a"));
        let b = file("dir/b.proto", None);
        let maps = vec![
            ("a.proto".to_string(), "example.com/override;ov".to_string()),
            ("dir/b.proto".to_string(), "example.com/b".to_string()),
        ];
        let m = PackageMap::build([&a, &b], &maps, PathType::Import, None).unwrap();
        assert_eq!(
            m.get("a.proto").unwrap(),
            &GoPackage {
                import_path: "example.com/override".into(),
                name: "ov".into()
            }
        );
        assert_eq!(m.get("dir/b.proto").unwrap().name, "b");
        assert!(matches!(
            PackageMap::build([&b], &[], PathType::Import, None),
            Err(GoError::NoImportPath(_))
        ));
    }

    #[test]
    fn files_not_required_may_lack_an_import_path_and_are_left_out() {
        let used = file("svc.proto", Some("example.com/svc"));
        let unused = file("fields.proto", None);
        let bad = file("bad.proto", Some("nodots"));
        let m =
            PackageMap::build_requiring([&used, &unused, &bad], &[], PathType::Import, None, |f| {
                f == "svc.proto"
            })
            .unwrap();
        assert!(m.get("svc.proto").is_some());
        assert!(m.get("fields.proto").is_none());
        assert!(m.get("bad.proto").is_none());
        assert!(matches!(
            PackageMap::build_requiring([&unused], &[], PathType::Import, None, |_| true),
            Err(GoError::NoImportPath(_))
        ));
    }

    #[test]
    fn module_strips_the_prefix_and_rejects_files_outside_it() {
        let f = file("a/x.proto", Some("example.com/gen/a"));
        let m = PackageMap::build(
            [&f],
            &[],
            PathType::Import,
            Some("example.com/gen".to_string()),
        )
        .unwrap();
        assert_eq!(
            m.output_name("a/x.proto", "_slimrpc.pb.go").unwrap(),
            "a/x_slimrpc.pb.go"
        );
        let m =
            PackageMap::build([&f], &[], PathType::Import, Some("other.org".to_string())).unwrap();
        assert!(m.output_name("a/x.proto", "_slimrpc.pb.go").is_err());
        assert!(matches!(
            PackageMap::build(
                [&f],
                &[],
                PathType::SourceRelative,
                Some("example.com".into())
            ),
            Err(GoError::ModuleWithSourceRelative)
        ));
    }

    #[test]
    fn files_of_one_import_path_must_agree_on_the_package_name() {
        let a = file("a.proto", Some("example.com/p;one"));
        let b = file("b.proto", Some("example.com/p;two"));
        assert!(matches!(
            PackageMap::build([&a, &b], &[], PathType::Import, None),
            Err(GoError::InconsistentPackageNames { .. })
        ));
    }

    #[test]
    fn import_path_without_dot_or_slash_is_rejected() {
        let a = file("a.proto", Some("justaname"));
        assert!(matches!(
            PackageMap::build([&a], &[], PathType::Import, None),
            Err(GoError::InvalidImportPath { .. })
        ));
    }
}
