//! Configuration of the `slim` node, in the YAML shape of the official SLIM
//! node:
//!
//! ```yaml
//! tracing: { log_level: info }
//! runtime: { n_cores: 0, drain_timeout: 10s }
//! services:
//!   slim/0:
//!     dataplane:            # `pubsub` is accepted too
//!       servers:
//!         - endpoint: "0.0.0.0:46357"   # serves SLIM v1 and v3 at once
//!           tls: { insecure: true }        # or cert_file / key_file
//!           require_header_mac: true       # v3 links must do the X25519 + MAC exchange
//!           max_connections: 10000         # our extension
//!           max_message_size: 4194304      # our extension, bytes
//!       clients:            # outgoing links
//!         - endpoint: "http://10.0.0.2:46357"
//!           tls: { insecure: true }        # or ca_file
//!           upstream: true  # our extension, see `Service::connect_upstream`
//!           protocol: auto  # our extension: 1, 3 or auto (ask the peer)
//!           require_header_mac: true
//!           backoff: { base: 50, max_delay: 5s, jitter: true }  # reconnect, forever
//! ```
//!
//! Unknown keys are ignored (the official file has many we do not use).
//! This module only parses and checks; it never opens sockets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Errors reading a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("invalid duration `{0}` (use e.g. `10s`, `500ms`, `1m`)")]
    Duration(String),
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub tracing: TracingConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TracingConfig {
    #[serde(default = "default_level")]
    pub log_level: String,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            log_level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    /// Worker threads; 0 means one per core.
    #[serde(default)]
    pub n_cores: usize,
    #[serde(default)]
    pub thread_name: Option<String>,
    /// How long shutdown may take, e.g. `10s`.
    #[serde(default)]
    pub drain_timeout: Option<String>,
}

impl RuntimeConfig {
    /// The drain timeout (10 s when absent).
    pub fn drain(&self) -> Result<Duration, ConfigError> {
        match &self.drain_timeout {
            None => Ok(Duration::from_secs(10)),
            Some(s) => parse_duration(s),
        }
    }
}

/// One `services:` entry (`slim/0`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServiceConfig {
    #[serde(default, alias = "pubsub")]
    pub dataplane: DataplaneConfig,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub servers: Vec<ServerConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerConfig {
    pub endpoint: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// v3 links must negotiate the per-link header MAC (official default:
    /// true).
    #[serde(default = "yes")]
    pub require_header_mac: bool,
    /// Incoming connections served at once.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Largest frame accepted, in bytes.
    #[serde(default)]
    pub max_message_size: Option<usize>,
}

fn yes() -> bool {
    true
}

/// Which wire generation an outgoing link speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkProtocol {
    /// Ask the peer: send a v3 request, fall back to v1 if it answers so.
    #[default]
    Auto,
    V1,
    V3,
}

/// Reconnect backoff of an outgoing link (the official `backoff` keys of
/// the exponential kind; attempts are never limited here).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BackoffConfig {
    /// First wait, in milliseconds.
    #[serde(default)]
    pub base: Option<u64>,
    /// Longest wait, e.g. `5s`.
    #[serde(default)]
    pub max_delay: Option<String>,
    #[serde(default)]
    pub jitter: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientConfig {
    pub endpoint: String,
    #[serde(default)]
    pub tls: TlsConfig,
    /// Announce local names on this link and send unroutable traffic up it.
    #[serde(default)]
    pub upstream: bool,
    #[serde(default, deserialize_with = "protocol")]
    pub protocol: LinkProtocol,
    /// v3: refuse a peer without the header MAC exchange (official
    /// default: true).
    #[serde(default = "yes")]
    pub require_header_mac: bool,
    #[serde(default)]
    pub backoff: BackoffConfig,
}

/// `protocol:` may be written as a number or a string.
fn protocol<'de, D: serde::Deserializer<'de>>(d: D) -> Result<LinkProtocol, D::Error> {
    let v = serde_yaml::Value::deserialize(d)?;
    let text = match &v {
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::String(s) => s.clone(),
        _ => String::new(),
    };
    match text.trim() {
        "auto" => Ok(LinkProtocol::Auto),
        "1" | "v1" => Ok(LinkProtocol::V1),
        "3" | "v3" => Ok(LinkProtocol::V3),
        other => Err(serde::de::Error::custom(format!(
            "protocol `{other}`: use 1, 3 or auto"
        ))),
    }
}

/// TLS settings: `insecure: true` means plain HTTP/2.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsConfig {
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl TlsConfig {
    /// True when this entry asks for TLS.
    pub fn wants_tls(&self) -> bool {
        !self.insecure
            && (self.cert_file.is_some() || self.key_file.is_some() || self.ca_file.is_some())
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let bad = || ConfigError::Duration(s.to_string());
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

impl Config {
    /// Parses YAML text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let c: Config = serde_yaml::from_str(text)?;
        c.runtime.drain()?;
        for (name, svc) in &c.services {
            for s in &svc.dataplane.servers {
                if s.endpoint.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "service {name}: server endpoint is empty"
                    )));
                }
                if s.tls.wants_tls() && (s.tls.cert_file.is_none() || s.tls.key_file.is_none()) {
                    return Err(ConfigError::Invalid(format!(
                        "service {name}: TLS server {} needs both cert_file and key_file",
                        s.endpoint
                    )));
                }
            }
            for cl in &svc.dataplane.clients {
                if cl.endpoint.trim().is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "service {name}: client endpoint is empty"
                    )));
                }
                if let Some(d) = &cl.backoff.max_delay {
                    parse_duration(d)?;
                }
            }
        }
        Ok(c)
    }

    /// Reads and parses a file.
    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// A single insecure server on `endpoint` (the `--endpoint` shortcut).
    pub fn single_server(endpoint: &str) -> Self {
        let mut services = BTreeMap::new();
        services.insert(
            "slim/0".to_string(),
            ServiceConfig {
                dataplane: DataplaneConfig {
                    servers: vec![ServerConfig {
                        endpoint: endpoint.to_string(),
                        tls: TlsConfig {
                            insecure: true,
                            ..Default::default()
                        },
                        require_header_mac: true,
                        max_connections: None,
                        max_message_size: None,
                    }],
                    clients: Vec::new(),
                },
            },
        );
        Self {
            services,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_official_node_config() {
        let c = Config::from_yaml(
            r#"
tracing:
  log_level: info
  display_thread_names: true
  display_thread_ids: true

runtime:
  n_cores: 0
  thread_name: "slim-data-plane"
  drain_timeout: 10s

services:
  slim/0:
    pubsub:
      servers:
        - endpoint: "0.0.0.0:46357"
          tls:
            insecure: true

      clients: []
"#,
        )
        .unwrap();
        assert_eq!(c.tracing.log_level, "info");
        assert_eq!(c.runtime.drain().unwrap(), Duration::from_secs(10));
        let dp = &c.services["slim/0"].dataplane;
        assert_eq!(dp.servers[0].endpoint, "0.0.0.0:46357");
        assert!(dp.servers[0].tls.insecure);
        assert!(dp.clients.is_empty());
    }

    #[test]
    fn parses_dataplane_clients_with_upstream_and_tls_files() {
        let c = Config::from_yaml(
            r#"
services:
  slim/0:
    dataplane:
      servers:
        - endpoint: "127.0.0.1:1"
          tls: { cert_file: /c.pem, key_file: /k.pem }
      clients:
        - endpoint: "http://127.0.0.1:2"
          tls: { insecure: true }
          upstream: true
"#,
        )
        .unwrap();
        let dp = &c.services["slim/0"].dataplane;
        assert!(dp.servers[0].tls.wants_tls());
        assert!(dp.clients[0].upstream);
        assert!(!dp.clients[0].tls.wants_tls());
    }

    #[test]
    fn rejects_bad_yaml_durations_and_half_tls() {
        assert!(matches!(
            Config::from_yaml("services: [oops"),
            Err(ConfigError::Yaml(_))
        ));
        assert!(matches!(
            Config::from_yaml("runtime: { drain_timeout: soon }"),
            Err(ConfigError::Duration(_))
        ));
        assert!(matches!(
            Config::from_yaml(
                "services: { slim/0: { dataplane: { servers: [ { endpoint: a, tls: { cert_file: /c } } ] } } }"
            ),
            Err(ConfigError::Invalid(_))
        ));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    }

    #[test]
    fn client_protocol_header_mac_and_backoff_are_read_with_official_defaults() {
        let c = Config::from_yaml(
            r#"
services:
  slim/0:
    dataplane:
      servers:
        - endpoint: "127.0.0.1:1"
          require_header_mac: false
          max_connections: 3
      clients:
        - endpoint: "http://127.0.0.1:2"
          protocol: 3
        - endpoint: "http://127.0.0.1:3"
          protocol: "1"
          require_header_mac: false
          backoff: { base: 20, max_delay: 2s, jitter: false }
        - endpoint: "http://127.0.0.1:4"
"#,
        )
        .unwrap();
        let d = &c.services["slim/0"].dataplane;
        assert!(!d.servers[0].require_header_mac);
        assert_eq!(d.servers[0].max_connections, Some(3));
        assert_eq!(d.clients[0].protocol, LinkProtocol::V3);
        assert!(d.clients[0].require_header_mac);
        assert_eq!(d.clients[1].protocol, LinkProtocol::V1);
        assert_eq!(d.clients[1].backoff.base, Some(20));
        assert_eq!(d.clients[2].protocol, LinkProtocol::Auto);
        assert!(
            Config::from_yaml(
                "services: {s: {dataplane: {clients: [{endpoint: x, protocol: 2}]}}}"
            )
            .is_err()
        );
    }
}
