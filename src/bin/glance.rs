//! `glance`: the command-line client of the Glance images API v1. Everything is in
//! [`glance_rs::cli`]; see `glance help` and the manual page glance(1).

fn main() -> std::process::ExitCode {
    glance_rs::cli::main()
}
