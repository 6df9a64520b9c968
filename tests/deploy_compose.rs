//! The compose file (`deploy/compose/compose.yaml`) is valid by the Compose Specification's reference
//! loader (`deploy/compose/check`, compose-go: what `docker compose config` runs; no Docker engine runs
//! on the build machines), and holds together: Kassa waits for the four mirror targets to be healthy,
//! publishes both ports, keeps its data on a volume, runs locked down, reaches each target by a service
//! of the file, and this build of Kassa accepts its configuration with the environment the file gives it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::output_text;
use serde_json::Value;

const TARGETS: [&str; 4] = ["postgres", "mariadb", "redis", "kafka"];

fn compose_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/compose")
}

fn check(file: &Path, env: &[&str]) -> Output {
    let checker = std::env::var("KASSA_COMPOSE_CHECK")
        .unwrap_or_else(|_| panic!("KASSA_COMPOSE_CHECK is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"));
    let mut args: Vec<String> = env.iter().flat_map(|e| ["-env".to_string(), e.to_string()]).collect();
    args.push(file.display().to_string());
    Command::new(checker).args(&args).output().expect("the compose checker runs")
}

fn project(env: &[&str]) -> Value {
    let out = check(&compose_dir().join("compose.yaml"), env);
    assert!(out.status.success(), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).expect("the checker prints JSON")
}

#[test]
fn kassa_waits_for_healthy_targets_publishes_its_ports_and_runs_locked_down() {
    let p = project(&[]);
    let services = p["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["kafka", "kassa", "mariadb", "postgres", "redis"]);
    let kassa = &services["kassa"];
    for target in TARGETS {
        assert_eq!(kassa["depends_on"][target]["condition"], "service_healthy", "{target}");
        assert!(services[target]["healthcheck"]["test"].is_array(), "{target} has a health check");
    }
    let published: Vec<(u64, String)> = kassa["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["target"].as_u64().unwrap(), p["published"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(published, [(8080, "8080".to_string()), (50051, "50051".to_string())]);
    let p = project(&["KASSA_HTTP_PORT=18080"]);
    assert_eq!(p["services"]["kassa"]["ports"][0]["published"], "18080", "ports follow the environment");

    assert_eq!(kassa["read_only"], true);
    assert_eq!(kassa["cap_drop"], serde_json::json!(["ALL"]));
    assert!(kassa["security_opt"].as_array().unwrap().iter().any(|o| o == "no-new-privileges:true"));
    let volumes = kassa["volumes"].as_array().unwrap();
    let data = volumes.iter().find(|v| v["target"] == "/var/lib/kassa").expect("a data volume");
    assert_eq!(data["type"], "volume");
    let config = volumes.iter().find(|v| v["target"] == "/etc/kassa/kassa.toml").expect("the config mounted");
    assert!(Path::new(config["source"].as_str().unwrap()).is_file(), "{config}");
    assert_eq!(config["read_only"], true);
    let build = &kassa["build"];
    let dockerfile = Path::new(build["context"].as_str().unwrap()).join(build["dockerfile"].as_str().unwrap());
    assert!(dockerfile.is_file(), "{}", dockerfile.display());
}

#[test]
fn kassa_accepts_the_files_configuration_and_reaches_every_target_by_its_service() {
    let p = project(&["KASSA_DB_PASSWORD=pw"]);
    let services = p["services"].as_object().unwrap();
    let kassa = &services["kassa"];
    let env: BTreeMap<String, String> =
        kassa["environment"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())).collect();
    assert!(env["KASSA_ADAPTERS_MARIADB_URL"].contains(":pw@"), "passwords come from the environment");

    // The container's command against this build, with the file's configuration and environment.
    let command: Vec<String> = kassa["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(command[0], "serve");
    let config_file = compose_dir().join("kassa.toml");
    let args: Vec<String> = std::iter::once("config".to_string())
        .chain(command[1..].iter().map(|a| if a == "/etc/kassa/kassa.toml" { config_file.display().to_string() } else { a.clone() }))
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_kassa")).args(&args).envs(&env).output().unwrap();
    assert!(out.status.success(), "kassa {args:?}: {}", output_text(&out));
    let effective: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let adapters = &effective["adapters"];
    let addresses = [
        ("postgres", adapters["postgres"]["url"].as_str()),
        ("postgres", adapters["postgres"]["notifications_url"].as_str()),
        ("mariadb", adapters["mariadb"]["url"].as_str()),
        ("redis", adapters["redis"]["url"].as_str()),
        ("kafka", adapters["kafka"]["brokers"].as_str()),
    ];
    for (target, address) in addresses {
        let address = address.unwrap_or_else(|| panic!("the {target} mirror has an address: {adapters}"));
        let host = address.rsplit('@').next().unwrap().trim_start_matches("redis://").split(':').next().unwrap();
        assert_eq!(host, target, "{address}");
        assert!(services.contains_key(host));
    }
    assert!(adapters["postgres"]["notifications_url"].as_str().unwrap().ends_with("/notification_service"));
    let init = std::fs::read_to_string(compose_dir().join("postgres-init.sql")).unwrap();
    assert!(init.contains("CREATE DATABASE notification_service"), "the notifications' database is made at first start");
}

#[test]
fn the_checker_refuses_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read_to_string(compose_dir().join("compose.yaml")).unwrap();
    let broken = dir.path().join("compose.yaml");
    std::fs::write(
        &broken,
        original.replace("      redis:\n        condition: service_healthy", "      rediss:\n        condition: service_healthy"),
    )
    .unwrap();
    let out = check(&broken, &[]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("undefined service \"rediss\""), "{}", output_text(&out));
}
