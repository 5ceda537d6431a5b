//! YAML (and JSON, which YAML 1.2 reads) into a `serde_json::Value`, remembering where each value
//! was written so that a problem found later names its line.
//!
//! Only what a JSON document can say is accepted: anchors may be set but aliases (`*name`) are
//! refused (so a small document cannot expand into a huge one), tags other than `!!str` are
//! refused, keys are text, a key appears once per mapping, nesting stops at [`MAX_DEPTH`], and
//! `.inf` / `.nan` have no JSON form.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::Problem;

/// The deepest nesting of mappings and sequences accepted.
pub const MAX_DEPTH: usize = 64;
/// The longest key accepted, in bytes.
pub const MAX_KEY: usize = 256;

/// Where each key and list item was written, as a tree: each node holds its own segment of the
/// path (`.key`, `["a.b"]`, `[3]`) and its parent, so memory grows with the document, not with
/// its depth times its size.
#[derive(Default)]
struct Positions {
    /// (parent, segment, line and column); node 0 is the root.
    nodes: Vec<(usize, String, (usize, usize))>,
    children: HashMap<(usize, String), usize>,
}

impl Positions {
    fn root(&mut self, at: (usize, usize)) -> usize {
        if self.nodes.is_empty() {
            self.nodes.push((0, String::new(), at));
        }
        0
    }

    fn add(&mut self, parent: usize, segment: String, at: (usize, usize)) -> usize {
        let id = self.nodes.len();
        self.children.insert((parent, segment.clone()), id);
        self.nodes.push((parent, segment, at));
        id
    }

    /// The path of `node`, as [`join`] writes paths.
    fn path(&self, mut node: usize) -> String {
        let mut segments = Vec::new();
        while node != 0 {
            segments.push(self.nodes[node].1.as_str());
            node = self.nodes[node].0;
        }
        segments.iter().rev().fold(String::new(), |path, s| join(&path, s))
    }

    /// The node of `path`, or of its nearest ancestor written down (then `false`).
    fn find(&self, path: &str) -> Option<(usize, bool)> {
        if self.nodes.is_empty() {
            return None;
        }
        let mut node = 0;
        for segment in segments(path) {
            match self.children.get(&(node, segment)) {
                Some(child) => node = *child,
                None => return Some((node, false)),
            }
        }
        Some((node, true))
    }
}

/// A document read: its value and where each path's key or item was written.
pub struct Document {
    pub value: Value,
    positions: Positions,
}

impl Document {
    /// A problem at `path`, placed at the nearest written position at or above it. serde's
    /// "unknown field" points at the mapping holding the field: the problem moves to the field.
    pub fn problem(&self, path: &str, message: String) -> Problem {
        let mut path = path.to_owned();
        if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
            let inner = join(&path, &segment(field));
            if self.positions.find(&inner).is_some_and(|(_, exact)| exact) {
                path = inner;
            }
        }
        match self.positions.find(&path) {
            Some((node, _)) => {
                let (line, column) = self.positions.nodes[node].2;
                Problem { line, column, field: path, message }
            }
            None => Problem { line: 0, column: 0, field: path, message },
        }
    }
}

/// The path of `key` in a map: `.key`, or `["a.b"]` for a key that is not a plain word.
pub fn segment(key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')) {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

/// `path` followed by `segment` (no leading dot at the root).
fn join(path: &str, segment: &str) -> String {
    if path.is_empty() {
        segment.trim_start_matches('.').to_owned()
    } else {
        format!("{path}{segment}")
    }
}

/// The segments of a path written by [`join`]: `.key`, `["a.b"]`, `[3]`.
fn segments(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in path.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '.' | '[' if !quoted && !current.is_empty() => out.push(std::mem::take(&mut current)),
            _ => {}
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    // The first segment of a path has no leading dot.
    if let Some(first) = out.first_mut() {
        if !first.starts_with(['.', '[']) {
            first.insert(0, '.');
        }
    }
    out
}

/// The path serde_path_to_error reports, written as [`segment`] writes it.
pub fn path_of(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for s in path.iter() {
        match s {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => out = join(&out, &segment(key)),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

enum Frame {
    Seq {
        node: usize,
        items: Vec<Value>,
    },
    /// `item`: an item of a list, which is placed where its first key is (a block mapping's
    /// start is reported after its first key's colon). `key_node`: the current key's position.
    Map {
        node: usize,
        map: Map<String, Value>,
        key: Option<(String, usize)>,
        item: bool,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: Positions,
    error: Option<Problem>,
}

/// A tag as it was written: `!!binary`, not `tag:yaml.org,2002:binary`.
fn written(tag: &Tag) -> String {
    let handle = if tag.handle == "tag:yaml.org,2002:" { "!!" } else { tag.handle.as_str() };
    format!("{handle}{}", tag.suffix)
}

fn at(mark: &Marker) -> (usize, usize) {
    (mark.line(), mark.col() + 1)
}

impl Builder {
    fn fail(&mut self, mark: &Marker, message: impl Into<String>) {
        if self.error.is_none() {
            let (line, column) = at(mark);
            let node = self.stack.last().map(|f| match f {
                Frame::Seq { node, .. } | Frame::Map { node, .. } => *node,
            });
            let field = node.map(|n| self.positions.path(n)).unwrap_or_default();
            self.error = Some(Problem { line, column, field, message: message.into() });
        }
    }

    /// The position node of the value that starts now, recording where it starts; `None` (having
    /// failed) where a key is expected.
    fn next_node(&mut self, mark: &Marker) -> Option<usize> {
        let node = match self.stack.last() {
            None => self.positions.root(at(mark)),
            Some(Frame::Seq { node, items }) => {
                let (parent, segment) = (*node, format!("[{}]", items.len()));
                self.positions.add(parent, segment, at(mark))
            }
            Some(Frame::Map { key: Some((_, node)), .. }) => *node,
            Some(Frame::Map { key: None, .. }) => {
                self.fail(mark, "a key must be text, not a mapping or a list");
                return None;
            }
        };
        Some(node)
    }

    fn place(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some((k, _)) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn open(&mut self, mark: &Marker, tag: Option<Tag>, seq: bool) {
        if let Some(tag) = tag {
            return self.fail(mark, format!("tags ({}) are not supported", written(&tag)));
        }
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(mark, format!("the document nests deeper than {MAX_DEPTH} levels"));
        }
        let Some(node) = self.next_node(mark) else { return };
        let item = matches!(self.stack.last(), Some(Frame::Seq { .. }));
        self.stack.push(if seq { Frame::Seq { node, items: Vec::new() } } else { Frame::Map { node, map: Map::new(), key: None, item } });
    }

    fn close(&mut self) {
        let value = match self.stack.pop() {
            Some(Frame::Seq { items, .. }) => Value::Array(items),
            Some(Frame::Map { map, .. }) => Value::Object(map),
            None => return,
        };
        self.place(value);
    }

    fn scalar(&mut self, mark: &Marker, text: String, style: TScalarStyle, tag: Option<Tag>) {
        let plain = match &tag {
            None => style == TScalarStyle::Plain,
            Some(t) if t.handle == "!!" && t.suffix == "str" => false,
            Some(t) if t.handle == "tag:yaml.org,2002:" && t.suffix == "str" => false,
            Some(t) => return self.fail(mark, format!("tags ({}) are not supported", written(t))),
        };
        // A key.
        if let Some(Frame::Map { node, map, key, item }) = self.stack.last_mut() {
            if key.is_none() {
                let (node, first_of_item) = (*node, *item && map.is_empty());
                if text.len() > MAX_KEY {
                    return self.fail(mark, format!("a key is at most {MAX_KEY} bytes; this one is {}", text.len()));
                }
                if map.contains_key(&text) {
                    let shown: String = text.chars().take(64).collect();
                    return self.fail(mark, format!("{shown:?} appears twice in this mapping"));
                }
                if first_of_item {
                    self.positions.nodes[node].2 = at(mark);
                }
                let key_node = self.positions.add(node, segment(&text), at(mark));
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some((text, key_node));
                }
                return;
            }
        }
        if self.next_node(mark).is_none() {
            return;
        }
        let value = if plain {
            match resolve(&text) {
                Ok(v) => v,
                Err(m) => return self.fail(mark, m),
            }
        } else {
            Value::String(text)
        };
        self.place(value);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match event {
            Event::Alias(_) => self.fail(&mark, "aliases (*name) are not supported; repeat the value, or use a template or a variable"),
            Event::Scalar(text, style, _, tag) => self.scalar(&mark, text, style, tag),
            Event::SequenceStart(_, tag) => self.open(&mark, tag, true),
            Event::MappingStart(_, tag) => self.open(&mark, tag, false),
            Event::SequenceEnd | Event::MappingEnd => self.close(),
            _ => {}
        }
    }
}

/// A plain scalar as YAML 1.2's core schema reads it.
fn resolve(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let lower = unsigned.to_ascii_lowercase();
    if lower == ".inf" || lower == ".nan" {
        return Err(format!("{text} has no JSON form; quote it to mean the text"));
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return Ok(Value::Number(n.into()));
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(n) = u64::from_str_radix(oct, 8) {
            return Ok(Value::Number(n.into()));
        }
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(unsigned) {
        if let Ok(n) = text.trim_start_matches('+').parse::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = text.trim_start_matches('+').parse::<u64>() {
            return Ok(Value::Number(n.into()));
        }
    }
    // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => (whole.is_empty() && digits(fraction)) || (digits(whole) && (fraction.is_empty() || digits(fraction))),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix(['-', '+']).unwrap_or(e)));
    if mantissa_ok && exponent_ok {
        if let Some(n) = text.trim_start_matches('+').parse::<f64>().ok().and_then(Number::from_f64) {
            return Ok(Value::Number(n));
        }
    }
    Ok(Value::String(text.to_owned()))
}

/// Reads one document. The parser is driven event by event (its own loader recurses once per
/// level of nesting, so a deep document could exhaust the stack), and stops at the first problem.
pub fn load(text: &str) -> Result<Document, Problem> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    while builder.error.is_none() {
        let (event, mark) = match parser.next_token() {
            Ok(e) => e,
            Err(e) => {
                let (line, column) = at(e.marker());
                return Err(Problem { line, column, field: String::new(), message: format!("not valid YAML: {}", e.info()) });
            }
        };
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    builder.fail(&mark, "a file holds one blueprint: this is a second document (after ---)");
                }
            }
            event => builder.on_event(event, mark),
        }
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    match builder.root {
        Some(value) => Ok(Document { value, positions: builder.positions }),
        None => Err(Problem { line: 0, column: 0, field: String::new(), message: "the document is empty".into() }),
    }
}

/// A JSON value as YAML (multi-line strings as blocks), read back to check that it means the
/// same; JSON (which YAML reads too) when it would not.
pub fn to_yaml(value: &Value) -> String {
    const FIRST: &[&str] = &[
        "version",
        "name",
        "type",
        "description",
        "targets",
        "variables",
        "values",
        "event_types",
        "templates",
        "mappings",
        "connections",
        "rules",
        "event",
        "connection",
        "action",
        "action_config",
        "conditions",
        "active",
        "config",
        "credentials",
    ];
    fn node(v: &Value) -> yaml_rust2::Yaml {
        use yaml_rust2::Yaml;
        match v {
            Value::Null => Yaml::Null,
            Value::Bool(b) => Yaml::Boolean(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Yaml::Integer(i),
                None => Yaml::Real(n.to_string()),
            },
            Value::String(s) => Yaml::String(s.clone()),
            Value::Array(items) => Yaml::Array(items.iter().map(node).collect()),
            Value::Object(map) => {
                // A blueprint's own fields in the order people read them; the rest by name.
                let rank = |k: &str| FIRST.iter().position(|f| *f == k).unwrap_or(FIRST.len());
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort_by(|a, b| (rank(a), *a).cmp(&(rank(b), *b)));
                Yaml::Hash(keys.into_iter().map(|k| (Yaml::String(k.clone()), node(&map[k]))).collect())
            }
        }
    }
    let mut out = String::new();
    let mut emitter = yaml_rust2::YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    let emitted = emitter.dump(&node(value)).is_ok();
    let text = out.strip_prefix("---\n").unwrap_or(&out).to_owned() + "\n";
    match load(&text) {
        Ok(back) if emitted && back.value == *value => text,
        _ => serde_json::to_string_pretty(value).unwrap_or_default() + "\n",
    }
}
