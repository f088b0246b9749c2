//! Import manager for one generated Go file: gives every imported package a name that never
//! collides with another import, a Go keyword or predeclared identifier, a local variable the
//! templates use, or a package-level name we declare.
//!
//! Names are handed out in the order packages are first used (deterministic for a given
//! input); a taken name gets a numeric suffix (`v1`, `v11`, ...), as protogen does. It knows
//! nothing about descriptors.

use std::collections::{BTreeMap, HashSet};

use crate::naming::{GO_PREDECLARED, clean_package_name, is_go_keyword};

/// One `name "path"` import line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSpec {
    /// The name the file uses for the package.
    pub name: String,
    /// Import path.
    pub path: String,
}

/// Imports of one file.
#[derive(Debug, Clone)]
pub struct Imports {
    own_path: String,
    taken: HashSet<String>,
    by_path: BTreeMap<String, String>,
}

impl Imports {
    /// A manager for a file in package `own_path`; `reserved` are names that must stay free
    /// (locals, package-level declarations).
    pub fn new<'a>(own_path: &str, reserved: impl IntoIterator<Item = &'a str>) -> Self {
        let mut taken: HashSet<String> = GO_PREDECLARED.iter().map(|s| s.to_string()).collect();
        taken.extend(reserved.into_iter().map(str::to_string));
        Imports {
            own_path: own_path.to_string(),
            taken,
            by_path: BTreeMap::new(),
        }
    }

    /// Marks `name` as used by a declaration of ours.
    pub fn reserve(&mut self, name: &str) {
        self.taken.insert(name.to_string());
    }

    /// The qualifier for package `path` (`None` for the file's own package), importing it
    /// under `preferred` (or a suffixed variant) on first use.
    pub fn qualifier(&mut self, path: &str, preferred: &str) -> Option<String> {
        if path == self.own_path {
            return None;
        }
        if let Some(name) = self.by_path.get(path) {
            return Some(name.clone());
        }
        let mut base = clean_package_name(preferred);
        if is_go_keyword(&base) {
            base = format!("_{base}");
        }
        let mut name = base.clone();
        let mut i = 1;
        while self.taken.contains(&name) {
            name = format!("{base}{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        self.by_path.insert(path.to_string(), name.clone());
        Some(name)
    }

    /// `pkg.Ident` or just `Ident` for the own package.
    pub fn qualify(&mut self, path: &str, preferred: &str, ident: &str) -> String {
        match self.qualifier(path, preferred) {
            Some(q) => format!("{q}.{ident}"),
            None => ident.to_string(),
        }
    }

    /// Standard-library imports, then the others, each sorted by path (gofmt's order).
    pub fn groups(&self) -> (Vec<ImportSpec>, Vec<ImportSpec>) {
        let mut std = Vec::new();
        let mut other = Vec::new();
        for (path, name) in &self.by_path {
            let spec = ImportSpec {
                name: name.clone(),
                path: path.clone(),
            };
            let first = path.split('/').next().unwrap_or("");
            if first.contains('.') {
                other.push(spec);
            } else {
                std.push(spec);
            }
        }
        (std, other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_with_the_same_base_get_distinct_names() {
        let mut im = Imports::new("example.com/a", []);
        assert_eq!(
            im.qualify("example.com/b/v1", "v1", "Shared"),
            "v1.Shared".to_string()
        );
        assert_eq!(
            im.qualify("example.com/c/v1", "v1", "Shared"),
            "v11.Shared".to_string()
        );
        assert_eq!(im.qualify("example.com/b/v1", "v1", "X"), "v1.X");
        assert_eq!(im.qualify("example.com/a", "a", "Local"), "Local");
    }

    #[test]
    fn reserved_and_predeclared_names_are_never_used() {
        let mut im = Imports::new("example.com/a", ["proto", "in"]);
        assert_eq!(
            im.qualifier("example.com/proto", "proto").unwrap(),
            "proto1"
        );
        assert_eq!(
            im.qualifier("example.com/string", "string").unwrap(),
            "string1"
        );
        assert_eq!(im.qualifier("example.com/type", "type").unwrap(), "_type");
    }

    #[test]
    fn groups_split_std_from_others_sorted_by_path() {
        let mut im = Imports::new("x.org/own", []);
        im.qualifier("time", "time");
        im.qualifier("context", "context");
        im.qualifier("z.org/a", "a");
        im.qualifier("b.org/z", "z");
        let (std, other) = im.groups();
        assert_eq!(
            std.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            ["context", "time"]
        );
        assert_eq!(
            other.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            ["b.org/z", "z.org/a"]
        );
    }
}
