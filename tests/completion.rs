//! The shell completion of `glance` (packaging/completion/glance.bash, and _glance for zsh):
//! sourced in a real `bash` with the variables bash sets for a completion function
//! (`COMP_LINE`, `COMP_POINT`, `COMP_WORDS`, `COMP_CWORD`, `COMP_WORDBREAKS`), checked for
//! commands, options, fields and their values, image IDs from a real glance-api, a server
//! that never answers (bounded by `timeout 2`), the lists against the code, and the same
//! function under zsh's bashcompinit.

mod common;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use glance_rs::image::{CONTAINER_FORMATS, DISK_FORMATS, Status};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/completion/glance.bash")
}

/// Bash's default COMP_WORDBREAKS (it splits `disk_format=q` into `disk_format`, `=`, `q`).
const BASH_WORDBREAKS: &str = " \t\n\"'><=;|&(:";

/// What the completion function answers for `line` (the cursor at its end), with
/// COMP_WORDBREAKS set to `wordbreaks`. COMP_WORDS and COMP_CWORD are set as bash sets them:
/// the line split at blanks and at the word-break characters `=` and `:`.
fn complete_with(line: &str, wordbreaks: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    for blank_word in line.split([' ', '\t']).filter(|w| !w.is_empty()) {
        let mut word = String::new();
        for c in blank_word.chars() {
            if (c == '=' || c == ':') && wordbreaks.contains(c) {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                words.push(c.to_string());
            } else {
                word.push(c);
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
    }
    if line.ends_with(' ') {
        words.push(String::new());
    }
    let program = r#"
        source "$1"
        COMP_WORDBREAKS=$2
        COMP_LINE=$3
        COMP_POINT=${#COMP_LINE}
        shift 3
        COMP_WORDS=("$@")
        COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
        _glance_bash
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let out = common::without_login(&mut Command::new("bash"))
        .args(["--norc", "--noprofile", "-c", program, "bash"])
        .arg(script())
        .arg(wordbreaks)
        .arg(line)
        .args(&words)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{line}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// [`complete_with`] bash's default word breaks.
fn complete(line: &str) -> Vec<String> {
    complete_with(line, BASH_WORDBREAKS)
}

/// One of the script's lists (`_glance_list NAME`), as a set.
fn list(name: &str) -> BTreeSet<String> {
    let out = common::without_login(&mut Command::new("bash"))
        .args([
            "--norc",
            "--noprofile",
            "-c",
            r#"source "$1"; _glance_list "$2""#,
        ])
        .arg("bash")
        .arg(script())
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("bash: {e}"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn set<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    items.into_iter().map(str::to_string).collect()
}

#[test]
fn commands_and_options() {
    assert_eq!(complete("glance de"), ["delete", "details"]);
    assert_eq!(complete("glance d"), ["delete", "details", "download"]);
    assert_eq!(
        complete("glance member-"),
        ["member-images", "member-add", "member-delete"]
    );
    assert_eq!(complete("glance ").len(), 24);
    assert_eq!(
        complete("glance cache-re"),
        ["cache-reap-invalid", "cache-reap-stalled"]
    );
    // Options come first or anywhere, their values are skipped when finding the command.
    assert_eq!(
        complete("glance -H 127.0.0.1 --limit 5 de"),
        ["delete", "details"]
    );
    assert_eq!(complete("glance index --so"), ["--sort_key", "--sort_dir"]);
    assert_eq!(complete("glance --pro"), ["--progress"]);
    assert_eq!(complete("glance index --sort_dir "), ["asc", "desc"]);
    assert_eq!(complete("glance index --sort_key cr"), ["created_at"]);
    assert_eq!(complete("glance help members"), ["members-replace"]);
    // Option values that cannot be guessed: nothing.
    assert!(complete("glance -H ").is_empty());
    assert!(complete("glance --limit ").is_empty());
}

#[test]
fn fields_and_their_values() {
    // Bash replaces the text after `=` only: the reply is the rest of the value.
    assert_eq!(complete("glance add disk_format=q"), ["qcow2"]);
    assert_eq!(
        complete("glance add disk_format="),
        DISK_FORMATS
            .iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
    );
    // Without `=` among the word breaks (zsh's case) the whole word is replaced.
    assert_eq!(
        complete_with("glance add disk_format=q", " \t\n"),
        ["disk_format=qcow2"]
    );
    assert_eq!(complete("glance add name=x container_format=b"), ["bare"]);
    assert_eq!(complete("glance add na"), ["name="]);
    assert_eq!(complete("glance add is_public=t"), ["true"]);
    assert_eq!(complete("glance index is_public=n"), ["none"]);
    assert_eq!(complete("glance index st"), ["status="]);
    assert_eq!(complete("glance details status=p"), ["pending_delete"]);
    assert_eq!(complete("glance index pro"), ["property-"]);
    // update: fields after the ID, and id is not one of them.
    assert_eq!(complete("glance update 6f2f i"), ["is_public="]);
    assert!(complete("glance add name=").is_empty());
    // A quoted value with a blank stays one word.
    assert_eq!(complete("glance add name='a b' min_r"), ["min_ram="]);
    // --opt=value forms.
    assert_eq!(complete("glance index --sort_dir=d"), ["desc"]);
    assert_eq!(
        complete_with("glance index --sort_dir=d", " \t\n"),
        ["--sort_dir=desc"]
    );
}

#[test]
fn file_names_after_file() {
    let dir = common::tempdir();
    std::fs::write(dir.path().join("cirros.img"), b"x").unwrap_or_default();
    let prefix = dir.path().join("cir");
    let prefix = prefix.to_string_lossy();
    let want = dir.path().join("cirros.img").to_string_lossy().into_owned();
    assert_eq!(
        complete(&format!("glance add --file {prefix}")),
        [want.as_str()]
    );
    assert_eq!(
        complete_with(&format!("glance add --file={prefix}"), " \t\n"),
        [format!("--file={want}")]
    );
}

#[test]
fn image_ids_from_the_server_of_the_command_line() {
    let s = common::embedded_api();
    let dir = common::tempdir();
    let data = dir.path().join("data");
    std::fs::write(&data, b"some image data").unwrap_or_default();
    let glance = env!("CARGO_BIN_EXE_glance");
    let port = s.port().to_string();
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let out = common::without_login(&mut Command::new(glance))
            .args(["-H", "127.0.0.1", "-p", &port, "add", "is_public=true"])
            .arg(format!("name={name}"))
            .arg("--file")
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("glance: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text
            .strip_prefix("Added new image with ID: ")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| panic!("{out:?}"));
        ids.push(id);
    }
    ids.sort();
    let line = |rest: &str| format!("'{glance}' -H 127.0.0.1 -p {port} {rest}");
    for command in ["show ", "update ", "delete ", "download ", "image-members "] {
        let mut got = complete(&line(command));
        got.sort();
        assert_eq!(got, ids, "{command}");
    }
    let first = &ids[0];
    assert_eq!(
        complete(&line(&format!("show {}", &first[..8]))),
        [first.as_str()]
    );
    let mut got = complete(&line("index --marker "));
    got.sort();
    assert_eq!(got, ids);
    let mut got = complete(&format!(
        "'{glance}' -H 127.0.0.1 --port={port} member-add "
    ));
    got.sort();
    assert_eq!(got, ids);
    // The second argument of member-add is a member: no IDs there.
    assert!(complete(&line(&format!("member-add {first} "))).is_empty());
    // No server there: nothing, quickly.
    let started = Instant::now();
    assert!(complete(&format!("'{glance}' -H 127.0.0.1 -p 1 show ")).is_empty());
    assert!(started.elapsed() < Duration::from_secs(2));
    // A value that would need the shell to expand it is not passed on (nor run).
    let marker = dir.path().join("ran");
    let evil = format!(
        "'{glance}' -H 127.0.0.1 -p {port} -A \"$(touch${{IFS}}{})\" show ",
        marker.display()
    );
    let mut got = complete(&evil);
    got.sort();
    assert_eq!(got, ids);
    assert!(!marker.exists());
}

/// A server that accepts connections and never answers: completion gives up after about
/// 2 seconds (`timeout 2`) instead of hanging the shell.
#[test]
fn a_server_that_never_answers_costs_two_seconds() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let glance = env!("CARGO_BIN_EXE_glance");
    let started = Instant::now();
    let got = complete(&format!("'{glance}' -H 127.0.0.1 -p {port} show "));
    let took = started.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(listener);
}

/// The script's lists are the code's: every command (and the image-download alias), every
/// long option, the formats, statuses and sort keys.
#[test]
fn lists_follow_the_code() {
    let mut commands = set(glance_rs::cli::COMMANDS.iter().map(|c| c.name));
    commands.insert("image-download".into());
    assert_eq!(list("commands"), commands, "_glance_list commands");
    let options: BTreeSet<String> = glance_rs::cli::OPTIONS
        .iter()
        .map(|o| format!("--{}", o.long))
        .collect();
    assert_eq!(list("options"), options, "_glance_list options");
    let mut with_values = BTreeSet::new();
    for o in glance_rs::cli::OPTIONS
        .iter()
        .filter(|o| !o.hint.is_empty())
    {
        with_values.insert(format!("--{}", o.long));
        if !o.short.is_empty() {
            with_values.insert(format!("-{}", o.short));
        }
    }
    assert_eq!(
        list("value_options"),
        with_values,
        "_glance_list value_options"
    );
    assert_eq!(list("disk_formats"), set(DISK_FORMATS));
    assert_eq!(list("container_formats"), set(CONTAINER_FORMATS));
    assert_eq!(list("statuses"), set(Status::ALL.map(|s| s.as_str())));
    assert_eq!(list("sort_keys"), set(glance_rs::registry::SORT_KEYS));
    // The commands that take an image ID first are those whose usage starts with ID.
    let mut id_commands = set(glance_rs::cli::COMMANDS
        .iter()
        .filter(|c| c.args.starts_with("ID"))
        .map(|c| c.name));
    id_commands.insert("image-download".into());
    assert_eq!(list("id_commands"), id_commands);
}

/// zsh runs the same function through bashcompinit (as _glance does), under `emulate sh`.
#[test]
fn zsh_runs_the_same_completion() {
    if Command::new("zsh").arg("--version").output().is_err() {
        eprintln!("skipped: zsh is not installed");
        return;
    }
    let program = r#"
        autoload -U compinit && compinit -D -u
        autoload -U +X bashcompinit && bashcompinit
        source "$1"
        COMP_LINE=$2
        COMP_POINT=${#COMP_LINE}
        emulate sh -c '_glance_bash'
        print -rl -- "${COMPREPLY[@]}"
    "#;
    let run = |line: &str| -> Vec<String> {
        let out = common::without_login(&mut Command::new("zsh"))
            .args(["-f", "-c", program, "zsh"])
            .arg(script())
            .arg(line)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("zsh: {e}"));
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{line}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(run("glance de"), ["delete", "details"]);
    assert_eq!(run("glance add disk_format=q"), ["disk_format=qcow2"]);
    assert_eq!(run("glance index --sort_dir "), ["asc", "desc"]);
    let zsh_file = script().with_file_name("_glance");
    let text = std::fs::read_to_string(&zsh_file).unwrap_or_default();
    assert!(
        text.starts_with("#compdef glance\n"),
        "{}",
        zsh_file.display()
    );
    let out = common::without_login(&mut Command::new("zsh"))
        .arg("-n")
        .arg(&zsh_file)
        .output()
        .unwrap_or_else(|e| panic!("zsh: {e}"));
    assert!(out.status.success(), "{out:?}");
}
