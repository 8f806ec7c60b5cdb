//! `gleitzeit`: the original's name for `gz`, the same program (see `gleitzeit_cli`).

fn main() -> std::process::ExitCode {
    gleitzeit_cli::main()
}
