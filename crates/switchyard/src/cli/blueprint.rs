//! `switchyard blueprint`: blueprint documents (see docs/blueprints.md).

use super::{admin_client, exit, profile, Failure, Outcome, Target};
use clap::Subcommand;
use http::Method;
use serde_json::Value;
use std::io::Read;
use switchyard_server::blueprint;

#[derive(Subcommand)]
pub enum BlueprintCmd {
    /// Check blueprint files (YAML or JSON; `-` reads standard input) without a server: the
    /// shape, names, references, templates and mappings. Prints each problem as
    /// `file:line:column: field: message`; exits 5 if there is any.
    Validate {
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Print the JSON Schema of blueprint documents (the one published as docs/blueprint.schema.json).
    Schema,
    /// Show what applying a blueprint file would create, change (field by field) and delete in
    /// each workspace, without storing or changing anything. `${env:NAME}` is filled in from this
    /// environment. Exits 0 when nothing would change, 2 when something would, 5 when a workspace
    /// has problems.
    Plan {
        file: String,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        target: Target,
    },
    /// Store a blueprint file as its next version and apply it to each workspace (one
    /// transaction per workspace; what already matches is left alone). Exits 5 if a workspace
    /// could not be applied.
    Apply {
        file: String,
        #[command(flatten)]
        scope: Scope,
        #[command(flatten)]
        target: Target,
    },
    /// Show how each workspace differs from the version of a stored blueprint applied to it
    /// (changes made by hand). Exits 2 when a workspace drifted.
    Drift {
        /// The blueprint's name or id.
        name: String,
        /// Only these workspaces (ws_...,ws_...).
        #[arg(long, value_delimiter = ',')]
        workspaces: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Accept a workspace's own value of fields the blueprint owns (overrides): they are no longer
    /// drift and applying keeps them. `switchyard blueprint accept alerts rules.alerts
    /// action_config.channel -w ws_...`; `--clear` gives the resource back to the blueprint.
    Accept {
        /// The blueprint's name or id.
        name: String,
        /// The resource: connections.KEY, rules.KEY or event_types.NAME.
        resource: String,
        /// Fields or paths in them: name, action_config.channel, config.headers.
        fields: Vec<String>,
        /// Remove the resource's overrides instead.
        #[arg(long, conflicts_with = "fields")]
        clear: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Write a workspace (-w) as a blueprint (YAML): its connections, with credentials as
    /// `${secret:...}` references, its rules and declared event types. The secrets each workspace
    /// must set are listed on standard error.
    Export {
        /// The blueprint's name (default: from the workspace's).
        #[arg(long)]
        name: Option<String>,
        /// Write it to this file instead of standard output.
        #[arg(long, short = 'o')]
        out: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// Which workspaces `plan` and `apply` work on, and whether they prune.
#[derive(clap::Args)]
pub struct Scope {
    /// Only these workspaces (ws_...,ws_...); default: every one the blueprint targets.
    #[arg(long, value_delimiter = ',')]
    workspaces: Vec<String>,
    /// Also remove what no blueprint manages (connections and rules made by hand).
    #[arg(long)]
    prune: bool,
}

pub fn run(command: BlueprintCmd, runtime: &tokio::runtime::Runtime) -> Outcome {
    match command {
        BlueprintCmd::Validate { files } => validate(&files),
        BlueprintCmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&blueprint::json_schema()).expect("a schema is JSON"));
            Ok(())
        }
        BlueprintCmd::Plan { file, scope, target } => runtime.block_on(plan(&file, &scope.workspaces, scope.prune, &target)),
        BlueprintCmd::Apply { file, scope, target } => runtime.block_on(apply(&file, &scope.workspaces, scope.prune, &target)),
        BlueprintCmd::Drift { name, workspaces, target } => runtime.block_on(drift(&name, &workspaces, &target)),
        BlueprintCmd::Accept { name, resource, fields, clear, target } => {
            runtime.block_on(accept(&name, &resource, fields, clear, &target))
        }
        BlueprintCmd::Export { name, out, target } => runtime.block_on(export(name, out, &target)),
    }
}

/// A file read, checked here (with line numbers), and with `${env:}` filled in: the text to send
/// as it was written when it has no `${env:}` (so the server keeps its comments), else as JSON.
fn prepared(file: &str) -> Result<(String, &'static str, String), Failure> {
    let text = read(file)?;
    let registry = switchyard_destinations::Registry::default();
    let b = blueprint::parse(&text, &registry).map_err(|problems| {
        for p in &problems {
            let sep = if p.line == 0 { " " } else { "" };
            eprintln!("{file}:{sep}{p}");
        }
        Failure { code: exit::INVALID, message: format!("{file} is not a valid blueprint") }
    })?;
    // Exit 5, like any problem of the document's: not 2, which a pipeline reads as "has changes".
    let (filled, used) = blueprint::fill_env(&b, &|name| std::env::var(name).ok())
        .map_err(|missing| Failure { code: exit::INVALID, message: format!("{file}: {}", missing.join("; ")) })?;
    if used {
        Ok((serde_json::to_string(&filled).expect("a blueprint is JSON"), "application/json", filled.name))
    } else {
        Ok((text, "application/yaml", b.name))
    }
}

fn query(workspaces: &[String], prune: bool) -> String {
    let mut q = Vec::new();
    if !workspaces.is_empty() {
        q.push(format!("workspaces={}", workspaces.join(",")));
    }
    if prune {
        q.push("prune=true".to_owned());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// A value on one line, cut at 100 characters.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 100 {
        format!("{}...", text.chars().take(97).collect::<String>())
    } else {
        text
    }
}

/// One workspace's changes, as a readable diff.
fn print_changes(changes: &[Value]) -> (usize, usize, usize) {
    let (mut created, mut changed, mut deleted) = (0, 0, 0);
    for c in changes {
        let (mark, what) = match c["action"].as_str() {
            Some("create") => {
                created += 1;
                ("+", "create")
            }
            Some("delete") => {
                deleted += 1;
                ("-", "delete")
            }
            _ => {
                changed += 1;
                ("~", "update")
            }
        };
        let id = c["id"].as_str().map(|id| format!(" {id}")).unwrap_or_default();
        let note = c["note"].as_str().map(|n| format!(" ({n})")).unwrap_or_default();
        println!("  {mark} {} {what}{id}{note}", c["resource"].as_str().unwrap_or_default());
        for f in c["fields"].as_array().into_iter().flatten() {
            let field = f["field"].as_str().unwrap_or_default();
            if f["sensitive"] == Value::Bool(true) {
                println!("      {field}: (set from secrets; not shown)");
            } else if what == "create" {
                println!("      {field}: {}", brief(&f["to"]));
            } else {
                println!(
                    "      {field}: {} -> {}",
                    brief(f.get("from").unwrap_or(&Value::Null)),
                    brief(f.get("to").unwrap_or(&Value::Null))
                );
            }
        }
    }
    (created, changed, deleted)
}

fn print_problems(problems: &[Value]) {
    for p in problems {
        let field = p["field"].as_str().unwrap_or_default();
        let sep = if field.is_empty() { "" } else { ": " };
        println!("  ! {field}{sep}{}", p["message"].as_str().unwrap_or_default());
    }
}

fn heading(w: &Value) -> String {
    let applied = match w["applied_version"].as_i64() {
        Some(v) => format!("version {v} applied"),
        None => "never applied".to_owned(),
    };
    format!("{} ({}), {applied}", w["workspace_id"].as_str().unwrap_or_default(), w["workspace_name"].as_str().unwrap_or_default())
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

async fn plan(file: &str, workspaces: &[String], prune: bool, target: &Target) -> Outcome {
    let (body, content_type, _) = prepared(file)?;
    let client = admin_client(&profile::resolve(target)?)?;
    let out = client.request_text(Method::POST, &format!("/blueprints/plan{}", query(workspaces, prune)), content_type, body).await?;
    let (changes, failed) = (out["changes"].as_u64().unwrap_or(0), out["failed"].as_u64().unwrap_or(0));
    if target.json {
        super::output::json(&out);
    } else {
        let (mut c, mut u, mut d) = (0, 0, 0);
        let list = out["workspaces"].as_array().cloned().unwrap_or_default();
        for w in &list {
            println!("{}", heading(w));
            let (a, b, e) = print_changes(w["changes"].as_array().map(Vec::as_slice).unwrap_or_default());
            print_problems(w["problems"].as_array().map(Vec::as_slice).unwrap_or_default());
            if a + b + e == 0 && w["problems"].as_array().is_none_or(Vec::is_empty) {
                println!("  no changes");
            }
            (c, u, d) = (c + a, u + b, d + e);
        }
        println!(
            "Plan: {} to create, {} to change, {} to delete, in {}.{}",
            c,
            u,
            d,
            plural(list.len(), "workspace"),
            if failed > 0 { format!(" {} cannot be applied as they are.", plural(failed as usize, "workspace")) } else { String::new() }
        );
    }
    if failed > 0 {
        return Err(Failure {
            code: exit::INVALID,
            message: format!("{} cannot be applied as they are", plural(failed as usize, "workspace")),
        });
    }
    if changes > 0 {
        return Err(Failure { code: exit::CHANGES, message: String::new() });
    }
    Ok(())
}

async fn apply(file: &str, workspaces: &[String], prune: bool, target: &Target) -> Outcome {
    let (body, content_type, name) = prepared(file)?;
    let client = admin_client(&profile::resolve(target)?)?;
    let stored = client.request_text(Method::POST, "/blueprints", content_type, body).await?;
    let version = stored["version"].as_i64().unwrap_or_default();
    let mut q = query(workspaces, prune);
    q.push_str(&format!("{}version={version}", if q.is_empty() { "?" } else { "&" }));
    let out = client.request(Method::POST, &format!("/blueprints/{name}/apply{q}"), None).await?;
    let failed = out["failed"].as_u64().unwrap_or(0);
    if target.json {
        super::output::json(&out);
    } else {
        let what = if stored["changed"] == Value::Bool(true) { "stored as" } else { "unchanged at" };
        println!("blueprint {name:?} {what} version {version}");
        for w in out["workspaces"].as_array().into_iter().flatten() {
            println!(
                "{} ({}): {}",
                w["workspace_id"].as_str().unwrap_or_default(),
                w["workspace_name"].as_str().unwrap_or_default(),
                w["status"].as_str().unwrap_or_default()
            );
            print_changes(w["changes"].as_array().map(Vec::as_slice).unwrap_or_default());
            print_problems(w["problems"].as_array().map(Vec::as_slice).unwrap_or_default());
        }
        println!(
            "Applied to {}, {} unchanged, {} failed.",
            plural(out["applied"].as_u64().unwrap_or(0) as usize, "workspace"),
            out["unchanged"].as_u64().unwrap_or(0),
            failed
        );
    }
    if failed > 0 {
        return Err(Failure { code: exit::INVALID, message: format!("{} could not be applied", plural(failed as usize, "workspace")) });
    }
    Ok(())
}

async fn drift(name: &str, workspaces: &[String], target: &Target) -> Outcome {
    let client = admin_client(&profile::resolve(target)?)?;
    let out = client.request(Method::GET, &format!("/blueprints/{name}/drift{}", query(workspaces, false)), None).await?;
    let drifted = out["drifted"].as_u64().unwrap_or(0);
    if target.json {
        super::output::json(&out);
    } else {
        let list = out["workspaces"].as_array().cloned().unwrap_or_default();
        for w in &list {
            println!("{}", heading(w));
            print_changes(w["drift"].as_array().map(Vec::as_slice).unwrap_or_default());
            print_problems(w["problems"].as_array().map(Vec::as_slice).unwrap_or_default());
            for (resource, fields) in w["overrides"].as_object().into_iter().flatten() {
                println!("  = {resource}: the workspace's own {}", brief(fields));
            }
            if w["drift"].as_array().is_none_or(Vec::is_empty) {
                println!("  no drift");
            }
        }
        println!("{} of {} drifted.", plural(drifted as usize, "workspace"), list.len());
    }
    if drifted > 0 {
        return Err(Failure { code: exit::CHANGES, message: String::new() });
    }
    Ok(())
}

async fn accept(name: &str, resource: &str, fields: Vec<String>, clear: bool, target: &Target) -> Outcome {
    let p = profile::resolve(target)?;
    let ws = p.workspace.clone().ok_or_else(|| Failure::usage("no workspace: give --workspace (-w), SWITCHYARD_WORKSPACE or a profile"))?;
    if fields.is_empty() && !clear {
        return Err(Failure::usage("name the fields to accept (or --clear)"));
    }
    let client = admin_client(&p)?;
    let path = format!("/blueprints/{name}/overrides/{ws}");
    let mut current = client.request(Method::GET, &path, None).await?;
    let overrides =
        current["overrides"].as_object_mut().ok_or_else(|| Failure { code: exit::FAILED, message: "unexpected answer".into() })?;
    if clear {
        overrides.remove(resource);
    } else {
        let list = overrides.entry(resource.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = list {
            items.extend(fields.into_iter().map(Value::String));
        }
    }
    let out = client.request(Method::PUT, &path, Some(&current)).await?;
    if target.json {
        super::output::json(&out);
    } else {
        match out["overrides"].get(resource) {
            Some(fields) => println!("{resource} in {ws}: the workspace owns {}", brief(fields)),
            None => println!("{resource} in {ws}: the blueprint owns every field"),
        }
    }
    Ok(())
}

async fn export(name: Option<String>, out: Option<String>, target: &Target) -> Outcome {
    let p = profile::resolve(target)?;
    let ws = p.workspace.clone().ok_or_else(|| Failure::usage("no workspace: give --workspace (-w), SWITCHYARD_WORKSPACE or a profile"))?;
    let client = admin_client(&p)?;
    let q = name.map(|n| format!("?name={n}")).unwrap_or_default();
    let exported = client.request(Method::GET, &format!("/workspaces/{ws}/blueprint{q}"), None).await?;
    if target.json {
        super::output::json(&exported);
        return Ok(());
    }
    let yaml = exported["yaml"].as_str().unwrap_or_default();
    match &out {
        Some(path) => std::fs::write(path, yaml).map_err(|e| Failure::usage(format!("{path}: cannot write it: {e}")))?,
        None => print!("{yaml}"),
    }
    let secrets: Vec<&str> = exported["secrets"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !secrets.is_empty() {
        eprintln!("each workspace it is applied to needs these secrets: {}", secrets.join(", "));
    }
    for note in exported["notes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        eprintln!("note: {note}");
    }
    if let Some(path) = out {
        eprintln!("wrote {path}");
    }
    Ok(())
}

fn read(file: &str) -> Result<String, Failure> {
    let mut text = String::new();
    let read =
        if file == "-" { std::io::stdin().read_to_string(&mut text).map(|_| ()) } else { std::fs::read_to_string(file).map(|t| text = t) };
    read.map_err(|e| Failure::usage(format!("{file}: cannot read it: {e}")))?;
    Ok(text)
}

fn validate(files: &[String]) -> Outcome {
    let registry = switchyard_destinations::Registry::default();
    let mut failed = 0;
    for file in files {
        let text = read(file)?;
        match blueprint::parse(&text, &registry) {
            Ok(b) => println!(
                "{file}: valid: blueprint {:?}: {}, {}, {}, {}, {}, {}",
                b.name,
                count(b.connections.len(), "connection"),
                count(b.rules.len(), "rule"),
                count(b.templates.len(), "template"),
                count(b.mappings.len(), "mapping"),
                count(b.event_types.len(), "event type"),
                count(b.variables.len(), "variable")
            ),
            Err(problems) => {
                failed += 1;
                for p in problems {
                    let sep = if p.line == 0 { " " } else { "" };
                    eprintln!("{file}:{sep}{p}");
                }
            }
        }
    }
    if failed > 0 {
        let plural = if failed == 1 { "" } else { "s" };
        return Err(Failure { code: exit::INVALID, message: format!("{failed} file{plural} failed validation") });
    }
    Ok(())
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
