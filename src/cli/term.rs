//! Standard input: confirmation prompts, and stdin as a source of image data.
//!
//! Prompts are written to stderr (stdout may be a pipe) and answered on stdin, which must
//! be a terminal: a script without `--force` gets a clear refusal instead of a prompt that
//! nobody answers or an answer read from the image data.

use std::fs::File;
use std::io::{self, BufRead, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;

/// Whether stdin is a terminal.
pub fn stdin_is_tty() -> bool {
    io::stdin().is_terminal()
}

/// Asks `question` on stderr and reads the answer from stdin: `y`/`yes` (any case) is yes,
/// an empty answer (or end of input) is `default`, anything else no.
pub fn ask(question: &str, default: bool) -> io::Result<bool> {
    let hint = if default { "[Y/n]" } else { "[y/N]" };
    let mut err = io::stderr().lock();
    write!(err, "{question} {hint} ")?;
    err.flush()?;
    drop(err);
    let mut line = String::new();
    let n = io::stdin().lock().read_line(&mut line)?;
    if n == 0 {
        let _ = writeln!(io::stderr());
        return Ok(default);
    }
    let answer = line.trim().to_ascii_lowercase();
    Ok(match answer.as_str() {
        "" => default,
        "y" | "yes" => true,
        _ => false,
    })
}

/// Stdin as a file (a duplicate of descriptor 0), so that a redirected file's size can be
/// learned and the data streamed without Rust's stdin buffer in between.
pub fn stdin_file() -> io::Result<File> {
    Ok(File::from(io::stdin().as_fd().try_clone_to_owned()?))
}

/// What stdin is, as far as image data is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinKind {
    /// A terminal: no data (a prompt may be answered there).
    Terminal,
    /// A redirected regular file of this many bytes (from the current position).
    File(u64),
    /// A pipe or a socket: data of unknown length.
    Stream,
    /// Anything else (`/dev/null`, closed): no data.
    Nothing,
}

/// Classifies stdin.
pub fn stdin_kind() -> StdinKind {
    if stdin_is_tty() {
        return StdinKind::Terminal;
    }
    let Ok(meta) = stdin_file().and_then(|f| f.metadata()) else {
        return StdinKind::Nothing;
    };
    let ft = meta.file_type();
    if ft.is_file() {
        StdinKind::File(meta.len())
    } else if ft.is_fifo() || ft.is_socket() {
        StdinKind::Stream
    } else {
        StdinKind::Nothing
    }
}
