//! The `forecourt` binary as a person runs it: help, bad configuration, a clean start and stop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn forecourt() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forecourt"));
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    for var in ["FORECOURT_DATABASE_URL", "FORECOURT_DATA_DIR", "FORECOURT_ADDR"] {
        cmd.env_remove(var);
    }
    cmd
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Bad configuration ends start-up with one `error:` sentence and a non-zero exit, never a panic.
fn assert_one_sentence_failure(out: &Output, expect: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should fail: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    assert!(last.contains(expect), "expected {expect:?} in {last:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn help_lists_the_commands() {
    let out = forecourt().arg("--help").output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for word in ["serve", "migrate", "user", "--database-url", "--data-dir", "--log-format"] {
        assert!(text.contains(word), "--help lacks {word}: {text}");
    }
}

#[test]
fn an_unreachable_database_is_one_clear_sentence() {
    let out = forecourt()
        .args(["migrate", "--database-url", "postgres://postgres:hunter2@127.0.0.1:1/nothing"])
        .output()
        .expect("runs");
    assert_one_sentence_failure(&out, "cannot open the database at postgres://127.0.0.1:1/nothing");
    assert!(!stderr(&out).contains("hunter2"), "secret leaked: {}", stderr(&out));
}

#[test]
fn a_bad_database_url_is_refused() {
    let out = forecourt().args(["migrate", "--database-url", "mysql://x/y"]).output().expect("runs");
    assert_one_sentence_failure(&out, "must start with sqlite:// or postgres://");
}

#[test]
fn an_unwritable_data_dir_is_refused() {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    let out = forecourt().arg("migrate").arg("--data-dir").arg(file.path()).output().expect("runs");
    assert_one_sentence_failure(&out, "the data directory");
}

#[test]
fn a_broken_theme_names_its_file_and_field() {
    let themes = tempfile::tempdir().expect("dir");
    let repo_themes = Path::new(env!("CARGO_MANIFEST_DIR")).join("../themes");
    for slug in ["forecourt", "freshmart"] {
        std::fs::create_dir_all(themes.path().join(slug)).expect("mkdir");
        let text = std::fs::read_to_string(repo_themes.join(slug).join("theme.toml")).expect("read");
        let text = if slug == "freshmart" {
            text.replace("#0b8a3e", "green").replace("logo = \"logo.svg\"\n", "")
        } else {
            text
        };
        std::fs::write(themes.path().join(slug).join("theme.toml"), text).expect("write");
    }
    let data = tempfile::tempdir().expect("dir");
    let out = forecourt()
        .args(["serve", "--addr", "127.0.0.1:0"])
        .arg("--themes-dir")
        .arg(themes.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("runs");
    assert_one_sentence_failure(&out, "freshmart/theme.toml: field `colours.primary`");
}

/// Starts `forecourt serve` on a free port and returns the child and its base URL.
fn start(data_dir: &Path) -> (std::process::Child, String) {
    let mut child = forecourt()
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .arg("--data-dir")
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("Forecourt is running at ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(60)).expect("server announces its address");
    (child, base)
}

fn http_get(base: &str, path: &str) -> String {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    use std::io::{Read, Write};
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    for _ in 0..100 {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("server did not stop within 10 s of SIGTERM");
}

#[test]
fn serve_starts_seeds_once_stops_on_sigterm_and_keeps_its_data() {
    let data = tempfile::tempdir().expect("dir");
    let (mut child, base) = start(data.path());
    assert!(http_get(&base, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(http_get(&base, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(terminate(&mut child).success(), "graceful shutdown exits 0");

    // The data outlives the process: the demo operator is still there on a second start.
    let out = forecourt()
        .args(["user", "create", "--email", "operator@forecourt.local", "--role", "operator-admin"])
        .arg("--data-dir")
        .arg(data.path())
        .env("FORECOURT_USER_PASSWORD", "another-long-password")
        .output()
        .expect("runs");
    assert_one_sentence_failure(&out, "already exists");

    let (mut child, base) = start(data.path());
    assert!(http_get(&base, "/readyz").starts_with("HTTP/1.1 200"));
    assert!(terminate(&mut child).success());
}

#[test]
fn user_create_makes_an_account_for_a_retailer() {
    let data = tempfile::tempdir().expect("dir");
    // An empty database has no retailer yet: refused with a reason.
    let out = forecourt()
        .args([
            "user",
            "create",
            "--email",
            "new@shop.example",
            "--role",
            "retailer-viewer",
            "--retailer",
            "freshmart",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env("FORECOURT_USER_PASSWORD", "a-long-enough-password")
        .output()
        .expect("runs");
    assert_one_sentence_failure(&out, "no retailer freshmart");
    let out = forecourt()
        .args(["user", "create", "--email", "boss@forecourt.local", "--role", "operator-admin"])
        .arg("--data-dir")
        .arg(data.path())
        .env("FORECOURT_USER_PASSWORD", "a-long-enough-password")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("boss@forecourt.local"));
}

/// `lb-bench` prints its report as JSON on standard output, so a script can read it: the
/// balancer's log lines (a store meter set aside, say) go to standard error instead.
#[test]
fn lb_bench_keeps_its_report_apart_from_its_log() {
    // A store meter that reads 10 A for half an hour: set aside as stuck after a quarter of one.
    let steps = 30;
    let store = vec![10.0; steps];
    let workload = serde_json::json!({
        "site": {
            "voltage_ln": 230.0, "grid_limit_a": 63.0, "step_s": 60, "horizon_steps": steps,
            "feeders": [{"id": "F1", "limit_a": 63.0}],
            "connectors": [{"id": "C1", "feeder": "F1", "max_a": 32.0, "phases": 3, "rotation": ["L1", "L2", "L3"]}],
            "base_load_a": {"L1": store, "L2": store, "L3": store},
        },
        "sessions": [{
            "id": "S1", "connector": "C1", "arrival_s": 60, "departure_s": 1500, "est_departure_s": null,
            "energy_kwh": 5.0, "ev_phases": 3, "ev_max_a": 16.0,
        }],
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), workload.to_string()).expect("write the workload");
    let out = forecourt().arg("lb-bench").arg(file.path()).env("RUST_LOG", "info").output().expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("stdout is not the JSON report ({e}): {}", String::from_utf8_lossy(&out.stdout))
    });
    assert_eq!(report["sessions"], 1, "{report}");
    assert!(report["delivered_kwh"].as_f64().is_some_and(|kwh| kwh > 0.0), "{report}");
    assert!(stderr(&out).contains("store meter reading set aside"), "the log: {}", stderr(&out));
}
