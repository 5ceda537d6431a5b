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

/// A document read: its value and where each path's key or item was written.
pub struct Document {
    pub value: Value,
    positions: HashMap<String, (usize, usize)>,
}

impl Document {
    /// A problem at `path`, placed at the nearest written position at or above it. serde's
    /// "unknown field" points at the mapping holding the field: the problem moves to the field.
    pub fn problem(&self, path: &str, message: String) -> Problem {
        let mut path = path.to_owned();
        if let Some(field) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
            let inner = join(&path, &segment(field));
            if self.positions.contains_key(&inner) {
                path = inner;
            }
        }
        let mut at = path.as_str();
        loop {
            if let Some((line, column)) = self.positions.get(at) {
                return Problem { line: *line, column: *column, field: path.clone(), message };
            }
            match parent(at) {
                Some(p) => at = p,
                None => return Problem { line: 0, column: 0, field: path.clone(), message },
            }
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

/// The path one level up, or `None` at the root.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    // The last segment starts at the last `.` or `[` outside a quoted key.
    let (mut cut, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in path.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '.' | '[' if !quoted => cut = i,
            _ => {}
        }
    }
    Some(&path[..cut])
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
        path: String,
        items: Vec<Value>,
    },
    /// `item`: an item of a list, which is placed where its first key is (a block mapping's
    /// start is reported after its first key's colon).
    Map {
        path: String,
        map: Map<String, Value>,
        key: Option<String>,
        item: bool,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    positions: HashMap<String, (usize, usize)>,
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
            let field = self.stack.last().map(|f| match f {
                Frame::Seq { path, .. } | Frame::Map { path, .. } => path.clone(),
            });
            self.error = Some(Problem { line, column, field: field.unwrap_or_default(), message: message.into() });
        }
    }

    /// The path of the value that starts now, recording where it starts; `None` (having failed)
    /// where a key is expected.
    fn next_path(&mut self, mark: &Marker) -> Option<String> {
        let path = match self.stack.last() {
            None => {
                self.positions.insert(String::new(), at(mark));
                String::new()
            }
            Some(Frame::Seq { path, items }) => {
                let p = format!("{path}[{}]", items.len());
                self.positions.insert(p.clone(), at(mark));
                p
            }
            Some(Frame::Map { path, key: Some(k), .. }) => join(path, &segment(k)),
            Some(Frame::Map { key: None, .. }) => {
                self.fail(mark, "a key must be text, not a mapping or a list");
                return None;
            }
        };
        Some(path)
    }

    fn place(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn open(&mut self, mark: &Marker, tag: Option<Tag>, seq: bool) {
        if let Some(tag) = tag {
            return self.fail(mark, format!("tags ({}) are not supported", written(&tag)));
        }
        let Some(path) = self.next_path(mark) else { return };
        if self.stack.len() >= MAX_DEPTH {
            return self.fail(mark, format!("the document nests deeper than {MAX_DEPTH} levels"));
        }
        let item = matches!(self.stack.last(), Some(Frame::Seq { .. }));
        self.stack.push(if seq { Frame::Seq { path, items: Vec::new() } } else { Frame::Map { path, map: Map::new(), key: None, item } });
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
        if let Some(Frame::Map { path, map, key, item }) = self.stack.last_mut() {
            if key.is_none() {
                if *item && map.is_empty() {
                    self.positions.insert(path.clone(), at(mark));
                }
                if map.contains_key(&text) {
                    let message = format!("{text:?} appears twice in this mapping");
                    return self.fail(mark, message);
                }
                self.positions.insert(join(path, &segment(&text)), at(mark));
                *key = Some(text);
                return;
            }
        }
        if self.next_path(mark).is_none() {
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

/// Reads one document.
pub fn load(text: &str) -> Result<Document, Problem> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let (line, column) = at(e.marker());
        return Err(Problem { line, column, field: String::new(), message: format!("not valid YAML: {}", e.info()) });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    match builder.root {
        Some(value) => Ok(Document { value, positions: builder.positions }),
        None => Err(Problem { line: 0, column: 0, field: String::new(), message: "the document is empty".into() }),
    }
}
