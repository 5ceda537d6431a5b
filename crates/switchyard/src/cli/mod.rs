//! The management commands: workspaces, publishable keys, connections, rules, events, deliveries,
//! sessions and event types over the API, with [`switchyard_client`]. Tables for people, `--json`
//! for scripts, and exit codes scripts can rely on (see [`Failure`] and docs/clients.md).

pub mod blueprint;
pub mod output;
pub mod profile;
mod tail;

use clap::{Args, Subcommand};
use output::{compact, opt, opt_time, record, time, Table};
use serde_json::Value;
use std::io::{IsTerminal, Read};
use switchyard_client::models::*;
use switchyard_client::{Client, Error};

/// How a command failed, and the exit code that says so.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

/// The exit codes (docs/clients.md lists them).
pub mod exit {
    /// The server failed or answered something unexpected.
    pub const FAILED: u8 = 1;
    /// Bad flags or arguments, or no server, credential or workspace to use.
    pub const USAGE: u8 = 2;
    /// `blueprint plan`: the plan has changes; `blueprint drift`: a workspace drifted (as
    /// `terraform plan -detailed-exitcode`). Nothing is printed on standard error then.
    pub const CHANGES: u8 = 2;
    /// The credential was refused (401) or may not do this (403).
    pub const REFUSED: u8 = 3;
    /// What was named does not exist, or is not visible to the credential (404).
    pub const NOT_FOUND: u8 = 4;
    /// The server refused the request's content (400, 409, 413, 422).
    pub const INVALID: u8 = 5;
    /// No answer, or the server asked to wait (429, 503): worth trying again later.
    pub const UNAVAILABLE: u8 = 6;
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self { code: exit::USAGE, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Api { status: 401 | 403, .. } => exit::REFUSED,
            Error::Api { status: 404, .. } => exit::NOT_FOUND,
            Error::Api { status: 400 | 409 | 413 | 422, .. } => exit::INVALID,
            Error::Api { status: 429 | 503, .. } | Error::Transport(_) => exit::UNAVAILABLE,
            Error::Config(_) => exit::USAGE,
            Error::Api { .. } | Error::Decode(_) => exit::FAILED,
        };
        let mut message = e.to_string();
        if let Error::Api { details, .. } = &e {
            for d in details {
                message.push_str(&format!("\n  {}: {}", d.field, d.message));
            }
        }
        Self { code, message }
    }
}

type Outcome = Result<(), Failure>;

/// Which server, with which credential, in which workspace; each flag falls back to its
/// environment variable, then to the profile.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// The server, e.g. http://127.0.0.1:8080.
    #[arg(long, global = true, env = "SWITCHYARD_URL")]
    pub url: Option<String>,
    /// An API key (sk_...).
    #[arg(long, global = true, env = "SWITCHYARD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// A publishable key (pk_...), for `events emit`.
    #[arg(long, global = true, env = "SWITCHYARD_PUBLISHABLE_KEY", hide_env_values = true)]
    pub publishable_key: Option<String>,
    /// The workspace (ws_...) of commands that work in one.
    #[arg(long, short = 'w', global = true, env = "SWITCHYARD_WORKSPACE")]
    pub workspace: Option<String>,
    /// The profile to read (default: `default`).
    #[arg(long, global = true, env = "SWITCHYARD_PROFILE")]
    pub profile: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A group of management commands and where they go.
#[derive(Args, Debug)]
pub struct Group<T: Subcommand> {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: T,
}

/// Which page of a list.
#[derive(Args, Debug, Clone)]
pub struct Paging {
    /// Items per page (1..200).
    #[arg(long)]
    limit: Option<u32>,
    /// The cursor a previous page printed.
    #[arg(long)]
    cursor: Option<String>,
    /// Every page, one after the other.
    #[arg(long, conflicts_with = "cursor")]
    all: bool,
}

#[derive(Subcommand, Debug)]
pub enum WorkspaceCmd {
    /// List workspaces (with --label, those holding every label given).
    List {
        #[command(flatten)]
        paging: Paging,
        /// A label the workspaces must hold, as key=value; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Show a workspace.
    Show { id: String },
    /// Create a workspace (with its first publishable key, shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Its plan (installation keys; the default plan when left out).
        #[arg(long)]
        plan: Option<String>,
        /// Its own limits over the plan's, as JSON, e.g. '{"connections": 20}'.
        #[arg(long)]
        limits: Option<String>,
        /// A label, as key=value (env=prod); repeat for more (installation keys).
        #[arg(long = "label", value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Rename a workspace, change its description, or (installation keys) its plan and limits.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// The new description; "" clears it.
        #[arg(long)]
        description: Option<String>,
        /// Another plan; "" puts it back on the default plan.
        #[arg(long)]
        plan: Option<String>,
        /// Replaces its own limits, as JSON ('{}' removes them; null for one lifts it).
        #[arg(long)]
        limits: Option<String>,
        /// Replaces its labels with these, as key=value; repeat for more (installation keys).
        #[arg(long = "label", value_name = "KEY=VALUE", conflicts_with = "no_labels")]
        labels: Vec<String>,
        /// Removes all its labels.
        #[arg(long)]
        no_labels: bool,
    },
    /// Delete a workspace and everything in it.
    Delete {
        id: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// List the workspace's publishable keys (hints only).
    List,
    /// Create a publishable key (shown once).
    Create,
    /// Replace a key with a new one (shown once); the old one stops working at once.
    Rotate { key_id: String },
    /// Delete a key.
    Delete {
        key_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// A JSON value given inline, as `@file`, or as `-` (standard input).
#[derive(Args, Debug, Clone, Default)]
pub struct Body {
    /// The whole request body as JSON (inline, @file, or - for standard input); the other flags
    /// override its fields.
    #[arg(long)]
    data: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum ConnectionCmd {
    /// List the workspace's connections.
    List(Paging),
    /// Show a connection.
    Show { id: String },
    /// The integration catalog: every destination type with its config fields and actions.
    Integrations {
        /// Show one integration in full.
        #[arg(long = "type")]
        kind: Option<String>,
    },
    /// Create a connection.
    Create {
        /// The integration (`webhook`, `slack`, `hubspot`, ...).
        #[arg(long = "type")]
        kind: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// The config as JSON (inline, @file or -), e.g. '{"url":"https://example.com/hook"}'.
        #[arg(long)]
        config: Option<String>,
        /// The credentials as JSON (@file or - keep them out of shell history).
        #[arg(long)]
        credentials: Option<String>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        max_in_flight: Option<u32>,
        #[arg(long)]
        rate_limit_per_minute: Option<u32>,
        #[command(flatten)]
        body: Body,
    },
    /// Change a connection.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        config: Option<String>,
        /// The new credentials as JSON (@file or -); null removes them.
        #[arg(long)]
        credentials: Option<String>,
        #[arg(long)]
        timeout_ms: Option<u64>,
        #[arg(long)]
        max_in_flight: Option<u32>,
        #[arg(long)]
        rate_limit_per_minute: Option<u32>,
        /// Remove the connection's rate limit.
        #[arg(long, conflicts_with = "rate_limit_per_minute")]
        no_rate_limit: bool,
        #[command(flatten)]
        body: Body,
    },
    /// Delete a connection.
    Delete {
        id: String,
        /// Also delete the rules that use it.
        #[arg(long)]
        force: bool,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Give a webhook connection a new signing secret (the old one stays valid for a while).
    RotateSecret { id: String },
    /// Stop sending to a connection: its deliveries wait, spending no attempts, until it is resumed.
    Pause { id: String },
    /// Send to a paused or disabled connection again: what waited goes out oldest first, at its pace.
    Resume { id: String },
}

#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// List the workspace's rules.
    List(Paging),
    /// Show a rule.
    Show { id: String },
    /// Create a rule: which events go to which connection, in what shape.
    Create {
        #[arg(long)]
        name: Option<String>,
        /// The event pattern: `user.created`, `user.*`, `*`.
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// The connection type's default when left out.
        #[arg(long)]
        action: Option<String>,
        /// The action's config as JSON (inline, @file or -).
        #[arg(long)]
        action_config: Option<String>,
        /// Conditions as JSON, e.g. '{"all":[{"path":"payload.plan","op":"eq","value":"pro"}]}'.
        #[arg(long)]
        conditions: Option<String>,
        /// Create it switched off.
        #[arg(long)]
        inactive: bool,
        #[command(flatten)]
        body: Body,
    },
    /// Change a rule.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        event: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        action_config: Option<String>,
        /// The new conditions as JSON; null removes them.
        #[arg(long)]
        conditions: Option<String>,
        #[arg(long, value_name = "true|false")]
        active: Option<bool>,
        #[command(flatten)]
        body: Body,
    },
    /// Delete a rule.
    Delete {
        id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Send a test event through this rule only.
    Test {
        id: String,
        /// The test event's payload as JSON (inline, @file or -).
        #[arg(long)]
        payload: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// List the workspace's events, newest first.
    List {
        #[command(flatten)]
        paging: Paging,
        /// Only events with this name.
        #[arg(long)]
        event: Option<String>,
        /// pending, processing, completed or failed.
        #[arg(long)]
        status: Option<String>,
        /// RFC 3339: received at or after.
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Show an event with its payload and deliveries.
    Show { id: String },
    /// Send an event: with the publishable key when one is given, otherwise with the API key
    /// into the workspace.
    Emit {
        /// The event's name, e.g. user.created.
        event: String,
        /// The payload as JSON (inline, @file or -).
        #[arg(long)]
        payload: Option<String>,
        #[arg(long)]
        resource: Option<String>,
        #[arg(long)]
        resource_id: Option<String>,
        /// Generated when left out.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Follow new events and their deliveries as they happen (Ctrl-C stops).
    Tail {
        /// Only events with this name.
        #[arg(long)]
        event: Option<String>,
        /// How often to ask the server, in milliseconds.
        #[arg(long, default_value_t = 250)]
        interval_ms: u64,
    },
}

#[derive(Subcommand, Debug)]
pub enum DeliveryCmd {
    /// List the workspace's deliveries, newest first.
    List {
        #[command(flatten)]
        paging: Paging,
        /// pending, delivering, succeeded, retrying, dead or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        #[arg(long)]
        rule: Option<String>,
        #[arg(long)]
        event: Option<String>,
    },
    /// Show a delivery with every attempt.
    Show { id: String },
    /// Send a delivery again; with --all-dead, every dead delivery of the workspace.
    Replay {
        #[arg(required_unless_present = "all_dead")]
        id: Option<String>,
        /// Replay the workspace's dead deliveries (narrowed by --connection).
        #[arg(long, conflicts_with = "id")]
        all_dead: bool,
        #[arg(long, requires = "all_dead")]
        connection: Option<String>,
    },
    /// Cancel a delivery that has not finished (never attempted again; a replay still sends it);
    /// with --event, every unfinished delivery of an event; with --all, every unfinished one of
    /// the workspace (narrowed by --connection and --status).
    Cancel {
        #[arg(required_unless_present_any = ["event", "all"])]
        id: Option<String>,
        /// Cancel the event's unfinished deliveries.
        #[arg(long, conflicts_with_all = ["id", "all"])]
        event: Option<String>,
        /// Cancel the workspace's unfinished deliveries.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long, requires = "all")]
        connection: Option<String>,
        /// pending, retrying or delivering.
        #[arg(long, requires = "all")]
        status: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    /// List the workspace's live sessions.
    List(Paging),
    /// Mint a session for the embedded pages: prints its token and launch URL.
    Create {
        /// viewer, editor or admin.
        #[arg(long, default_value = "editor")]
        role: String,
        #[arg(long)]
        ttl_seconds: Option<u64>,
        /// An origin allowed to frame the pages (repeat for several).
        #[arg(long = "allowed-origin")]
        allowed_origins: Vec<String>,
        #[arg(long)]
        external_user_id: Option<String>,
        /// The page the launch URL opens (dashboard, connections, rules, events).
        #[arg(long)]
        launch_page: Option<String>,
    },
    /// End a session at once.
    Revoke { id: String },
}

#[derive(Subcommand, Debug)]
pub enum EventTypeCmd {
    /// List declared and seen event types.
    List,
    /// Show one event type.
    Show { name: String },
    /// Declare an event type (description, JSON Schema, example).
    Declare {
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// A JSON Schema for the payload (inline, @file or -).
        #[arg(long)]
        json_schema: Option<String>,
        /// An example payload (inline, @file or -).
        #[arg(long)]
        example: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretCmd {
    /// List the workspace's secrets by name (values are never shown).
    List,
    /// Set a secret (what ${secret:NAME} stands for in a blueprint's credentials). The value is
    /// read from standard input unless --value is given, so it stays out of shell history.
    Set {
        name: String,
        #[arg(long)]
        value: Option<String>,
    },
    /// Delete a secret.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum PlanCmd {
    /// List the plans, and the default one.
    List,
    /// Show one plan.
    Show { name: String },
    /// Create or replace a plan (not one from the plans file).
    Set {
        name: String,
        /// The limits as JSON, e.g. '{"events_per_month": 10000, "connections": 3}'; one left out is no limit.
        #[arg(long)]
        limits: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a plan no workspace is on.
    Delete {
        name: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub struct UsageArgs {
    #[command(flatten)]
    pub target: Target,
    /// The installation's month instead of one workspace's.
    #[arg(long)]
    pub installation: bool,
}

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// Save the given --url, --api-key, --publishable-key and --workspace as a profile.
    Save {
        /// The profile's name (default: the --profile given, or `default`).
        #[arg(long)]
        name: Option<String>,
    },
    /// Show the settings the commands would use, and where each came from (keys masked).
    Show,
    /// List the profiles in the profile file.
    List,
    /// Remove a profile.
    Delete { name: String },
}

/// A client for the resolved target, with the API key (or session token).
pub fn admin_client(profile: &profile::Profile) -> Result<Client, Failure> {
    let url = profile.url.as_deref().ok_or_else(|| Failure::usage("no server: give --url, SWITCHYARD_URL or a profile"))?;
    let key = profile.api_key.as_deref().ok_or_else(|| Failure::usage("no API key: give --api-key, SWITCHYARD_API_KEY or a profile"))?;
    Ok(Client::new(url, key)?)
}

fn workspace(profile: &profile::Profile) -> Result<&str, Failure> {
    profile.workspace.as_deref().ok_or_else(|| Failure::usage("no workspace: give --workspace (-w), SWITCHYARD_WORKSPACE or a profile"))
}

/// JSON given inline, as `@file`, or `-` for standard input.
fn json_arg(name: &str, value: &str) -> Result<Value, Failure> {
    let text = if value == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::usage(format!("--{name}: could not read standard input: {e}")))?;
        s
    } else if let Some(path) = value.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| Failure::usage(format!("--{name}: could not read {path}: {e}")))?
    } else {
        value.to_owned()
    };
    serde_json::from_str(&text).map_err(|e| Failure::usage(format!("--{name} is not JSON: {e}")))
}

fn opt_json(name: &str, value: &Option<String>) -> Result<Option<Value>, Failure> {
    value.as_deref().map(|v| json_arg(name, v)).transpose()
}

/// `--data` as an object, with each `(field, value)` given by a flag laid over it.
fn body_with(body: &Body, fields: Vec<(&str, Option<Value>)>) -> Result<Value, Failure> {
    let mut base = match opt_json("data", &body.data)? {
        Some(Value::Object(map)) => map,
        Some(_) => return Err(Failure::usage("--data must be a JSON object")),
        None => Default::default(),
    };
    for (field, value) in fields {
        if let Some(v) = value {
            base.insert(field.to_owned(), v);
        }
    }
    Ok(Value::Object(base))
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::usage(format!("the request is incomplete: {e}")))
}

/// Destructive commands ask first in a terminal; elsewhere they need `--yes`.
fn confirm(yes: bool, what: &str) -> Outcome {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!("{what}: pass --yes to confirm (standard input is not a terminal)")));
    }
    eprint!("{what}? [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).map_err(|e| Failure::usage(e.to_string()))?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(Failure::usage("not confirmed"))
    }
}

/// Prints JSON for `--json` and ends the command.
fn show<T: serde::Serialize + ?Sized>(value: &T) -> Outcome {
    output::json(value);
    Ok(())
}

fn done(json: bool, message: String, value: Value) {
    if json {
        output::json(&value);
    } else {
        println!("{message}");
    }
}

/// Every page (with `--all`) or the one asked for.
async fn pages<T, F, Fut>(paging: &Paging, mut fetch: F) -> Result<List<T>, Failure>
where
    F: FnMut(Page) -> Fut,
    Fut: std::future::Future<Output = Result<List<T>, Error>>,
{
    let mut page = Page { limit: paging.limit, cursor: paging.cursor.clone() };
    let mut list = fetch(page.clone()).await?;
    if !paging.all {
        return Ok(list);
    }
    while let Some(cursor) = list.next_cursor.take() {
        page.cursor = Some(cursor);
        let next = fetch(page.clone()).await?;
        list.data.extend(next.data);
        list.next_cursor = next.next_cursor;
    }
    Ok(list)
}

/// `--label key=value` arguments.
fn label_args(args: &[String]) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    args.iter()
        .map(|a| {
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| Failure::usage(format!("--label {a}: write key=value")))
        })
        .collect()
}

fn labels_text(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

pub async fn workspaces(group: Group<WorkspaceCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        WorkspaceCmd::List { paging, labels } => {
            let labels = label_args(&labels)?;
            let list = pages(&paging, |page| {
                let (client, labels) = (client.clone(), labels.clone());
                async move { client.list_labelled_workspaces(&labels, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "NAME", "LABELS", "DESCRIPTION", "CREATED"]);
            for w in &list.data {
                t.row(vec![w.id.clone(), w.name.clone(), labels_text(&w.labels), opt(&w.description), time(&w.created_at)]);
            }
            t.print("no workspaces", list.next_cursor.as_deref());
        }
        WorkspaceCmd::Show { id } => {
            let w = client.get_workspace(&id).await?;
            if json {
                return show(&w);
            }
            record(&[
                ("id", w.id),
                ("name", w.name),
                ("description", opt(&w.description)),
                ("labels", labels_text(&w.labels)),
                ("created", time(&w.created_at)),
                ("updated", time(&w.updated_at)),
            ]);
        }
        WorkspaceCmd::Create { name, description, plan, limits, labels } => {
            let new = NewWorkspace {
                name,
                description,
                plan,
                limits: opt_json("limits", &limits)?,
                labels: label_args(&labels)?,
                ..Default::default()
            };
            let w = client.create_workspace(&new).await?;
            if json {
                return show(&w);
            }
            record(&[
                ("id", w.id),
                ("name", w.name),
                ("publishable key id", w.publishable_key.id),
                ("publishable key", w.publishable_key.key),
            ]);
            eprintln!("\nThe publishable key is shown only now: store it where your product can read it.");
        }
        WorkspaceCmd::Update { id, name, description, plan, limits, labels, no_labels } => {
            let description = description.map(|d| Some(d).filter(|d| !d.is_empty()));
            let plan = plan.map(|p| Some(p).filter(|p| !p.is_empty()));
            let labels = if no_labels { Some(Default::default()) } else { Some(label_args(&labels)?).filter(|l| !l.is_empty()) };
            let changes = WorkspaceChanges { name, description, plan, limits: opt_json("limits", &limits)?, labels };
            let w = client.update_workspace(&id, &changes).await?;
            done(json, format!("updated {}", w.id), serde_json::to_value(&w).unwrap_or_default());
        }
        WorkspaceCmd::Delete { id, yes } => {
            confirm(yes, &format!("Delete workspace {id} with all its connections, rules and history"))?;
            client.delete_workspace(&id).await?;
            done(json, format!("deleted {id}"), serde_json::json!({"deleted": id}));
        }
    }
    Ok(())
}

pub async fn keys(group: Group<KeyCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    let ws = workspace(&p)?;
    match group.command {
        KeyCmd::List => {
            let list = client.list_publishable_keys(ws).await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "KEY", "CREATED"]);
            for k in &list.data {
                t.row(vec![k.id.clone(), k.hint.clone(), time(&k.created_at)]);
            }
            t.print("no publishable keys", None);
        }
        KeyCmd::Create | KeyCmd::Rotate { .. } => {
            let key = match &group.command {
                KeyCmd::Rotate { key_id } => client.rotate_publishable_key(ws, key_id).await?,
                _ => client.create_publishable_key(ws).await?,
            };
            if json {
                return show(&key);
            }
            record(&[("id", key.id), ("key", key.key)]);
            eprintln!("\nThe key is shown only now.");
        }
        KeyCmd::Delete { key_id, yes } => {
            confirm(yes, &format!("Delete publishable key {key_id} (events sent with it will be refused)"))?;
            client.delete_publishable_key(ws, &key_id).await?;
            done(json, format!("deleted {key_id}"), serde_json::json!({"deleted": key_id}));
        }
    }
    Ok(())
}

fn connection_record(c: &Connection) {
    let mut fields = vec![
        ("id", c.id.clone()),
        ("type", c.kind.clone()),
        ("name", c.name.clone()),
        ("status", c.status.clone()),
        ("config", compact(&c.config)),
        ("credentials", if c.has_credentials { "stored (never shown)".into() } else { "none".into() }),
        (
            "retries",
            format!("{} attempts, {}..{} ms", c.retry_policy.max_attempts, c.retry_policy.initial_delay_ms, c.retry_policy.max_delay_ms),
        ),
        ("timeout", format!("{} ms", c.timeout_ms)),
        ("max in flight", c.max_in_flight.to_string()),
        ("rate limit", c.rate_limit_per_minute.map(|r| format!("{r}/min")).unwrap_or_else(|| "none".into())),
        ("created", time(&c.created_at)),
    ];
    if let Some(secret) = &c.signing_secret {
        fields.push(("signing secret", secret.clone()));
    }
    record(&fields);
}

pub async fn connections(group: Group<ConnectionCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        ConnectionCmd::List(paging) => {
            let ws = workspace(&p)?.to_owned();
            let list = pages(&paging, |page| {
                let (client, ws) = (client.clone(), ws.clone());
                async move { client.list_connections(&ws, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "TYPE", "NAME", "STATUS", "CREATED"]);
            for c in &list.data {
                t.row(vec![c.id.clone(), c.kind.clone(), c.name.clone(), c.status.clone(), time(&c.created_at)]);
            }
            t.print("no connections", list.next_cursor.as_deref());
        }
        ConnectionCmd::Show { id } => {
            let c = client.get_connection(&id).await?;
            if json {
                return show(&c);
            }
            connection_record(&c);
        }
        ConnectionCmd::Integrations { kind } => {
            let catalog = client.list_integrations().await?;
            if let Some(kind) = kind {
                let one = catalog
                    .data
                    .into_iter()
                    .find(|i| i.kind == kind)
                    .ok_or_else(|| Failure { code: exit::NOT_FOUND, message: format!("no integration of type `{kind}`") })?;
                return show(&one);
            }
            if json {
                return show(&catalog);
            }
            let mut t = Table::new(&["TYPE", "NAME", "AUTH", "ACTIONS"]);
            for i in &catalog.data {
                let auth = i.auth.get("type").and_then(Value::as_str).unwrap_or("-").to_owned();
                let actions: Vec<&str> = i.actions.iter().filter_map(|a| a.get("key").and_then(Value::as_str)).collect();
                t.row(vec![i.kind.clone(), i.name.clone(), auth, actions.join(", ")]);
            }
            t.print("no integrations", None);
        }
        ConnectionCmd::Create { kind, name, config, credentials, timeout_ms, max_in_flight, rate_limit_per_minute, body } => {
            let ws = workspace(&p)?;
            let request = body_with(
                &body,
                vec![
                    ("type", kind.map(Value::from)),
                    ("name", name.map(Value::from)),
                    ("config", opt_json("config", &config)?),
                    ("credentials", opt_json("credentials", &credentials)?),
                    ("timeout_ms", timeout_ms.map(Value::from)),
                    ("max_in_flight", max_in_flight.map(Value::from)),
                    ("rate_limit_per_minute", rate_limit_per_minute.map(Value::from)),
                ],
            )?;
            let mut new: NewConnection = from_value(request)?;
            if new.config.is_null() {
                new.config = serde_json::json!({});
            }
            let c = client.create_connection(ws, &new).await?;
            if json {
                return show(&c);
            }
            connection_record(&c);
            if c.signing_secret.is_some() {
                eprintln!("\nThe signing secret is shown only now: give it to whoever verifies the webhooks.");
            }
        }
        ConnectionCmd::Update { id, name, config, credentials, timeout_ms, max_in_flight, rate_limit_per_minute, no_rate_limit, body } => {
            let request = body_with(
                &body,
                vec![
                    ("name", name.map(Value::from)),
                    ("config", opt_json("config", &config)?),
                    ("credentials", opt_json("credentials", &credentials)?),
                    ("timeout_ms", timeout_ms.map(Value::from)),
                    ("max_in_flight", max_in_flight.map(Value::from)),
                    ("rate_limit_per_minute", if no_rate_limit { Some(Value::Null) } else { rate_limit_per_minute.map(Value::from) }),
                ],
            )?;
            let c = client.update_connection(&id, &from_value(request)?).await?;
            if json {
                return show(&c);
            }
            connection_record(&c);
        }
        ConnectionCmd::Delete { id, force, yes } => {
            confirm(yes, &format!("Delete connection {id}{}", if force { " and the rules that use it" } else { "" }))?;
            client.delete_connection(&id, force).await?;
            done(json, format!("deleted {id}"), serde_json::json!({"deleted": id}));
        }
        ConnectionCmd::Pause { id } => {
            let c = client.pause_connection(&id).await?;
            done(json, format!("paused {} ({})", c.id, c.status), serde_json::to_value(&c).unwrap_or_default());
        }
        ConnectionCmd::Resume { id } => {
            let c = client.resume_connection(&id).await?;
            done(json, format!("resumed {} ({})", c.id, c.status), serde_json::to_value(&c).unwrap_or_default());
        }
        ConnectionCmd::RotateSecret { id } => {
            let r = client.rotate_connection_secret(&id).await?;
            if json {
                return show(&r);
            }
            record(&[("signing secret", r.signing_secret), ("previous valid until", opt_time(&r.previous_secret_expires_at))]);
        }
    }
    Ok(())
}

fn rule_record(r: &Rule) {
    record(&[
        ("id", r.id.clone()),
        ("name", r.name.clone()),
        ("event", r.event.clone()),
        ("connection", r.connection_id.clone()),
        ("action", r.action.clone()),
        ("action config", compact(&r.action_config)),
        ("conditions", r.conditions.as_ref().map(compact).unwrap_or_else(|| "-".into())),
        ("active", r.active.to_string()),
        ("created", time(&r.created_at)),
    ]);
}

pub async fn rules(group: Group<RuleCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        RuleCmd::List(paging) => {
            let ws = workspace(&p)?.to_owned();
            let list = pages(&paging, |page| {
                let (client, ws) = (client.clone(), ws.clone());
                async move { client.list_rules(&ws, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "NAME", "EVENT", "CONNECTION", "ACTION", "ACTIVE"]);
            for r in &list.data {
                t.row(vec![r.id.clone(), r.name.clone(), r.event.clone(), r.connection_id.clone(), r.action.clone(), r.active.to_string()]);
            }
            t.print("no rules", list.next_cursor.as_deref());
        }
        RuleCmd::Show { id } => {
            let r = client.get_rule(&id).await?;
            if json {
                return show(&r);
            }
            rule_record(&r);
        }
        RuleCmd::Create { name, event, connection, action, action_config, conditions, inactive, body } => {
            let ws = workspace(&p)?;
            let request = body_with(
                &body,
                vec![
                    ("name", name.map(Value::from)),
                    ("event", event.map(Value::from)),
                    ("connection_id", connection.map(Value::from)),
                    ("action", action.map(Value::from)),
                    ("action_config", opt_json("action-config", &action_config)?),
                    ("conditions", opt_json("conditions", &conditions)?),
                    ("active", inactive.then_some(Value::Bool(false))),
                ],
            )?;
            let r = client.create_rule(ws, &from_value(request)?).await?;
            if json {
                return show(&r);
            }
            rule_record(&r);
        }
        RuleCmd::Update { id, name, event, connection, action, action_config, conditions, active, body } => {
            let request = body_with(
                &body,
                vec![
                    ("name", name.map(Value::from)),
                    ("event", event.map(Value::from)),
                    ("connection_id", connection.map(Value::from)),
                    ("action", action.map(Value::from)),
                    ("action_config", opt_json("action-config", &action_config)?),
                    ("conditions", opt_json("conditions", &conditions)?),
                    ("active", active.map(Value::Bool)),
                ],
            )?;
            let r = client.update_rule(&id, &from_value(request)?).await?;
            if json {
                return show(&r);
            }
            rule_record(&r);
        }
        RuleCmd::Delete { id, yes } => {
            confirm(yes, &format!("Delete rule {id}"))?;
            client.delete_rule(&id).await?;
            done(json, format!("deleted {id}"), serde_json::json!({"deleted": id}));
        }
        RuleCmd::Test { id, payload } => {
            let payload = opt_json("payload", &payload)?;
            let t = client.test_rule(&id, payload.as_ref()).await?;
            done(
                json,
                format!("sent test event {} (see: switchyard events show {})", t.event_id, t.event_id),
                serde_json::to_value(&t).unwrap_or_default(),
            );
        }
    }
    Ok(())
}

fn delivery_rows(deliveries: &[DeliverySummary]) -> Table {
    let mut t = Table::new(&["ID", "STATUS", "ATTEMPTS", "CONNECTION", "EVENT", "LAST ERROR", "UPDATED"]);
    for d in deliveries {
        t.row(vec![
            d.id.clone(),
            d.status.clone(),
            d.attempt_count.to_string(),
            d.connection_id.clone(),
            d.event_id.clone(),
            d.last_error.clone().unwrap_or_default().chars().take(60).collect(),
            time(&d.updated_at),
        ]);
    }
    t
}

pub async fn events(group: Group<EventCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let given = group.target.clone();
    let json = group.target.json;
    match group.command {
        EventCmd::List { paging, event, status, since } => {
            let client = admin_client(&p)?;
            let ws = workspace(&p)?.to_owned();
            let filter = EventFilter { event, status, since, ..EventFilter::default() };
            let list = pages(&paging, |page| {
                let (client, ws, filter) = (client.clone(), ws.clone(), filter.clone());
                async move { client.list_events(&ws, &filter, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "EVENT", "STATUS", "RESOURCE", "RECEIVED"]);
            for e in &list.data {
                let resource = match (&e.resource, &e.resource_id) {
                    (Some(r), Some(id)) => format!("{r}/{id}"),
                    _ => "-".into(),
                };
                t.row(vec![
                    e.id.clone(),
                    format!("{}{}", e.event, if e.test { " (test)" } else { "" }),
                    e.status.clone(),
                    resource,
                    time(&e.received_at),
                ]);
            }
            t.print("no events", list.next_cursor.as_deref());
        }
        EventCmd::Show { id } => {
            let client = admin_client(&p)?;
            let e = client.get_event(&id).await?;
            if json {
                return show(&e);
            }
            record(&[
                ("id", e.id.clone()),
                ("event", e.event.clone()),
                ("status", e.status.clone()),
                ("resource", format!("{} {}", opt(&e.resource), opt(&e.resource_id))),
                ("received", time(&e.received_at)),
                ("occurred", opt_time(&e.occurred_at)),
                ("test", e.test.to_string()),
                ("payload", e.payload.as_ref().map(compact).unwrap_or_else(|| "(not visible to this key)".into())),
            ]);
            let deliveries = e.deliveries.unwrap_or_default();
            println!();
            delivery_rows(&deliveries).print("no deliveries: no rule matched", None);
        }
        EventCmd::Emit { event, payload, resource, resource_id, idempotency_key } => {
            let new =
                NewEvent { event, payload: opt_json("payload", &payload)?, resource, resource_id, occurred_at: None, idempotency_key };
            let url = p.url.as_deref().ok_or_else(|| Failure::usage("no server: give --url, SWITCHYARD_URL or a profile"))?;
            // A publishable key given on the command line (or in the environment) wins; then an API
            // key or workspace given there; only then the profile's publishable key.
            let explicit_admin = given.api_key.is_some() || given.workspace.is_some();
            let with_publishable = given.publishable_key.is_some() || (p.publishable_key.is_some() && !explicit_admin);
            let accepted = match (&p.publishable_key, &p.api_key) {
                (Some(pk), _) if with_publishable => Client::new(url, pk)?.emit(&new).await?,
                (_, Some(_)) => admin_client(&p)?.emit_to(workspace(&p)?, &new).await?,
                (Some(pk), None) => Client::new(url, pk)?.emit(&new).await?,
                (None, None) => return Err(Failure::usage("no key: give --publishable-key (or an API key and a workspace)")),
            };
            if let Some(ws) = p.workspace.as_deref().filter(|ws| *ws != accepted.workspace_id) {
                eprintln!("note: the event went to {}, the publishable key's workspace, not {ws}", accepted.workspace_id);
            }
            done(json, format!("accepted {} ({})", accepted.id, accepted.event), serde_json::to_value(&accepted).unwrap_or_default());
        }
        EventCmd::Tail { event, interval_ms } => {
            let client = admin_client(&p)?;
            let ws = workspace(&p)?.to_owned();
            tail::follow(&client, &ws, event, std::time::Duration::from_millis(interval_ms.clamp(50, 60_000)), json).await?;
        }
    }
    Ok(())
}

pub async fn deliveries(group: Group<DeliveryCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        DeliveryCmd::List { paging, status, connection, rule, event } => {
            let ws = workspace(&p)?.to_owned();
            let filter = DeliveryFilter { status, connection_id: connection, rule_id: rule, event, ..DeliveryFilter::default() };
            let list = pages(&paging, |page| {
                let (client, ws, filter) = (client.clone(), ws.clone(), filter.clone());
                async move { client.list_deliveries(&ws, &filter, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            delivery_rows(&list.data).print("no deliveries", list.next_cursor.as_deref());
        }
        DeliveryCmd::Show { id } => {
            let d = client.get_delivery(&id).await?;
            if json {
                return show(&d);
            }
            record(&[
                ("id", d.id.clone()),
                ("status", d.status.clone()),
                ("event", d.event_id.clone()),
                ("rule", d.rule_id.clone()),
                ("connection", d.connection_id.clone()),
                ("attempts", d.attempt_count.to_string()),
                ("next attempt", opt_time(&d.next_attempt_at)),
                ("last error", opt(&d.last_error)),
            ]);
            println!();
            let mut t = Table::new(&["#", "STARTED", "DURATION", "STATUS", "ERROR"]);
            for a in &d.attempts {
                t.row(vec![
                    a.number.to_string(),
                    time(&a.started_at),
                    format!("{} ms", a.duration_ms),
                    a.status_code.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                    opt(&a.error),
                ]);
            }
            t.print("no attempts yet", None);
        }
        DeliveryCmd::Replay { id: Some(id), .. } => {
            let r = client.replay_delivery(&id).await?;
            done(json, format!("replaying {} ({})", r.id, r.status), serde_json::to_value(&r).unwrap_or_default());
        }
        DeliveryCmd::Cancel { id: Some(id), .. } => {
            let r = client.cancel_delivery(&id).await?;
            let what =
                if r.status == "cancelled" { "cancelled" } else { "an attempt is in flight: it ends the delivery unless it succeeds" };
            done(json, format!("{}: {what}", r.id), serde_json::to_value(&r).unwrap_or_default());
        }
        DeliveryCmd::Cancel { id: None, event, connection, status, .. } => {
            let r = match event {
                Some(event) => client.cancel_event(&event).await?,
                None => {
                    let ws = workspace(&p)?;
                    client.cancel_deliveries(ws, &ReplayFilter { status, connection_id: connection, ..ReplayFilter::default() }).await?
                }
            };
            done(
                json,
                format!("cancelled {} deliveries ({} in flight end when their attempt does)", r.cancelled, r.in_flight),
                serde_json::to_value(&r).unwrap_or_default(),
            );
        }
        DeliveryCmd::Replay { id: None, connection, .. } => {
            let ws = workspace(&p)?;
            let r = client
                .replay_deliveries(ws, &ReplayFilter { status: Some("dead".into()), connection_id: connection, ..ReplayFilter::default() })
                .await?;
            done(json, format!("replaying {} dead deliveries", r.replayed), serde_json::to_value(&r).unwrap_or_default());
        }
    }
    Ok(())
}

pub async fn sessions(group: Group<SessionCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        SessionCmd::List(paging) => {
            let ws = workspace(&p)?.to_owned();
            let list = pages(&paging, |page| {
                let (client, ws) = (client.clone(), ws.clone());
                async move { client.list_sessions(&ws, &page).await }
            })
            .await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["ID", "ROLE", "USER", "CREATED", "EXPIRES"]);
            for s in &list.data {
                t.row(vec![s.id.clone(), s.role.clone(), opt(&s.external_user_id), time(&s.created_at), time(&s.expires_at)]);
            }
            t.print("no live sessions", list.next_cursor.as_deref());
        }
        SessionCmd::Create { role, ttl_seconds, allowed_origins, external_user_id, launch_page } => {
            let new = NewSession {
                workspace_id: workspace(&p)?.to_owned(),
                role,
                ttl_seconds,
                allowed_origins,
                external_user_id,
                launch_page,
                ..NewSession::default()
            };
            let s = client.create_session(&new).await?;
            if json {
                return show(&s);
            }
            record(&[
                ("session", s.session_id),
                ("token", s.access_token),
                ("expires", time(&s.expires_at)),
                ("launch url", s.launch_url),
                ("launch by", time(&s.launch_expires_at)),
            ]);
        }
        SessionCmd::Revoke { id } => {
            client.delete_session(&id).await?;
            done(json, format!("ended {id}"), serde_json::json!({"ended": id}));
        }
    }
    Ok(())
}

pub async fn secrets(group: Group<SecretCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    let ws = workspace(&p)?;
    match group.command {
        SecretCmd::List => {
            let list = client.list_secrets(ws).await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["NAME", "CREATED", "UPDATED"]);
            for s in &list.data {
                t.row(vec![s.name.clone(), time(&s.created_at), time(&s.updated_at)]);
            }
            t.print("no secrets", None);
        }
        SecretCmd::Set { name, value } => {
            let value = match value {
                Some(v) => v,
                None => {
                    let mut v = String::new();
                    std::io::stdin()
                        .read_to_string(&mut v)
                        .map_err(|e| Failure::usage(format!("cannot read the value from standard input: {e}")))?;
                    v.trim_end_matches(['\n', '\r']).to_owned()
                }
            };
            let s = client.put_secret(ws, &name, &value).await?;
            done(json, format!("set {} in {ws}", s.name), serde_json::to_value(&s).unwrap_or_default());
        }
        SecretCmd::Delete { name } => {
            client.delete_secret(ws, &name).await?;
            done(json, format!("deleted {name} from {ws}"), serde_json::json!({"deleted": name}));
        }
    }
    Ok(())
}

pub async fn event_types(group: Group<EventTypeCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    let ws = workspace(&p)?;
    match group.command {
        EventTypeCmd::List => {
            let list = client.list_event_types(ws).await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["NAME", "DECLARED", "RECEIVED", "LAST SEEN", "DESCRIPTION"]);
            for e in &list.data {
                t.row(vec![
                    e.name.clone(),
                    e.declared.to_string(),
                    e.received_count.to_string(),
                    opt_time(&e.last_seen_at),
                    opt(&e.description),
                ]);
            }
            t.print("no event types yet", None);
        }
        EventTypeCmd::Show { name } => {
            let e = client.get_event_type(ws, &name).await?;
            output::json(&e);
        }
        EventTypeCmd::Declare { name, description, json_schema, example } => {
            let declaration = EventTypeDeclaration {
                description,
                json_schema: opt_json("json-schema", &json_schema)?,
                example: opt_json("example", &example)?,
            };
            let e = client.declare_event_type(ws, &name, &declaration).await?;
            done(json, format!("declared {}", e.name), serde_json::to_value(&e).unwrap_or_default());
        }
    }
    Ok(())
}

pub async fn plans(group: Group<PlanCmd>) -> Outcome {
    let p = profile::resolve(&group.target)?;
    let json = group.target.json;
    let client = admin_client(&p)?;
    match group.command {
        PlanCmd::List => {
            let list = client.list_plans().await?;
            if json {
                return show(&list);
            }
            let mut t = Table::new(&["PLAN", "SOURCE", "LIMITS", "DESCRIPTION"]);
            for plan in &list.data {
                let default = if list.default_plan.as_deref() == Some(plan.name.as_str()) { " (default)" } else { "" };
                t.row(vec![format!("{}{default}", plan.name), plan.source.clone(), compact(&plan.limits), opt(&plan.description)]);
            }
            t.print("no plans: nothing is limited", None);
        }
        PlanCmd::Show { name } => {
            let plan = client.get_plan(&name).await?;
            if json {
                return show(&plan);
            }
            record(&[
                ("plan", plan.name),
                ("source", plan.source),
                ("limits", compact(&plan.limits)),
                ("description", opt(&plan.description)),
                ("updated", time(&plan.updated_at)),
            ]);
        }
        PlanCmd::Set { name, limits, description } => {
            let plan = client.put_plan(&name, &PlanDefinition { description, limits: json_arg("limits", &limits)? }).await?;
            done(json, format!("plan {} set: {}", plan.name, compact(&plan.limits)), serde_json::to_value(&plan).unwrap_or_default());
        }
        PlanCmd::Delete { name, yes } => {
            confirm(yes, &format!("Delete plan {name}"))?;
            client.delete_plan(&name).await?;
            done(json, format!("deleted {name}"), serde_json::json!({"deleted": name}));
        }
    }
    Ok(())
}

fn counted(used: u64, limit: Option<u64>) -> String {
    match limit {
        Some(limit) => format!("{used} of {limit}"),
        None => format!("{used} (no limit)"),
    }
}

pub async fn usage(args: UsageArgs) -> Outcome {
    let p = profile::resolve(&args.target)?;
    let json = args.target.json;
    let client = admin_client(&p)?;
    if args.installation {
        let u = client.installation_usage().await?;
        if json {
            return show(&u);
        }
        record(&[
            ("month", u.period.month.clone()),
            ("events", u.events.to_string()),
            ("workspaces", counted(u.workspaces.used, u.workspaces.limit)),
        ]);
        println!();
        let mut t = Table::new(&["WORKSPACE", "NAME", "PLAN", "EVENTS"]);
        for w in &u.busiest {
            t.row(vec![w.workspace_id.clone(), w.name.clone(), opt(&w.plan), counted(w.events, w.limit)]);
        }
        t.print("no events this month", None);
        return Ok(());
    }
    let u = client.workspace_usage(workspace(&p)?).await?;
    if json {
        return show(&u);
    }
    record(&[
        ("workspace", u.workspace_id.clone()),
        ("plan", opt(&u.plan)),
        ("month", u.period.month.clone()),
        ("events", format!("{} (resets {})", counted(u.events.used, u.events.limit), time(&u.events.resets_at))),
        ("deliveries", format!("{} created, {} succeeded, {} dead", u.deliveries.created, u.deliveries.succeeded, u.deliveries.dead)),
        ("connections", counted(u.connections.used, u.connections.limit)),
        ("rules", counted(u.rules.used, u.rules.limit)),
        ("limits", compact(&u.limits)),
    ]);
    println!();
    let mut t = Table::new(&["DAY", "EVENTS", "DELIVERIES", "SUCCEEDED", "DEAD"]);
    for d in u.daily.iter().rev().take(7) {
        t.row(vec![d.day.clone(), d.events.to_string(), d.deliveries.to_string(), d.succeeded.to_string(), d.dead.to_string()]);
    }
    t.print("", None);
    Ok(())
}

pub fn profiles(group: Group<ProfileCmd>) -> Outcome {
    let target = &group.target;
    match group.command {
        ProfileCmd::Save { name } => {
            let name = name.or_else(|| target.profile.clone()).unwrap_or_else(|| "default".into());
            let mut file = profile::load()?;
            let entry = file.profiles.entry(name.clone()).or_default();
            let given = [
                (&mut entry.url, &target.url),
                (&mut entry.api_key, &target.api_key),
                (&mut entry.publishable_key, &target.publishable_key),
                (&mut entry.workspace, &target.workspace),
            ];
            let mut changed = false;
            for (slot, value) in given {
                if let Some(v) = value.clone().filter(|v| !v.trim().is_empty()) {
                    *slot = Some(v);
                    changed = true;
                }
            }
            if !changed {
                return Err(Failure::usage("nothing to save: give --url, --api-key, --publishable-key or --workspace"));
            }
            let path = profile::save(&file)?;
            eprintln!("saved profile `{name}` in {}", path.display());
        }
        ProfileCmd::Show => {
            let resolved = profile::resolve(target)?;
            let shown = |v: &Option<String>, secret: bool| match v {
                Some(v) if secret => profile::masked(v),
                Some(v) => v.clone(),
                None => "-".into(),
            };
            if target.json {
                output::json(&serde_json::json!({
                    "profile": target.profile.clone().unwrap_or_else(|| "default".into()),
                    "file": profile::path(),
                    "url": resolved.url,
                    "api_key": resolved.api_key.as_deref().map(profile::masked),
                    "publishable_key": resolved.publishable_key.as_deref().map(profile::masked),
                    "workspace": resolved.workspace,
                }));
                return Ok(());
            }
            record(&[
                ("profile", target.profile.clone().unwrap_or_else(|| "default".into())),
                ("file", profile::path().map(|p| p.display().to_string()).unwrap_or_else(|| "-".into())),
                ("url", shown(&resolved.url, false)),
                ("api key", shown(&resolved.api_key, true)),
                ("publishable key", shown(&resolved.publishable_key, true)),
                ("workspace", shown(&resolved.workspace, false)),
            ]);
        }
        ProfileCmd::List => {
            let file = profile::load()?;
            if target.json {
                let names: Vec<&String> = file.profiles.keys().collect();
                output::json(&names);
                return Ok(());
            }
            let mut t = Table::new(&["PROFILE", "URL", "WORKSPACE"]);
            for (name, p) in &file.profiles {
                t.row(vec![name.clone(), opt(&p.url), opt(&p.workspace)]);
            }
            t.print("no profiles", None);
        }
        ProfileCmd::Delete { name } => {
            let mut file = profile::load()?;
            if file.profiles.remove(&name).is_none() {
                return Err(Failure { code: exit::NOT_FOUND, message: format!("no profile named `{name}`") });
            }
            profile::save(&file)?;
            eprintln!("removed profile `{name}`");
        }
    }
    Ok(())
}
