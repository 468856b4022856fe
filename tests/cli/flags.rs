//! The README's flag table lists every flag and environment variable `--help` shows, and
//! nothing `--help` does not know.

use std::collections::BTreeSet;
use std::process::Command;

/// `--flag` and `ENV` names in `--help` (hidden and subcommand-only flags excepted).
fn help_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_storeapi-exporter"))
        .arg("--help")
        .env_clear()
        .output()
        .expect("run storeapi-exporter --help");
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for line in help.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("--") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if name != "help" && name != "version" {
                flags.insert(format!("--{name}"));
            }
        }
        if let Some(rest) = t.strip_prefix("[env: ") {
            envs.insert(rest.split(['=', ']']).next().unwrap().to_string());
        }
    }
    (flags, envs)
}

/// `--flag` and `ENV` names in the README's table rows (`| flag | env | default | meaning |`).
fn readme_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("| flag | env |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(!table.is_empty(), "the README has a `| flag | env |` table");
    let mut flags = BTreeSet::new();
    let mut envs = BTreeSet::new();
    for row in table {
        let cells: Vec<&str> = row.split('|').collect();
        let code = |cell: &str| -> Vec<String> {
            cell.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        };
        flags.extend(code(cells[1]).into_iter().filter(|c| c.starts_with("--")));
        envs.extend(code(cells[2]));
    }
    (flags, envs)
}

#[test]
fn readme_lists_every_flag_and_environment_variable() {
    let (help_flags, help_envs) = help_names();
    let (readme_flags, readme_envs) = readme_names();
    assert!(help_flags.len() > 40, "{help_flags:?}");
    let missing: Vec<_> = help_flags.difference(&readme_flags).collect();
    assert!(
        missing.is_empty(),
        "flags missing from the README's table: {missing:?}"
    );
    let unknown: Vec<_> = readme_flags.difference(&help_flags).collect();
    assert!(
        unknown.is_empty(),
        "README flags --help does not know: {unknown:?}"
    );
    // `TLS_*` in the README stands for the four TLS variables
    let missing: Vec<_> = help_envs
        .iter()
        .filter(|e| !readme_envs.contains(*e))
        .filter(|e| !(e.starts_with("TLS_") && readme_envs.contains("TLS_*")))
        .collect();
    assert!(
        missing.is_empty(),
        "variables missing from the README's table: {missing:?}"
    );
    // HOSTNAME is read where the settings are resolved, not by clap: Kubernetes sets it to
    // the pod's own name, which must not be taken for the Thanos host
    let unknown: Vec<_> = readme_envs
        .iter()
        .filter(|e| *e != "TLS_*" && *e != "HOSTNAME" && !help_envs.contains(*e))
        .collect();
    assert!(
        unknown.is_empty(),
        "README variables --help does not know: {unknown:?}"
    );
}

#[test]
fn help_lists_the_exit_codes_and_text_logs_off_a_terminal_have_no_colour() {
    let exe = env!("CARGO_BIN_EXE_storeapi-exporter");
    let help = Command::new(exe)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for code in [
        "Exit codes:",
        "  2  bad configuration",
        "  3  ",
        "  5  an internal error",
        "  6  stopped by SIGTERM",
    ] {
        assert!(help.contains(code), "{code:?} in --help:\n{help}");
    }
    // a configuration error, logged as text to a pipe: plain text, no escape codes
    let out = Command::new(exe)
        .args(["--log-format", "text", "--s3-prefix", "p"])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("CLUSTER_NAME"), "{err}");
    assert!(!err.contains('\u{1b}'), "no ANSI codes: {err:?}");
}
