//! Fully-qualified-name index of every message and enum in a request, nested ones included,
//! each mapped to its defining file, proto package and nested path (`Outer.Inner` →
//! `["Outer", "Inner"]`). Language generators resolve method types through it instead of
//! guessing modules from type names. It knows nothing about any target language.

use std::collections::HashMap;

use prost_types::{DescriptorProto, FileDescriptorProto};

/// Message or enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// A `message`.
    Message,
    /// An `enum`.
    Enum,
}

/// Where a type is defined.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypeRef {
    /// Fully-qualified proto name without the leading dot: `pkg.Outer.Inner` (or `Outer.Inner`
    /// when the file has no package).
    pub full_name: String,
    /// Proto package of the defining file (`""` when it has none).
    pub package: String,
    /// Path of the defining `.proto` file as protoc names it (`google/protobuf/empty.proto`).
    pub file: String,
    /// Names from the outermost message down to this type: `["Outer", "Inner"]`.
    pub nested_path: Vec<String>,
    /// Message or enum.
    pub kind: TypeKind,
}

impl TypeRef {
    /// The type's own (innermost) name.
    pub fn name(&self) -> &str {
        self.nested_path.last().map(String::as_str).unwrap_or("")
    }

    /// The name relative to the package: `Outer.Inner`.
    pub fn relative_name(&self) -> String {
        self.nested_path.join(".")
    }

    /// Whether the type is defined inside another message.
    pub fn is_nested(&self) -> bool {
        self.nested_path.len() > 1
    }

    /// Whether the type is a well-known type shipped with protobuf (`google.protobuf.*`).
    pub fn is_well_known(&self) -> bool {
        self.package == "google.protobuf"
    }
}

/// The index: fully-qualified name (no leading dot) → [`TypeRef`].
#[derive(Debug, Clone, Default)]
pub struct TypeIndex {
    types: HashMap<String, TypeRef>,
}

impl TypeIndex {
    /// Indexes every message and enum (recursively) of `files`.
    pub fn build<'a>(files: impl IntoIterator<Item = &'a FileDescriptorProto>) -> Self {
        let mut index = TypeIndex::default();
        for file in files {
            let package = file.package().to_string();
            let file_name = file.name().to_string();
            let mut path = Vec::new();
            for msg in &file.message_type {
                index.add_message(&file_name, &package, &mut path, msg);
            }
            for en in &file.enum_type {
                index.add(&file_name, &package, &path, en.name(), TypeKind::Enum);
            }
        }
        index
    }

    fn add(&mut self, file: &str, package: &str, parents: &[String], name: &str, kind: TypeKind) {
        let mut nested_path = parents.to_vec();
        nested_path.push(name.to_string());
        let relative = nested_path.join(".");
        let full_name = if package.is_empty() {
            relative
        } else {
            format!("{package}.{relative}")
        };
        // First definition wins; protoc never sends duplicates.
        self.types.entry(full_name.clone()).or_insert(TypeRef {
            full_name,
            package: package.to_string(),
            file: file.to_string(),
            nested_path,
            kind,
        });
    }

    fn add_message(
        &mut self,
        file: &str,
        package: &str,
        path: &mut Vec<String>,
        msg: &DescriptorProto,
    ) {
        self.add(file, package, path, msg.name(), TypeKind::Message);
        path.push(msg.name().to_string());
        for nested in &msg.nested_type {
            self.add_message(file, package, path, nested);
        }
        for en in &msg.enum_type {
            self.add(file, package, path, en.name(), TypeKind::Enum);
        }
        path.pop();
    }

    /// Looks up a name as it appears in descriptors (`.pkg.Msg`) or without the leading dot.
    pub fn get(&self, name: &str) -> Option<&TypeRef> {
        self.types.get(name.strip_prefix('.').unwrap_or(name))
    }

    /// Number of indexed types.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// All indexed types, sorted by full name (deterministic).
    pub fn iter_sorted(&self) -> Vec<&TypeRef> {
        let mut v: Vec<&TypeRef> = self.types.values().collect();
        v.sort_by(|a, b| a.full_name.cmp(&b.full_name));
        v
    }
}
