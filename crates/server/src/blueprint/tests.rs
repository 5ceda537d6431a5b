use super::*;

const EXAMPLE: &str = include_str!("../../../../docs/examples/alerts.blueprint.yaml");

fn registry() -> Registry {
    Registry::default()
}

/// The problems of `text`, each as `line:column: field: message`.
fn problems(text: &str) -> Vec<String> {
    match parse(text, &registry()) {
        Ok(_) => Vec::new(),
        Err(p) => p.iter().map(ToString::to_string).collect(),
    }
}

/// The one problem of `text`, which must contain each of `expected`.
fn problem(text: &str, expected: &[&str]) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{text}\n{p:#?}");
    for e in expected {
        assert!(p[0].contains(e), "{:?} lacks {e:?}", p[0]);
    }
    p[0].clone()
}

const HEAD: &str = "version: 1\nname: demo\n";

#[test]
fn the_documented_example_reads_in_full() {
    let b = parse(EXAMPLE, &registry()).unwrap_or_else(|p| panic!("{p:#?}"));
    assert_eq!(b.name, "alerts-and-signups");
    assert_eq!(b.targets.labels["product"], "acme");
    assert_eq!(b.variables["min_severity"].default, Some(Scalar::Number(2.into())));
    assert_eq!(b.values.len(), 3);
    assert_eq!(b.values[0].variables["hubspot_list"], Scalar::Text("101".into()));
    assert_eq!(b.connections["hubspot"].max_in_flight, Some(4));
    assert_eq!(b.rules["alerts"].connection, "slack");
    assert!(b.templates["alert"].starts_with(":rotating_light: *{{ payload.title }}*"));
    assert_eq!(b.mappings["signup"]["fields"][0]["transforms"], serde_json::json!(["trim", "lower"]));
    assert_eq!(b.event_types["user.created"].json_schema.as_ref().unwrap()["required"], serde_json::json!(["email"]));
}

#[test]
fn json_reads_as_yaml_does_with_its_lines() {
    let yaml = parse(EXAMPLE, &registry()).unwrap();
    let json = serde_json::to_string_pretty(&yaml).unwrap();
    assert_eq!(parse(&json, &registry()).unwrap(), yaml);
    let bad = "{\n  \"version\": 1,\n  \"name\": \"demo\",\n  \"rules\": {\n    \"r\": {\"name\": \"R\", \"event\": \"a\", \"connection\": \"nope\"}\n  }\n}";
    problem(bad, &["5:", "rules.r.connection", "no connection \"nope\""]);
}

#[test]
fn syntax_errors_name_their_line() {
    problem("version: 1\nname: [demo\n", &["not valid YAML"]);
    problem("version: 1\nname: demo\n  bad: indent\n", &["3:", "not valid YAML"]);
    problem("", &["the document is empty"]);
    problem("# only a comment\n", &["the document is empty"]);
}

#[test]
fn the_shape_is_checked_field_by_field() {
    problem(&format!("{HEAD}colour: blue\n"), &["3:1: colour: unknown field `colour`"]);
    problem(&format!("{HEAD}connections:\n  s:\n    type: slack\n    nmae: S\n"), &["6:5: connections.s.nmae: unknown field `nmae`"]);
    problem(&format!("{HEAD}connections:\n  s:\n    type: slack\n"), &["4:3: connections.s", "missing field `name`"]);
    problem(
        &format!("{HEAD}connections:\n  s: {{type: slack, name: S, max_in_flight: lots}}\n"),
        &["connections.s.max_in_flight", "a whole number"],
    );
    problem(&format!("{HEAD}connections:\n  s: {{type: slack, name: S, max_in_flight: -1}}\n"), &["connections.s.max_in_flight"]);
    problem("name: demo\n", &["missing field `version`"]);
    problem("- 1\n- 2\n", &["1:1", "a blueprint is a mapping"]);
    problem("just text\n", &["a blueprint is a mapping"]);
    problem(&format!("{HEAD}templates:\n  t: [1]\n"), &["4:3: templates.t"]);
}

#[test]
fn what_json_cannot_say_is_refused() {
    problem(&format!("{HEAD}templates:\n  a: &x hi\n  b: *x\n"), &["5:6", "aliases"]);
    problem(&format!("{HEAD}description: !!binary aGk=\n"), &["3:23", "tags (!!binary)"]);
    problem(&format!("{HEAD}variables:\n  v: {{default: .inf}}\n"), &["4:16", ".inf has no JSON form"]);
    problem(&format!("{HEAD}name: again\n"), &["3:1", "\"name\" appears twice"]);
    problem(&format!("{HEAD}templates:\n  ? [a, b]\n  : x\n"), &["a key must be text"]);
    let deep = format!("{HEAD}mappings:\n  m: {}1{}\n", "[".repeat(80), "]".repeat(80));
    problem(&deep, &["nests deeper than 64"]);
    // Block nesting is not capped by the scanner: the reader must stop it, not the stack.
    let block = format!("{HEAD}description:\n{}x\n", "- ".repeat(200_000));
    problem(&block, &["nests deeper than 64"]);
    let block_maps: String = (0..100_000).map(|i| format!("{}k:\n", " ".repeat(i % 2000))).collect();
    assert!(!problems(&block_maps).is_empty());
    // Long keys are refused before their paths are kept.
    problem(&format!("{HEAD}templates: {{\"{}\": [1, 2, 3]}}\n", "k".repeat(300)), &["a key is at most 256 bytes"]);
    // A second document is not silently ignored.
    problem(&format!("{HEAD}---\nversion: 1\nname: other\n"), &["3:1", "a second document"]);
    // However many problems, the answer lists 100 and counts the rest.
    let many =
        format!("{HEAD}rules:\n  r: {{name: R, event: a, connection: s, action_config: {{x: '{}'}}}}\n", "${var:nope}".repeat(5_000));
    let p = problems(&many);
    assert_eq!(p.len(), 101, "{}", p.len());
    assert!(p[100].contains("and 4901 more problems"), "{}", p[100]);
    // Text quoted back is cut short.
    let p = problem(&format!("{HEAD}connections:\n  s: {{type: '{}', name: S}}\n", "t".repeat(100_000)), &["is not a connection type"]);
    assert!(p.len() < 1_000, "{}", p.len());
    let big = format!("{HEAD}description: \"{}\"\n", "x".repeat(MAX_DOCUMENT));
    problem(&big, &["the limit is 1048576"]);
    // Quoted, and with !!str, the same words are text.
    let b = parse(&format!("{HEAD}description: !!str 12\nvariables:\n  v: {{default: '.inf'}}\n"), &registry()).unwrap();
    assert_eq!(b.description.as_deref(), Some("12"));
    assert_eq!(b.variables["v"].default, Some(Scalar::Text(".inf".into())));
}

#[test]
fn plain_scalars_read_as_yaml_1_2_core_schema() {
    let cases = [
        ("~", Value::Null),
        ("null", Value::Null),
        ("", Value::Null),
        ("True", Value::Bool(true)),
        ("FALSE", Value::Bool(false)),
        ("yes", Value::from("yes")),
        ("42", Value::from(42)),
        ("-7", Value::from(-7)),
        ("+3", Value::from(3)),
        ("0x1F", Value::from(31)),
        ("0o17", Value::from(15)),
        ("18446744073709551615", Value::from(u64::MAX)),
        ("1.5", Value::from(1.5)),
        ("-.5e2", Value::from(-50.0)),
        ("1e3", Value::from(1000.0)),
        ("1.2.3", Value::from("1.2.3")),
        ("0x", Value::from("0x")),
        ("#dev", Value::from("#dev")),
        ("12:30", Value::from("12:30")),
    ];
    for (text, expected) in cases {
        let doc = yaml::load(&format!("v: {text}\n")).unwrap_or_else(|p| panic!("{text}: {p}"));
        // `#dev` after a space is a comment: YAML, not this reader, decides that.
        let expected = if text == "#dev" { Value::Null } else { expected };
        assert_eq!(doc.value["v"], expected, "{text}");
    }
}

#[test]
fn references_name_what_is_declared() {
    let conn = "connections:\n  s:\n    type: slack\n    name: S\n";
    let rule = |config: &str| {
        format!("{HEAD}{conn}rules:\n  r:\n    name: R\n    event: a.*\n    connection: s\n    action_config:\n      {config}\n")
    };
    problem(&rule("channel: ${var:chanel}"), &["13:7: rules.r.action_config.channel", "no variable \"chanel\" is declared, and none are"]);
    problem(&rule("template: ${template:missing}"), &["no template \"missing\""]);
    problem(&rule("mapping: ${mapping:missing}"), &["no mapping \"missing\""]);
    problem(&rule("template: 'Hi ${template:t}'"), &["only the whole value"]);
    problem(&rule("channel: ${secret:token}"), &["goes only in a connection's credentials"]);
    problem(&rule("channel: ${var:c"), &["not closed"]);
    problem(&rule("channel: ${chan}"), &["is not a reference"]);
    problem(&rule("channel: ${file:x}"), &["\"file\" is not a kind of reference"]);
    problem(&rule("channel: ${var:a b}"), &["may hold letters"]);
    // Credentials hold references to sealed secrets, never values (the document is stored as written).
    let creds = |c: &str| format!("{HEAD}connections:\n  s:\n    type: slack\n    name: S\n    credentials: {c}\n");
    problem(&creds("{access_token: xoxb-real-token}"), &["connections.s.credentials.access_token", "never values"]);
    problem(&creds("{access_token: '${env:TOKEN}'}"), &["not ${env:NAME}"]);
    problem(&creds("{port: 25}"), &["never values"]);
    problem(&format!("{HEAD}variables:\n  v: {{default: tok}}\nconnections:\n  s:\n    type: slack\n    name: S\n    credentials: {{t: '${{var:v}}'}}\n"), &["never values"]);
    assert_eq!(problems(&creds("{access_token: 'Bearer ${secret:t}', empty: ''}")), Vec::<String>::new());
    problem(
        &format!("{HEAD}templates:\n  t: x\nconnections:\n  s: {{type: slack, name: '${{template:t}}'}}\n"),
        &["connections.s.name", "only the whole value"],
    );
    // Secrets in credentials, env for the CLI, $${ for a literal, and the declared ones pass.
    let fine = format!(
        "{HEAD}variables:\n  c: {{default: '#a'}}\ntemplates:\n  t: hi\nconnections:\n  s:\n    type: slack\n    name: S ${{var:c}}\n    config: {{base_url: '${{env:SLACK_URL}}'}}\n    credentials: {{access_token: '${{secret:tok}}'}}\nrules:\n  r:\n    name: R $${{x}}\n    event: a.*\n    connection: s\n    action_config: {{channel: '${{var:c}}', template: '${{template:t}}'}}\n"
    );
    assert_eq!(problems(&fine), Vec::<String>::new());
}

#[test]
fn pieces_split_text_and_references() {
    assert_eq!(pieces("a ${var:b} c").unwrap(), vec![Ok("a ".into()), Err(Reference::Var("b".into())), Ok(" c".into())]);
    assert_eq!(pieces("$${var:b}$5").unwrap(), vec![Ok("${var:b}$5".into())]);
    assert_eq!(pieces("${env:X}").unwrap(), vec![Err(Reference::Env("X".into()))]);
    assert_eq!(pieces("").unwrap(), Vec::<Result<String, Reference>>::new());
}

#[test]
fn rules_connections_and_the_rest_are_checked_against_the_server() {
    problem(
        &format!("{HEAD}connections:\n  s: {{type: slak, name: S}}\n"),
        &["connections.s.type", "\"slak\" is not a connection type", "slack"],
    );
    let rule = |action: &str, event: &str| {
        format!("{HEAD}connections:\n  s: {{type: slack, name: S}}\nrules:\n  r: {{name: R, event: '{event}', connection: s, action: {action}}}\n")
    };
    problem(&rule("post", "a"), &["rules.r.action", "\"post\" is not a slack action", "send_message"]);
    problem(&rule("send_message", "a.b*"), &["rules.r.event", "stand alone"]);
    problem(&format!("{HEAD}rules:\n  r: {{name: R, event: a, connection: s}}\n"), &["4:26: rules.r.connection", "none are"]);
    problem(&format!("{HEAD}templates:\n  t: '{{{{ x '\n"), &["templates.t", "template syntax error"]);
    problem(&format!("{HEAD}mappings:\n  m: {{fields: []}}\n"), &["mappings.m", "not a mapping", "schema_version"]);
    problem(&format!("{HEAD}event_types:\n  'a b': {{}}\n"), &["4:3: event_types[\"a b\"]", "not an event name"]);
    problem(&format!("{HEAD}event_types:\n  a.b: {{example: 3}}\n"), &["event_types[\"a.b\"].example", "must be an object"]);
    problem(&format!("{HEAD}connections:\n  'a.b': {{type: slack, name: S}}\n"), &["connections[\"a.b\"]", "may hold letters"]);
    problem(&format!("{HEAD}connections:\n  s: {{type: slack, name: ' '}}\n"), &["connections.s.name", "1 to 200"]);
}

#[test]
fn names_targets_and_values_are_checked() {
    problem("version: 2\nname: demo\n", &["1:1: version", "version 2 is not known"]);
    problem("version: 1\nname: Demo\n", &["2:1: name", "a-z"]);
    problem(&format!("{HEAD}targets:\n  workspaces: [ws_1]\n"), &["4:16: targets.workspaces[0]", "not a workspace id"]);
    problem(&format!("{HEAD}targets:\n  labels: {{env: 'a b'}}\n"), &["targets.labels.env", "labels and their values"]);
    problem(&format!("{HEAD}values:\n  - variables: {{}}\n"), &["4:5: values[0]", "name the workspaces"]);
    problem(
        &format!("{HEAD}values:\n  - labels: {{env: dev}}\n    variables: {{nope: 1}}\n"),
        &["5:17: values[0].variables.nope", "no variable \"nope\""],
    );
    // Every problem is reported, in the document's order.
    let many = format!("{HEAD}connections:\n  s: {{type: slak, name: S}}\nrules:\n  r: {{name: R, event: a, connection: t}}\n");
    let p = problems(&many);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(p[0].starts_with("4:") && p[1].starts_with("6:"), "{p:#?}");
}

#[test]
fn the_published_schema_is_the_one_the_server_reads() {
    let committed: Value = serde_json::from_str(include_str!("../../../../docs/blueprint.schema.json")).unwrap();
    assert_eq!(
        committed,
        json_schema(),
        "docs/blueprint.schema.json is out of date: regenerate it with `switchyard blueprint schema > docs/blueprint.schema.json`"
    );
    let properties = committed["properties"].as_object().unwrap();
    for key in ["version", "name", "targets", "variables", "values", "event_types", "templates", "mappings", "connections", "rules"] {
        assert!(properties.contains_key(key), "{key}");
    }
    assert_eq!(committed["additionalProperties"], false);
}

mod resolving {
    use super::super::resolve::{referenced, resolve, selects, Workspace};
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn each_environment_gets_its_own_values_and_secrets_stay_references() {
        let b = parse(EXAMPLE, &registry()).unwrap();
        let dev_labels = labels(&[("product", "acme"), ("env", "dev")]);
        let prod_labels = labels(&[("product", "acme"), ("env", "prod")]);
        let dev = Workspace { id: "ws_dev", labels: &dev_labels };
        let prod = Workspace { id: "ws_prod", labels: &prod_labels };
        assert!(selects(&b.targets, dev) && selects(&b.targets, prod));
        let other = labels(&[("product", "globex"), ("env", "prod")]);
        assert!(!selects(&b.targets, Workspace { id: "ws_x", labels: &other }));

        let d = resolve(&b, dev, &referenced).unwrap();
        let p = resolve(&b, prod, &referenced).unwrap();
        assert_eq!(d.rules["alerts"].1["action_config"]["channel"], "#dev-alerts");
        assert_eq!(p.rules["alerts"].1["action_config"]["channel"], "#alerts", "the default where no entry gives one");
        assert_eq!(d.rules["alerts"].1["name"], "Alerts to #dev-alerts");
        // A whole-string reference keeps the variable's type.
        assert_eq!(d.rules["alerts"].1["conditions"]["all"][0]["value"], json!(1));
        assert_eq!(p.rules["alerts"].1["conditions"]["all"][0]["value"], json!(2));
        assert_eq!(p.rules["signups"].1["action_config"]["id"], "103");
        assert_eq!(d.rules["signups"].0, "hubspot");
        assert_eq!(d.rules["signups"].1["action_config"]["mapping"], b.mappings["signup"]);
        assert_eq!(d.rules["alerts"].1["action_config"]["template"], json!(b.templates["alert"]));
        assert!(d.rules["alerts"].1.get("connection").is_none());
        // Secrets are named, never filled in by a plan.
        assert_eq!(d.connections["slack"]["credentials"], json!({"access_token": "${secret:slack_token}"}));
        assert_eq!(d.secrets["hubspot"], ["hubspot_token"]);
        assert_eq!(d.connections["hubspot"]["max_in_flight"], json!(4));
        assert_eq!(d.event_types.len(), 2);
    }

    #[test]
    fn a_variable_without_a_value_is_a_problem_where_it_is_used() {
        let b = parse(EXAMPLE, &registry()).unwrap();
        // Labelled for the blueprint, but no entry of `values` gives hubspot_list.
        let none = labels(&[("product", "acme")]);
        let problems = resolve(&b, Workspace { id: "ws_1", labels: &none }, &referenced).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, "rules.signups.action_config.id");
        assert!(problems[0].message.contains("\"hubspot_list\" has no value"), "{}", problems[0].message);
        // Values can name the workspace by id as well.
        let mut b = b;
        b.values.push(Values {
            workspaces: vec!["ws_1".into()],
            variables: [("hubspot_list".to_owned(), Scalar::Text("9".into()))].into(),
            ..Values::default()
        });
        let r = resolve(&b, Workspace { id: "ws_1", labels: &none }, &referenced).unwrap();
        assert_eq!(r.rules["signups"].1["action_config"]["id"], "9");
    }

    #[test]
    fn literal_dollar_braces_survive_and_env_references_are_the_cli_s() {
        let text = format!(
            "{HEAD}variables:\n  v: {{default: 'x${{y'}}\nconnections:\n  s:\n    type: webhook\n    name: 'N $${{a}} ${{var:v}}'\n    credentials: {{t: 'pre-${{secret:tok}}-$${{lit}}'}}\nrules:\n  r: {{name: 'R $${{b}}', event: a, connection: s}}\n"
        );
        let b = parse(&text, &registry()).unwrap();
        let none = BTreeMap::new();
        let ws = Workspace { id: "ws_1", labels: &none };
        let r = resolve(&b, ws, &referenced).unwrap();
        assert_eq!(r.connections["s"]["name"], "N ${a} x${y");
        assert_eq!(r.rules["r"].1["name"], "R ${b}");
        assert_eq!(r.connections["s"]["credentials"], json!({"t": "pre-${secret:tok}-${lit}"}));
        assert_eq!(r.secrets["s"], ["tok"]);
        // At apply, the secret's value goes in as it is: never read again for references.
        let opened = resolve(&b, ws, &|n| (n == "tok").then(|| "S3${secret:other}$".to_owned())).unwrap();
        assert_eq!(opened.connections["s"]["credentials"], json!({"t": "pre-S3${secret:other}$-${lit}"}));
        assert_eq!(opened.secrets["s"], ["tok"]);
        let problems = resolve(&b, ws, &|_| None).unwrap_err();
        assert!(problems[0].message.contains("no secret \"tok\""), "{problems:#?}");

        let tricky = format!(
            "{HEAD}variables:\n  v: {{default: 'a$${{b$'}}\nconnections:\n  s:\n    type: webhook\n    name: '${{var:v}}'\n    config: {{url: 'x ${{var:v}}{{secret:k}}'}}\n"
        );
        let b = parse(&tricky, &registry()).unwrap();
        let r = resolve(&b, ws, &referenced).unwrap();
        assert_eq!(r.connections["s"]["name"], "a$${b$", "a variable's value is not read for references");
        assert_eq!(r.connections["s"]["config"]["url"], "x a$${b${secret:k}");
        assert!(r.secrets["s"].is_empty());

        let env = format!("{HEAD}connections:\n  s: {{type: webhook, name: '${{env:NAME}}'}}\n");
        let b = parse(&env, &registry()).unwrap();
        let problems = resolve(&b, Workspace { id: "ws_1", labels: &none }, &referenced).unwrap_err();
        assert!(problems[0].message.contains("is for the CLI"), "{problems:#?}");
    }
}

mod writing {
    use super::*;

    #[test]
    fn yaml_written_for_an_export_reads_back_as_the_same_value() {
        let tricky = serde_json::json!({
            "version": 1,
            "name": "x",
            "texts": ["true", "null", "~", "0x1F", "1e3", "2014-12-31", "#channel", "- item", "a: b", "", " padded ", "yes", "on",
                      ".inf", "$${literal}", "line one\nline two\n", "trailing  \nspaces", "tab\there", "quote \" and '", "ünïcødé"],
            "numbers": [0, -5, 1.5, 123456789012_i64],
            "flags": [true, false, null],
            "empty": {"map": {}, "list": []},
            "keys": {"user.created": 1, "with space": 2, "123": 3, "true": 4},
        });
        let text = yaml::to_yaml(&tricky);
        let back = yaml::load(&text).unwrap_or_else(|e| panic!("{e}\n{text}")).value;
        assert_eq!(back, tricky, "{text}");
        // A blueprint's own fields come in reading order.
        assert!(text.starts_with("version: 1\nname: x\n"), "{text}");
        // Text the YAML emitter would leave unquoted yet YAML 1.2 reads as a number (an octal
        // `0o17`): the whole document is written as JSON instead, which reads back the same.
        let octal = serde_json::json!({"version": 1, "name": "x", "text": "0o17"});
        let text = yaml::to_yaml(&octal);
        assert!(text.starts_with('{'), "{text}");
        assert_eq!(yaml::load(&text).unwrap().value, octal);
    }

    #[test]
    fn env_references_are_filled_in_as_text_and_the_others_kept() {
        let text = format!(
            "{HEAD}variables:\n  v: {{default: a}}\nconnections:\n  hook:\n    type: webhook\n    name: \"${{env:NAME}} and ${{var:v}}\"\n    config: {{url: \"${{env:URL}}\"}}\n    credentials: {{bearer_token: \"${{secret:token}}\"}}\n"
        );
        let b = parse(&text, &registry()).unwrap();
        let env = |name: &str| match name {
            "NAME" => Some("has ${var:v} inside".to_owned()),
            "URL" => Some("https://hooks.example.com/a".to_owned()),
            _ => None,
        };
        let (filled, used) = fill_env(&b, &env).unwrap();
        assert!(used);
        let c = &filled.connections["hook"];
        assert_eq!(c.name, "has $${var:v} inside and ${var:v}", "a value put in is text, never read again");
        assert_eq!(c.config.as_ref().unwrap()["url"], "https://hooks.example.com/a");
        assert_eq!(c.credentials.as_ref().unwrap()["bearer_token"], "${secret:token}");
        // What the server then reads has no env reference left.
        let sent = serde_json::to_string(&filled).unwrap();
        assert!(parse_submitted(&sent, &registry()).is_ok());
        let missing = fill_env(&b, &|_| None).unwrap_err();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains("NAME") || missing[1].contains("NAME"));
        let (same, used) = fill_env(&parse(EXAMPLE, &registry()).unwrap(), &env).unwrap();
        assert!(!used);
        assert_eq!(same, parse(EXAMPLE, &registry()).unwrap());
    }

    #[test]
    fn resources_and_override_paths_are_named_as_plans_name_them() {
        use switchyard_store::ManagedKind;
        assert_eq!(plan::parse_resource("rules.alerts"), Some((ManagedKind::Rule, "alerts".into())));
        assert_eq!(plan::parse_resource("event_types[\"user.created\"]"), Some((ManagedKind::EventType, "user.created".into())));
        assert_eq!(plan::resource_name(ManagedKind::EventType, "user.created"), "event_types[\"user.created\"]");
        for bad in ["rules", "rules.", "webhooks.x", "rules.a.b", "rules[\"a\"", "rules[1]", ""] {
            assert_eq!(plan::parse_resource(bad), None, "{bad}");
        }
        assert!(plan::valid_override(ManagedKind::Rule, "action_config.channel"));
        assert!(plan::valid_override(ManagedKind::Rule, "action_config[\"a.b\"]"));
        assert!(plan::valid_override(ManagedKind::Connection, "credentials"));
        for bad in ["colour", "", ".", "action_config..x", "[\"unclosed", "event_types"] {
            assert!(!plan::valid_override(ManagedKind::Rule, bad), "{bad}");
        }
    }
}
