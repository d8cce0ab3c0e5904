//! Configuration: the documented example, checks that name every bad key with its line, and
//! the precedence of defaults, file, environment and flags.

use crate::common;

use std::path::Path;
use std::process::Command;

use annals::config::{Config, ConfigError};
use annals::declarations::{check, Declarations};
use annals::events::Durability;

fn example() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/annals.example.toml"))
        .unwrap()
}

/// `config check` refuses `text` with exactly these problems.
#[track_caller]
fn assert_refused(text: &str, problems: &[&str]) {
    assert_eq!(check(text).unwrap_err(), problems, "{text}");
}

/// `config check` refuses `text` with one problem on each of `lines`, in order; the problems.
#[track_caller]
fn refused_at(text: &str, lines: &[&str]) -> Vec<String> {
    let problems = check(text).unwrap_err();
    let found: Vec<&str> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(found, lines, "{problems:#?}");
    problems
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_documented_example_is_valid_and_is_the_embedded_default() {
    let from_file: Config = toml::Value::Table(check(&example()).unwrap())
        .try_into()
        .unwrap();
    assert_eq!(from_file, Config::default());
}

#[test]
fn the_documented_example_shows_every_key() {
    let example = example();
    let mut section = String::new();
    let mut shown = std::collections::BTreeSet::new();
    for line in example.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(array) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            // An array of tables, such as [[accounts]], shows its own key.
            shown.insert(array.to_owned());
            section = format!("{array}.");
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            // A sub-section, such as [gros.agent], shows its own key.
            shown.insert(name.to_owned());
            section = format!("{name}.");
        } else if let Some((key, _)) = line.split_once(" = ") {
            shown.insert(format!("{section}{key}"));
        }
    }
    let schema = annals::config::schema();
    let mut keys = Vec::new();
    for (key, value) in &schema {
        match value {
            toml::Value::Table(inner) => keys.extend(inner.keys().map(|k| format!("{key}.{k}"))),
            _ => keys.push(key.clone()),
        }
    }
    let missing: Vec<_> = keys.iter().filter(|key| !shown.contains(*key)).collect();
    assert!(
        missing.is_empty(),
        "docs/annals.example.toml lacks {missing:?}"
    );
}

#[test]
fn a_check_names_every_unknown_key_with_its_line() {
    let text =
        "data = \"d\"\nlisten = \"x\"\n\n[http]\nlsten = \"127.0.0.1:1\"\n\n[actorz]\nmax = 1\n";
    assert_refused(
        text,
        &[
            "line 2: unknown key `listen`",
            "line 5: unknown key `http.lsten`",
            "line 7: unknown key `actorz`",
        ],
    );
}

#[test]
fn a_check_names_bad_values_and_bad_syntax_with_their_lines() {
    let problems = check("[log]\ncache_mb = \"lots\"\n").unwrap_err();
    assert_eq!(problems.len(), 1);
    assert!(problems[0].starts_with("line 2: "), "{problems:?}");
    let problems = check("durability = \"sometimes\"\n").unwrap_err();
    assert!(
        problems[0].starts_with("line 1: ") && problems[0].contains("sometimes"),
        "{problems:?}"
    );
    let problems = check("[http\nlisten = 1\n").unwrap_err();
    assert!(problems[0].starts_with("line 1: "), "{problems:?}");
}

#[test]
fn the_environment_overrides_the_file_which_overrides_the_defaults() {
    let (dir, file) = common::config_file(
        "durability = \"flush\"\n[http]\nlisten = \"127.0.0.1:9000\"\n[actors]\nmax_resident = 5\n",
    );

    let config = Config::load(Some(&file), env(&[])).unwrap();
    assert_eq!(config.durability, Durability::Flush);
    assert_eq!(config.http.listen, "127.0.0.1:9000");
    assert_eq!(config.actors.max_resident, 5);
    assert_eq!(
        config.actors.snapshot_every,
        Config::default().actors.snapshot_every
    );

    let overridden = Config::load(
        Some(&file),
        env(&[
            ("ANNALS_HTTP_LISTEN", "127.0.0.1:9100"),
            ("ANNALS_ACTORS_MAX_RESIDENT", "7"),
            ("ANNALS_DATA", "elsewhere"),
            ("ANNALS_UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(overridden.http.listen, "127.0.0.1:9100");
    assert_eq!(overridden.actors.max_resident, 7);
    assert_eq!(overridden.data, Path::new("elsewhere"));
    assert_eq!(overridden.durability, Durability::Flush);

    let bad = Config::load(None, env(&[("ANNALS_ACTORS_MAX_RESIDENT", "many")])).unwrap_err();
    assert!(
        bad.to_string()
            .contains("ANNALS_ACTORS_MAX_RESIDENT=\"many\": expected an integer"),
        "{bad}"
    );
    let bad = Config::load(None, env(&[("ANNALS_DURABILITY", "sometimes")])).unwrap_err();
    assert!(
        matches!(bad, ConfigError::Env(_)) && bad.to_string().contains("sometimes"),
        "{bad}"
    );
    let missing = Config::load(Some(&dir.path().join("none.toml")), env(&[])).unwrap_err();
    assert!(missing.to_string().contains("none.toml"), "{missing}");
}

fn annals(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_annals"));
    command
        .args(args)
        .env_remove("ANNALS_DATA")
        .env_remove("ANNALS_CONFIG");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn the_command_line_checks_and_shows_configuration_with_flags_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[http]\nlisten = \"127.0.0.1:1\"\nport = 1\n").unwrap();
    let checked = annals(&["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(checked.status.code(), Some(1));
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        out.contains("bad.toml: line 3: unknown key `http.port`"),
        "{out}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, "durability = \"none\"\n").unwrap();
    let checked = annals(
        &["--config", good.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(checked.status.code(), Some(0));

    let shown = annals(
        &[
            "--config",
            good.to_str().unwrap(),
            "--data",
            "from-flag",
            "config",
            "show",
        ],
        &[("ANNALS_HTTP_LISTEN", "127.0.0.1:9200")],
    );
    let shown: Config = toml::from_str(&String::from_utf8_lossy(&shown.stdout)).unwrap();
    assert_eq!(shown.durability, Durability::None);
    // A relative data directory is shown as it is in effect: from where annals started.
    let here = std::env::current_dir().unwrap();
    assert_eq!(shown.data, here.join("from-flag"));
    assert_eq!(shown.http.listen, "127.0.0.1:9200");

    let refused = annals(&["--config", bad.to_str().unwrap(), "config", "show"], &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown key `http.port`"));
}

#[test]
fn a_check_refuses_a_workflow_that_start_up_would_refuse() {
    let text = "[[hpcwaas.workflows]]\napplication_id = \"a\"\nenvironment_id = \"e\"\n\
                name = \"w\"\n\n[[hpcwaas.workflows.steps]]\ncommand = []\n";
    assert_refused(
        text,
        &["line 1: [[hpcwaas.workflows]]: workflow a@e@w: step 1 has no command"],
    );
    let unknown = "[[hpcwaas.workflows]]\nname = \"w\"\nshell = true\n";
    let problems = check(unknown).unwrap_err();
    assert!(problems[0].contains("shell"), "{problems:?}");
}

#[test]
fn a_check_refuses_a_gros_project_that_start_up_would_refuse() {
    let text = "[[gros.projects]]\nkey = \"proj\"\n";
    assert_refused(text, &["line 1: [[gros.projects]]: project \"proj\": Project key must be all-uppercase, only alphabetic characters"]);
    let text = "[[gros.projects]]\nkey = \"PROJ\"\nnetworks = [\"10.0.0.0/33\"]\n";
    assert_refused(text, &["line 1: [[gros.projects]]: project PROJ: \"10.0.0.0/33\" is not an address or a network such as 10.0.0.0/8"]);
    let text = "[gros]\nlog_ignore = [\"(\"]\n";
    assert!(check(text).unwrap_err()[0].starts_with("line 1: [gros]: log_ignore \"(\": "));
    let text = "[gros.agent]\nenabled = true\nproject = \"PROJ\"\n";
    assert_refused(
        text,
        &["line 1: [gros]: agent project PROJ is not configured"],
    );
}

#[test]
fn a_check_refuses_engines_and_a_local_agent_that_start_up_would_refuse() {
    let text = "[[patrowl.engines]]\nname = \"tcp\"\nallowed_asset_types = [\"ip\"]\n\n\
                [[patrowl.engines]]\nname = \"tcp\"\nallowed_asset_types = [\"ip\"]\n\n\
                [gros.agent]\nenabled = true\nproject = \"lower\"\n";
    let problems = check(text).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(
        problems[0],
        "line 5: [[patrowl.engines]]: engine tcp is configured twice"
    );
    assert!(
        problems[1].starts_with("line 9: [gros]: agent project \"lower\": "),
        "{problems:?}"
    );
}

#[actix_rt::test]
async fn start_up_refuses_what_a_check_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::server_config(dir.path());
    config
        .patrowl
        .engines
        .push(config.patrowl.engines[0].clone());
    let log = annals::events::EventLog::open(&config.data, config.log_options()).unwrap();
    let refused = annals::startup::Application::build(
        &config,
        log,
        std::sync::Arc::new(annals::runtime::SystemClock),
    )
    .await
    .err()
    .expect("a duplicate engine stops start-up");
    assert_eq!(
        refused.to_string(),
        "[[patrowl.engines]]: engine tcp is configured twice"
    );
}

#[test]
fn an_engine_entry_takes_its_scanners_documented_default_for_every_key_it_leaves_out() {
    let text = "[[patrowl.engines]]\nname = \"tcp\"\n\n\
                [[patrowl.engines]]\nname = \"http\"\nscanner = \"http\"\n\n\
                [[patrowl.engines]]\nname = \"nmap\"\nscanner = \"nmap\"\n\n\
                [[patrowl.engines]]\nname = \"wrapped\"\nscanner = \"command\"\ncommand = [\"sh\"]\n\
                max_scans = 2\n";
    let config: Config = toml::Value::Table(check(text).unwrap()).try_into().unwrap();
    // The three documented engines, each written with its name and scanner only.
    let documented = Config::default().patrowl.engines;
    assert_eq!(config.patrowl.engines[..3], documented[..]);
    let command = &config.patrowl.engines[3];
    assert_eq!(command.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        command.allowed_asset_types,
        annals::domain::scan::Datatype::ALL.map(|d| d.as_str().to_owned())
    );
    assert_eq!(
        (command.max_scans, command.timeout_s, command.kill_grace_s),
        (2, 3600, 5)
    );
    // An empty list given on purpose is still refused, with its line.
    let text = "\n[[patrowl.engines]]\nname = \"none\"\nallowed_asset_types = []\n";
    assert_refused(
        text,
        &["line 2: [[patrowl.engines]]: engine none: allowed_asset_types is empty"],
    );
}

#[test]
fn a_check_reports_every_problem_of_a_file_in_one_pass_each_with_its_line() {
    let text = "\
[http]
lsten = \"x\"
[log]
cache_mb = \"lots\"

[[patrowl.engines]]
name = \"first\"
max_scans = \"five\"

[[patrowl.engines]]
name = \"second\"
allowed_asset_types = [\"nope\"]

[[patrowl.engines]]
name = \"third\"
shell = true

[[hpcwaas.workflows]]
application_id = \"a\"
environment_id = \"e\"
name = \"w\"

[[gros.projects]]
key = \"lower\"
";
    let problems = refused_at(
        text,
        &[
            "line 2", "line 4", "line 8", "line 10", "line 16", "line 18", "line 23",
        ],
    );
    assert_eq!(problems[0], "line 2: unknown key `http.lsten`");
    assert!(problems[2].contains("five"), "{problems:#?}");
    assert_eq!(
        problems[3],
        "line 10: [[patrowl.engines]]: engine second: allowed_asset_types: \"nope\" is not a \
         Patrowl datatype"
    );
    assert!(problems[4].contains("shell"), "{problems:#?}");
    assert_eq!(
        problems[5],
        "line 18: [[hpcwaas.workflows]]: workflow a@e@w: it has no step"
    );
    assert!(
        problems[6].starts_with("line 23: [[gros.projects]]: project \"lower\""),
        "{problems:#?}"
    );
}

/// Settings that `annals serve` refuses are refused by a check too, each at its own line, with
/// the declarations' problems in the same pass: a check that passes a file the server then
/// refuses would mislead.
#[test]
fn a_check_refuses_the_settings_that_start_up_would_refuse() {
    let text = "\
[http]
listen = \"not an address\"
sse_keep_alive_s = 0
body_timeout_s = 0
tls_cert = \"/etc/annals/cert.pem\"

[partisci]
listen = \"127.0.0.1\"

[[accounts]]
name = \"ada\"
password_hash = \"not a hash\"

[[accounts]]
name = \"ada\"

[[gros.projects]]
key = \"lower\"
";
    let problems = refused_at(
        text,
        &[
            "line 2", "line 3", "line 4", "line 5", "line 8", "line 10", "line 14", "line 17",
        ],
    );
    assert_eq!(
        problems[..7],
        [
            "line 2: [http]: listen \"not an address\" is not an address and port \
             (such as 127.0.0.1:8080)",
            "line 3: [http]: sse_keep_alive_s must be at least 1 (second)",
            "line 4: [http]: body_timeout_s must be at least 1 (second)",
            "line 5: [http]: tls_cert and tls_key go together: give both or neither",
            "line 8: [partisci]: listen \"127.0.0.1\" is not an address and port (such as \
             127.0.0.1:8080)",
            "line 10: [[accounts]]: account ada: password_hash is not an argon2 hash: \
             password hash string missing field",
            "line 14: [[accounts]]: account ada is configured twice",
        ]
    );
    assert_refused(
        "[log]\ncache_mb = 0\nmax_event_kb = 0\n",
        &[
            "line 2: [log]: cache_mb must be at least 1",
            "line 3: [log]: max_event_kb must be at least 1",
        ],
    );
    // An empty address turns a face's own listener off; a host name is an address.
    let fine = "[http]\nlisten = \"localhost:8080\"\n[partisci]\nlisten = \"\"\n";
    assert!(check(fine).is_ok(), "{:?}", check(fine));
    // Start-up refuses the same, from the file or the environment alike.
    let config = Config::load(None, env(&[("ANNALS_HTTP_SSE_KEEP_ALIVE_S", "0")])).unwrap();
    assert_eq!(
        Declarations::parse(&config).err().unwrap(),
        ["[http]: sse_keep_alive_s must be at least 1 (second)"]
    );
}

/// A file whose engine, workflow step and project name programs that are not there.
const MISSING_PROGRAMS: &str = "\
[[patrowl.engines]]
name = \"probe\"
scanner = \"command\"
command = [\"/nonexistent/probe-scanner\", \"--all\"]

[[hpcwaas.workflows]]
application_id = \"a\"
environment_id = \"e\"
name = \"w\"

[[hpcwaas.workflows.steps]]
name = \"greet\"
command = [\"no-such-program-on-path\"]

[[gros.projects]]
key = \"PROJ\"
import_command = [\"/nonexistent/import\"]
";

#[test]
fn a_check_warns_of_programs_that_are_not_found_and_passes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("programs.toml");
    std::fs::write(&file, MISSING_PROGRAMS).unwrap();
    let checked = annals(&["config", "check", file.to_str().unwrap()], &[]);
    let out = String::from_utf8_lossy(&checked.stdout);
    assert_eq!(checked.status.code(), Some(0), "{out}");
    let name = file.display();
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            format!(
                "{name}: line 1: warning: [[patrowl.engines]]: engine probe cannot scan: its \
                 program \"/nonexistent/probe-scanner\" is not found or not executable"
            ),
            format!(
                "{name}: line 6: warning: [[hpcwaas.workflows]]: workflow a@e@w: step greet: its \
                 program \"no-such-program-on-path\" is not found or not executable"
            ),
            format!(
                "{name}: line 15: warning: [[gros.projects]]: project PROJ: its import_command \
                 program \"/nonexistent/import\" is not found or not executable"
            ),
            format!("ok: {name}"),
        ]
    );
}

#[actix_rt::test]
async fn the_server_starts_on_entries_with_defaults_and_warns_of_missing_programs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("programs.toml");
    std::fs::write(&file, MISSING_PROGRAMS).unwrap();
    let data = dir.path().join("log");
    let served = common::spawn_serve(
        &[
            "--config".as_ref(),
            file.as_os_str(),
            "--data".as_ref(),
            data.as_os_str(),
            "serve".as_ref(),
        ],
        &[("ANNALS_HTTP_LISTEN", "127.0.0.1:0")],
    )
    .expect("the server starts despite the missing programs");
    let warnings: Vec<String> = served
        .started
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["level"] == "WARN")
        .filter_map(|entry| entry["fields"]["message"].as_str().map(str::to_owned))
        .collect();
    for entry in [
        "[[patrowl.engines]]: engine probe cannot scan",
        "[[hpcwaas.workflows]]: workflow a@e@w: step greet: its program",
        "[[gros.projects]]: project PROJ: its import_command program",
    ] {
        assert!(
            warnings.iter().any(|warning| warning.starts_with(entry)),
            "no warning {entry:?} in {warnings:#?}"
        );
    }
    // The engine given only a name, a scanner and a command has the documented defaults.
    let mut response = awc::Client::default()
        .get(format!("http://{}/engines/probe/info", served.address))
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = response.json().await.unwrap();
    assert_eq!(info["engine_config"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        info["engine_config"]["allowed_asset_types"]
            .as_array()
            .map(Vec::len),
        Some(annals::domain::scan::Datatype::ALL.len()),
        "{info}"
    );
    served.terminate();
}

#[test]
fn a_check_reads_on_past_bad_values_in_dotted_keys_and_inline_tables() {
    let text = "http.lsten = 1\nlog.cache_mb = \"lots\"\n\
                [patrowl]\nengines = [{ name = \"x\", max_scans = \"many\" }]\n\
                [actors]\nmax_resident = \"all\"\n";
    let problems = refused_at(text, &["line 1", "line 2", "line 4", "line 6"]);
    assert_eq!(problems[0], "line 1: unknown key `http.lsten`");
}

#[test]
fn serve_refuses_a_files_bad_declaration_at_its_line_before_opening_the_log() {
    let (dir, file) = common::config_file(
        "[[patrowl.engines]]\nname = \"tcp\"\n\n[[patrowl.engines]]\nname = \"tcp\"\n",
    );
    let data = dir.path().join("log");
    let refused = annals(
        &[
            "--config",
            file.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "serve",
        ],
        &[("ANNALS_HTTP_LISTEN", "127.0.0.1:0")],
    );
    assert_eq!(refused.status.code(), Some(2));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(
            "is not valid:\n  line 4: [[patrowl.engines]]: engine tcp is configured twice"
        ),
        "{err}"
    );
    assert!(!data.exists(), "the log was opened");
}
