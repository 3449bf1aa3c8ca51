//! `cargo xtask <task>`: everything a developer or CI runs, each task installing what it needs.
mod bench;
mod deb;
mod demo;
mod image;
mod setup;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Project tasks: setup, build, test, image, deb, demo, bench"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building and testing need (Debian packages, nightly rust-src, bpf-linker).
    /// Idempotent: only missing pieces are installed.
    Setup,
    /// Set up, then build the `recorder` binary (release) with its eBPF programs.
    Build,
    /// Set up, build, lint (clippy, and the collector and protocol crates built without the eBPF
    /// toolchain), make the container image and the Debian package, then run every test: unit
    /// tests and the end-to-end suites as root (the deployment suite installs and runs both).
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. a test name filter.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Set up, build, and make the container image `localhost/recorder:<version>` (FROM scratch,
    /// with buildah); prints its size.
    Image,
    /// Set up, build, and make the Debian package `target/debian/recorder_<version>_amd64.deb`.
    Deb,
    /// Set up, build, and run the agent recording a demo identity; shows the recorded session.
    Demo {
        /// Stop after showing the recorded demo session instead of running until Ctrl-C.
        #[arg(long)]
        once: bool,
    },
    /// Benchmarks, as ratios within one run: system-call loops, exec storm (agent CPU per exec,
    /// loss, idle RSS), pgbench over TLS and plain TCP, Kubernetes API calls by kubectl and
    /// curl, 100 pods on the node with 5 selected, the collector's ingest on the embedded store
    /// and on PostgreSQL with one and two collectors, the web console on 100,000 sessions, redaction per record, the exec cost of
    /// approval rules. Each
    /// figure is printed with its spread over the rounds and its goal.
    Bench {
        /// Which benchmarks to run (repeatable): syscall, exec, sql, kube, pods, store, export,
        /// console, redact, approve. Default: all.
        #[arg(long = "only", value_parser = ["syscall", "exec", "sql", "kube", "pods", "store", "export", "console", "redact", "approve"])]
        only: Vec<String>,
        /// Execs per measured run.
        #[arg(long, default_value_t = 4000)]
        execs: u64,
        /// Measured runs per configuration (interleaved).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Another build of `recorder` to measure in the same rounds, side by side (before and
        /// after a change).
        #[arg(long, value_name = "BIN")]
        compare: Option<std::path::PathBuf>,
        /// Also measure the floor: this build with its data programs returning at once, what the
        /// hooks (tracepoints, uprobe traps) cost with nothing done in them.
        #[arg(long)]
        floor: bool,
    },
    /// The system-call loop `bench --only syscall` runs (internal).
    #[command(hide = true)]
    SyscallLoop { calls: u64 },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::run(),
        Task::Build => setup::run().and_then(|()| util::build_release()),
        Task::Image => setup::run()
            .and_then(|()| util::build_release())
            .and_then(|()| image::run()),
        Task::Deb => setup::run()
            .and_then(|()| util::build_release())
            .and_then(|()| deb::run()),
        // The image and the package are made before the tests: tests/tests/deploy.rs installs
        // and runs them (RECORDER_IMAGE, RECORDER_DEB).
        Task::Test { args } => setup::run()
            .and_then(|()| util::build_release())
            .and_then(|()| util::clippy())
            .and_then(|()| util::build_without_ebpf_toolchain())
            .and_then(|()| image::run())
            .and_then(|()| deb::run())
            .and_then(|()| {
                // SAFETY: set before any thread is started; the test run inherits them.
                unsafe {
                    std::env::set_var("RECORDER_IMAGE", image::tag());
                    std::env::set_var("RECORDER_DEB", deb::path());
                }
                util::test(&args)
            }),
        Task::Demo { once } => setup::run()
            .and_then(|()| util::build_release())
            .and_then(|()| demo::run(once)),
        Task::Bench {
            only,
            execs,
            rounds,
            compare,
            floor,
        } => setup::run()
            .and_then(|()| util::build_release())
            .and_then(|()| bench::run(&only, execs, rounds, compare, floor)),
        Task::SyscallLoop { calls } => {
            bench::getppid_loop(calls);
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}
