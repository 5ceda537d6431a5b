//! `switchyard blueprint`: blueprint documents (see docs/blueprints.md).

use super::{exit, Failure, Outcome};
use clap::Subcommand;
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
}

pub fn run(command: BlueprintCmd) -> Outcome {
    match command {
        BlueprintCmd::Validate { files } => validate(&files),
        BlueprintCmd::Schema => {
            println!("{}", serde_json::to_string_pretty(&blueprint::json_schema()).expect("a schema is JSON"));
            Ok(())
        }
    }
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
