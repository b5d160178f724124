//! Where settings come from: the TOML file, then the `PUSHWARDEN_*` variables, layered by
//! figment; and the problems found in them, each naming the variable or key and its value.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Data, Format};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;

use super::settings::{self, Kind, Mask, Setting, SECTIONS, SETTINGS};
use super::Config;

/// What a masked value is shown as.
pub const MASKED: &str = "********";

/// The name figment records for values from [`Environment`].
const ENVIRONMENT: &str = "environment";

/// TOML through the workspace's `toml` crate (figment's own `toml` feature pins an older one).
pub struct TomlFormat;

impl Format for TomlFormat {
    type Error = toml::de::Error;
    const NAME: &'static str = "TOML";

    fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, Self::Error> {
        toml::from_str(text)
    }
}

/// The declared `PUSHWARDEN_*` variables that are set to something other than blanks.
///
/// figment's own `Env` provider parses every value as TOML-like data (`0123` becomes the number
/// 123, `"x"` loses its quotes), which would alter secrets and ids; this provider keeps the text
/// as written and converts only booleans and counts, the way the variables have always been
/// read.
pub struct Environment {
    vars: Vec<(&'static Setting, String)>,
}

impl Environment {
    /// Reads each declared variable through `lookup` (tests pass a map).
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let vars = SETTINGS
            .iter()
            .filter_map(|setting| {
                let value = lookup(setting.env?)?;
                (!value.trim().is_empty()).then_some((setting, value))
            })
            .collect();
        Environment { vars }
    }

    /// The process environment.
    pub fn process() -> Self {
        Self::read(|name| std::env::var(name).ok())
    }

    fn raw(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(setting, _)| setting.key == key)
            .map(|(_, value)| value.as_str())
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENVIRONMENT).interpolater(|_: &Profile, path: &[&str]| {
            let key = path.join(".");
            settings::by_key(&key)
                .and_then(|setting| setting.env)
                .map_or(key, str::to_owned)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (setting, raw) in &self.vars {
            let value = typed(setting.kind, raw);
            match setting.key.split_once('.') {
                Some((section, name)) => {
                    let table = root
                        .entry(section.to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if let Value::Dict(_, table) = table {
                        table.insert(name.to_owned(), value);
                    }
                }
                None => {
                    root.insert(setting.key.to_owned(), value);
                }
            }
        }
        Ok(Map::from([(Profile::Default, root)]))
    }
}

/// An environment value as the setting's type, or the text itself when it does not parse
/// (the check that follows names it).
fn typed(kind: Kind, raw: &str) -> Value {
    match kind {
        Kind::Bool => parse_bool(raw).map_or_else(|| Value::from(raw), Value::from),
        Kind::Count(_) => raw
            .trim()
            .parse::<u64>()
            .map_or_else(|_| Value::from(raw), Value::from),
        _ => Value::from(raw),
    }
}

/// The boolean spellings the environment accepts.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Why a value is not one of `kind`.
fn check(kind: Kind, value: &Value) -> Result<(), String> {
    let text = || value.as_str().ok_or_else(|| "expected a string".to_owned());
    match kind {
        Kind::Text | Kind::Url | Kind::Path => text().map(|_| ()),
        Kind::Addr => text()?
            .parse::<SocketAddr>()
            .map(|_| ())
            .map_err(|e| format!("{e} (expected host:port, e.g. 127.0.0.1:5000)")),
        Kind::Duration => humantime::parse_duration(
            value
                .as_str()
                .ok_or("expected a duration such as \"15s\"")?,
        )
        .map(|_| ())
        .map_err(|e| format!("{e} (expected a duration such as 15s, 500ms, 2m)")),
        Kind::Bool => match value {
            Value::Bool(..) => Ok(()),
            _ => Err("expected true or false".into()),
        },
        // TOML integers arrive signed, the environment's unsigned.
        Kind::Count(max) => match value.to_i128().or_else(|| value.to_u128()?.try_into().ok()) {
            Some(n) if n < 0 => Err("expected a whole number, not a negative one".into()),
            Some(n) if n <= i128::from(max) => Ok(()),
            Some(_) => Err(format!("must be at most {max}")),
            None => Err("expected a whole number".into()),
        },
    }
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug)]
pub struct Invalid(pub Vec<String>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "invalid configuration: {one}"),
            many => {
                write!(f, "invalid configuration ({} problems):", many.len())?;
                for problem in many {
                    write!(f, "\n  {problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Invalid {}

/// The file (if any) under the environment, as figment layers them.
pub struct Layers {
    figment: Figment,
    env: Environment,
    file: Option<PathBuf>,
}

impl Layers {
    pub fn new(file: Option<&Path>, env: Environment) -> Self {
        let mut figment = Figment::new();
        if let Some(path) = file {
            figment = figment.merge(Data::<TomlFormat>::file_exact(path));
        }
        // Merged last, so a variable wins over the file.
        figment = figment.merge(&env);
        Layers {
            figment,
            env,
            file: file.map(Path::to_owned),
        }
    }

    /// The configuration, or every problem in it.
    pub fn resolve(&self) -> Result<Config, Invalid> {
        let root = match self.figment.data() {
            Ok(mut data) => data.remove(&Profile::Default).unwrap_or_default(),
            // The environment provider never fails: the error is the file's.
            Err(e) => {
                let file = self.file.as_deref().unwrap_or(Path::new("the file"));
                return Err(Invalid(vec![format!(
                    "reading config file {}: {}",
                    file.display(),
                    e.to_string().trim_end()
                )]));
            }
        };
        let mut problems = unknown_keys(&root, |key| self.origin_of(key));
        for setting in SETTINGS {
            if let Ok(value) = self.figment.find_value(setting.key) {
                if let Err(why) = check(setting.kind, &value) {
                    problems.push(format!("{}: {why}", self.describe(setting.key, &value)));
                }
            }
        }
        if !problems.is_empty() {
            return Err(Invalid(problems));
        }
        let config: Config = self
            .figment
            .extract()
            .map_err(|e| Invalid(e.into_iter().map(|e| e.to_string()).collect()))?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Invalid(problems))
        }
    }

    /// Where `key`'s value comes from: `PUSHWARDEN_X`, the file, or `None` for the default.
    pub fn source(&self, key: &str) -> Option<String> {
        self.figment.find_value(key).ok()?;
        let metadata = self.figment.find_metadata(key)?;
        if metadata.name == ENVIRONMENT {
            settings::by_key(key).and_then(|s| s.env).map(str::to_owned)
        } else {
            Some(match &metadata.source {
                Some(source) => source.to_string(),
                None => metadata.name.to_string(),
            })
        }
    }

    /// Where a key was set, for messages about keys without a usable value.
    fn origin_of(&self, key: &str) -> String {
        match self
            .figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
        {
            Some(source) => format!("`{key}` in {source}"),
            None => format!("`{key}`"),
        }
    }

    /// `PUSHWARDEN_X=value` for a variable, `key = value in FILE` for the file; a secret's
    /// value is masked here too.
    pub fn describe(&self, key: &str, value: &Value) -> String {
        let setting = settings::by_key(key);
        let secret = setting.is_some_and(|s| s.mask == Mask::Secret);
        match (setting.and_then(|s| s.env), self.env.raw(key)) {
            // The environment is merged last: a variable that is set is the value used.
            (Some(name), Some(raw)) => format!("{name}={}", if secret { MASKED } else { raw }),
            _ => {
                let shown = match value {
                    _ if secret => toml_literal(&Value::from(MASKED)).unwrap_or_default(),
                    Value::Dict(..) => "a table".into(),
                    Value::Array(..) => "an array".into(),
                    _ => toml_literal(value).unwrap_or_else(|| "nothing".into()),
                };
                format!("{key} = {shown} in {}", self.file_name(key))
            }
        }
    }

    fn file_name(&self, key: &str) -> String {
        match self
            .figment
            .find_metadata(key)
            .and_then(|m| m.source.as_ref())
        {
            Some(source) => source.to_string(),
            None => "the configuration file".into(),
        }
    }

    /// Problems `serve` would only meet later: URLs that do not parse, an unknown hub policy.
    pub fn lint(&self, config: &Config) -> Vec<String> {
        let mut problems = Vec::new();
        let Ok(values) = Value::serialize(config) else {
            return problems;
        };
        for setting in SETTINGS.iter().filter(|s| s.kind == Kind::Url) {
            if let Some(text) = values.find_ref(setting.key).and_then(Value::as_str) {
                if let Err(e) = url::Url::parse(text) {
                    let value = Value::from(text);
                    problems.push(format!(
                        "{}: not a URL ({e})",
                        self.describe(setting.key, &value)
                    ));
                }
            }
        }
        if let Err(e) = config.jwt.policy.parse::<pushwarden_bitwarden::HubPolicy>() {
            let value = Value::from(config.jwt.policy.as_str());
            problems.push(format!("{}: {e}", self.describe("jwt.policy", &value)));
        }
        problems
    }
}

/// Keys in the file that no setting declares.
fn unknown_keys(root: &Dict, origin: impl Fn(&str) -> String) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, value) in root {
        let is_section = SECTIONS.iter().any(|(s, _)| !s.is_empty() && s == name);
        match value {
            Value::Dict(_, table) if is_section => {
                for key in table.keys() {
                    let path = format!("{name}.{key}");
                    if settings::by_key(&path).is_none() {
                        problems.push(format!("{}: unknown key", origin(&path)));
                    }
                }
            }
            _ if is_section => problems.push(format!("{}: expected a table", origin(name))),
            _ if settings::by_key(name).is_none() => {
                problems.push(format!("{}: unknown key", origin(name)))
            }
            _ => {}
        }
    }
    problems
}

/// A scalar as TOML writes it; `None` for tables, arrays and empty values.
pub fn toml_literal(value: &Value) -> Option<String> {
    match value {
        Value::String(_, s) => Some(toml::Value::String(s.clone()).to_string()),
        Value::Char(_, c) => Some(toml::Value::String(c.to_string()).to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(..) => value
            .to_i128()
            .map(|n| n.to_string())
            .or_else(|| value.to_u128().map(|n| n.to_string()))
            .or_else(|| value.to_f64().map(|n| n.to_string())),
        Value::Empty(..) | Value::Dict(..) | Value::Array(..) => None,
    }
}
