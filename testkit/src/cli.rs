//! The printbell binary run to completion, as a user runs it (`check`, `preview`,
//! `deliveries`, `healthcheck` …): exit code, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The printbell binary cargo built next to the running test or bench binary
/// (`target/<profile>/printbell`; cargo builds it for every integration test and bench).
/// `CARGO_BIN_EXE_printbell` in the environment overrides it.
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        let path = match std::env::var_os("CARGO_BIN_EXE_printbell") {
            Some(p) => PathBuf::from(p),
            None => {
                let exe = std::env::current_exe().expect("current exe");
                let mut dir = exe.parent().expect("exe dir").to_path_buf();
                if dir.ends_with("deps") {
                    dir.pop();
                }
                dir.join(format!("printbell{}", std::env::consts::EXE_SUFFIX))
            }
        };
        assert!(
            path.is_file(),
            "the printbell binary is not at {} (run through cargo test / cargo bench)",
            path.display()
        );
        path.to_str().expect("utf-8 path").to_string()
    })
}

/// Runs the binary to completion: (exit code, stdout, stderr).
pub fn run_cli(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    run_cli_in(None, args, envs)
}

/// Like [`run_cli`], optionally in another working directory.
pub fn run_cli_in(
    dir: Option<&Path>,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = Command::new(bin());
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.args(args)
        .env_remove("PRINTBELL_CONFIG")
        .env_remove("PRINTBELL_LISTEN")
        .env_remove("PRINTBELL_STORE_URL")
        .env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run printbell");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
