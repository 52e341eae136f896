//! The `huiying` command: parses the command line and hands over to [`huiying::app`].

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() -> std::process::ExitCode {
    huiying::app::main()
}
