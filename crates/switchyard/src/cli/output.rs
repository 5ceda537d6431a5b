//! Tables and records for people, JSON for scripts.

use chrono::{DateTime, Utc};
use serde::Serialize;
use std::io::Write;

/// A table with a header row, columns as wide as their widest cell; cells never wrap.
pub struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&'static str]) -> Self {
        Self { header: header.to_vec(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                if i + 1 == widths.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let mut out = line(&mut self.header.iter().copied());
        for row in &self.rows {
            out.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        out
    }

    pub fn print(&self, empty: &str, next_cursor: Option<&str>) {
        let mut stdout = std::io::stdout().lock();
        if self.rows.is_empty() {
            let _ = writeln!(stdout, "{empty}");
        } else {
            let _ = stdout.write_all(self.render().as_bytes());
        }
        if let Some(cursor) = next_cursor {
            let _ = writeln!(stdout, "\nmore: --cursor {cursor} (or --all)");
        }
    }
}

/// `label: value` lines, labels aligned.
pub fn record(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut stdout = std::io::stdout().lock();
    for (k, v) in fields {
        let _ = writeln!(stdout, "{k:width$}  {v}");
    }
}

pub fn json<T: Serialize + ?Sized>(value: &T) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer_pretty(&mut stdout, value);
    let _ = writeln!(stdout);
}

/// One JSON document per line, flushed at once (for `events tail --json`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) {
    let mut stdout = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut stdout, value);
    let _ = writeln!(stdout);
    let _ = stdout.flush();
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "-".into())
}

pub fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

pub fn compact(v: &serde_json::Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_lines_have_no_trailing_space() {
        let mut t = Table::new(&["ID", "NAME", "NOTE"]);
        t.row(vec!["ws_1".into(), "a much longer name".into(), "".into()]);
        t.row(vec!["ws_22".into(), "b".into(), "x".into()]);
        assert_eq!(t.render(), "ID     NAME                NOTE\nws_1   a much longer name\nws_22  b                   x\n");
    }
}
