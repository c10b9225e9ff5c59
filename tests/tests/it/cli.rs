//! `strata`, the command line (issue 20): the built binary against the real API, worker,
//! PostgreSQL and storage, as a user runs it — its output, files and exit codes.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata_tests::tree::{build_sample_tree, snapshot, write_noise, Node};
use strata_tests::{bin, Options, TestApp};

/// The `strata` binary with its own configuration file and no inherited credentials.
struct Cli {
    config: PathBuf,
    env: Vec<(String, String)>,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}): {}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\nstdout: {}\nstderr: {}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Cli {
    fn new(dir: &Path) -> Self {
        Self {
            config: dir.join("cli-config").join("config.json"),
            env: Vec::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("strata"));
        cmd.args(args)
            .env_remove("STRATA_URL")
            .env_remove("STRATA_KEY")
            .env("STRATA_CONFIG", &self.config)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs it to the end with `input` on stdin (a pipe: no terminal).
    async fn run_with_input(&self, args: &[&str], input: &str) -> Out {
        let mut cmd = self.command(args);
        let input = input.to_string();
        tokio::task::spawn_blocking(move || {
            use std::io::Write as _;
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("running strata");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            let out = child.wait_with_output().expect("waiting for strata");
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }

    async fn run(&self, args: &[&str]) -> Out {
        self.run_with_input(args, "").await
    }

    /// Runs it and expects exit 0.
    async fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args).await;
        assert_eq!(out.code, 0, "strata {}: {out}", args.join(" "));
        out
    }
}

fn tar_tree(bytes: &[u8], dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    tar::Archive::new(bytes).unpack(dest).unwrap();
}

/// Path → what it holds (a file's digest, a link's target), without times and modes.
fn contents(root: &Path) -> BTreeMap<Vec<u8>, String> {
    snapshot(root)
        .into_iter()
        .map(|(k, node)| {
            let v = match node {
                Node::Dir { .. } => "dir".to_string(),
                Node::File { digest, .. } => digest,
                Node::Symlink { target, .. } => format!("-> {target:?}"),
            };
            (k, v)
        })
        .collect()
}

/// The whole first session of the README through the CLI: log in with a key, add a
/// source, back up and wait (`--json`), look inside, restore elsewhere, compare,
/// download, find, schedules — and a second user logging in with a password.
#[tokio::test]
async fn a_first_session_with_the_cli() {
    let app = TestApp::spawn(Options::default()).await;
    let cli = Cli::new(app.dir.path());
    let src = app.dir.path().join("web");
    build_sample_tree(&src, 300_000);
    std::fs::write(src.join("etc.conf"), b"listen 80;\n").unwrap();

    // Log in with the admin key: saved in a 0600 file; later commands use it.
    let out = cli.ok(&["login", &app.base, "--key", &app.admin_key]).await;
    assert!(out.stdout.contains("Logged in"), "{out}");
    let mode = std::fs::metadata(&cli.config).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the configuration file is the owner's only"
    );
    let saved = std::fs::read_to_string(&cli.config).unwrap();
    assert!(saved.contains(&app.admin_key));
    let me = cli.ok(&["whoami", "--json"]).await.json();
    assert_eq!(me["role"], "admin", "{me}");

    // A source, and a backup waited for.
    cli.ok(&["sources", "add", "web", "--path", src.to_str().unwrap()])
        .await;
    let listed = cli.ok(&["sources", "ls"]).await;
    assert!(
        listed.stdout.contains("web") && listed.stdout.contains("NAME"),
        "{listed}"
    );
    let job = cli.ok(&["backup", "web", "--wait", "--json"]).await.json();
    assert_eq!(job["status"], "succeeded", "{job}");
    let first = job["backup_id"].as_str().unwrap().to_string();

    // ls and cat.
    let ls = cli.ok(&["ls", &first]).await;
    assert!(ls.stdout.lines().any(|l| l.ends_with(" etc.conf")), "{ls}");
    let ls_json = cli.ok(&["ls", &first, "-R", "--json"]).await.json();
    let paths: Vec<&str> = ls_json
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&"etc.conf"), "{paths:?}");
    assert!(paths.len() > 3, "{paths:?}");
    let cat = cli.ok(&["cat", &first, "etc.conf"]).await;
    assert_eq!(cat.stdout, "listen 80;\n");

    // Restore into a new directory: the same tree.
    let target = app.dir.path().join("restored");
    let job = cli
        .ok(&[
            "restore",
            &first,
            "--target",
            target.to_str().unwrap(),
            "--wait",
            "--json",
        ])
        .await
        .json();
    assert_eq!(job["status"], "succeeded", "{job}");
    strata_tests::tree::assert_same_tree(&src, &target);

    // A change, an incremental backup, and the diff between the two.
    std::fs::write(src.join("etc.conf"), b"listen 443;\n").unwrap();
    write_noise(&src.join("added.bin"), 7, 10_000);
    let job = cli
        .ok(&["backup", "web", "--type", "incremental", "--wait", "--json"])
        .await
        .json();
    let second = job["backup_id"].as_str().unwrap().to_string();
    let diff = cli.ok(&["diff", &first, &second]).await;
    assert!(diff.stdout.lines().any(|l| l == "+ added.bin"), "{diff}");
    assert!(
        diff.stdout.lines().any(|l| l.starts_with("M etc.conf")),
        "{diff}"
    );
    let diff = cli.ok(&["diff", &first, &second, "--json"]).await.json();
    assert_eq!(diff["added"][0]["path"], "added.bin", "{diff}");

    // find: the newest backup first, both backups hold etc.conf.
    let found = cli
        .ok(&["find", "*.conf", "--source", "web", "--json"])
        .await
        .json();
    let holders: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["backup_id"].as_str().unwrap())
        .collect();
    assert_eq!(holders, vec![second.as_str(), first.as_str()], "{found}");

    // download: the archive holds the source as it was at the second backup.
    let archive = app.dir.path().join("second.tar");
    cli.ok(&["download", &second, "-o", archive.to_str().unwrap()])
        .await;
    let unpacked = app.dir.path().join("unpacked");
    tar_tree(&std::fs::read(&archive).unwrap(), &unpacked);
    assert_eq!(
        contents(&unpacked),
        contents(&src),
        "the archive is the source"
    );
    // upload: a part of it (the sample's absolute symlinks would be refused) becomes a
    // new backup, whose files are the same.
    let docs = app.dir.path().join("docs.tar");
    cli.ok(&[
        "download",
        &second,
        "--include",
        "docs",
        "-o",
        docs.to_str().unwrap(),
    ])
    .await;
    let job = cli
        .ok(&[
            "upload",
            docs.to_str().unwrap(),
            "--source",
            "web",
            "--name",
            "uploaded",
            "--wait",
            "--json",
        ])
        .await
        .json();
    assert_eq!(job["status"], "succeeded", "{job}");
    let uploaded = job["backup_id"].as_str().unwrap();
    let cat = cli.ok(&["cat", uploaded, "docs/readme.txt"]).await;
    assert_eq!(
        cat.stdout.as_bytes(),
        std::fs::read(src.join("docs/readme.txt")).unwrap()
    );

    // Schedules: add, list, pause, remove.
    let s = cli
        .ok(&[
            "schedules",
            "add",
            "--source",
            "web",
            "--cron",
            "0 3 * * *",
            "--json",
        ])
        .await
        .json();
    let sid = s["id"].as_str().unwrap().to_string();
    let ls = cli.ok(&["schedules", "ls"]).await;
    assert!(
        ls.stdout.contains(&sid) && ls.stdout.contains("0 3 * * *"),
        "{ls}"
    );
    let paused = cli.ok(&["schedules", "pause", &sid, "--json"]).await.json();
    assert_eq!(paused["enabled"], false, "{paused}");
    cli.ok(&["schedules", "rm", &sid]).await;
    let ls = cli.ok(&["schedules", "ls", "--json"]).await.json();
    assert_eq!(ls, json!([]));

    // Jobs are listed, and one shown.
    let jobs = cli.ok(&["jobs", "ls", "--json"]).await.json();
    assert!(jobs.as_array().unwrap().len() >= 3, "{jobs}");
    let shown = cli
        .ok(&["jobs", "show", jobs[0]["job_id"].as_str().unwrap()])
        .await;
    assert!(shown.stdout.contains("succeeded"), "{shown}");

    // A user logs in with a password read from stdin; a viewer may look, not restore.
    let out = cli
        .run_with_input(
            &["users", "add", "viewer@example.com", "--role", "viewer"],
            "a viewer's long password\n",
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let viewer = Cli::new(&app.dir.path().join("viewer"));
    let out = viewer
        .run_with_input(
            &["login", &app.base, "--email", "viewer@example.com"],
            "a viewer's long password\n",
        )
        .await;
    assert_eq!(out.code, 0, "{out}");
    let saved = std::fs::read_to_string(&viewer.config).unwrap();
    assert!(saved.contains("\"session\""), "{saved}");
    let me = viewer.ok(&["whoami", "--json"]).await.json();
    assert_eq!(me["role"], "viewer", "{me}");
    viewer.ok(&["backups", "ls"]).await;
    let out = viewer
        .run(&["restore", &first, "--target", target.to_str().unwrap()])
        .await;
    assert_eq!(
        out.code, 3,
        "a viewer's restore is a permission error: {out}"
    );
    assert!(
        out.stderr.starts_with("strata: ") && out.stderr.contains("(forbidden)"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "one line: {out}");
    // Logging out ends the session on the server too.
    let token = serde_json::from_str::<Value>(&saved).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    viewer.ok(&["logout"]).await;
    let res = strata_tests::authed_client(&token)
        .get(format!("{}/api/v1/auth/me", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}

/// Errors are one line naming the API's code, with the documented exit codes.
#[tokio::test]
async fn errors_are_one_line_with_documented_exit_codes() {
    let app = TestApp::spawn(Options {
        workers: 0,
        ..Default::default()
    })
    .await;
    let mut cli = Cli::new(app.dir.path());
    cli.env = vec![
        ("STRATA_URL".into(), app.base.clone()),
        ("STRATA_KEY".into(), app.admin_key.clone()),
    ];

    // An unknown source: 4, its name and the code.
    let out = cli.run(&["backup", "nightly"]).await;
    assert_eq!(out.code, 4, "{out}");
    assert!(
        out.stderr.contains("nightly") && out.stderr.contains("(source_not_found)"),
        "{out}"
    );
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");

    // A bad key: 3. (--key overrides STRATA_KEY.)
    let out = cli
        .run(&["sources", "ls", "--key", "strata_not-a-real-key"])
        .await;
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.starts_with("strata: "), "{out}");

    // A usage error: 2, from the argument parser.
    let out = cli.run(&["backup", "--type", "weekly"]).await;
    assert_eq!(out.code, 2, "{out}");
    // Invalid input the API refuses, naming the field: 2.
    let out = cli
        .run(&["sources", "add", "Bad Name", "--path", "/tmp"])
        .await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("name"), "{out}");
    // A conflict: 5.
    let src = app.dir.path().join("s");
    std::fs::create_dir_all(&src).unwrap();
    cli.ok(&["sources", "add", "s", "--path", src.to_str().unwrap()])
        .await;
    let out = cli
        .run(&["sources", "add", "s", "--path", src.to_str().unwrap()])
        .await;
    assert_eq!(out.code, 5, "{out}");
    // A source without backups is removed; a second time it is not found.
    cli.ok(&["sources", "rm", "s"]).await;
    let out = cli.run(&["sources", "rm", "s"]).await;
    assert_eq!(out.code, 4, "{out}");
    assert!(out.stderr.contains("(source_not_found)"), "{out}");
    // A server that does not answer: 6.
    let out = cli.run(&["health", "--server", "http://127.0.0.1:9"]).await;
    assert_eq!(out.code, 6, "{out}");
    // No server configured at all: 2, saying how to set one.
    let bare = Cli::new(&app.dir.path().join("bare"));
    let out = bare.run(&["sources", "ls"]).await;
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("strata login"), "{out}");
    // A path parameter cannot reach another route: `..` is one segment.
    let out = cli.run(&["backups", "show", "../../keys"]).await;
    assert_eq!(out.code, 4, "{out}");
    // --help works for every command, with examples.
    let help = cli.ok(&["backup", "--help"]).await;
    assert!(help.stdout.contains("Examples:"), "{help}");
    let top = cli.ok(&["--help"]).await;
    assert!(top.stdout.contains("Exit codes:"), "{top}");
    let completions = cli.ok(&["completions", "bash"]).await;
    assert!(completions.stdout.contains("strata"), "{completions}");
}

/// A pseudo-terminal: `strata backup --wait` draws a progress bar whose byte count
/// grows before the final line.
#[tokio::test]
async fn backup_wait_draws_a_moving_progress_bar_on_a_terminal() {
    let app = TestApp::spawn(Options {
        workers: 1,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "8192".into())],
        ..Default::default()
    })
    .await;
    app.create_big_source("big", 3, 21).await;
    let cli = Cli::new(app.dir.path());
    let mut cmd = cli.command(&["backup", "big", "--wait"]);
    cmd.env("STRATA_URL", &app.base)
        .env("STRATA_KEY", &app.admin_key)
        .env("TERM", "xterm")
        .env("COLUMNS", "120");
    let started = Instant::now();
    let screen = tokio::task::spawn_blocking(move || run_in_pty(cmd))
        .await
        .unwrap();
    let (code, text) = screen;
    assert_eq!(code, 0, "{text}");
    // Each redraw of the bar (frames separated by `\r` or the erase-line sequence)
    // shows `<done>/<total>`; the done figures grow, from below the total.
    let done: Vec<f64> = text
        .split(['\r', '\n'])
        .flat_map(|line| line.split("\x1b[2K"))
        .filter_map(|frame| {
            let head = &frame[..frame.find("/48.00 MiB")?];
            let mut words = head.split_whitespace().rev();
            let unit = words.next()?;
            let value: f64 = words.next()?.parse().ok()?;
            let scale = match unit {
                "B" => 1.0,
                "KiB" => 1024.0,
                "MiB" => 1024.0 * 1024.0,
                _ => return None,
            };
            Some(value * scale)
        })
        .collect();
    let total = 48.0 * 1024.0 * 1024.0;
    assert!(
        done.iter().any(|d| *d < total) && done.windows(2).any(|w| w[1] > w[0]),
        "the bar's bytes grew ({done:?}) after {:?}: {text}",
        started.elapsed()
    );
    let last = text.trim_end().lines().last().unwrap_or("");
    assert!(last.contains("succeeded"), "the final line says so: {text}");
}

/// A command running with a pseudo-terminal as its stdin, stdout and stderr; what it
/// writes is collected as it comes.
struct Pty {
    child: std::process::Child,
    writer: std::fs::File,
    screen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Pty {
    fn spawn(mut cmd: Command) -> Self {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors this function then owns.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both are fresh descriptors from openpty, owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("running strata in a pty");
        // The command holds copies of the terminal's side: closed here, so the reader
        // sees the end once the child has exited.
        drop(cmd);
        let mut reader = std::fs::File::from(master);
        let writer = reader.try_clone().unwrap();
        let screen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child has exited and closed its side.
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            writer,
            screen,
            reader,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until the screen shows `what`.
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.text().contains(what) {
            assert!(Instant::now() < deadline, "no {what:?} on: {}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not finish: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = {
            self.reader.join().unwrap();
            String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
        };
        (status.code().unwrap_or(-1), text)
    }
}

/// Runs a command in a pseudo-terminal to its end; returns its exit code and everything
/// it wrote.
fn run_in_pty(cmd: Command) -> (i32, String) {
    Pty::spawn(cmd).finish()
}

/// Ctrl-C during `--wait` on a terminal asks whether to cancel the job; `y` cancels it
/// and the command exits 1 with the job's outcome.
#[tokio::test]
async fn ctrl_c_during_wait_asks_and_cancels_the_job() {
    let app = TestApp::spawn(Options {
        workers: 1,
        env: vec![("STRATA_LIMIT_UPLOAD_KIB".into(), "4096".into())],
        ..Default::default()
    })
    .await;
    app.create_big_source("big", 3, 31).await;
    let cli = Cli::new(app.dir.path());
    let mut cmd = cli.command(&["backup", "big", "--wait"]);
    cmd.env("STRATA_URL", &app.base)
        .env("STRATA_KEY", &app.admin_key)
        .env("TERM", "xterm");
    let (code, text) = tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        let mut pty = Pty::spawn(cmd);
        pty.wait_for("MiB");
        // What the terminal sends the foreground process on Ctrl-C.
        // SAFETY: signalling a child process this test started.
        assert_eq!(
            unsafe { libc::kill(pty.child.id() as libc::pid_t, libc::SIGINT) },
            0
        );
        pty.wait_for("Cancel job");
        pty.writer.write_all(b"y\n").unwrap();
        pty.finish()
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "a cancelled job exits 1: {text}");
    assert!(text.contains("cancelled"), "{text}");
    let jobs = cli
        .ok(&[
            "jobs",
            "ls",
            "--json",
            "--server",
            &app.base,
            "--key",
            &app.admin_key,
        ])
        .await
        .json();
    assert_eq!(jobs[0]["status"], "cancelled", "{jobs}");
}
