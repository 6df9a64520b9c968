//! The Helm chart (`deploy/helm/kassa`) passes `helm lint --strict`, and what `helm template` renders
//! holds what a cluster needs from it: one StatefulSet pod with its own volume, probes on
//! `/health/live` and `/health/ready`, both ports behind a Service, a locked-down container, the
//! configuration from a ConfigMap that this build of Kassa accepts with the chart's own arguments,
//! secrets only from a Secret, a ServiceMonitor and a PodDisruptionBudget that select the pod.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::output_text;
use serde_json::Value;

fn helm() -> String {
    std::env::var("KASSA_HELM")
        .unwrap_or_else(|_| panic!("KASSA_HELM is not set: run the tests through ./ci.sh (deploy/local/services.sh up)"))
}

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/helm/kassa")
}

fn run_helm(args: &[&str]) -> Output {
    Command::new(helm()).args(args).output().expect("helm runs")
}

/// The manifests `helm template` renders with `sets` (`--set` pairs), one JSON value per document.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut args = vec!["template", "shop", chart.to_str().unwrap()];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = run_helm(&args);
    assert!(out.status.success(), "helm template {sets:?}: {}", output_text(&out));
    let docs: Vec<Value> = serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).expect("the manifests are YAML");
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = of_kind(docs, kind);
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    found[0]
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

#[test]
fn the_chart_passes_helm_lint_strict() {
    let out = run_helm(&["lint", "--strict", chart().to_str().unwrap()]);
    let said = output_text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("1 chart(s) linted, 0 chart(s) failed"), "{said}");
}

#[test]
fn the_statefulset_has_its_volume_probes_ports_and_a_locked_down_container() {
    let docs = render(&[]);
    let set = one(&docs, "StatefulSet");
    assert_eq!(set["spec"]["replicas"], 1);
    let pod = &set["spec"]["template"];
    assert!(selects(&set["spec"]["selector"]["matchLabels"], &pod["metadata"]["labels"]));
    let spec = &pod["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let ports: Vec<(String, u64)> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_string(), p["containerPort"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports, [("http".to_string(), 8080), ("grpc".to_string(), 50051)]);
    for (probe, path) in [("startupProbe", "/health/live"), ("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "http", "{probe}");
    }

    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert!(psc["runAsUser"].as_u64().unwrap() > 0);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(spec["automountServiceAccountToken"], false);

    // The data directory is the pod's own claim; the configuration is the ConfigMap, read-only.
    let claims = set["spec"]["volumeClaimTemplates"].as_array().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = claims[0]["metadata"]["name"].as_str().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| mounts.iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("a mount of {name}"));
    assert_eq!(mount(claim)["mountPath"], "/var/lib/kassa");
    assert_eq!(mount("config")["readOnly"], true);
    let config_map = one(&docs, "ConfigMap");
    let volume = spec["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    // This build of Kassa takes the container's arguments with the ConfigMap's file and listens where
    // the ports say.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kassa.toml");
    std::fs::write(&file, config_map["data"]["kassa.toml"].as_str().unwrap()).unwrap();
    let args: Vec<String> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    assert_eq!(args[0], "serve");
    let mut config_args: Vec<String> = vec!["config".into()];
    for a in &args[1..] {
        config_args.push(match a.strip_prefix("--config=") {
            Some(path) => {
                assert_eq!(Path::new(path).parent(), Some(Path::new(mount("config")["mountPath"].as_str().unwrap())));
                format!("--config={}", file.display())
            }
            None => a.clone(),
        });
    }
    let out = Command::new(env!("CARGO_BIN_EXE_kassa")).args(&config_args).output().unwrap();
    assert!(out.status.success(), "kassa {config_args:?}: {}", output_text(&out));
    let effective: toml::Value = toml::from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    assert_eq!(effective["http"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(effective["grpc"].as_str(), Some("0.0.0.0:50051"));
    assert_eq!(effective["data_dir"].as_str(), Some("/var/lib/kassa"));
    assert_eq!(effective["auth"].as_str(), Some("on"));
}

#[test]
fn the_services_monitor_and_disruption_budget_reach_the_pod() {
    let docs = render(&[]);
    let set = one(&docs, "StatefulSet");
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    let services = of_kind(&docs, "Service");
    assert_eq!(services.len(), 2, "a Service and the StatefulSet's headless one");
    let headless = services.iter().find(|s| s["spec"]["clusterIP"] == "None").expect("a headless Service");
    assert_eq!(set["spec"]["serviceName"], headless["metadata"]["name"]);
    for s in &services {
        assert!(selects(&s["spec"]["selector"], labels), "{s}");
        let ports: Vec<(&str, &str)> = s["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["name"].as_str().unwrap(), p["targetPort"].as_str().unwrap()))
            .collect();
        assert_eq!(ports, [("http", "http"), ("grpc", "grpc")]);
    }
    let monitor = one(&docs, "ServiceMonitor");
    assert!(selects(&monitor["spec"]["selector"]["matchLabels"], &services[0]["metadata"]["labels"]));
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!((endpoint["port"].as_str(), endpoint["path"].as_str()), (Some("http"), Some("/metrics")));
    // The alert rules read job="kassa": the monitor names the job after the app's name label.
    assert_eq!(labels[monitor["spec"]["jobLabel"].as_str().unwrap()], "kassa");
    let budget = one(&docs, "PodDisruptionBudget");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"], labels));
    assert_eq!(budget["spec"]["maxUnavailable"], 0);
}

#[test]
fn secrets_come_from_a_secret_only_and_a_second_replica_is_refused() {
    let env_from = |docs: &[Value]| one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["envFrom"].clone();

    let docs = render(&[]);
    assert!(of_kind(&docs, "Secret").is_empty());
    assert!(env_from(&docs).is_null(), "no Secret, no envFrom");
    let config = one(&docs, "ConfigMap")["data"]["kassa.toml"].as_str().unwrap().to_string();
    assert!(!config.contains("secret") && !config.contains("password"), "{config}");

    let docs = render(&["secrets.values.KASSA_JWT_SECRET=s3cret", "secrets.values.KASSA_ADMIN_PASSWORD=pw"]);
    let secret = one(&docs, "Secret");
    assert_eq!(secret["stringData"]["KASSA_JWT_SECRET"], "s3cret");
    assert_eq!(env_from(&docs)[0]["secretRef"]["name"], secret["metadata"]["name"]);
    assert!(!one(&docs, "ConfigMap").to_string().contains("s3cret"));

    let docs = render(&["secrets.existingSecret=shop-kassa-keys"]);
    assert!(of_kind(&docs, "Secret").is_empty(), "an existing Secret is used, not made");
    assert_eq!(env_from(&docs)[0]["secretRef"]["name"], "shop-kassa-keys");

    let chart = chart();
    let out = run_helm(&["template", "shop", chart.to_str().unwrap(), "--set", "replicas=2"]);
    assert!(!out.status.success());
    assert!(output_text(&out).contains("replicas must be 1"), "{}", output_text(&out));
}
