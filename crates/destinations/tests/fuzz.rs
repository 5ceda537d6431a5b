//! Fuzzing of what tenants write for actions: message templates (`template::check`, `render`,
//! `render_html`) and field mappings (`Mapping::parse` / `apply`, `lookup`, `parse_instant`,
//! `parse_zone`).
//!
//! Each target first runs every seed of its corpus (`tests/corpus/templates`, `tests/corpus/mappings`
//! at the repository's root), then proptest properties over generated inputs: templates assembled
//! from the real syntax (tags, loops, macros, filters, expressions) and token soup, mappings from
//! the real transforms with right and wrong option types, and arbitrary JSON and text. Nothing may
//! panic or run long; rendered output stays within `MAX_OUTPUT`, and a render's heap within the
//! sandbox's memory budget. Failures proptest finds are kept in `tests/corpus/<target>/regressions.txt`
//! and replayed first.
//!
//! Template seeds render in a child process (this test binary, re-run on one test) whose heap is
//! capped at the sandbox's budget, as production renders in worker processes (`crate::sandbox`):
//! seeds named `sandbox-*` are allowed to end there (out of memory or time, as a worker would be);
//! every other seed must render, or fail cleanly, within the limits in-process.
//!
//! A longer run: `PROPTEST_CASES=20000 cargo test -p switchyard-destinations --test fuzz`.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{json, Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use switchyard_destinations::mapping::{self, Mapping};
use switchyard_destinations::sandbox::Limits;
use switchyard_destinations::template::{self, MAX_OUTPUT, MAX_SOURCE};

// ---------------------------------------------------------------------------------------------
// Heap accounting: each thread's live bytes and their peak, and a cap on them.

/// The system allocator, counting each thread's live bytes; past [`CAP`] an allocation fails
/// (and the process aborts with "memory allocation of N bytes failed", as a capped worker does).
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most live bytes one thread may hold: a safety net for the in-process properties, the
/// sandbox's budget in a seed's child process.
static CAP: AtomicUsize = AtomicUsize::new(1 << 30);

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Counts `delta` bytes on this thread; false when that would pass the cap.
fn charge(delta: isize) -> bool {
    LIVE.try_with(|live| {
        let now = live.get() + delta;
        if delta > 0 && now > CAP.load(Ordering::Relaxed) as isize {
            return false;
        }
        live.set(now);
        PEAK.with(|peak| peak.set(peak.get().max(now)));
        true
    })
    .unwrap_or(true)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc(layout) };
        if p.is_null() {
            charge(-(layout.size() as isize));
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !charge(layout.size() as isize) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.alloc_zeroed(layout) };
        if p.is_null() {
            charge(-(layout.size() as isize));
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        charge(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let delta = new_size as isize - layout.size() as isize;
        if !charge(delta) {
            return std::ptr::null_mut();
        }
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if p.is_null() {
            charge(-delta);
        }
        p
    }
}

/// Runs `f` on this thread; returns its result and the most heap it held at once beyond what
/// the thread held before.
fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f();
    (out, (PEAK.with(Cell::get) - base).max(0) as usize)
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// The sandbox's limits: a worker's memory budget and a render's wall time.
fn budget() -> (usize, Duration) {
    let limits = Limits::default();
    (limits.memory_bytes as usize, limits.time)
}

/// `cases` unless `PROPTEST_CASES` asks for another number; failures persist in the corpus.
fn config(cases: u32, regressions: &'static str) -> ProptestConfig {
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { cases },
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        max_shrink_iters: 2_048,
        max_shrink_time: 60_000,
        ..ProptestConfig::default()
    }
}

/// The seeds of one corpus target, sorted by name (the regressions file is proptest's, not a seed).
fn seeds(dir: &str) -> Vec<(String, std::path::PathBuf)> {
    let mut seeds: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.file_name().is_some_and(|n| n != "regressions.txt"))
        .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), path))
        .collect();
    seeds.sort();
    assert!(seeds.len() >= 10, "{dir} holds only {} seeds", seeds.len());
    seeds
}

/// The first and the last instant chrono can hold, in unix milliseconds.
const FIRST_MILLIS: i64 = chrono::DateTime::<chrono::Utc>::MIN_UTC.timestamp_millis();
const LAST_MILLIS: i64 = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis();

/// Any instant chrono can hold, in unix milliseconds, often one at either end.
fn arb_millis() -> impl Strategy<Value = i64> {
    prop_oneof![
        2 => FIRST_MILLIS..=LAST_MILLIS,
        1 => FIRST_MILLIS..FIRST_MILLIS + 30 * 86_400_000,
        1 => LAST_MILLIS - 30 * 86_400_000..=LAST_MILLIS,
        1 => -2_208_988_800_000i64..4_102_444_800_000, // 1900 to 2100
    ]
}

/// Arbitrary JSON of bounded depth, with the scalars that trip conversions.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        prop::sample::select(vec![0i64, 1, -1, 1_700_000_000, 1_700_000_000_000, FIRST_MILLIS, LAST_MILLIS]).prop_map(Value::from),
        arb_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "",
            " Ada@Example.COM ",
            "42",
            "-0",
            "1e400",
            "yes",
            "off",
            "2026-11-23T17:00:00Z",
            "2026-02-30",
            "+262143-12-31T23:59:59Z",
            "ß ﬁ İ",
            "é\u{301}",
            "\u{0}",
            "<b>&amp;</b>",
            "{{ x }}",
            "🦀",
        ])
        .prop_map(str::to_owned),
        "[a-z0-9 .:-]{0,12}",
        any::<String>(),
    ]
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["user", "name", "email", "items", "tags", "at", "0", "a", "b", "sku"]).prop_map(str::to_owned),
        "[a-z0-9_]{1,5}",
        any::<String>(),
    ]
}

/// A template context as deliveries build it, with an arbitrary payload (or the usual one).
fn arb_context() -> impl Strategy<Value = Value> {
    (prop_oneof![Just(usual_payload()), arb_json()], arb_text(), prop::option::of(arb_text())).prop_map(|(payload, event, resource)| {
        json!({"event": event, "event_id": "evt_1", "payload": payload, "resource": resource, "resource_id": null,
               "workspace_id": "ws_1", "occurred_at": "2026-11-23T17:00:00+00:00"})
    })
}

fn usual_payload() -> Value {
    json!({"user": {"name": "Ada", "email": " Ada@Example.COM "}, "name": "Ada Lovelace", "count": 7, "tags": ["db", "prod", null],
           "items": [{"sku": "A1", "n": 2}, {"sku": "B2", "n": 0}], "at": 1_700_000_000, "signup": 1_763_942_400_000_i64,
           "age": "42", "vip": "yes", "email": " Ada@Example.COM ", "名前": "エイダ", "ünïcødé": {"🦀": "é\u{301}"}, "html": "<i>&</i>"})
}

fn usual_context() -> Value {
    json!({"event": "user.created", "event_id": "evt_1", "payload": usual_payload(), "resource": "account", "resource_id": "acct_1",
           "workspace_id": "ws_1", "occurred_at": "2026-11-23T17:00:00+00:00"})
}

// ---------------------------------------------------------------------------------------------
// Templates

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/templates");
const TEMPLATES_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/templates/regressions.txt");
/// Set in the child process that renders one seed: the seed's path.
const SEED_ENV: &str = "SWITCHYARD_FUZZ_TEMPLATE_SEED";
/// How long a seed's child may run (start, both renders) before it counts as hung; `sandbox-*`
/// seeds get the sandbox's own time limit instead (a worker is killed then).
const CHILD_LIMIT: Duration = Duration::from_secs(10);

/// What one template did: the heap peak and the slowest of its renders, and each render's
/// output length or error (plain, then HTML).
struct Rendered {
    peak: usize,
    slowest: Duration,
    results: [Result<usize, String>; 2],
}

/// Checks and renders a template (plain and HTML) in-process, asserting the bounds of each render.
fn exercise_template(source: &str, context: &Value) -> Rendered {
    let (_, limit) = budget();
    let checked = template::check(source);
    let bounds = template::check_bounds(source);
    if bounds.is_err() {
        assert!(checked.is_err(), "check accepted what check_bounds refused");
    }
    let mut rendered = Rendered { peak: 0, slowest: Duration::ZERO, results: [Ok(0), Ok(0)] };
    for (i, html) in [false, true].into_iter().enumerate() {
        let start = Instant::now();
        let (result, heap) = peak_heap(|| template::render_as(html, source, context));
        let took = start.elapsed();
        assert!(took < limit, "rendering took {took:?}");
        (rendered.peak, rendered.slowest) = (rendered.peak.max(heap), rendered.slowest.max(took));
        if let Ok(out) = &result {
            assert!(out.len() <= MAX_OUTPUT, "{} bytes of output", out.len());
        }
        if let (Err(message), Err(refused)) = (&result, &bounds) {
            assert_eq!(message, refused, "render refuses what check_bounds refuses, for the same reason");
        }
        rendered.results[i] = result.map(|out| out.len());
    }
    if checked.is_err() && bounds.is_ok() {
        // A syntax error is one for rendering too.
        assert!(rendered.results.iter().all(Result::is_err), "check refused what renders: {checked:?}");
    }
    rendered
}

/// Renders the seed named by [`SEED_ENV`], when this runs as a seed's child process; otherwise
/// does nothing.
#[test]
fn template_seed_child() {
    let Some(path) = std::env::var_os(SEED_ENV) else { return };
    let source = String::from_utf8_lossy(&std::fs::read(&path).expect("a readable seed")).into_owned();
    let context = usual_context();
    CAP.store(budget().0, Ordering::SeqCst);
    let Rendered { peak, slowest, results } = exercise_template(&source, &context);
    let results = results.map(|r| r.map_err(|e| e.chars().take(100).collect::<String>()));
    println!("SEED-OUTCOME {results:?}, heap peak {peak} bytes, slowest render {slowest:?}");
}

#[test]
fn templates_corpus() {
    let exe = std::env::current_exe().expect("the test binary's path");
    let (mut summary, mut failures) = (Vec::new(), Vec::new());
    for (name, path) in seeds(TEMPLATES) {
        let sandbox_only = name.starts_with("sandbox-");
        let limit = if sandbox_only { budget().1 } else { CHILD_LIMIT };
        let start = Instant::now();
        let mut child = Command::new(&exe)
            .args(["template_seed_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(SEED_ENV, &path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the test binary starts");
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child can be waited for") {
                break Some(status);
            }
            if start.elapsed() > limit {
                child.kill().expect("the child can be killed");
                child.wait().expect("the killed child is reaped");
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let output = child.wait_with_output().expect("the child's output");
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        let outcome = stdout.lines().find_map(|l| l.find("SEED-OUTCOME").map(|at| l[at..].to_owned()));
        let verdict = match (status, outcome) {
            (Some(status), Some(outcome)) if status.success() => outcome,
            (None, _) if sandbox_only => "stopped at the time limit (the sandbox kills such a render)".to_owned(),
            (Some(_), _) if sandbox_only && (stderr.contains("memory allocation of") || stderr.contains("capacity overflow")) => {
                "stopped at the memory budget (the sandbox ends such a worker)".to_owned()
            }
            (None, _) => {
                failures.push(format!("{name}: still rendering after {limit:?}\n{stdout}\n{stderr}"));
                continue;
            }
            (Some(status), _) => {
                failures.push(format!("{name}: {status}\n{stdout}\n{stderr}"));
                continue;
            }
        };
        summary.push(format!("{name}: {verdict} ({:?})", start.elapsed()));
    }
    println!("{}", summary.join("\n"));
    assert!(failures.is_empty(), "{} seeds failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Small integers only, and `*` repeats a few times at most (see [`arb_expr`]): generated
/// templates must not amplify into what only the sandbox bounds, work inside one filter over a
/// huge lazy sequence or memory in one step (the corpus holds those, as `sandbox-*` seeds).
fn arb_int() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["0", "1", "2", "3", "7", "10", "42", "100", "1000", "-1", "1.5", "1e3"]).prop_map(str::to_owned)
}

fn arb_string_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "''",
            "'a'",
            "\"x,y\"",
            "'%Y-%m-%d %H:%M %Z'",
            "'Europe/Paris'",
            "'Mars/Olympus'",
            "'%Q%'",
            "'%5s|%-3d|%.2f|%%'",
            "'%99999999999s'",
            "'\\n'",
            "'🦀'"
        ])
        .prop_map(str::to_owned),
        "[a-z ,%]{0,6}".prop_map(|s| format!("'{s}'")),
    ]
}

const FILTERS: [&str; 48] = [
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "length",
    "count",
    "dictsort",
    "items",
    "reverse",
    "lines",
    "abs",
    "int",
    "float",
    "first",
    "last",
    "min",
    "max",
    "sort",
    "list",
    "string",
    "bool",
    "sum",
    "unique",
    "pprint",
    "tojson",
    "json",
    "escape",
    "e",
    "safe",
    "date",
    "d",
    "default",
    "join",
    "split",
    "replace",
    "round",
    "attr",
    "batch",
    "slice",
    "indent",
    "format",
    "select",
    "reject",
    "map",
    "groupby",
    "chain",
    "nosuchfilter",
];

/// Expressions: literals, the context's names, attribute and index access, operators, filters
/// with arguments, calls, lists, dicts, conditionals and tests.
fn arb_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        3 => prop::sample::select(vec![
            "event", "payload", "payload.user.name", "payload.items", "payload.tags", "payload.count", "payload.at", "occurred_at",
            "resource", "payload.missing.deeper", "x", "loop.index", "none", "true", "range(3)", "range(100)", "payload['名前']",
        ])
        .prop_map(str::to_owned),
        2 => arb_int(),
        2 => arb_string_literal(),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        let args = prop::collection::vec(prop_oneof![inner.clone(), arb_int(), arb_string_literal()], 0..3).prop_map(|a| a.join(", "));
        prop_oneof![
            4 => (inner.clone(), prop::sample::select(FILTERS.to_vec()), prop::option::of(args))
                .prop_map(|(e, f, a)| match a { Some(a) => format!("{e} | {f}({a})"), None => format!("{e} | {f}") }),
            3 => (inner.clone(), prop::sample::select(vec!["+", "-", "/", "//", "%", "~", "==", "!=", "<", ">=", "and", "or", "in"]), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            // Repeating (strings, lists) only a few times: nested, it compounds.
            1 => (inner.clone(), prop::sample::select(vec!["0", "1", "2", "3", "-1", "'x'"])).prop_map(|(a, n)| format!("({a} * {n})")),
            1 => (prop::sample::select(vec!["not ", "-"]), inner.clone()).prop_map(|(op, e)| format!("{op}{e}")),
            1 => (inner.clone(), prop_oneof![arb_key().prop_map(|k| format!(".{k}")), arb_int().prop_map(|i| format!("[{i}]"))])
                .prop_map(|(e, a)| format!("{e}{a}")),
            1 => prop::collection::vec(inner.clone(), 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
            1 => (arb_string_literal(), inner.clone()).prop_map(|(k, v)| format!("{{{k}: {v}}}")),
            1 => (inner.clone(), inner.clone(), inner.clone()).prop_map(|(a, b, c)| format!("({a} if {b} else {c})")),
            1 => (inner.clone(), prop::sample::select(vec!["defined", "none", "odd", "string", "number", "mapping", "in([1])"]))
                .prop_map(|(e, t)| format!("({e} is {t})")),
            1 => (prop::sample::select(vec!["range", "namespace", "dict", "debug"]), inner).prop_map(|(f, a)| format!("{f}({a})")),
        ]
    })
}

/// Templates: text and comments, output tags, and blocks (if/elif/else, for/else, set, with,
/// filter, raw) nested within one another. (Macros are not enabled in this build of minijinja:
/// token soup and the corpus reach them.)
fn arb_template() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        "[a-zA-Z ,.!\n]{0,10}",
        prop::sample::select(vec!["{", "}", "%", "#", "{#", "#}", "{ {", "\u{0}", "é\u{301}", "🦀", "<b>", "\r\n"]).prop_map(str::to_owned),
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ];
    let piece = prop_oneof![
        3 => text,
        4 => arb_expr().prop_map(|e| format!("{{{{ {e} }}}}")),
        1 => (arb_key(), arb_expr()).prop_map(|(k, e)| format!("{{% set x = {e} %}}{{# {k} #}}")),
    ];
    piece.prop_recursive(4, 32, 4, |inner| {
        let body = prop::collection::vec(inner.clone(), 0..4).prop_map(|p| p.concat());
        prop_oneof![
            2 => prop::collection::vec(inner.clone(), 1..5).prop_map(|p| p.concat()),
            2 => (arb_expr(), body.clone(), prop::option::of((arb_expr(), body.clone())), prop::option::of(body.clone())).prop_map(
                |(c, then, elif, otherwise)| {
                    let elif = elif.map(|(c, b)| format!("{{% elif {c} %}}{b}")).unwrap_or_default();
                    let otherwise = otherwise.map(|b| format!("{{% else %}}{b}")).unwrap_or_default();
                    format!("{{% if {c} %}}{then}{elif}{otherwise}{{% endif %}}")
                }
            ),
            2 => (arb_expr(), body.clone(), prop::option::of(body.clone())).prop_map(|(seq, b, otherwise)| {
                let otherwise = otherwise.map(|b| format!("{{% else %}}{b}")).unwrap_or_default();
                format!("{{% for x in {seq} %}}{b}{otherwise}{{% endfor %}}")
            }),
            1 => (arb_expr(), body.clone()).prop_map(|(e, b)| format!("{{% with x = {e} %}}{b}{{% endwith %}}")),
            1 => (prop::sample::select(vec!["upper", "trim", "tojson", "json"]), body.clone())
                .prop_map(|(f, b)| format!("{{% filter {f} %}}{b}{{% endfilter %}}")),
            1 => body.clone().prop_map(|b| format!("{{% set x %}}{b}{{% endset %}}{{{{ x }}}}")),
            1 => body.prop_map(|b| format!("{{% raw %}}{b}{{% endraw %}}")),
        ]
    })
}

/// Fragments of the syntax in any order: mostly malformed, reaching the lexer's and parser's
/// error paths.
fn arb_token_soup() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{%-",
            "-%}",
            "{{-",
            "-}}",
            "for",
            "in",
            "if",
            "elif",
            "else",
            "endif",
            "endfor",
            "macro",
            "endmacro",
            "call",
            "endcall",
            "set",
            "endset",
            "raw",
            "endraw",
            "with",
            "endwith",
            "filter",
            "endfilter",
            "block",
            "endblock",
            "extends",
            "include",
            "import",
            "from",
            "autoescape",
            "endautoescape",
            "(",
            ")",
            "[",
            "]",
            "{",
            "}",
            "|",
            ".",
            ",",
            ":",
            "~",
            "+",
            "*",
            "**",
            "//",
            "=",
            "==",
            "is",
            "not",
            "and",
            "or",
            "loop",
            "payload",
            "x",
            "'",
            "\"",
            "\\",
            " ",
            "\n",
            "1",
            "1e309",
            "-",
            "upper",
            "date",
        ])
        .prop_map(str::to_owned),
        arb_int(),
        arb_string_literal(),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(config(256, TEMPLATES_REGRESSIONS))]

    /// Templates from the real syntax: whatever `check` says, rendering finishes within the
    /// limits, without panicking, within the sandbox's memory budget.
    #[test]
    fn templates_structured(source in arb_template(), context in arb_context()) {
        let peak = exercise_template(&source, &context).peak;
        prop_assert!(peak <= budget().0, "{peak} bytes of heap");
    }

    #[test]
    fn templates_token_soup(source in arb_token_soup(), context in arb_context()) {
        exercise_template(&source, &context);
    }

    #[test]
    fn templates_any_text(source in any::<String>(), context in arb_context()) {
        exercise_template(&source, &context);
    }

    /// A printed value is the value itself (HTML-escaped by `render_html`), cut at `MAX_OUTPUT` on
    /// a character boundary; repeating it in a loop repeats it, cut the same way.
    #[test]
    fn templates_print_values_exactly(value in arb_text(), times in 0usize..3_000) {
        let context = json!({"payload": {"v": value}});
        let cut = |s: &str| {
            let mut end = s.len().min(MAX_OUTPUT);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        prop_assert_eq!(template::render("{{ payload.v }}", &context).unwrap(), cut(&value));
        let escaped = value.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
            .replace('\'', "&#x27;").replace('/', "&#x2f;");
        prop_assert_eq!(template::render_html("{{ payload.v }}", &context).unwrap(), cut(&escaped));
        let looped = template::render("{% for i in range(n) %}{{ payload.v }}{% endfor %}", &json!({"payload": {"v": value}, "n": times}));
        let whole = value.repeat(times);
        let out = looped.unwrap();
        prop_assert!(whole.starts_with(&out));
        prop_assert!(out.len() == whole.len() || out.len() > MAX_OUTPUT - 4, "{} of {} bytes", out.len(), whole.len());
    }

    /// `date` over instants from the first to the last chrono can hold, in every zone, with
    /// formats made of real and bogus specifiers.
    #[test]
    fn templates_date_filter(
        millis in arb_millis(),
        zone in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()),
        format in prop::collection::vec(
            prop::sample::select(vec!["%Y", "%m", "%d", "%H:%M:%S", "%.3f", "%:z", "%Z", "%z", "%c", "%+", "%s", "%j", "%U", "%a %b", "%-d",
                                      "%#z", "%Q", "%", "%%", "%E", "%::::z", " ", "é"]),
            0..6,
        ),
        as_text in any::<bool>(),
    ) {
        let value = if as_text { json!(millis.to_string()) } else { json!(millis) };
        let context = json!({"payload": {"at": value}, "f": format.concat(), "z": zone.name()});
        let _ = exercise_template("{{ payload.at | date(f, z) }}|{{ payload.at | date }}", &context);
    }
}

#[test]
fn templates_at_the_size_limit() {
    let context = usual_context();
    let largest = "{{ payload.user.name }}x".repeat(MAX_SOURCE / 24);
    assert!(largest.len() <= MAX_SOURCE);
    let rendered = exercise_template(&largest, &context);
    assert!(rendered.results.iter().all(Result::is_ok), "{:?}", rendered.results);
    assert!(template::check(&"x".repeat(MAX_SOURCE + 1)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Mappings

const MAPPINGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/mappings");
const MAPPINGS_REGRESSIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus/mappings/regressions.txt");

/// Parses a mapping and, if accepted, applies it to each context; checks what `apply` promises.
fn exercise_mapping(doc: &Value, contexts: &[Value]) -> Option<Vec<Result<Map<String, Value>, String>>> {
    let (_, limit) = budget();
    let start = Instant::now();
    let mapping = match Mapping::parse(doc, "mapping") {
        Ok(m) => m,
        Err(errors) => {
            assert!(!errors.is_empty());
            assert!(errors.iter().all(|e| e.field.starts_with("mapping") && !e.message.is_empty()), "{errors:?}");
            return None;
        }
    };
    let results: Vec<_> = contexts.iter().map(|c| mapping.apply(c)).collect();
    for result in &results {
        match result {
            Ok(fields) => {
                for (dest, value) in fields {
                    assert!(!value.is_null(), "{dest} is null");
                    assert!(mapping.fields.iter().any(|f| &f.dest == dest), "{dest} is no field's dest");
                }
            }
            Err(message) => {
                assert!(message.starts_with("mapping for "), "{message}");
                assert!(mapping.fields.iter().any(|f| f.on_error == mapping::OnError::FailAction), "skip_field fields failed: {message}");
            }
        }
    }
    assert!(start.elapsed() < limit, "took {:?}", start.elapsed());
    Some(results)
}

fn mapping_contexts() -> Vec<Value> {
    let mut deep = json!("bottom");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    vec![
        usual_context(),
        json!({"event": "x", "payload": {"items": deep, "email": null, "at": -1e300, "name": ""}, "occurred_at": "+262143-12-31T23:59:59Z"}),
        json!({}),
        json!(null),
    ]
}

#[test]
fn mappings_corpus() {
    let contexts = mapping_contexts();
    let mut accepted = 0;
    for (name, path) in seeds(MAPPINGS) {
        // As the API reads a rule's body: serde_json with its recursion limit.
        let Ok(doc) = serde_json::from_slice::<Value>(&std::fs::read(&path).expect("a readable seed")) else { continue };
        let start = Instant::now();
        if exercise_mapping(&doc, &contexts).is_some() {
            accepted += 1;
        }
        assert!(start.elapsed() < budget().1, "{name} took {:?}", start.elapsed());
    }
    assert!(accepted >= 5, "only {accepted} seeds parse: the corpus lost its valid mappings");
}

const TRANSFORMS: [&str; 10] =
    ["to_string", "to_number", "to_boolean", "to_date", "to_datetime", "default", "trim", "lower", "upper", "substring"];

fn arb_zone() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()).prop_map(|z| json!(z.name())),
        1 => prop::sample::select(vec!["", "utc", "Mars/Olympus", "Etc/GMT+12", "../../etc/passwd"]).prop_map(Value::from),
        1 => arb_json(),
    ]
}

/// A transform as written in a mapping: a bare name, or an object with its options, right or
/// wrong, now and then with an unknown option.
fn arb_transform() -> impl Strategy<Value = Value> {
    let count = prop_oneof![
        12 => (0u64..20).prop_map(Value::from),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(-1)),
        1 => arb_json(),
    ];
    let object = (
        prop::sample::select(TRANSFORMS.to_vec()),
        count.clone(),
        prop::option::of(count),
        prop::option::of(arb_zone()),
        arb_json(),
        prop::option::weighted(0.02, (arb_key(), arb_json())),
    )
        .prop_map(|(name, start, length, timezone, value, extra)| {
            let mut t = Map::new();
            t.insert("type".into(), name.into());
            match name {
                "substring" => {
                    t.insert("start".into(), start);
                    if let Some(l) = length {
                        t.insert("length".into(), l);
                    }
                }
                "to_date" | "to_datetime" => {
                    if let Some(z) = timezone {
                        t.insert("timezone".into(), z);
                    }
                }
                "default" => {
                    t.insert("value".into(), value);
                }
                _ => {}
            }
            if let Some((k, v)) = extra {
                t.insert(k, v);
            }
            Value::Object(t)
        });
    prop_oneof![
        20 => prop::sample::select(TRANSFORMS.to_vec()).prop_map(Value::from),
        20 => object,
        1 => Just(json!("reverse")),
        1 => arb_json(),
    ]
}

fn arb_source() -> impl Strategy<Value = Value> {
    let path = prop_oneof![
        6 => prop::collection::vec(prop_oneof!["[a-z0-9_]{1,5}", "[0-9]{1,2}"], 1..5).prop_map(|s| json!(s.join("."))),
        8 => prop::sample::select(vec![
            "event", "occurred_at", "payload", "payload.user.email", "payload.items.0.sku", "payload.signup", "payload.at", "payload.age",
            "payload.vip", "payload.name", "payload.tags", "payload.items", "resource",
        ])
        .prop_map(Value::from),
        1 => prop::sample::select(vec!["", ".", "a..b", "payload."]).prop_map(Value::from),
        1 => arb_json(),
    ];
    prop_oneof![
        12 => path.prop_map(|p| json!({"type": "path", "value": p})),
        8 => arb_json().prop_map(|v| json!({"type": "literal", "value": v})),
        1 => (arb_text(), arb_json()).prop_map(|(t, v)| json!({"type": t, "value": v})),
        1 => arb_json(),
    ]
}

/// One field: a dest, a source, transforms and what to do on errors, each now and then wrong.
fn arb_field() -> impl Strategy<Value = Value> {
    let dest = prop_oneof![30 => arb_key().prop_map(Value::from), 1 => Just(json!("  ")), 1 => arb_json()];
    let on_error = prop_oneof![
        10 => Just(Some(json!("skip_field"))),
        10 => Just(Some(json!("fail_action"))),
        10 => Just(None),
        1 => arb_json().prop_map(Some),
    ];
    (dest, arb_source(), prop::option::of(prop::collection::vec(arb_transform(), 0..5)), on_error).prop_map(
        |(dest, source, transforms, on_error)| {
            let mut f = Map::new();
            f.insert("dest".into(), dest);
            f.insert("source".into(), source);
            if let Some(t) = transforms {
                f.insert("transforms".into(), Value::Array(t));
            }
            if let Some(o) = on_error {
                f.insert("on_error".into(), o);
            }
            Value::Object(f)
        },
    )
}

fn arb_mapping() -> impl Strategy<Value = Value> {
    let version = prop_oneof![30 => Just(json!(1)), 1 => arb_json()];
    (version, prop::collection::vec(arb_field(), 0..6)).prop_map(|(v, fields)| json!({"schema_version": v, "fields": fields}))
}

/// A mapping that cannot be refused: every field valid, skipped on error.
fn arb_valid_mapping() -> impl Strategy<Value = Value> {
    let transform = prop_oneof![
        prop::sample::select(vec!["to_string", "to_number", "to_boolean", "to_date", "to_datetime", "trim", "lower", "upper"])
            .prop_map(Value::from),
        (0usize..10, prop::option::of(0usize..10)).prop_map(|(s, l)| json!({"type": "substring", "start": s, "length": l})),
        (prop::sample::select(vec!["to_date", "to_datetime"]), prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()))
            .prop_map(|(t, z)| json!({"type": t, "timezone": z.name()})),
        arb_json().prop_map(|v| json!({"type": "default", "value": v})),
    ];
    let source = prop_oneof![
        "[a-z]{1,6}(\\.[a-z0-9]{1,4}){0,3}".prop_map(|p| json!({"type": "path", "value": p})),
        prop::sample::select(vec!["occurred_at", "payload.user.email", "payload.signup", "payload.at", "payload.age", "payload.vip"])
            .prop_map(|p| json!({"type": "path", "value": p})),
        arb_json().prop_map(|v| json!({"type": "literal", "value": v})),
    ];
    let field = ("[a-z]{1,6}", source, prop::collection::vec(transform, 0..4))
        .prop_map(|(dest, source, transforms)| json!({"dest": dest, "source": source, "transforms": transforms, "on_error": "skip_field"}));
    prop::collection::vec(field, 0..6).prop_map(|fields| json!({"schema_version": 1, "fields": fields}))
}

proptest! {
    #![proptest_config(config(512, MAPPINGS_REGRESSIONS))]

    #[test]
    fn mappings_any_json(doc in arb_json(), context in arb_context()) {
        exercise_mapping(&doc, &[context]);
    }

    /// Mappings from the real transforms, right and wrong, over arbitrary events.
    #[test]
    fn mappings_structured(doc in arb_mapping(), context in arb_context()) {
        let mut contexts = mapping_contexts();
        contexts.push(context);
        exercise_mapping(&doc, &contexts);
    }

    /// Valid mappings whose fields are all skipped on error are accepted and never fail.
    #[test]
    fn mappings_that_skip_never_fail(doc in arb_valid_mapping(), context in arb_context()) {
        let results = exercise_mapping(&doc, &[context]);
        let results = results.unwrap_or_else(|| panic!("refused: {doc}"));
        prop_assert!(results.iter().all(Result::is_ok));
    }

    /// `lookup` finds what a path walked through the value leads to.
    #[test]
    fn lookup_follows_paths(value in arb_json(), choices in prop::collection::vec(any::<usize>(), 0..6)) {
        let root = json!({"root": value});
        let (mut path, mut at) = (vec!["root".to_owned()], &root["root"]);
        for choice in choices {
            let (segment, next) = match at {
                Value::Object(map) if !map.is_empty() => {
                    let (k, v) = map.iter().nth(choice % map.len()).unwrap();
                    (k.clone(), v)
                }
                Value::Array(items) if !items.is_empty() => ((choice % items.len()).to_string(), &items[choice % items.len()]),
                _ => break,
            };
            if segment.contains('.') {
                break;
            }
            path.push(segment);
            at = next;
        }
        prop_assert_eq!(mapping::lookup(&root, &path.join(".")), Some(at));
    }

    /// Unix seconds (below 10^11) and milliseconds (from 10^11), and RFC 3339 text, come back
    /// as the instant they name; anything else is an answer, not a panic.
    #[test]
    fn instants_round_trip(
        seconds in -99_999_999_999i64..100_000_000_000,
        millis in prop_oneof![100_000_000_000i64..=LAST_MILLIS, FIRST_MILLIS..=-100_000_000_000],
        other in arb_json(),
    ) {
        prop_assert_eq!(mapping::parse_instant(&json!(seconds)).unwrap().timestamp(), seconds);
        prop_assert_eq!(mapping::parse_instant(&json!(millis)).unwrap().timestamp_millis(), millis);
        // RFC 3339 has four-digit years.
        let at = mapping::parse_instant(&json!(millis.clamp(-62_167_219_200_000, 253_402_300_799_999))).unwrap();
        prop_assert_eq!(mapping::parse_instant(&json!(at.to_rfc3339())).unwrap(), at);
        let _ = mapping::parse_instant(&other);
    }

    /// Every zone chrono-tz knows parses; any other text is refused or parsed, never a panic.
    #[test]
    fn zones_parse(zone in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec()), text in any::<String>()) {
        prop_assert_eq!(mapping::parse_zone(Some(zone.name())), Ok(zone));
        let _ = mapping::parse_zone(Some(&text));
    }

    /// Dates and date-times of every instant chrono can hold, in every zone: text, or (for
    /// date-times within a day of either end, whose local time chrono cannot write) a clean
    /// failure of the field.
    #[test]
    fn dates_in_every_zone(millis in arb_millis(), zone in prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())) {
        let doc = json!({"schema_version": 1, "fields": [
            {"dest": "day", "source": {"type": "literal", "value": millis}, "transforms": [{"type": "to_date", "timezone": zone.name()}]},
            {"dest": "at", "source": {"type": "literal", "value": millis}, "transforms": [{"type": "to_datetime", "timezone": zone.name()}],
             "on_error": "skip_field"},
        ]});
        let results = exercise_mapping(&doc, &[json!({})]).expect("a valid mapping");
        let fields = results[0].as_ref().unwrap();
        prop_assert!(fields["day"].is_string());
        let inner = (FIRST_MILLIS + 86_400_000..=LAST_MILLIS - 86_400_000).contains(&millis);
        prop_assert!(fields.get("at").is_some_and(Value::is_string) || !inner, "{:?}", fields.get("at"));
    }

    /// `substring` counts characters: never more than `length` of them, taken from the text.
    #[test]
    fn substrings_count_characters(text in any::<String>(), start in 0usize..40, length in prop::option::of(0usize..40)) {
        let doc = json!({"schema_version": 1, "fields": [
            {"dest": "s", "source": {"type": "literal", "value": text}, "transforms": [{"type": "substring", "start": start, "length": length}]},
        ]});
        let out = exercise_mapping(&doc, &[json!({})]).expect("a valid mapping").remove(0).unwrap();
        let expected: String = text.chars().skip(start).take(length.unwrap_or(usize::MAX)).collect();
        prop_assert_eq!(out.get("s").and_then(Value::as_str).unwrap_or(""), expected.as_str());
    }
}
