//! One layered configuration for every component: built-in defaults, then the file
//! (`pharmwatch.toml`, one table per component: `[stream]`, `[delivery]`, `[notices]`,
//! `[nightly]`, `[serve]`), then the environment as `PHARMWATCH__SECTION__KEY`
//! (`PHARMWATCH__STREAM__BROKERS`, `PHARMWATCH__DELIVERY__SMTP__PORT`: `__` separates the levels).
//!
//! Each component keeps its configuration beside its code as plain serde data (a
//! `deny_unknown_fields` struct with a `Default`, a `///` on every field and its own
//! `validate`), and names its table by implementing [`Section`]; [`load`] is the one loader.
//!
//! Invariants:
//! - an unknown key is an error naming it: in the file (a key of a section, or a table that is
//!   no section) and in the environment (`PHARMWATCH__STREEM__BROKERS` is refused, not ignored);
//! - a later layer wins key by key: a file that sets one key keeps every other default;
//! - the flat variables of the first release (`PHARMWATCH_BROKERS`, `PHARMWATCH_SMTP_HOST` …)
//!   still apply for this release, below the new ones, each with a warning naming its
//!   replacement ([`Section::LEGACY_ENV`]).

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{CoreError, Result};

/// The tables a `pharmwatch.toml` may hold.
pub const SECTIONS: &[&str] = &["stream", "delivery", "notices", "nightly", "serve", "store"];

/// The prefix of the environment layer.
pub const ENV_PREFIX: &str = "PHARMWATCH__";

/// A component's table of `pharmwatch.toml`.
pub trait Section: Serialize + DeserializeOwned + Default {
    /// The table's name (one of [`SECTIONS`]).
    const NAME: &'static str;
    /// Flat variables of the first release still honoured, with the key (dotted, inside the
    /// section) each now sets: `("PHARMWATCH_BROKERS", "brokers")`.
    const LEGACY_ENV: &'static [(&'static str, &'static str)] = &[];
}

/// Loads section `T` from the defaults, the file at `path` (if any) and the process
/// environment.
pub fn load<T: Section>(path: Option<&Path>) -> Result<T> {
    load_with(path, std::env::vars())
}

/// [`load`] with the environment given as `(name, value)` pairs (tests pass their own).
pub fn load_with<T: Section>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T> {
    let mut figment = Figment::new().merge(Serialized::default(T::NAME, T::default()));
    let origin = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| CoreError::io(p, e))?;
            check_sections(&text, &p.display().to_string())?;
            figment = figment.merge(Toml::string(&text));
            p.display().to_string()
        }
        None => "the built-in defaults".to_string(),
    };
    let env: BTreeMap<String, String> = env.into_iter().collect();
    for (old, key) in T::LEGACY_ENV {
        if let Some(value) = env.get(*old).filter(|v| !v.is_empty()) {
            let new = format!("{ENV_PREFIX}{}__{}", T::NAME, key.replace('.', "__")).to_uppercase();
            eprintln!("warning: {old} is deprecated and will be removed: set {new} instead");
            figment = figment.merge(Serialized::default(
                &format!("{}.{key}", T::NAME),
                env_value(value),
            ));
        }
    }
    for name in env.keys().filter(|k| k.starts_with(ENV_PREFIX)) {
        let section = name[ENV_PREFIX.len()..]
            .split("__")
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            return Err(CoreError::Config(format!(
                "environment {name}: `{section}` is not a section of pharmwatch.toml (known: {})",
                SECTIONS.join(", ")
            )));
        }
    }
    for (name, value) in env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)) {
        let key = name[ENV_PREFIX.len()..]
            .split("__")
            .map(str::to_lowercase)
            .collect::<Vec<_>>()
            .join(".");
        figment = figment.merge(Serialized::default(&key, env_value(value)));
    }
    figment.extract_inner::<T>(T::NAME).map_err(|e| {
        CoreError::Config(format!(
            "[{}] of {origin}: {}",
            T::NAME,
            e.to_string().trim()
        ))
    })
}

/// A variable's value as the file would give it: a number, a boolean or an array when it
/// reads as one (`30`, `true`, `[1, 2]`), else the text.
fn env_value(text: &str) -> figment::value::Value {
    text.parse::<figment::value::Value>()
        .unwrap_or_else(|_| figment::value::Value::from(text.to_string()))
}

/// Refuses a file whose top level holds anything but the known section tables.
fn check_sections(text: &str, origin: &str) -> Result<()> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
            format!("line {line}, column {column}: ")
        });
        CoreError::Config(format!(
            "{origin}: {}{}",
            at.unwrap_or_default(),
            e.message()
        ))
    })?;
    for (key, value) in &table {
        if !SECTIONS.contains(&key.as_str()) || !value.is_table() {
            return Err(CoreError::Config(format!(
                "{origin}: unknown key `{key}`: pharmwatch.toml holds the tables {} (a \
                 configuration of the first release is one of them: put it under its table)",
                SECTIONS
                    .iter()
                    .map(|s| format!("[{s}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(())
}

/// `value` as the text of its table in `pharmwatch.toml` (for tools and tests that write one).
pub fn file_text<T: Section>(value: &T) -> Result<String> {
    let mut doc = BTreeMap::new();
    doc.insert(T::NAME, value);
    toml::to_string(&doc).map_err(|e| CoreError::Internal(format!("[{}]: {e}", T::NAME)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        brokers: String,
        batch: u32,
        inner: Inner,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        port: u16,
        host: String,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                brokers: "b0".into(),
                batch: 10,
                inner: Inner::default(),
            }
        }
    }

    impl Default for Inner {
        fn default() -> Self {
            Self {
                port: 25,
                host: "localhost".into(),
            }
        }
    }

    impl Section for Demo {
        const NAME: &'static str = "stream";
        const LEGACY_ENV: &'static [(&'static str, &'static str)] = &[
            ("PHARMWATCH_BROKERS", "brokers"),
            ("PHARMWATCH_PORT", "inner.port"),
        ];
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pharmwatch.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn layers_apply_in_order_key_by_key() {
        let d: Demo = load_with(None, env(&[])).unwrap();
        assert_eq!(d, Demo::default());
        let (_dir, path) =
            file("[stream]\nbatch = 20\n[stream.inner]\nhost = \"mx\"\n[delivery]\nx = 1\n");
        let d: Demo = load_with(Some(&path), env(&[])).unwrap();
        assert_eq!((d.brokers.as_str(), d.batch), ("b0", 20));
        assert_eq!((d.inner.host.as_str(), d.inner.port), ("mx", 25));
        let d: Demo = load_with(
            Some(&path),
            env(&[
                ("PHARMWATCH__STREAM__BATCH", "30"),
                ("PHARMWATCH__STREAM__INNER__PORT", "2525"),
                ("PHARMWATCH_BROKERS", "old"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (d.brokers.as_str(), d.batch, d.inner.port),
            ("old", 30, 2525)
        );
        // The new variable wins over the old one.
        let d: Demo = load_with(
            None,
            env(&[
                ("PHARMWATCH_BROKERS", "old"),
                ("PHARMWATCH__STREAM__BROKERS", "new"),
            ]),
        )
        .unwrap();
        assert_eq!(d.brokers, "new");
        let d: Demo = load_with(None, env(&[("PHARMWATCH_PORT", "587")])).unwrap();
        assert_eq!(d.inner.port, 587);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let (_dir, path) = file("[stream]\nbrokrs = \"x\"\n");
        let err = load_with::<Demo>(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("brokrs"), "{err}");
        let (_dir, path) = file("brokers = \"x\"\n");
        let err = load_with::<Demo>(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `brokers`"), "{err}");
        let (_dir, path) = file("[streem]\nbrokers = \"x\"\n");
        let err = load_with::<Demo>(Some(&path), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `streem`"), "{err}");
        let err = load_with::<Demo>(None, env(&[("PHARMWATCH__STREAM__BACH", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bach"), "{err}");
        let err = load_with::<Demo>(None, env(&[("PHARMWATCH__STREEM__BATCH", "1")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PHARMWATCH__STREEM__BATCH"), "{err}");
        let err = load_with::<Demo>(None, env(&[("PHARMWATCH__STREAM__BATCH", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("batch"), "{err}");
    }

    #[test]
    fn file_text_round_trips() {
        let mut d = Demo::default();
        d.inner.port = 2526;
        let (_dir, path) = file(&file_text(&d).unwrap());
        assert_eq!(load_with::<Demo>(Some(&path), env(&[])).unwrap(), d);
    }

    mod properties {
        //! Random text and near-valid files through the loader: no panic; a refusal names the
        //! file.
        use super::*;
        use proptest::prelude::*;

        fn load_text(text: &str) -> Result<Demo> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("pharmwatch.toml");
            std::fs::write(&path, text).unwrap();
            load_with::<Demo>(Some(&path), Vec::new())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            #[test]
            fn random_text_is_refused_naming_the_file(text in ".{0,120}") {
                if let Err(e) = load_text(&text) {
                    prop_assert!(e.to_string().contains("pharmwatch.toml"), "{e}");
                }
            }

            #[test]
            fn a_changed_value_is_refused_naming_the_file_and_section(
                key in proptest::sample::select(vec!["brokers", "batch", "inner", "other"]),
                value in prop_oneof![Just("1".to_string()), Just("-1".to_string()),
                    Just("\"x\"".to_string()), Just("[1]".to_string()),
                    Just("{ port = 70000 }".to_string()), Just("99999999999".to_string())]) {
                if let Err(e) = load_text(&format!("[stream]\n{key} = {value}\n")) {
                    let text = e.to_string();
                    prop_assert!(text.contains("pharmwatch.toml") && text.contains("[stream]"), "{text}");
                }
            }
        }
    }
}
