//! Unit tests of `parse`.

use super::*;

fn parse(name: &str, text: &str) -> ParsedDocument {
    parse_bytes(name, text.as_bytes(), &ParseOptions::default()).expect("parses")
}

fn summary(document: &ParsedDocument) -> Vec<(BlockKind, u32, String, String)> {
    document
        .blocks
        .iter()
        .map(|b| (b.kind, b.line_start, b.heading.join(" > "), b.text.clone()))
        .collect()
}

#[test]
fn markdown_headings_paragraphs_code_and_lists() {
    let text =
        "# Guide\n\nIntro line one\nline two.\n\n## Install\n- step one\n- step two\n  more\n\n\
                ```sh\ncargo build\n\n# not a heading\n```\nAfter code.\n\nSetext\n------\nBody.\n";
    let blocks = summary(&parse("guide.md", text));
    let expected = [
        (BlockKind::Heading { level: 1 }, 1, "Guide", "# Guide"),
        (
            BlockKind::Paragraph,
            3,
            "Guide",
            "Intro line one\nline two.",
        ),
        (
            BlockKind::Heading { level: 2 },
            6,
            "Guide > Install",
            "## Install",
        ),
        (
            BlockKind::List,
            7,
            "Guide > Install",
            "- step one\n- step two\n  more",
        ),
        (
            BlockKind::Code,
            11,
            "Guide > Install",
            "```sh\ncargo build\n\n# not a heading\n```",
        ),
        (BlockKind::Paragraph, 16, "Guide > Install", "After code."),
        (
            BlockKind::Heading { level: 2 },
            18,
            "Guide > Setext",
            "Setext\n------",
        ),
        (BlockKind::Paragraph, 20, "Guide > Setext", "Body."),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(k, l, h, t)| (*k, *l, h.to_string(), t.to_string()))
        .collect();
    assert_eq!(blocks, expected);
}

#[test]
fn unclosed_fence_runs_to_the_end() {
    let blocks = summary(&parse("a.md", "text\n\n```\ncode\nmore"));
    assert_eq!(blocks[1].0, BlockKind::Code);
    assert_eq!(blocks[1].3, "```\ncode\nmore");
}

#[test]
fn html_keeps_headings_and_paragraphs_and_drops_scripts() {
    let html = "<html><head><title>T</title><style>p{}</style></head><body>\
                <h1>Manual</h1><p>First   para\n with <b>bold</b>.</p><script>alert(1)</script>\
                <h2>Part</h2><ul><li>one</li><li>two</li></ul><pre>let x = 1;\n  y();</pre>\
                <div>tail</div></body></html>";
    let blocks = summary(&parse("m.html", html));
    let texts: Vec<&str> = blocks.iter().map(|b| b.3.as_str()).collect();
    assert_eq!(
        texts,
        [
            "Manual",
            "First para with bold.",
            "Part",
            "one",
            "two",
            "let x = 1;\n  y();",
            "tail"
        ]
    );
    assert_eq!(blocks[3].0, BlockKind::List);
    assert_eq!(blocks[5].0, BlockKind::Code);
    assert_eq!(blocks[6].2, "Manual > Part");
}

/// Regression (benchmarks of issue 4): mdBook's sidebar, menu bar, search box and page
/// navigation were 22% of the Rust book's chunks. Only the chapter inside `<main>` is kept.
#[test]
fn html_of_an_mdbook_page_keeps_the_chapter_and_drops_the_chrome() {
    let html = include_str!("../../tests/fixtures/html/mdbook-page.html");
    let blocks = summary(&parse("ch04-01-what-is-ownership.html", html));
    let texts: Vec<&str> = blocks.iter().map(|b| b.3.as_str()).collect();
    assert_eq!(
        texts,
        [
            "What Is Ownership?",
            "Ownership is a set of rules that governs how a Rust program manages memory.",
            "The Stack and the Heap",
            "Both the stack and the heap are parts of memory available to your code.",
            "Ownership Rules",
            "Each value in Rust has an owner.",
            "When the owner goes out of scope, the value will be dropped.",
            "fn main() {\n    let s = String::from(\"hello\");\n}",
        ]
    );
    // The book's title in the menu bar is chrome, not a heading above the chapter.
    assert_eq!(blocks[0].2, "What Is Ownership?");
    assert_eq!(blocks[6].2, "What Is Ownership? > Ownership Rules");
    assert_eq!(blocks[7].0, BlockKind::Code);
}

#[test]
fn html_without_main_drops_navigation_banners_and_hidden_elements() {
    let html = r#"<html><body>
        <header><a href="/">Site name</a><p>Tagline</p></header>
        <div role="navigation"><a href="/a">Menu entry</a></div>
        <div class="crumbs" role="banner">Banner text</div>
        <h1>Guide</h1>
        <p>Real text<span aria-hidden="true"> icon</span>.</p>
        <div hidden>Hidden text</div>
        <aside>Related links</aside>
        <form><label>Search</label><input name="q"></form>
        <article><header><h2>Post</h2></header><p>Body.</p><footer>Post footer</footer></article>
        <template><p>Template text</p></template>
        <div id="sidebar">Sidebar text</div>
        <footer>Copyright</footer>
        </body></html>"#;
    let blocks = summary(&parse("g.html", html));
    let texts: Vec<&str> = blocks.iter().map(|b| b.3.as_str()).collect();
    // An article's own header and footer are its content; the page's are not.
    assert_eq!(
        texts,
        ["Guide", "Real text.", "Post", "Body.", "Post footer"]
    );
    assert_eq!(blocks[3].2, "Guide > Post");
}

#[test]
fn html_with_an_empty_main_reads_the_whole_page() {
    let html = "<body><main></main><h1>Title</h1><p>Text outside main.</p></body>";
    let texts: Vec<String> = summary(&parse("e.html", html))
        .into_iter()
        .map(|b| b.3)
        .collect();
    assert_eq!(texts, ["Title", "Text outside main."]);
}

#[test]
fn deeply_nested_html_neither_overflows_the_stack_nor_hangs() {
    let html = format!("{}deep{}", "<div>".repeat(3_000), "</div>".repeat(3_000));
    let document = parse("deep.html", &html);
    assert_eq!(document.blocks[0].text, "deep");
    // Far deeper nesting is slow in html5ever (quadratic); the deadline turns it into an error.
    let options = ParseOptions {
        timeout: std::time::Duration::from_millis(200),
        ..ParseOptions::default()
    };
    let html = format!("{}deep", "<div>".repeat(1_000_000));
    match parse_bytes("deep.html", html.as_bytes(), &options) {
        Ok(document) => assert_eq!(document.blocks[0].text, "deep"),
        Err(error) => assert!(
            matches!(error, ParseError::Timeout { format: "HTML", .. }),
            "{error}"
        ),
    }
}

#[test]
fn code_keeps_definitions_whole_across_blank_lines() {
    let source = "use std::io;\n\nfn a() {\n    one();\n\n    two();\n}\n\n// comment\nfn b() {}\n";
    let blocks = summary(&parse("x.rs", source));
    let starts: Vec<u32> = blocks.iter().map(|b| b.1).collect();
    assert_eq!(starts, [1, 3, 9]);
    assert_eq!(blocks[1].3, "fn a() {\n    one();\n\n    two();\n}");
    let python =
        "import os\n\nclass A:\n    def f(self):\n        pass\n\n    def g(self):\n        pass\n";
    assert_eq!(parse("x.py", python).blocks.len(), 2);
}

#[test]
fn formats_by_extension() {
    assert_eq!(Format::from_name("docs/A.MD"), Some(Format::Markdown));
    assert_eq!(Format::from_name("x.htm"), Some(Format::Html));
    assert_eq!(Format::from_name("x.pdf"), Some(Format::Pdf));
    assert_eq!(Format::from_name("src/lib.rs"), Some(Format::Code));
    assert_eq!(Format::from_name("Cargo.toml"), Some(Format::Code));
    assert_eq!(Format::from_name("Makefile"), Some(Format::Code));
    assert_eq!(Format::from_name("notes.txt"), Some(Format::Text));
    assert_eq!(Format::from_name("README"), None);
    assert_eq!(Format::from_name("data.weird"), None);
}

#[test]
fn unknown_extension_is_text_when_it_is_utf8() {
    let document = parse("LICENSE", "Permission is granted.\n\nSecond.");
    assert_eq!(document.blocks.len(), 2);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let options = ParseOptions::default();
    let cases: [(&str, &[u8], ParseError); 6] = [
        ("a.txt", b"", ParseError::Empty),
        ("a.md", b"  \n\n\t ", ParseError::Empty),
        ("a.txt", b"\xEF\xBB\xBF", ParseError::Empty),
        (
            "a.bin",
            b"ELF\x00\x01",
            ParseError::Binary("a NUL byte at offset 3".into()),
        ),
        (
            "a.txt",
            b"caf\xe9 au lait",
            ParseError::NotUtf8 { offset: 3 },
        ),
        ("unknown", b"ok\xff", ParseError::NotUtf8 { offset: 2 }),
    ];
    for (name, bytes, expected) in cases {
        assert_eq!(
            parse_bytes(name, bytes, &options),
            Err(expected),
            "{name} {bytes:?}"
        );
    }
    let controls = "\x01\x02\x03\x04 text".repeat(20);
    assert!(matches!(
        parse_bytes("a.txt", controls.as_bytes(), &options),
        Err(ParseError::Binary(_))
    ));
    let small = ParseOptions {
        max_bytes: 4,
        ..ParseOptions::default()
    };
    assert_eq!(
        parse_bytes("a.txt", b"hello", &small),
        Err(ParseError::TooLarge { size: 5, limit: 4 })
    );
}

#[test]
fn broken_pdfs_are_errors_not_panics() {
    let options = ParseOptions::default();
    for bytes in [
        &b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF"[..],
        b"%PDF-",
        b"%PDF-1.7\n\xff\xfe garbage garbage",
        b"not a pdf at all",
    ] {
        match parse_bytes("x.pdf", bytes, &options) {
            Err(ParseError::Pdf(_) | ParseError::PdfNoText | ParseError::Failed { .. }) => {}
            other => panic!("{bytes:?} gave {other:?}"),
        }
    }
}
