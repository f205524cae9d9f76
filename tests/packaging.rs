//! The man pages, units and package metadata cannot drift from the code.
//!
//! The man pages in `man/` are hand-written roff (STYLE.md §4), so these tests check what a
//! generator would guarantee: every command-line option a program prints in `--help` is in
//! its page, every option of a sample config is documented in the page of that file (and the
//! page documents no option the sample lacks), and every binary, man page and unit is in
//! both packages (glance(1) is checked against the client's options by tests/cli.rs).
//! Rendering (`man --warnings`) and the packages themselves are checked by `.ci/package.sh`,
//! which needs root and packaging tools.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn bin(name: &str) -> PathBuf {
    match name {
        "glance-api" => PathBuf::from(env!("CARGO_BIN_EXE_glance-api")),
        "glance-registry" => PathBuf::from(env!("CARGO_BIN_EXE_glance-registry")),
        "glance-manage" => PathBuf::from(env!("CARGO_BIN_EXE_glance-manage")),
        "glance-scrubber" => PathBuf::from(env!("CARGO_BIN_EXE_glance-scrubber")),
        "glance-cache-prefetcher" => PathBuf::from(env!("CARGO_BIN_EXE_glance-cache-prefetcher")),
        "glance-cache-pruner" => PathBuf::from(env!("CARGO_BIN_EXE_glance-cache-pruner")),
        "glance-cache-reaper" => PathBuf::from(env!("CARGO_BIN_EXE_glance-cache-reaper")),
        other => panic!("unknown binary {other}"),
    }
}

/// The long options (`--name`) in a program's `--help` output.
fn long_options(program: &str) -> BTreeSet<String> {
    let out = Command::new(bin(program))
        .arg("--help")
        .output()
        .unwrap_or_else(|e| panic!("{program} --help: {e}"));
    assert!(out.status.success(), "{program} --help failed");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .filter_map(|w| w.strip_prefix("--"))
        .map(|w| w.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// Roff's spelling of an option: `--log-file` is written `\-\-log\-file`.
fn roff(s: &str) -> String {
    s.replace('-', "\\-")
}

#[test]
fn man_pages_list_every_command_line_option() {
    for program in [
        "glance-api",
        "glance-registry",
        "glance-manage",
        "glance-scrubber",
        "glance-cache-prefetcher",
        "glance-cache-pruner",
        "glance-cache-reaper",
    ] {
        let page = read(&format!("man/{program}.8"));
        let options = long_options(program);
        assert!(options.contains("config-file"), "{program}: {options:?}");
        for opt in options {
            let spelled = roff(&format!("--{opt}"));
            assert!(
                page.contains(&spelled),
                "man/{program}.8 does not document {spelled}"
            );
        }
    }
}

/// Options a sample config lists (`key = value` or `# key = value`, in `[DEFAULT]` and
/// sections such as `[keystone_authtoken]`), as the config tests read them.
fn sample_options(name: &str) -> BTreeSet<String> {
    read(&format!("etc/{name}"))
        .lines()
        .filter(|l| !l.starts_with('['))
        .filter_map(|l| {
            let l = l.strip_prefix('#').unwrap_or(l).trim_start();
            let (key, _) = l.split_once('=')?;
            let key = key.trim();
            (!key.is_empty() && !key.contains(' ')).then(|| key.to_string())
        })
        .collect()
}

/// Options a man page documents: `.TP` items whose tag is `\fBkey\fR = \fIdefault\fR` or
/// `\fBkey\fR (unset)`, with their documented default (`None` when unset).
fn documented_options(page: &str) -> Vec<(String, Option<String>)> {
    let lines: Vec<&str> = page.lines().collect();
    lines
        .windows(2)
        .filter(|w| w[0] == ".TP")
        .filter_map(|w| {
            let rest = w[1].strip_prefix("\\fB")?;
            let (key, tail) = rest.split_once("\\fR")?;
            if key.contains(' ') || key.contains('\\') {
                return None;
            }
            let default = tail
                .strip_prefix(" = \\fI")
                .and_then(|d| d.strip_suffix("\\fR"))
                .map(|d| d.replace("\\-", "-"));
            match (tail, &default) {
                (" (unset)", _) | (_, Some(_)) => Some((key.to_string(), default)),
                _ => None,
            }
        })
        .collect()
}

/// The sample's value of `key` when it is set (not commented out).
fn sample_value(sample: &str, key: &str) -> Option<String> {
    sample.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

#[test]
fn config_man_pages_match_the_samples() {
    for (sample, page) in [
        ("glance-api.conf", "man/glance-api.conf.5"),
        ("glance-registry.conf", "man/glance-registry.conf.5"),
        ("glance-scrubber.conf", "man/glance-scrubber.8"),
    ] {
        let listed = sample_options(sample);
        assert!(listed.len() > 10, "{sample}: {listed:?}");
        let text = read(&format!("etc/{sample}"));
        let documented = documented_options(&read(page));
        let names: BTreeSet<String> = documented.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            names.len(),
            documented.len(),
            "{page} documents an option twice"
        );
        for key in &listed {
            assert!(names.contains(key), "{page} does not document {key}");
        }
        for (key, default) in &documented {
            assert!(
                listed.contains(key),
                "{page} documents {key}, which etc/{sample} does not list"
            );
            // The sample sets an option to its default, or comments it out when unset.
            assert_eq!(
                default.as_deref(),
                sample_value(&text, key).as_deref(),
                "{page}: default of {key} differs from etc/{sample}"
            );
        }
    }
}

/// Unit files, man pages and binaries, as the packages must ship them.
fn expected_contents() -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut units: Vec<String> = fs::read_dir(root().join("packaging/systemd"))
        .unwrap_or_else(|e| panic!("packaging/systemd: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".service") || n.ends_with(".timer"))
        .collect();
    units.sort();
    let mut pages: Vec<String> = fs::read_dir(root().join("man"))
        .unwrap_or_else(|e| panic!("man/: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    pages.sort();
    let cargo = read("Cargo.toml");
    let bins: Vec<String> = cargo
        .split("[[bin]]")
        .skip(1)
        .filter_map(|b| {
            let line = b.lines().find(|l| l.starts_with("name = "))?;
            Some(
                line.trim_start_matches("name = ")
                    .trim_matches('"')
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(bins.len(), 8, "{bins:?}");
    assert!(bins.iter().any(|b| b == "glance"), "{bins:?}");
    (units, pages, bins)
}

#[test]
fn packages_ship_every_binary_page_and_unit() {
    let cargo = read("Cargo.toml");
    let (deb, rpm) = {
        let deb_start = cargo
            .find("[package.metadata.deb]")
            .unwrap_or_else(|| panic!("no [package.metadata.deb]"));
        let rpm_start = cargo
            .find("[package.metadata.generate-rpm]")
            .unwrap_or_else(|| panic!("no [package.metadata.generate-rpm]"));
        assert!(deb_start < rpm_start);
        (&cargo[deb_start..rpm_start], &cargo[rpm_start..])
    };
    let (units, pages, bins) = expected_contents();
    assert_eq!(
        units,
        [
            "glance-api.service",
            "glance-cache-prefetcher.service",
            "glance-cache-prefetcher.timer",
            "glance-cache-pruner.service",
            "glance-cache-pruner.timer",
            "glance-cache-reaper.service",
            "glance-cache-reaper.timer",
            "glance-registry.service",
            "glance-scrubber.service",
            "glance-scrubber.timer"
        ]
    );
    for bin in &bins {
        assert!(
            deb.contains(&format!(
                "[\"target/release/{bin}\", \"usr/bin/\", \"755\"]"
            )),
            "the .deb does not ship /usr/bin/{bin}"
        );
        assert!(
            rpm.contains(&format!(
                "source = \"target/release/{bin}\", dest = \"/usr/bin/{bin}\""
            )),
            "the .rpm does not ship /usr/bin/{bin}"
        );
    }
    for page in &pages {
        let section = page.rsplit('.').next().unwrap_or("");
        assert!(
            deb.contains(&format!(
                "[\"man/*.{section}\", \"usr/share/man/man{section}/\""
            )),
            "the .deb does not ship man/{page} (no man/*.{section} asset)"
        );
        assert!(
            rpm.contains(&format!(
                "source = \"target/release/man/*.{section}.gz\", dest = \"/usr/share/man/man{section}/\""
            )),
            "the .rpm does not ship man/{page}"
        );
    }
    for unit in &units {
        // cargo-deb installs the units it finds for each `unit-name` of systemd-units.
        let stem = unit.rsplit_once('.').map_or(unit.as_str(), |(s, _)| s);
        assert!(
            deb.contains(&format!("unit-name = \"{stem}\"")),
            "the .deb does not install {unit}"
        );
        assert!(
            rpm.contains(&format!(
                "source = \"packaging/systemd/{unit}\", dest = \"/usr/lib/systemd/system/{unit}\""
            )),
            "the .rpm does not install {unit}"
        );
    }
    for conf in [
        "glance-api.conf",
        "glance-registry.conf",
        "glance-scrubber.conf",
    ] {
        assert!(deb.contains(&format!("[\"etc/{conf}\", \"etc/glance/\"")));
        assert!(rpm.contains(&format!(
            "source = \"etc/{conf}\", dest = \"/etc/glance/{conf}\", mode = \"644\", config = \"noreplace\""
        )));
    }
}

/// Both packages install the shell completions where bash-completion and zsh look: the same
/// files, at each distribution's zsh path.
#[test]
fn packages_ship_the_shell_completions() {
    let cargo = read("Cargo.toml");
    let (deb, rpm) = cargo
        .split_once("[package.metadata.generate-rpm]")
        .unwrap_or_else(|| panic!("no [package.metadata.generate-rpm]"));
    for (source, deb_dest, rpm_dest) in [
        (
            "packaging/completion/glance.bash",
            "usr/share/bash-completion/completions/glance",
            "/usr/share/bash-completion/completions/glance",
        ),
        (
            "packaging/completion/_glance",
            "usr/share/zsh/vendor-completions/_glance",
            "/usr/share/zsh/site-functions/_glance",
        ),
    ] {
        assert!(root().join(source).is_file(), "{source} is missing");
        assert!(
            deb.contains(&format!("[\"{source}\", \"{deb_dest}\", \"644\"]")),
            "the .deb does not install {source} as /{deb_dest}"
        );
        assert!(
            rpm.contains(&format!(
                "{{ source = \"{source}\", dest = \"{rpm_dest}\", mode = \"644\" }}"
            )),
            "the .rpm does not install {source} as {rpm_dest}"
        );
    }
    // .ci/package.sh checks both packages for them, and the installed one in bash.
    let script = read(".ci/package.sh");
    for needle in [
        "bash_completion=usr/share/bash-completion/completions/glance",
        "deb_has \"$bash_completion\"",
        "rpm_has \"$bash_completion\"",
        "deb_has usr/share/zsh/vendor-completions/_glance",
        "rpm_has usr/share/zsh/site-functions/_glance",
    ] {
        assert!(script.contains(needle), ".ci/package.sh lacks {needle}");
    }
}

/// The `glance` client and python3-glanceclient (which python3-keystone depends on) both
/// ship /usr/bin/glance: the .deb diverts the Python one away on installation and back on
/// removal, and the .rpm, without diversions, conflicts with it.
#[test]
fn python_glanceclient_is_diverted_by_the_deb_and_conflicts_with_the_rpm() {
    let divert = "--divert /usr/bin/glance.glanceclient /usr/bin/glance";
    // A command's lines joined (the scripts continue them with a backslash).
    let commands = |script: &str| -> Vec<String> {
        read(script)
            .replace("\\\n", " ")
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|l| l.starts_with("dpkg-divert "))
            .collect()
    };
    // The case labels each dpkg-divert command runs under.
    let labels = |script: &str| -> Vec<String> {
        let text = read(script);
        let lines: Vec<&str> = text.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with("dpkg-divert "))
            .unwrap_or_else(|| panic!("{script}: no dpkg-divert"));
        let label = lines[..at]
            .iter()
            .rev()
            .find(|l| !l.trim_start().starts_with('#') && l.trim_end().ends_with(')'))
            .unwrap_or_else(|| panic!("{script}: dpkg-divert outside a case"));
        label
            .trim()
            .trim_end_matches(')')
            .split('|')
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        commands("packaging/debian/preinst"),
        [format!(
            "dpkg-divert --package glance-rs --add --rename {divert}"
        )]
    );
    assert_eq!(labels("packaging/debian/preinst"), ["install", "upgrade"]);
    assert_eq!(
        commands("packaging/debian/postrm"),
        [format!(
            "dpkg-divert --package glance-rs --remove --rename {divert}"
        )]
    );
    let postrm = labels("packaging/debian/postrm");
    for label in ["remove", "purge", "abort-install"] {
        assert!(postrm.iter().any(|l| l == label), "postrm: {postrm:?}");
    }
    for script in ["preinst", "postrm"] {
        assert!(
            read(&format!("packaging/debian/{script}")).contains("\n#DEBHELPER#\n"),
            "packaging/debian/{script}: no #DEBHELPER#"
        );
    }
    let cargo = read("Cargo.toml");
    let conflicts = cargo
        .split_once("[package.metadata.generate-rpm.conflicts]")
        .map(|(_, rest)| rest.split("\n[").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("no [package.metadata.generate-rpm.conflicts]"));
    assert!(
        conflicts
            .lines()
            .any(|l| l == "python3-glanceclient = \"*\""),
        "the .rpm does not conflict with python3-glanceclient"
    );
}

/// Each server unit runs an installed program on its installed config, as the glance user,
/// with the settings the issue asks for.
#[test]
fn units_run_the_packaged_programs() {
    for (unit, program) in [
        ("glance-api.service", "glance-api"),
        ("glance-registry.service", "glance-registry"),
        ("glance-scrubber.service", "glance-scrubber"),
        ("glance-cache-prefetcher.service", "glance-cache-prefetcher"),
        ("glance-cache-pruner.service", "glance-cache-pruner"),
        ("glance-cache-reaper.service", "glance-cache-reaper"),
    ] {
        let text = read(&format!("packaging/systemd/{unit}"));
        let has = |line: &str| text.lines().any(|l| l == line);
        // The cache programs read glance-api's file: the cache is configured once.
        let conf = if program.starts_with("glance-cache-") {
            "glance-api"
        } else {
            program
        };
        assert!(
            has(&format!(
                "ExecStart=/usr/bin/{program} --config-file /etc/glance/{conf}.conf"
            )),
            "{unit}: ExecStart"
        );
        for line in [
            "User=glance",
            "Group=glance",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ReadWritePaths=/var/lib/glance /var/log/glance",
            "PrivateTmp=yes",
        ] {
            assert!(has(line), "{unit}: missing {line}");
        }
        if program == "glance-scrubber" || program.starts_with("glance-cache-") {
            assert!(has("Type=oneshot"), "{unit}");
            let timer = read(&format!("packaging/systemd/{program}.timer"));
            assert!(
                timer.lines().any(|l| l == "WantedBy=timers.target"),
                "{program}.timer"
            );
        } else {
            for line in [
                "Type=notify",
                "ExecReload=/bin/kill -HUP $MAINPID",
                "Restart=on-failure",
                "WantedBy=multi-user.target",
            ] {
                assert!(has(line), "{unit}: missing {line}");
            }
        }
    }
}
