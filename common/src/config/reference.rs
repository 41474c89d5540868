//! Keeps `docs/config.md`, the configuration reference, in step with [`KEYS`]: every key has
//! one row with its environment variable, the document names no key or variable that does not
//! exist, and every default it writes as a literal is what talos uses when the key is absent.

use super::*;

const DOC: &str = include_str!("../../../docs/config.md");

/// A row of the key tables: `| `key` | type | default | `TALOS_…` | what it does |`.
struct Row<'a> {
    key: &'a str,
    default: &'a str,
    env: &'a str,
}

fn rows() -> Vec<Row<'static>> {
    DOC.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix('|')?.strip_suffix('|')?.split('|').map(str::trim).collect();
            let key = cells.first()?.strip_prefix('`')?.strip_suffix('`')?;
            (cells.len() == 5).then(|| Row { key, default: cells[2], env: cells[3] })
        })
        .collect()
}

#[test]
fn every_key_has_one_row_with_its_variable() {
    let rows = rows();
    let mut seen = HashSet::new();
    for row in &rows {
        assert!(spec_of(row.key).is_some(), "docs/config.md documents {:?}, which is not a key", row.key);
        assert!(seen.insert(row.key), "docs/config.md documents {} twice", row.key);
        assert_eq!(row.env, format!("`TALOS_{}`", env_name(row.key)), "the variable of {}", row.key);
    }
    let missing: Vec<&str> = KEYS.iter().map(|spec| spec.path).filter(|path| !seen.contains(path)).collect();
    assert!(missing.is_empty(), "docs/config.md does not document {missing:?}");
}

#[test]
fn the_doc_names_no_unknown_key_or_variable() {
    let sections: HashSet<&str> = KEYS.iter().filter_map(|spec| spec.path.split('.').next()).collect();
    let by_env: HashMap<String, &KeySpec> = KEYS.iter().map(|spec| (env_name(spec.path), spec)).collect();
    let tokens = DOC.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.')).map(|t| t.trim_matches('.'));
    let mut checked = 0;
    for token in tokens {
        if let Some(rest) = token.strip_prefix("TALOS_").filter(|rest| !rest.is_empty()) {
            // `TALOS_<KEY>`, or `TALOS_<KEY>_<n>` for an item of a list key.
            let item_of_list = rest
                .rsplit_once('_')
                .filter(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|(base, _)| by_env.get(base))
                .is_some_and(|spec| spec.kind.is_list());
            assert!(by_env.contains_key(rest) || item_of_list, "docs/config.md names {token}, which no key has");
            checked += 1;
        } else if token.contains('.') && token.split('.').next().is_some_and(|first| sections.contains(first)) {
            assert!(
                spec_of(token).is_some() || is_section(token),
                "docs/config.md names {token:?}, which is neither a key nor a section"
            );
            checked += 1;
        }
    }
    assert!(checked > 2 * KEYS.len(), "only {checked} names found: is the document parsed?");
}

/// `a.b.c` and `v` as the YAML document `a: {b: {c: v}}`, in block style.
fn nested(path: &str, value: &str) -> String {
    let parts: Vec<&str> = path.split('.').collect();
    let mut yaml = String::new();
    for (depth, part) in parts.iter().enumerate() {
        yaml.push_str(&"  ".repeat(depth));
        yaml.push_str(part);
        yaml.push(':');
        if depth + 1 == parts.len() {
            yaml.push(' ');
            yaml.push_str(value);
        }
        yaml.push('\n');
    }
    yaml
}

#[test]
fn documented_defaults_are_the_defaults() {
    // The required keys come from the environment, so the file holds only the key under test.
    let env: Vec<(String, String)> = vec![
        ("TALOS_CREDENTIALS_ISSUER".into(), "https://api.example.com".into()),
        ("TALOS_SECRETS_HMAC_CURRENT".into(), "0123456789abcdef0123456789abcdef".into()),
    ];
    let load = |yaml: &str| match Config::from_yaml_str(yaml, &env) {
        Ok((config, _)) => Ok(format!("{config:?}")),
        Err(errors) => Err(errors.to_string()),
    };
    let baseline = load("").expect("the environment alone is a valid config");
    let mut checked = 0;
    for row in rows() {
        // A default written as one literal (`4420`, `"5m"`, `[]`); prose defaults are not checked.
        let Some(literal) = row.default.strip_prefix('`').and_then(|d| d.strip_suffix('`')) else { continue };
        if literal.contains('`') {
            continue;
        }
        let loaded = load(&nested(row.key, literal));
        assert_eq!(loaded.as_ref(), Ok(&baseline), "{} set to its documented default {literal}", row.key);
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} defaults checked: is the document parsed?");
}
