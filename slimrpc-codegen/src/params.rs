//! Plugin parameters: the comma-separated `key=value` list protoc passes as
//! `--x_out=key=value,key2=value2:dir` and buf as `opt:` entries.
//!
//! Each plugin declares the keys it accepts; anything else is rejected with a message listing
//! the valid keys, so typos never pass silently. A declared key ending in `*` accepts every key
//! with that prefix (protoc-gen-go's `Mfile.proto=import/path` style). This module does not
//! interpret values beyond the typed getters.

use crate::error::ParamError;

/// Parsed parameters, in the order given (a key may repeat).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parameters {
    entries: Vec<(String, String)>,
}

impl Parameters {
    /// Parses `raw` and rejects keys not matched by `valid_keys`.
    ///
    /// Empty entries (`a=1,,b=2`, a trailing comma) are ignored. Every entry must contain `=`;
    /// the key is trimmed, the value is kept verbatim.
    pub fn parse(raw: &str, valid_keys: &[&str]) -> Result<Self, ParamError> {
        let mut entries = Vec::new();
        for part in raw.split(',') {
            if part.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = part.split_once('=') else {
                return Err(ParamError::NotKeyValue {
                    entry: part.to_string(),
                    valid: valid_list(valid_keys),
                });
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(ParamError::NotKeyValue {
                    entry: part.to_string(),
                    valid: valid_list(valid_keys),
                });
            }
            if !valid_keys.iter().any(|v| key_matches(v, key)) {
                return Err(ParamError::UnknownKey {
                    key: key.to_string(),
                    valid: valid_list(valid_keys),
                });
            }
            entries.push((key.to_string(), value.to_string()));
        }
        Ok(Parameters { entries })
    }

    /// The last value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value given for `key`, in order.
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every `(key, value)` whose key starts with `prefix` (for `M*`-style keys).
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// A boolean flag: absent → `default`; `true/false/1/0/yes/no` (any case) otherwise.
    pub fn get_bool(&self, key: &str, default: bool) -> Result<bool, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(ParamError::InvalidValue {
                    key: key.to_string(),
                    value: v.to_string(),
                    expected: "true or false".to_string(),
                }),
            },
        }
    }

    /// A value restricted to `choices`; absent → `default`.
    pub fn get_choice<'a>(
        &'a self,
        key: &str,
        choices: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, ParamError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => {
                choices
                    .iter()
                    .find(|c| **c == v)
                    .copied()
                    .ok_or_else(|| ParamError::InvalidValue {
                        key: key.to_string(),
                        value: v.to_string(),
                        expected: format!("one of {}", choices.join(", ")),
                    })
            }
        }
    }

    /// All entries in order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn key_matches(valid: &str, key: &str) -> bool {
    match valid.strip_suffix('*') {
        Some(prefix) => key.starts_with(prefix) && key.len() > prefix.len(),
        None => valid == key,
    }
}

fn valid_list(valid_keys: &[&str]) -> String {
    if valid_keys.is_empty() {
        "none (this plugin takes no parameters)".to_string()
    } else {
        valid_keys.join(", ")
    }
}

/// Splits a raw parameter string into the value of `key` and the rest (re-joined with `,`),
/// without validating anything. The multi-language plugin uses it to take out `lang=`.
pub fn take_key(raw: &str, key: &str) -> (Option<String>, String) {
    let mut found = None;
    let mut rest = Vec::new();
    for part in raw.split(',') {
        match part.split_once('=') {
            Some((k, v)) if k.trim() == key => found = Some(v.trim().to_string()),
            _ => {
                if !part.trim().is_empty() {
                    rest.push(part);
                }
            }
        }
    }
    (found, rest.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_pairs_in_order_and_last_wins() {
        let p = Parameters::parse("a=1, b=x=y ,a=2,", &["a", "b"]).unwrap();
        assert_eq!(p.get("a"), Some("2"));
        assert_eq!(p.get("b"), Some("x=y "));
        assert_eq!(p.get_all("a").collect::<Vec<_>>(), vec!["1", "2"]);
    }

    #[test]
    fn unknown_key_is_rejected_with_the_valid_keys_listed() {
        let e = Parameters::parse("imports=relative,oops=1", &["imports", "types_import"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("oops"), "{e}");
        assert!(e.contains("imports, types_import"), "{e}");
    }

    #[test]
    fn entry_without_equals_is_rejected() {
        assert!(matches!(
            Parameters::parse("flag", &["flag"]),
            Err(ParamError::NotKeyValue { .. })
        ));
    }

    #[test]
    fn star_key_accepts_any_key_with_that_prefix() {
        let p =
            Parameters::parse("Ma/b.proto=example.com/ab,paths=import", &["M*", "paths"]).unwrap();
        assert_eq!(
            p.with_prefix("M").collect::<Vec<_>>(),
            vec![("Ma/b.proto", "example.com/ab")]
        );
        assert!(Parameters::parse("M=x", &["M*"]).is_err());
    }

    #[test]
    fn bool_and_choice_values_are_validated() {
        let p = Parameters::parse("x=yes,y=maybe,z=rel", &["x", "y", "z"]).unwrap();
        assert!(p.get_bool("x", false).unwrap());
        assert!(p.get_bool("y", false).is_err());
        assert!(!p.get_bool("w", false).unwrap());
        assert!(
            p.get_choice("z", &["absolute", "relative"], "absolute")
                .is_err()
        );
        assert_eq!(p.get_choice("q", &["a"], "a").unwrap(), "a");
    }

    #[test]
    fn take_key_removes_only_that_key() {
        let (lang, rest) = take_key("lang=go,paths=source_relative,,Mx.proto=y", "lang");
        assert_eq!(lang.as_deref(), Some("go"));
        assert_eq!(rest, "paths=source_relative,Mx.proto=y");
        assert_eq!(take_key("a=1", "lang"), (None, "a=1".to_string()));
    }
}
