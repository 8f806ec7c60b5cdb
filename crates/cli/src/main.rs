//! `gz`: the Gleitzeit command-line interface (see the library, `gleitzeit_cli`).

fn main() -> std::process::ExitCode {
    gleitzeit_cli::main()
}
