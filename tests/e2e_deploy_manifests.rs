//! The deployment files in deploy/ (a Kubernetes Indexed Job and merge Job, a Slurm array job,
//! its merge job and submit script), checked offline: no cluster is needed, and none is there
//! (`kubectl apply --dry-run` and `sbatch --test-only` both need one).
//!
//! Kubernetes: every key of each Job is checked against a whitelist of the `batch/v1` Job fields
//! these manifests use, level by level (an unknown or misspelled key fails, naming its path), with
//! their types and enumerations. Then what makes sharding work: the Indexed Job's command gives
//! each index `--shard ${JOB_COMPLETION_INDEX}/N` with N == completions and a log of its own on a
//! persistent volume, and the merge Job globs exactly those logs on the same claim.
//!
//! Slurm: the `#SBATCH` lines (known options, before the first command, `--array=0-(N-1)`, an
//! output file per index), the same shard and log checks, the merge glob, submit.sh's
//! `--dependency=afterok:` chain, and `bash -n` on every script.
//!
//! The last tests plant one mistake at a time in copies of the files and show that each is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

// ---------------------------------------------------------------------------------------------
// Files

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

const K8S_TUNE: &str = "kubernetes/tune-indexed-job.yaml";
const K8S_MERGE: &str = "kubernetes/merge-job.yaml";
const SLURM_TUNE: &str = "slurm/tune-array.sbatch";
const SLURM_MERGE: &str = "slurm/merge.sbatch";
const SLURM_SUBMIT: &str = "slurm/submit.sh";

fn assert_no_errors(what: &str, errors: &[String]) {
    assert!(errors.is_empty(), "{what}:\n  {}", errors.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// The batch/v1 Job schema, as far as these manifests use it

/// What one container of a Job holds, for the sharding checks.
#[derive(Debug, Clone)]
struct Container {
    /// command followed by args.
    argv: Vec<String>,
    cpu_request: Option<f64>,
    cpu_limit: Option<f64>,
    mounts: Vec<Mount>,
}

#[derive(Debug, Clone)]
struct Mount {
    volume: String,
    path: String,
    read_only: bool,
}

#[derive(Debug, Clone)]
struct Volume {
    name: String,
    /// claimName and readOnly of a persistentVolumeClaim volume.
    claim: Option<(String, bool)>,
}

#[derive(Debug, Clone)]
struct Job {
    completions: Option<i64>,
    parallelism: Option<i64>,
    completion_mode: Option<String>,
    containers: Vec<Container>,
    volumes: Vec<Volume>,
}

/// Collects the schema errors of one document, each with the path of the offending key.
#[derive(Debug, Default)]
struct Errors(Vec<String>);

impl Errors {
    fn add(&mut self, path: &str, message: impl AsRef<str>) {
        self.0.push(format!("{path}: {}", message.as_ref()));
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The entries of a mapping whose keys are strings; any key not in `allowed` is an error naming
/// its path. Returns None (with an error) when `value` is not a mapping.
fn mapping<'a>(
    value: &'a Yaml,
    path: &str,
    allowed: &[&str],
    errors: &mut Errors,
) -> Option<BTreeMap<String, &'a Yaml>> {
    let Yaml::Hash(hash) = value else {
        errors.add(path, format!("must be a mapping, found {}", describe(value)));
        return None;
    };
    let mut entries = BTreeMap::new();
    for (key, entry) in hash {
        let Yaml::String(key) = key else {
            errors.add(path, format!("keys must be strings, found {}", describe(key)));
            continue;
        };
        if !allowed.contains(&key.as_str()) {
            errors.add(&join(path, key), format!("unknown key (allowed here: {})", allowed.join(", ")));
            continue;
        }
        entries.insert(key.clone(), entry);
    }
    Some(entries)
}

/// A mapping whose keys are free (labels, annotations, nodeSelector) and values strings.
fn string_map(value: &Yaml, path: &str, errors: &mut Errors) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let Yaml::Hash(hash) = value else {
        errors.add(path, format!("must be a mapping, found {}", describe(value)));
        return map;
    };
    for (key, entry) in hash {
        match (key, entry) {
            (Yaml::String(key), Yaml::String(entry)) => {
                map.insert(key.clone(), entry.clone());
            }
            (Yaml::String(key), other) => errors
                .add(&join(path, key), format!("must be a string, found {} (quote it)", describe(other))),
            (other, _) => errors.add(path, format!("keys must be strings, found {}", describe(other))),
        }
    }
    map
}

fn describe(value: &Yaml) -> String {
    match value {
        Yaml::Real(r) => format!("the number {r}"),
        Yaml::Integer(i) => format!("the integer {i}"),
        Yaml::String(s) => format!("the string {s:?}"),
        Yaml::Boolean(b) => format!("the boolean {b}"),
        Yaml::Array(_) => "a sequence".to_string(),
        Yaml::Hash(_) => "a mapping".to_string(),
        Yaml::Alias(_) => "an alias".to_string(),
        Yaml::Null => "null".to_string(),
        Yaml::BadValue => "a bad value".to_string(),
    }
}

fn string(value: &Yaml, path: &str, errors: &mut Errors) -> Option<String> {
    match value {
        Yaml::String(s) if !s.is_empty() => Some(s.clone()),
        other => {
            errors.add(path, format!("must be a non-empty string, found {}", describe(other)));
            None
        }
    }
}

fn integer(value: &Yaml, path: &str, min: i64, errors: &mut Errors) -> Option<i64> {
    match value {
        Yaml::Integer(i) if *i >= min => Some(*i),
        Yaml::Integer(i) => {
            errors.add(path, format!("must be at least {min}, found {i}"));
            None
        }
        other => {
            errors.add(path, format!("must be an integer, found {}", describe(other)));
            None
        }
    }
}

fn boolean(value: &Yaml, path: &str, errors: &mut Errors) -> Option<bool> {
    match value {
        Yaml::Boolean(b) => Some(*b),
        other => {
            errors.add(path, format!("must be true or false, found {}", describe(other)));
            None
        }
    }
}

fn one_of(value: &Yaml, path: &str, allowed: &[&str], errors: &mut Errors) -> Option<String> {
    let s = string(value, path, errors)?;
    if allowed.contains(&s.as_str()) {
        Some(s)
    } else {
        errors.add(path, format!("must be one of {}, found {s:?}", allowed.join(", ")));
        None
    }
}

fn sequence<'a>(value: &'a Yaml, path: &str, errors: &mut Errors) -> &'a [Yaml] {
    match value {
        Yaml::Array(items) => items,
        other => {
            errors.add(path, format!("must be a sequence, found {}", describe(other)));
            &[]
        }
    }
}

fn strings(value: &Yaml, path: &str, errors: &mut Errors) -> Vec<String> {
    let mut out = Vec::new();
    for (i, item) in sequence(value, path, errors).iter().enumerate() {
        match item {
            Yaml::String(s) => out.push(s.clone()),
            other => {
                errors.add(&format!("{path}[{i}]"), format!("must be a string, found {}", describe(other)))
            }
        }
    }
    out
}

fn required<'a>(
    entries: &BTreeMap<String, &'a Yaml>,
    path: &str,
    key: &str,
    errors: &mut Errors,
) -> Option<&'a Yaml> {
    let found = entries.get(key).copied();
    if found.is_none() {
        errors.add(&join(path, key), "is required");
    }
    found
}

/// A DNS-1123 label: what Kubernetes requires of Job, container and volume names.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn dns_label(value: &Yaml, path: &str, errors: &mut Errors) -> Option<String> {
    let s = string(value, path, errors)?;
    if is_dns_label(&s) {
        Some(s)
    } else {
        errors.add(path, format!("{s:?} is not a DNS-1123 label (a-z, 0-9 and '-', at most 63)"));
        None
    }
}

/// A label key (optional DNS prefix and '/', then a name) or value: at most 63 characters of
/// alphanumerics, '-', '_' and '.', beginning and ending with an alphanumeric.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn check_labels(value: &Yaml, path: &str, errors: &mut Errors) {
    for (key, label) in string_map(value, path, errors) {
        let name = key.rsplit_once('/').map_or(key.as_str(), |(_, name)| name);
        if !is_label_name(name) {
            errors.add(&join(path, &key), "is not a valid label key");
        }
        if !label.is_empty() && !is_label_name(&label) {
            errors.add(&join(path, &key), format!("{label:?} is not a valid label value"));
        }
    }
}

fn check_metadata(value: &Yaml, path: &str, name_required: bool, errors: &mut Errors) {
    let Some(m) = mapping(value, path, &["name", "labels", "annotations"], errors) else { return };
    match m.get("name") {
        Some(name) => {
            dns_label(name, &join(path, "name"), errors);
        }
        None if name_required => errors.add(&join(path, "name"), "is required"),
        None => {}
    }
    if let Some(labels) = m.get("labels") {
        check_labels(labels, &join(path, "labels"), errors);
    }
    if let Some(annotations) = m.get("annotations") {
        string_map(annotations, &join(path, "annotations"), errors);
    }
}

/// A Kubernetes quantity ("2", 2, "500m", "4Gi", "4G") in base units.
fn quantity(value: &Yaml) -> Option<f64> {
    let text = match value {
        Yaml::Integer(i) => return Some(*i as f64),
        Yaml::Real(r) => return r.parse().ok(),
        Yaml::String(s) => s.as_str(),
        _ => return None,
    };
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| text.strip_suffix(suffix).map(|n| (n, *scale)))
        .unwrap_or((text, 1.0));
    let digits_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !digits_ok {
        return None;
    }
    number.parse::<f64>().ok().map(|n| n * scale)
}

const GIB: f64 = 1073741824.0;

fn check_resources(value: &Yaml, path: &str, errors: &mut Errors) -> BTreeMap<(String, String), f64> {
    let mut found = BTreeMap::new();
    let Some(r) = mapping(value, path, &["requests", "limits"], errors) else { return found };
    for (kind, amounts) in &r {
        let kind_path = join(path, kind);
        let Some(amounts) = mapping(amounts, &kind_path, &["cpu", "memory", "ephemeral-storage"], errors)
        else {
            continue;
        };
        for (resource, amount) in amounts {
            match quantity(amount) {
                Some(q) if q > 0.0 => {
                    found.insert((kind.clone(), resource), q);
                }
                _ => errors.add(
                    &join(&kind_path, &resource),
                    format!("must be a positive quantity (2, \"500m\", \"4Gi\"), found {}", describe(amount)),
                ),
            }
        }
    }
    for ((kind, resource), request) in &found {
        if kind == "requests" {
            if let Some(limit) = found.get(&("limits".to_string(), resource.clone())) {
                if request > limit {
                    errors.add(&join(path, &format!("requests.{resource}")), "is above its limit");
                }
            }
        }
    }
    found
}

fn check_container(value: &Yaml, path: &str, errors: &mut Errors) -> (Option<String>, Container) {
    let mut container =
        Container { argv: Vec::new(), cpu_request: None, cpu_limit: None, mounts: Vec::new() };
    let allowed = [
        "name",
        "image",
        "imagePullPolicy",
        "command",
        "args",
        "env",
        "resources",
        "volumeMounts",
        "workingDir",
    ];
    let Some(c) = mapping(value, path, &allowed, errors) else { return (None, container) };
    let name = required(&c, path, "name", errors).and_then(|n| dns_label(n, &join(path, "name"), errors));
    if let Some(image) = required(&c, path, "image", errors) {
        string(image, &join(path, "image"), errors);
    }
    if let Some(policy) = c.get("imagePullPolicy") {
        one_of(policy, &join(path, "imagePullPolicy"), &["Always", "IfNotPresent", "Never"], errors);
    }
    for key in ["command", "args"] {
        if let Some(words) = c.get(key) {
            container.argv.extend(strings(words, &join(path, key), errors));
        }
    }
    if let Some(dir) = c.get("workingDir") {
        if let Some(dir) = string(dir, &join(path, "workingDir"), errors) {
            if !dir.starts_with('/') {
                errors.add(&join(path, "workingDir"), "must be an absolute path");
            }
        }
    }
    if let Some(env) = c.get("env") {
        let env_path = join(path, "env");
        for (i, var) in sequence(env, &env_path, errors).iter().enumerate() {
            let var_path = format!("{env_path}[{i}]");
            if let Some(v) = mapping(var, &var_path, &["name", "value"], errors) {
                if let Some(name) = required(&v, &var_path, "name", errors) {
                    string(name, &join(&var_path, "name"), errors);
                }
                if let Some(value) = v.get("value") {
                    if !matches!(value, Yaml::String(_)) {
                        errors.add(&join(&var_path, "value"), "must be a string (quote it)");
                    }
                }
            }
        }
    }
    if let Some(resources) = c.get("resources") {
        let found = check_resources(resources, &join(path, "resources"), errors);
        container.cpu_request = found.get(&("requests".to_string(), "cpu".to_string())).copied();
        container.cpu_limit = found.get(&("limits".to_string(), "cpu".to_string())).copied();
        let memory_limit = found.get(&("limits".to_string(), "memory".to_string())).copied();
        if memory_limit.is_some_and(|m| m < 2.0 * GIB) {
            errors.add(&join(path, "resources.limits.memory"), "is below 2Gi: tuning peaks just below 2 GiB");
        }
    }
    if let Some(mounts) = c.get("volumeMounts") {
        let mounts_path = join(path, "volumeMounts");
        for (i, mount) in sequence(mounts, &mounts_path, errors).iter().enumerate() {
            let mount_path = format!("{mounts_path}[{i}]");
            let Some(m) = mapping(mount, &mount_path, &["name", "mountPath", "readOnly", "subPath"], errors)
            else {
                continue;
            };
            let volume = required(&m, &mount_path, "name", errors)
                .and_then(|n| dns_label(n, &join(&mount_path, "name"), errors));
            let at = required(&m, &mount_path, "mountPath", errors)
                .and_then(|p| string(p, &join(&mount_path, "mountPath"), errors));
            if at.as_ref().is_some_and(|p| !p.starts_with('/')) {
                errors.add(&join(&mount_path, "mountPath"), "must be an absolute path");
            }
            let read_only = m
                .get("readOnly")
                .and_then(|r| boolean(r, &join(&mount_path, "readOnly"), errors))
                .unwrap_or(false);
            if let Some(sub) = m.get("subPath") {
                string(sub, &join(&mount_path, "subPath"), errors);
            }
            if let (Some(volume), Some(path)) = (volume, at) {
                container.mounts.push(Mount { volume, path, read_only });
            }
        }
    }
    (name, container)
}

fn check_volume(value: &Yaml, path: &str, errors: &mut Errors) -> Option<Volume> {
    let sources = ["persistentVolumeClaim", "configMap", "emptyDir"];
    let v = mapping(value, path, &["name", "persistentVolumeClaim", "configMap", "emptyDir"], errors)?;
    let name = required(&v, path, "name", errors).and_then(|n| dns_label(n, &join(path, "name"), errors));
    let given: Vec<&str> = sources.iter().copied().filter(|s| v.contains_key(*s)).collect();
    if given.len() != 1 {
        errors.add(path, format!("must have exactly one source of {}, found {given:?}", sources.join(", ")));
    }
    let mut claim = None;
    if let Some(pvc) = v.get("persistentVolumeClaim") {
        let pvc_path = join(path, "persistentVolumeClaim");
        if let Some(p) = mapping(pvc, &pvc_path, &["claimName", "readOnly"], errors) {
            let claim_name = required(&p, &pvc_path, "claimName", errors)
                .and_then(|c| dns_label(c, &join(&pvc_path, "claimName"), errors));
            let read_only = p
                .get("readOnly")
                .and_then(|r| boolean(r, &join(&pvc_path, "readOnly"), errors))
                .unwrap_or(false);
            claim = claim_name.map(|c| (c, read_only));
        }
    }
    if let Some(config_map) = v.get("configMap") {
        let cm_path = join(path, "configMap");
        if let Some(cm) = mapping(config_map, &cm_path, &["name"], errors) {
            if let Some(cm_name) = required(&cm, &cm_path, "name", errors) {
                dns_label(cm_name, &join(&cm_path, "name"), errors);
            }
        }
    }
    if let Some(empty_dir) = v.get("emptyDir") {
        let ed_path = join(path, "emptyDir");
        if !matches!(empty_dir, Yaml::Null) {
            if let Some(ed) = mapping(empty_dir, &ed_path, &["medium", "sizeLimit"], errors) {
                if let Some(medium) = ed.get("medium") {
                    one_of(medium, &join(&ed_path, "medium"), &["", "Memory"], errors);
                }
                if ed.get("sizeLimit").is_some_and(|s| quantity(s).is_none()) {
                    errors.add(&join(&ed_path, "sizeLimit"), "must be a quantity");
                }
            }
        }
    }
    Some(Volume { name: name?, claim })
}

/// Validates one YAML document as a batch/v1 Job and returns what the sharding checks need.
fn check_job(doc: &Yaml) -> Result<Job, Vec<String>> {
    let mut errors = Errors::default();
    let mut job = Job {
        completions: None,
        parallelism: None,
        completion_mode: None,
        containers: Vec::new(),
        volumes: Vec::new(),
    };
    let Some(top) = mapping(doc, "", &["apiVersion", "kind", "metadata", "spec"], &mut errors) else {
        return Err(errors.0);
    };
    if let Some(api) = required(&top, "", "apiVersion", &mut errors) {
        one_of(api, "apiVersion", &["batch/v1"], &mut errors);
    }
    if let Some(kind) = required(&top, "", "kind", &mut errors) {
        one_of(kind, "kind", &["Job"], &mut errors);
    }
    if let Some(metadata) = required(&top, "", "metadata", &mut errors) {
        check_metadata(metadata, "metadata", true, &mut errors);
    }
    let spec_keys = [
        "completions",
        "parallelism",
        "completionMode",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "template",
    ];
    let Some(spec) =
        required(&top, "", "spec", &mut errors).and_then(|s| mapping(s, "spec", &spec_keys, &mut errors))
    else {
        return Err(errors.0);
    };
    job.completions = spec.get("completions").and_then(|v| integer(v, "spec.completions", 1, &mut errors));
    job.parallelism = spec.get("parallelism").and_then(|v| integer(v, "spec.parallelism", 0, &mut errors));
    job.completion_mode = spec
        .get("completionMode")
        .and_then(|v| one_of(v, "spec.completionMode", &["Indexed", "NonIndexed"], &mut errors));
    let indexed = job.completion_mode.as_deref() == Some("Indexed");
    if indexed && job.completions.is_none() {
        errors.add("spec.completions", "is required when completionMode is Indexed");
    }
    for key in ["backoffLimit", "backoffLimitPerIndex", "maxFailedIndexes", "ttlSecondsAfterFinished"] {
        if let Some(v) = spec.get(key) {
            integer(v, &join("spec", key), 0, &mut errors);
        }
    }
    if let Some(v) = spec.get("activeDeadlineSeconds") {
        integer(v, "spec.activeDeadlineSeconds", 1, &mut errors);
    }
    let per_index = spec.contains_key("backoffLimitPerIndex");
    if per_index && !indexed {
        errors.add("spec.backoffLimitPerIndex", "needs completionMode: Indexed");
    }
    if spec.contains_key("maxFailedIndexes") && !per_index {
        errors.add("spec.maxFailedIndexes", "needs backoffLimitPerIndex");
    }

    let Some(template) = required(&spec, "spec", "template", &mut errors)
        .and_then(|t| mapping(t, "spec.template", &["metadata", "spec"], &mut errors))
    else {
        return Err(errors.0);
    };
    if let Some(metadata) = template.get("metadata") {
        check_metadata(metadata, "spec.template.metadata", false, &mut errors);
    }
    let pod_keys = ["restartPolicy", "containers", "volumes", "securityContext", "nodeSelector"];
    let Some(pod) = required(&template, "spec.template", "spec", &mut errors)
        .and_then(|p| mapping(p, "spec.template.spec", &pod_keys, &mut errors))
    else {
        return Err(errors.0);
    };
    let pod_path = "spec.template.spec";
    // A Job's pods must not restart forever: Always (the Pod default) is refused by the API.
    let restart = required(&pod, pod_path, "restartPolicy", &mut errors)
        .and_then(|r| one_of(r, "spec.template.spec.restartPolicy", &["Never", "OnFailure"], &mut errors));
    if per_index && restart.as_deref().is_some_and(|r| r != "Never") {
        errors.add("spec.backoffLimitPerIndex", "needs restartPolicy: Never");
    }
    if let Some(selector) = pod.get("nodeSelector") {
        string_map(selector, "spec.template.spec.nodeSelector", &mut errors);
    }
    if let Some(security) = pod.get("securityContext") {
        let sc_path = "spec.template.spec.securityContext";
        let sc_keys = ["runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup"];
        if let Some(sc) = mapping(security, sc_path, &sc_keys, &mut errors) {
            for (key, value) in sc {
                if key == "runAsNonRoot" {
                    boolean(value, &join(sc_path, &key), &mut errors);
                } else {
                    integer(value, &join(sc_path, &key), 0, &mut errors);
                }
            }
        }
    }
    if let Some(volumes) = pod.get("volumes") {
        let volumes_path = "spec.template.spec.volumes";
        for (i, volume) in sequence(volumes, volumes_path, &mut errors).iter().enumerate() {
            if let Some(v) = check_volume(volume, &format!("{volumes_path}[{i}]"), &mut errors) {
                if job.volumes.iter().any(|known| known.name == v.name) {
                    errors
                        .add(&format!("{volumes_path}[{i}].name"), format!("{:?} is declared twice", v.name));
                }
                job.volumes.push(v);
            }
        }
    }
    let containers_path = "spec.template.spec.containers";
    if let Some(containers) = required(&pod, pod_path, "containers", &mut errors) {
        let items = sequence(containers, containers_path, &mut errors);
        if items.is_empty() {
            errors.add(containers_path, "must list at least one container");
        }
        let mut names = BTreeSet::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("{containers_path}[{i}]");
            let (name, container) = check_container(item, &path, &mut errors);
            if let Some(name) = name {
                if !names.insert(name.clone()) {
                    errors.add(&join(&path, "name"), format!("{name:?} is used twice"));
                }
            }
            let mut mount_paths = BTreeSet::new();
            for (m, mount) in container.mounts.iter().enumerate() {
                let mount_path = format!("{path}.volumeMounts[{m}]");
                if !job.volumes.iter().any(|v| v.name == mount.volume) {
                    errors.add(
                        &join(&mount_path, "name"),
                        format!("names no volume declared in {pod_path}.volumes: {:?}", mount.volume),
                    );
                }
                if !mount_paths.insert(mount.path.clone()) {
                    errors.add(&join(&mount_path, "mountPath"), format!("{:?} is mounted twice", mount.path));
                }
            }
            job.containers.push(container);
        }
    }
    if errors.0.is_empty() {
        Ok(job)
    } else {
        Err(errors.0)
    }
}

/// Parses a manifest file and validates each of its documents as a Job.
fn parse_jobs(text: &str) -> Result<Vec<Job>, Vec<String>> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| vec![format!("not valid YAML: {e}")])?;
    let docs: Vec<&Yaml> = docs.iter().filter(|d| !matches!(d, Yaml::Null)).collect();
    if docs.is_empty() {
        return Err(vec!["holds no YAML document".to_string()]);
    }
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match check_job(doc) {
            Ok(job) => jobs.push(job),
            Err(e) => errors.extend(e.into_iter().map(|e| format!("document {i}: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(jobs)
    } else {
        Err(errors)
    }
}

fn only_job(text: &str) -> Result<Job, Vec<String>> {
    let mut jobs = parse_jobs(text)?;
    if jobs.len() != 1 {
        return Err(vec![format!("must hold exactly one Job, holds {}", jobs.len())]);
    }
    Ok(jobs.remove(0))
}

// ---------------------------------------------------------------------------------------------
// Shell words: enough of sh's quoting to read the commands of these files

/// Splits a shell script into words, quotes removed and variables left as written; unquoted `;`
/// and newlines become a ";" word, comments are dropped, backslash-newline joins lines.
fn shell_words(script: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |words: &mut Vec<String>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    word.push(q);
                }
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' if matches!(chars.peek(), Some('"' | '\\' | '$' | '`')) => {
                            word.extend(chars.next());
                        }
                        '\\' if chars.peek() == Some(&'\n') => {
                            chars.next();
                        }
                        _ => word.push(q),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(escaped) => {
                    in_word = true;
                    word.push(escaped);
                }
            },
            '#' if !in_word => {
                for q in chars.by_ref() {
                    if q == '\n' {
                        break;
                    }
                }
                end_word(&mut words, &mut word, &mut in_word);
                words.push(";".to_string());
            }
            ';' | '\n' => {
                end_word(&mut words, &mut word, &mut in_word);
                words.push(";".to_string());
            }
            c if c.is_whitespace() => end_word(&mut words, &mut word, &mut in_word),
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    words
}

/// The simple commands of a script: its words split at ";" (empty ones dropped).
fn commands(words: &[String]) -> Vec<Vec<String>> {
    words.split(|w| w == ";").filter(|c| !c.is_empty()).map(<[String]>::to_vec).collect()
}

/// The script a container runs: `sh -c SCRIPT` (the shell expands the variables and globs).
fn container_script(container: &Container) -> Result<String, String> {
    match container.argv.as_slice() {
        [shell, dash_c, script, ..]
            if ["sh", "/bin/sh", "bash", "/bin/bash"].contains(&shell.as_str()) && dash_c == "-c" =>
        {
            Ok(script.clone())
        }
        other => Err(format!(
            "the command must be `sh -c SCRIPT`, so that the shell expands the index and globs: found {other:?}"
        )),
    }
}

/// The words of an autotune command, from the program on, without a leading `exec`.
fn autotune_command(script_commands: &[Vec<String>]) -> Option<Vec<String>> {
    script_commands.iter().find_map(|c| {
        let c = if c.first().map(String::as_str) == Some("exec") { &c[1..] } else { &c[..] };
        let program = c.first()?;
        (program == "autotune" || program.ends_with("/autotune")).then(|| c.to_vec())
    })
}

fn option_value<'a>(words: &'a [String], option: &str) -> Option<&'a str> {
    let prefix = format!("{option}=");
    words.iter().enumerate().find_map(|(i, w)| {
        if w == option {
            words.get(i + 1).map(String::as_str)
        } else {
            w.strip_prefix(&prefix)
        }
    })
}

/// Writes `${VAR}` and `$VAR` as `with`.
fn substitute(text: &str, var: &str, with: &str) -> String {
    text.replace(&format!("${{{var}}}"), with).replace(&format!("${var}"), with)
}

fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Where a shard's tuning log goes, as the tuning command wrote it: `{I}` stands for the index.
#[derive(Debug, Clone)]
struct ShardLogs {
    /// e.g. /logs/model.shard-{I}-of-4.tuning.db
    db: String,
    n: i64,
}

impl ShardLogs {
    fn glob(&self) -> String {
        self.db.replace("{I}", "*")
    }
}

/// The sharding checks shared by Kubernetes and Slurm, on an autotune command whose index
/// variable is written `{I}` and whose shard count is written as the number N.
fn check_shard_command(
    words: &[String],
    n: i64,
    threads: Option<f64>,
    errors: &mut Vec<String>,
) -> Option<String> {
    let model = words.get(1).filter(|m| m.ends_with(".onnx"));
    if model.is_none() {
        errors.push(format!("autotune must be given the model (MODEL.onnx) first: {words:?}"));
    }
    match option_value(words, "--shard") {
        None => errors.push("the autotune command has no --shard".to_string()),
        Some(shard) => match shard.split_once('/') {
            Some(("{I}", count)) if count == n.to_string() => {}
            Some(("{I}", count)) => errors.push(format!(
                "--shard {shard:?} splits the model in {count} but there are {n} shards: it must be I/{n}"
            )),
            _ => errors.push(format!("--shard {shard:?} must be INDEX/{n}, with the shard's index variable")),
        },
    }
    if let Some(threads) = threads {
        let given = option_value(words, "--threads");
        if given.and_then(|t| t.parse::<f64>().ok()) != Some(threads) {
            let given = given.unwrap_or("(none)");
            errors.push(format!("--threads {given} must equal the {threads} CPUs each shard gets"));
        }
    }
    if let Some(report) = option_value(words, "--report") {
        if !report.contains("{I}") {
            errors
                .push(format!("--report {report:?} must hold the index: shards would overwrite one report"));
        }
    }
    let Some(db) = option_value(words, "--db") else {
        errors
            .push("the autotune command has no --db: give each shard its log on the log volume".to_string());
        return None;
    };
    if !db.contains("{I}") {
        errors.push(format!("--db {db:?} does not hold the index: the shards would share one log"));
        return None;
    }
    // The CLI's own name for a shard's log: MODEL.shard-I-of-N.tuning.db.
    let stem = model.map(|m| file_name(m).trim_end_matches(".onnx")).unwrap_or("MODEL");
    let expected = format!("{stem}.shard-{{I}}-of-{n}.tuning.db");
    if file_name(db) != expected {
        errors
            .push(format!("--db {db:?} must be named {expected:?} (the CLI's shard log name, with N = {n})"));
    }
    Some(db.to_string())
}

/// The files a merge reads: the words between `merge` and `-o`, with `"$@"` and `"${X[@]}"`
/// resolved from the script's `set --` or `X=(...)`.
fn merge_inputs(script_commands: &[Vec<String>], merge: &[String]) -> Vec<String> {
    let Some(start) = merge.iter().position(|w| w == "merge") else { return Vec::new() };
    let mut inputs = Vec::new();
    for word in merge[start + 1..].iter().take_while(|w| *w != "-o" && *w != "--output") {
        if word == "$@" {
            if let Some(set) = script_commands.iter().find(|c| c.len() >= 2 && c[0] == "set" && c[1] == "--")
            {
                inputs.extend(set[2..].iter().cloned());
            }
        } else if let Some(array) = word.strip_prefix("${").and_then(|w| w.strip_suffix("[@]}")) {
            let assign = format!("{array}=(");
            for c in script_commands {
                if let Some(first) = c.iter().position(|w| w.starts_with(&assign)) {
                    let mut items: Vec<String> = Vec::new();
                    for w in &c[first..] {
                        let w = w.strip_prefix(&assign).unwrap_or(w);
                        let done = w.ends_with(')');
                        let w = w.trim_end_matches(')');
                        if !w.is_empty() {
                            items.push(w.to_string());
                        }
                        if done {
                            break;
                        }
                    }
                    inputs.extend(items);
                }
            }
        } else {
            inputs.push(word.clone());
        }
    }
    inputs
}

/// `*` only, which is all these globs use.
fn glob_matches(glob: &str, name: &str) -> bool {
    match glob.split_once('*') {
        None => glob == name,
        Some((head, tail)) => name
            .strip_prefix(head)
            .is_some_and(|rest| (0..=rest.len()).any(|i| glob_matches(tail, &rest[i..]))),
    }
}

/// The merge checks shared by Kubernetes and Slurm. Returns the merged log's path.
fn check_merge_script(script: &str, shards: &ShardLogs, errors: &mut Vec<String>) -> Option<String> {
    let words = shell_words(script);
    let script_commands = commands(&words);
    let Some(merge) = autotune_command(&script_commands) else {
        errors.push("the merge runs no autotune command".to_string());
        return None;
    };
    if merge.get(1..3) != Some(&["db".to_string(), "merge".to_string()][..]) {
        errors.push(format!("the merge must run `autotune db merge`: {merge:?}"));
        return None;
    }
    let inputs = merge_inputs(&script_commands, &merge);
    let glob = shards.glob();
    if inputs != [glob.clone()] {
        errors.push(format!("the merge reads {inputs:?}, not exactly the shard logs {glob:?}"));
    }
    // A guard on the number of logs found ("$#" or "${#X[@]}" -ne N) must count N.
    for (i, w) in words.iter().enumerate() {
        let counts_files = w == "$#" || (w.starts_with("${#") && w.ends_with("[@]}"));
        if counts_files && matches!(words.get(i + 1).map(String::as_str), Some("-ne" | "-eq" | "-lt" | "-gt"))
        {
            let count = words.get(i + 2).map(String::as_str).unwrap_or("");
            if count != shards.n.to_string() {
                errors.push(format!("the merge expects {count} shard logs, there are {}", shards.n));
            }
        }
    }
    let Some(output) = option_value(&merge, "-o").or_else(|| option_value(&merge, "--output")) else {
        errors.push("the merge has no -o OUT.db".to_string());
        return None;
    };
    if glob_matches(&glob, output) {
        errors.push(format!(
            "the merged log {output:?} matches the shard glob {glob:?}: a rerun would read it"
        ));
    }
    if !output.ends_with(".tuning.db") || parent(output) != parent(&shards.db) {
        errors.push(format!("the merged log {output:?} should be a .tuning.db beside the shard logs"));
    }
    Some(output.to_string())
}

// ---------------------------------------------------------------------------------------------
// Kubernetes: the Indexed Job and the merge Job

/// The mount a path lies under, and its volume.
fn mount_of<'a>(job: &'a Job, container: &'a Container, path: &str) -> Option<(&'a Mount, &'a Volume)> {
    let mount = container
        .mounts
        .iter()
        .filter(|m| path.starts_with(&format!("{}/", m.path.trim_end_matches('/'))))
        .max_by_key(|m| m.path.len())?;
    let volume = job.volumes.iter().find(|v| v.name == mount.volume)?;
    Some((mount, volume))
}

/// A path a pod writes and that must outlive it: on a persistentVolumeClaim mounted read-write.
/// Returns the claim.
fn persistent_writable(
    job: &Job,
    container: &Container,
    path: &str,
    what: &str,
    errors: &mut Vec<String>,
) -> Option<String> {
    match mount_of(job, container, path) {
        None => {
            errors.push(format!("{what} {path:?} lies on no mounted volume: it would go with the pod"));
            None
        }
        Some((mount, volume)) => match &volume.claim {
            None => {
                errors.push(format!(
                    "{what} {path:?} lies on volume {:?}, which is no persistentVolumeClaim: it would go with the pod",
                    volume.name
                ));
                None
            }
            Some((claim, read_only)) => {
                if mount.read_only || *read_only {
                    errors.push(format!("{what} {path:?} lies on a read-only mount"));
                }
                Some(claim.clone())
            }
        },
    }
}

/// The Indexed Job's sharding: each index tunes `--shard I/N` (N == completions) into its own
/// log on a persistent read-write volume, with --threads matching its CPUs.
fn check_k8s_tune(job: &Job) -> Result<(ShardLogs, String), Vec<String>> {
    let mut errors = Vec::new();
    if job.completion_mode.as_deref() != Some("Indexed") {
        errors.push(
            "spec.completionMode must be Indexed: it gives each pod its JOB_COMPLETION_INDEX".to_string(),
        );
    }
    let n = job.completions.unwrap_or(1);
    if job.parallelism.is_some_and(|p| p > n) {
        errors.push(format!("spec.parallelism is above the {n} completions"));
    }
    let [container] = job.containers.as_slice() else {
        return Err(vec![format!("the tuning Job must run one container, runs {}", job.containers.len())]);
    };
    let script = container_script(container).map_err(|e| vec![e])?;
    if !script.contains("JOB_COMPLETION_INDEX") {
        errors.push("the command never uses JOB_COMPLETION_INDEX".to_string());
    }
    let words: Vec<String> =
        shell_words(&script).iter().map(|w| substitute(w, "JOB_COMPLETION_INDEX", "{I}")).collect();
    let Some(tune) = autotune_command(&commands(&words)) else {
        errors.push(format!("the command runs no autotune: {script:?}"));
        return Err(errors);
    };
    match (container.cpu_request, container.cpu_limit) {
        (Some(request), Some(limit)) if request == limit => {}
        other => {
            errors.push(format!("cpu requests and limits must be set and equal (--threads), found {other:?}"))
        }
    }
    let db = check_shard_command(&tune, n, container.cpu_request, &mut errors);
    let model = tune.get(1).cloned().unwrap_or_default();
    if mount_of(job, container, &model).is_none() {
        errors.push(format!("the model {model:?} lies on no mounted volume"));
    }
    let claim =
        db.as_ref().and_then(|db| persistent_writable(job, container, db, "the shard log", &mut errors));
    if let Some(report) = option_value(&tune, "--report") {
        persistent_writable(job, container, report, "the report", &mut errors);
    } else if mount_of(job, container, &model)
        .is_some_and(|(m, v)| m.read_only || v.claim.as_ref().is_some_and(|c| c.1))
    {
        errors.push("the report would go beside the model, on a read-only mount: give --report".to_string());
    }
    match (db, claim) {
        (Some(db), Some(claim)) if errors.is_empty() => Ok((ShardLogs { db, n }, claim)),
        _ => Err(errors),
    }
}

/// The merge Job joins exactly the Indexed Job's shard logs, on the same claim.
fn check_k8s_merge(job: &Job, shards: &ShardLogs, claim: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if job.completion_mode.as_deref() == Some("Indexed") || job.completions.is_some_and(|c| c != 1) {
        errors.push("the merge Job must run once (one completion, not Indexed)".to_string());
    }
    let [container] = job.containers.as_slice() else {
        return vec![format!("the merge Job must run one container, runs {}", job.containers.len())];
    };
    let script = match container_script(container) {
        Ok(script) => script,
        Err(e) => return vec![e],
    };
    let output = check_merge_script(&script, shards, &mut errors);
    match mount_of(job, container, &shards.db) {
        Some((_, volume)) if volume.claim.as_ref().map(|c| c.0.as_str()) == Some(claim) => {}
        _ => errors
            .push(format!("the shard logs' folder {:?} is not the claim {claim:?} here", parent(&shards.db))),
    }
    if let Some(output) = output {
        persistent_writable(job, container, &output, "the merged log", &mut errors);
    }
    errors
}

fn check_kubernetes(tune_text: &str, merge_text: &str) -> Vec<String> {
    let prefix =
        |file: &str, errors: Vec<String>| errors.into_iter().map(|e| format!("{file}: {e}")).collect();
    let tune = match only_job(tune_text) {
        Ok(job) => job,
        Err(e) => return prefix(K8S_TUNE, e),
    };
    let merge = match only_job(merge_text) {
        Ok(job) => job,
        Err(e) => return prefix(K8S_MERGE, e),
    };
    match check_k8s_tune(&tune) {
        Err(e) => prefix(K8S_TUNE, e),
        Ok((shards, claim)) => prefix(K8S_MERGE, check_k8s_merge(&merge, &shards, &claim)),
    }
}

// ---------------------------------------------------------------------------------------------
// Slurm: the array job, the merge job and submit.sh

#[derive(Debug)]
struct Sbatch {
    options: BTreeMap<String, String>,
    /// The script without its comments, for shell_words.
    body: String,
}

/// sbatch options these scripts may use (long forms); a misspelled one fails.
const SBATCH_OPTIONS: [&str; 16] = [
    "job-name",
    "array",
    "ntasks",
    "nodes",
    "cpus-per-task",
    "mem",
    "mem-per-cpu",
    "time",
    "output",
    "error",
    "partition",
    "constraint",
    "account",
    "qos",
    "requeue",
    "exclusive",
];

/// Reads the `#SBATCH` lines, which sbatch only honours before the script's first command.
fn parse_sbatch(text: &str) -> Result<Sbatch, Vec<String>> {
    let mut errors = Vec::new();
    let mut options = BTreeMap::new();
    if !text.starts_with("#!/bin/bash") {
        errors.push("must start with #!/bin/bash".to_string());
    }
    let mut first_command = None;
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(directive) = trimmed.strip_prefix("#SBATCH") {
            if first_command.is_some() {
                errors.push(format!(
                    "line {}: #SBATCH after the first command is ignored by sbatch",
                    number + 1
                ));
                continue;
            }
            let directive = directive.trim();
            let Some(option) = directive.strip_prefix("--") else {
                errors.push(format!("line {}: use the long form --option=value: {trimmed:?}", number + 1));
                continue;
            };
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            if !SBATCH_OPTIONS.contains(&key) {
                errors.push(format!("line {}: unknown sbatch option --{key}", number + 1));
            } else if options.insert(key.to_string(), value.to_string()).is_some() {
                errors.push(format!("line {}: --{key} given twice", number + 1));
            }
        } else if first_command.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
            first_command = Some(number);
        }
    }
    if !text.lines().any(|l| l.trim() == "set -euo pipefail") {
        errors.push("must `set -euo pipefail`".to_string());
    }
    let body = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    if errors.is_empty() {
        Ok(Sbatch { options, body })
    } else {
        Err(errors)
    }
}

/// A Slurm --time ("minutes", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS") in seconds.
fn slurm_time(text: &str) -> Option<u64> {
    let (days, rest) = match text.split_once('-') {
        Some((d, rest)) => (d.parse::<u64>().ok()?, rest),
        None => (0, text),
    };
    let parts: Vec<u64> = rest.split(':').map(str::parse).collect::<Result<_, _>>().ok()?;
    let seconds = match (text.contains('-'), parts.as_slice()) {
        (false, [m]) => m * 60,
        (false, [m, s]) => m * 60 + s,
        (_, [h, m, s]) => h * 3600 + m * 60 + s,
        (true, [h]) => h * 3600,
        (true, [h, m]) => h * 3600 + m * 60,
        _ => return None,
    };
    Some(days * 86400 + seconds)
}

/// An autotune --budget ("8h", "45m", "90s", "1h30m") in seconds.
fn budget_seconds(text: &str) -> Option<u64> {
    let mut total = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
        } else {
            let n: u64 = std::mem::take(&mut number).parse().ok()?;
            total += n * match c {
                'h' => 3600,
                'm' => 60,
                's' => 1,
                _ => return None,
            };
        }
    }
    number.is_empty().then_some(total)
}

/// The array job: `--array=0-(N-1)`, an output file per index, and each task tuning
/// `--shard ${SLURM_ARRAY_TASK_ID}/N` into its own log with --threads matching its CPUs.
fn check_slurm_tune(sbatch: &Sbatch) -> Result<ShardLogs, Vec<String>> {
    let mut errors = Vec::new();
    let option = |key: &str| sbatch.options.get(key).map(String::as_str);
    let n = match option("array").map(|a| a.split_once('%').map_or(a, |(range, _)| range)) {
        None => return Err(vec!["no #SBATCH --array".to_string()]),
        Some(range) => match range.split_once('-').map(|(a, b)| (a.parse::<i64>(), b.parse::<i64>())) {
            Some((Ok(0), Ok(last))) if last >= 0 => last + 1,
            _ => return Err(vec![format!("--array={range} must be 0-(N-1): shard indices are 0-based")]),
        },
    };
    let cpus = match option("cpus-per-task").map(str::parse::<u32>) {
        Some(Ok(cpus)) if cpus > 0 => cpus,
        other => return Err(vec![format!("--cpus-per-task must be a positive integer, found {other:?}")]),
    };
    match option("mem") {
        Some(mem) => {
            let (number, unit) =
                mem.find(|c: char| !c.is_ascii_digit()).map_or((mem, ""), |i| mem.split_at(i));
            let mib = number.parse::<u64>().ok().and_then(|n| match unit {
                "" | "M" => Some(n),
                "K" => Some(n / 1024),
                "G" => Some(n * 1024),
                "T" => Some(n * 1024 * 1024),
                _ => None,
            });
            match mib {
                Some(m) if m >= 2048 => {}
                Some(_) => errors.push(format!("--mem={mem} is below 2G: tuning peaks just below 2 GiB")),
                None => errors.push(format!("--mem={mem} is not a Slurm memory size")),
            }
        }
        None => errors.push("no #SBATCH --mem".to_string()),
    }
    let time = option("time").and_then(slurm_time);
    if time.is_none() {
        errors.push(format!("--time must be a Slurm time limit, found {:?}", option("time")));
    }
    match option("output") {
        Some(output) if output.contains("%a") => {}
        other => {
            let output = other.unwrap_or("(none)");
            errors.push(format!("--output {output} must hold %a: one output file per array index"))
        }
    }

    if !sbatch.body.contains("SLURM_ARRAY_TASK_ID") {
        errors.push("the script never uses SLURM_ARRAY_TASK_ID".to_string());
    }
    let words: Vec<String> = shell_words(&sbatch.body)
        .iter()
        .map(|w| {
            let w = substitute(w, "SLURM_ARRAY_TASK_ID", "{I}");
            let w = substitute(&w, "SLURM_ARRAY_TASK_COUNT", &n.to_string());
            substitute(&w, "SLURM_CPUS_PER_TASK", &cpus.to_string())
        })
        .collect();
    let Some(tune) = autotune_command(&commands(&words)) else {
        errors.push("the script runs no autotune".to_string());
        return Err(errors);
    };
    let db = check_shard_command(&tune, n, Some(f64::from(cpus)), &mut errors);
    if let (Some(budget), Some(time)) = (option_value(&tune, "--budget"), time) {
        match budget_seconds(budget) {
            Some(b) if b < time => {}
            _ => errors.push(format!("--budget {budget} must fit in --time ({time} s)")),
        }
    }
    match db {
        Some(db) if errors.is_empty() => Ok(ShardLogs { db, n }),
        _ => Err(errors),
    }
}

fn check_slurm_merge(sbatch: &Sbatch, shards: &ShardLogs) -> Vec<String> {
    let mut errors = Vec::new();
    if sbatch.options.contains_key("array") {
        errors.push("the merge must not be an array job".to_string());
    }
    check_merge_script(&sbatch.body, shards, &mut errors);
    errors
}

/// submit.sh submits the array with `sbatch --parsable`, keeps its id, and submits the merge with
/// `--dependency=afterok:` that id.
fn check_submit(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if !text.lines().any(|l| l.trim() == "set -euo pipefail") {
        errors.push("must `set -euo pipefail`".to_string());
    }
    // Quotes only group words here; dropping them leaves `var=$(sbatch --parsable ... file)`.
    let lines: Vec<String> =
        text.lines().map(|l| l.replace('"', "")).filter(|l| !l.trim_start().starts_with('#')).collect();
    let submits = |file: &str| lines.iter().find(|l| l.contains("sbatch ") && l.contains(file)).cloned();
    let array_id = match submits("tune-array.sbatch") {
        Some(line) if line.contains("sbatch --parsable") => {
            line.trim().split_once("=$(").map(|(var, _)| var.to_string())
        }
        _ => None,
    };
    let Some(array_id) = array_id else {
        errors.push("tune-array.sbatch must be submitted as `ID=$(sbatch --parsable ...)`".to_string());
        return errors;
    };
    match submits("merge.sbatch") {
        Some(line) if line.contains(&format!("--dependency=afterok:${{{array_id}}}")) => {}
        Some(line) if line.contains(&format!("--dependency=afterok:${array_id}")) => {}
        other => errors
            .push(format!("merge.sbatch must be submitted with --dependency=afterok:${array_id}: {other:?}")),
    }
    errors
}

fn check_slurm(tune_text: &str, merge_text: &str, submit_text: &str) -> Vec<String> {
    let prefix =
        |file: &str, errors: Vec<String>| errors.into_iter().map(|e| format!("{file}: {e}")).collect();
    let tune = match parse_sbatch(tune_text) {
        Ok(s) => s,
        Err(e) => return prefix(SLURM_TUNE, e),
    };
    let merge = match parse_sbatch(merge_text) {
        Ok(s) => s,
        Err(e) => return prefix(SLURM_MERGE, e),
    };
    let mut errors: Vec<String> = match check_slurm_tune(&tune) {
        Err(e) => prefix(SLURM_TUNE, e),
        Ok(shards) => prefix(SLURM_MERGE, check_slurm_merge(&merge, &shards)),
    };
    errors.extend(prefix(SLURM_SUBMIT, check_submit(submit_text)));
    errors
}

// ---------------------------------------------------------------------------------------------
// The files as shipped

#[test]
fn kubernetes_manifests_use_only_known_batch_v1_job_fields_with_valid_types() {
    for file in [K8S_TUNE, K8S_MERGE] {
        let job = only_job(&read(file)).unwrap_or_else(|e| panic!("{file}:\n  {}", e.join("\n  ")));
        assert!(!job.containers.is_empty(), "{file}");
    }
}

#[test]
fn kubernetes_indexed_job_gives_each_index_its_own_shard_of_n_and_its_own_persistent_log() {
    let job = only_job(&read(K8S_TUNE)).expect("tune Job parses");
    let (shards, claim) =
        check_k8s_tune(&job).unwrap_or_else(|e| panic!("{K8S_TUNE}:\n  {}", e.join("\n  ")));
    assert_eq!(Some(shards.n), job.completions);
    assert_eq!(shards.db, format!("/logs/model.shard-{{I}}-of-{}.tuning.db", shards.n));
    assert_eq!(claim, "autotune-logs");
}

#[test]
fn kubernetes_merge_job_globs_exactly_the_indexed_jobs_shard_logs_on_the_same_claim() {
    assert_no_errors("kubernetes", &check_kubernetes(&read(K8S_TUNE), &read(K8S_MERGE)));
}

#[test]
fn slurm_array_gives_each_task_its_own_shard_and_log_with_per_index_output() {
    let sbatch = parse_sbatch(&read(SLURM_TUNE)).unwrap_or_else(|e| panic!("{SLURM_TUNE}: {e:?}"));
    let shards = check_slurm_tune(&sbatch).unwrap_or_else(|e| panic!("{SLURM_TUNE}:\n  {}", e.join("\n  ")));
    assert_eq!(shards.db, format!("logs/model.shard-{{I}}-of-{}.tuning.db", shards.n));
}

#[test]
fn slurm_merge_globs_the_array_shard_logs_and_submit_chains_it_afterok() {
    assert_no_errors("slurm", &check_slurm(&read(SLURM_TUNE), &read(SLURM_MERGE), &read(SLURM_SUBMIT)));
}

#[test]
fn slurm_scripts_pass_bash_syntax_check() {
    for file in [SLURM_TUNE, SLURM_MERGE, SLURM_SUBMIT] {
        let path = deploy_dir().join(file);
        let out = Command::new("bash").arg("-n").arg(&path).output().expect("bash runs");
        assert!(out.status.success(), "bash -n {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn kubernetes_job_scripts_pass_sh_syntax_check() {
    for file in [K8S_TUNE, K8S_MERGE] {
        let job = only_job(&read(file)).expect("Job parses");
        let script = container_script(&job.containers[0]).expect("sh -c SCRIPT");
        let out = Command::new("sh").arg("-n").arg("-c").arg(&script).output().expect("sh runs");
        assert!(out.status.success(), "sh -n {file}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn deploy_readme_names_every_file_and_the_validation_test() {
    let readme = read("README.md");
    for file in [K8S_TUNE, K8S_MERGE, SLURM_TUNE, SLURM_MERGE, SLURM_SUBMIT] {
        assert!(readme.contains(file), "deploy/README.md does not name {file}");
    }
    for needed in ["autotune db merge", "tests/e2e_deploy_manifests.rs", "resume"] {
        assert!(readme.contains(needed), "deploy/README.md does not say {needed:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Planted mistakes: each must be caught, by an error that says what is wrong

fn mutated(file: &str, from: &str, to: &str) -> String {
    let text = read(file);
    assert!(text.contains(from), "{file} no longer holds {from:?}: update this test's mutation");
    text.replacen(from, to, 1)
}

fn assert_caught(what: &str, errors: &[String], expected: &str) {
    assert!(
        errors.iter().any(|e| e.contains(expected)),
        "{what}: expected an error containing {expected:?}, got {errors:#?}"
    );
}

#[test]
fn validator_rejects_a_misspelled_job_key_naming_its_path() {
    let text = mutated(K8S_TUNE, "  completionMode: Indexed", "  completionsMode: Indexed");
    let errors = only_job(&text).expect_err("a misspelled key must fail");
    assert_caught("completionsMode", &errors, "spec.completionsMode: unknown key");
    // Deep in the pod template too.
    let text = mutated(K8S_TUNE, "mountPath: /logs", "mountpath: /logs");
    let errors = only_job(&text).expect_err("a misspelled key must fail");
    assert_caught(
        "mountpath",
        &errors,
        "spec.template.spec.containers[0].volumeMounts[1].mountpath: unknown key",
    );
}

#[test]
fn validator_rejects_a_shard_count_that_differs_from_completions() {
    let text =
        mutated(K8S_TUNE, r#"--shard "${JOB_COMPLETION_INDEX}/4""#, r#"--shard "${JOB_COMPLETION_INDEX}/3""#);
    assert_caught("--shard I/3", &check_kubernetes(&text, &read(K8S_MERGE)), "there are 4 shards");
    let text = mutated(K8S_TUNE, "completions: 4", "completions: 5");
    assert_caught("completions 5", &check_kubernetes(&text, &read(K8S_MERGE)), "there are 5 shards");
}

#[test]
fn validator_rejects_each_planted_kubernetes_mistake() {
    let tune = |from: &str, to: &str| check_kubernetes(&mutated(K8S_TUNE, from, to), &read(K8S_MERGE));
    let merge = |from: &str, to: &str| check_kubernetes(&read(K8S_TUNE), &mutated(K8S_MERGE, from, to));
    let log = "/logs/model.shard-${JOB_COMPLETION_INDEX}-of-4.tuning.db";
    let pvc = "persistentVolumeClaim:\n            claimName: autotune-logs";
    let checks = [
        ("apiVersion", tune("apiVersion: batch/v1", "apiVersion: v1"), "apiVersion: must be one of batch/v1"),
        ("kind", merge("kind: Job", "kind: CronJob"), "kind: must be one of Job"),
        (
            "string for integer",
            tune("completions: 4", "completions: \"4\""),
            "spec.completions: must be an integer",
        ),
        (
            "completionMode",
            tune("completionMode: Indexed", "completionMode: Parallel"),
            "spec.completionMode: must be one of",
        ),
        (
            "not Indexed",
            tune("completionMode: Indexed", "completionMode: NonIndexed"),
            "backoffLimitPerIndex: needs completionMode: Indexed",
        ),
        (
            "restartPolicy",
            merge("  restartPolicy: Never", "  restartPolicy: Always"),
            "restartPolicy: must be one of Never, OnFailure",
        ),
        (
            "per-index backoff",
            tune("  restartPolicy: Never", "  restartPolicy: OnFailure"),
            "needs restartPolicy: Never",
        ),
        (
            "undeclared volume",
            tune(
                "- name: logs\n          persistentVolumeClaim",
                "- name: logz\n          persistentVolumeClaim",
            ),
            "names no volume declared",
        ),
        ("container name", tune("- name: autotune", "- name: AutoTune"), "is not a DNS-1123 label"),
        ("shared log", tune(log, "/logs/model.tuning.db"), "the shards would share one log"),
        ("threads vs cpu", tune("--threads 2", "--threads 4"), "--threads"),
        (
            "read-only log",
            tune("claimName: autotune-logs", "claimName: autotune-logs\n            readOnly: true"),
            "read-only mount",
        ),
        ("log on an emptyDir", tune(pvc, "emptyDir: {}"), "no persistentVolumeClaim"),
        (
            "merge glob N",
            merge("shard-*-of-4.tuning.db", "shard-*-of-3.tuning.db"),
            "not exactly the shard logs",
        ),
        ("merge count guard", merge(r#""$#" -ne 4"#, r#""$#" -ne 3"#), "expects 3 shard logs"),
        (
            "merged log in the glob",
            merge("-o /logs/model.tuning.db", "-o /logs/model.shard-all-of-4.tuning.db"),
            "matches the shard glob",
        ),
        (
            "merge on another claim",
            merge("claimName: autotune-logs", "claimName: other-logs"),
            "is not the claim",
        ),
    ];
    for (what, errors, expected) in checks {
        assert_caught(what, &errors, expected);
    }
    // Without per-index backoff, a NonIndexed Job is valid Kubernetes but gives no index.
    let non_indexed = mutated(K8S_TUNE, "completionMode: Indexed", "completionMode: NonIndexed").replacen(
        "backoffLimitPerIndex: 3",
        "backoffLimit: 12",
        1,
    );
    let errors = check_kubernetes(&non_indexed, &read(K8S_MERGE));
    assert_caught("not Indexed", &errors, "completionMode must be Indexed");
}

#[test]
fn validator_rejects_each_planted_slurm_mistake() {
    let tune = |from: &str, to: &str| {
        check_slurm(&mutated(SLURM_TUNE, from, to), &read(SLURM_MERGE), &read(SLURM_SUBMIT))
    };
    let merge = |from: &str, to: &str| {
        check_slurm(&read(SLURM_TUNE), &mutated(SLURM_MERGE, from, to), &read(SLURM_SUBMIT))
    };
    let submit = |from: &str, to: &str| {
        check_slurm(&read(SLURM_TUNE), &read(SLURM_MERGE), &mutated(SLURM_SUBMIT, from, to))
    };
    let shard = r#"--shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}""#;
    let job_name = "#SBATCH --job-name=autotune-tune";
    let checks = [
        ("array not 0-based", tune("--array=0-3", "--array=1-4"), "must be 0-(N-1)"),
        (
            "misspelled option",
            tune("--cpus-per-task=2", "--cpu-per-task=2"),
            "unknown sbatch option --cpu-per-task",
        ),
        ("one output file", tune("tune-%A_%a.out", "tune-%A.out"), "one output file per array index"),
        (
            "shared log",
            tune("--db \"logs/model.shard-${SLURM_ARRAY_TASK_ID}-of-", "--db \"logs/model.shard-0-of-"),
            "share one log",
        ),
        ("shard count", tune(shard, r#"--shard "${SLURM_ARRAY_TASK_ID}/8""#), "there are 4 shards"),
        ("threads vs cpus", tune(r#"--threads "${SLURM_CPUS_PER_TASK}""#, "--threads 8"), "--threads"),
        ("budget past --time", tune("--time=08:30:00", "--time=07:00:00"), "must fit in --time"),
        ("no strict mode", tune("set -euo pipefail", "set -e"), "set -euo pipefail"),
        ("#SBATCH after a command", tune(job_name, &format!("echo start\n{job_name}")), "ignored by sbatch"),
        // The array grows to 8 shards but the merge still globs -of-4.
        ("array N vs merge glob", tune("--array=0-3", "--array=0-7"), "not exactly the shard logs"),
        ("merge count guard", merge("-ne 4", "-ne 5"), "expects 5 shard logs"),
        ("no afterok", submit("afterok:${array_job}", "afterany:${array_job}"), "--dependency=afterok"),
        (
            "not parsable",
            submit("array_job=\"$(sbatch --parsable", "array_job=\"$(sbatch"),
            "sbatch --parsable",
        ),
    ];
    for (what, errors, expected) in checks {
        assert_caught(what, &errors, expected);
    }
    // And bash -n itself catches a broken script.
    let broken = format!("{}\nif true; then\n", read(SLURM_SUBMIT));
    let out = Command::new("bash").arg("-n").arg("-c").arg(&broken).output().expect("bash runs");
    assert!(!out.status.success(), "bash -n must reject an unclosed if");
}

#[test]
fn shell_words_reads_quotes_continuations_and_separators() {
    let words =
        shell_words("exec autotune m.onnx \\\n  --db \"a b/${X}.db\" --x='y z'; echo \"q\\\"\" # c\nnext");
    let expected =
        ["exec", "autotune", "m.onnx", "--db", "a b/${X}.db", "--x=y z", ";", "echo", "q\"", ";", "next"];
    assert_eq!(words, expected);
    assert!(glob_matches("/l/m.shard-*-of-4.tuning.db", "/l/m.shard-12-of-4.tuning.db"));
    assert!(!glob_matches("/l/m.shard-*-of-4.tuning.db", "/l/m.tuning.db"));
    assert_eq!(slurm_time("08:30:00"), Some(30600));
    assert_eq!(slurm_time("1-00:00"), Some(86400));
    assert_eq!(slurm_time("90"), Some(5400));
    assert_eq!(budget_seconds("1h30m"), Some(5400));
    assert_eq!(quantity(&Yaml::String("4Gi".into())), Some(4.0 * GIB));
    assert_eq!(quantity(&Yaml::String("500m".into())), Some(0.5));
    assert_eq!(quantity(&Yaml::String("lots".into())), None);
}
