//! HTML through `scraper` (html5ever's parser, which repairs any markup as browsers do):
//! headings `h1`-`h6` open sections, block elements (`p`, `li`, `div`, table cells, ...)
//! end paragraphs, `pre` becomes a code block with its whitespace kept, and the contents of
//! `script`, `style`, `head` and similar elements are dropped. Inline text has its whitespace
//! collapsed. HTML has no useful line numbers after parsing, so blocks carry line 0.
//!
//! Only the page's content is kept, not its chrome. When the page marks its content with
//! `<main>` (or `role="main"`), only that is read. Everywhere, these are dropped: `nav`,
//! `aside`, `form`, `dialog`, the page's own `header` and `footer` (those outside `article`,
//! `section`, `main`, `aside` and `nav`; a header inside an article is the article's), elements
//! whose ARIA role is navigation, banner, contentinfo, search, complementary, menu, menubar or
//! toolbar, elements hidden with `hidden` or `aria-hidden="true"`, and the chrome of mdBook
//! and Sphinx pages by id or class (`sidebar`, `menu-bar`, `sphinxsidebar`, ...). Without this,
//! mdBook's table of contents, repeated on every page, was a fifth of the Rust book's chunks.
//!
//! The tree is walked with an explicit iterator, not recursion, so a deeply nested hostile
//! document cannot overflow the stack.

use ego_tree::iter::Edge;
use ego_tree::NodeRef;
use scraper::node::Element;
use scraper::{Html, Node};

use super::{Block, BlockKind, ParsedDocument};

/// Elements whose whole content is not text for a reader, or is the page's chrome.
const SKIPPED: &[&str] = &[
    "head", "script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object",
    "embed", "select", "button", "nav", "aside", "form", "dialog", "input", "textarea",
];

/// Elements that make the `header` and `footer` inside them theirs rather than the page's.
const SECTIONING: &[&str] = &["article", "section", "main", "aside", "nav"];

/// ARIA roles of page chrome.
const CHROME_ROLES: &[&str] = &[
    "navigation",
    "banner",
    "contentinfo",
    "search",
    "complementary",
    "menu",
    "menubar",
    "toolbar",
];

/// Ids and classes of the chrome of documentation generators whose markup does not say what
/// it is: mdBook's sidebar (the whole table of contents, on every page), menu bar and search
/// box; Sphinx's sidebar; the usual names of navigation bars.
const CHROME_NAMES: &[&str] = &[
    "sidebar",
    "menu-bar",
    "search-wrapper",
    "sphinxsidebar",
    "navbar",
    "breadcrumbs",
];

/// Elements that end the paragraph before and after them.
const BLOCK_ELEMENTS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "header",
    "footer",
    "aside",
    "nav",
    "blockquote",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "thead",
    "tbody",
    "tr",
    "td",
    "th",
    "figure",
    "figcaption",
    "form",
    "fieldset",
    "details",
    "summary",
    "address",
    "hr",
    "br",
    "body",
];

struct Walker {
    blocks: Vec<Block>,
    headings: Vec<(u8, String)>,
    /// Inline text of the paragraph being gathered.
    current: String,
    current_kind: BlockKind,
    /// Inside a heading: its level and text so far.
    heading: Option<(u8, String)>,
    /// Depth of `pre` elements we are inside.
    pre_depth: usize,
    pre_text: String,
}

impl Walker {
    fn path(&self) -> Vec<String> {
        self.headings
            .iter()
            .map(|(_, title)| title.clone())
            .collect()
    }

    fn flush(&mut self) {
        let text = collapse(&self.current);
        self.current.clear();
        if !text.is_empty() {
            let block = Block {
                kind: self.current_kind,
                text,
                line_start: 0,
                page: 0,
                heading: self.path(),
            };
            self.blocks.push(block);
        }
        self.current_kind = BlockKind::Paragraph;
    }

    fn text(&mut self, text: &str) {
        if let Some((_, heading)) = self.heading.as_mut() {
            heading.push_str(text);
        } else if self.pre_depth > 0 {
            self.pre_text.push_str(text);
        } else {
            self.current.push_str(text);
        }
    }

    fn open(&mut self, name: &str) {
        if let Some(level) = heading_level(name) {
            self.flush();
            self.heading = Some((level, String::new()));
        } else if name == "pre" {
            if self.pre_depth == 0 {
                self.flush();
            }
            self.pre_depth += 1;
        } else if BLOCK_ELEMENTS.contains(&name) {
            self.flush();
            if name == "li" {
                self.current_kind = BlockKind::List;
            }
        }
    }

    fn close(&mut self, name: &str) {
        if heading_level(name).is_some() {
            if let Some((level, text)) = self.heading.take() {
                self.end_heading(level, collapse(&text));
            }
        } else if name == "pre" {
            self.pre_depth = self.pre_depth.saturating_sub(1);
            if self.pre_depth == 0 {
                self.end_pre();
            }
        } else if BLOCK_ELEMENTS.contains(&name) {
            self.flush();
        }
    }

    fn end_heading(&mut self, level: u8, title: String) {
        if title.is_empty() {
            return;
        }
        while self.headings.last().is_some_and(|(l, _)| *l >= level) {
            self.headings.pop();
        }
        self.headings.push((level, title.clone()));
        let block = Block {
            kind: BlockKind::Heading { level },
            text: title,
            line_start: 0,
            page: 0,
            heading: self.path(),
        };
        self.blocks.push(block);
    }

    fn end_pre(&mut self) {
        let text = std::mem::take(&mut self.pre_text);
        let text = text.trim_matches('\n').trim_end();
        if !text.trim().is_empty() {
            let block = Block {
                kind: BlockKind::Code,
                text: text.to_owned(),
                line_start: 0,
                page: 0,
                heading: self.path(),
            };
            self.blocks.push(block);
        }
    }
}

fn heading_level(name: &str) -> Option<u8> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// Whitespace runs to one space, trimmed.
fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `element` and everything inside it is left out. `in_section` says whether it sits
/// inside sectioning content (where a `header` or `footer` belongs to that section).
fn is_skipped(element: &Element, in_section: bool) -> bool {
    let name = element.name();
    if SKIPPED.contains(&name) {
        return true;
    }
    if matches!(name, "header" | "footer") && !in_section {
        return true;
    }
    if element.attr("hidden").is_some()
        || element
            .attr("aria-hidden")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return true;
    }
    if element.attr("role").is_some_and(|roles| {
        roles
            .split_ascii_whitespace()
            .any(|role| CHROME_ROLES.contains(&role.to_ascii_lowercase().as_str()))
    }) {
        return true;
    }
    let named = |value: Option<&str>| {
        value.is_some_and(|v| {
            v.split_ascii_whitespace()
                .any(|n| CHROME_NAMES.contains(&n))
        })
    };
    named(element.attr("id")) || named(element.attr("class"))
}

/// Whether `element` is the page's main content.
fn is_main(element: &Element) -> bool {
    element.name() == "main"
        || element
            .attr("role")
            .is_some_and(|roles| roles.split_ascii_whitespace().any(|r| r == "main"))
}

/// The page's main content: the outermost `main` elements that are not themselves skipped
/// (in document order). Empty when the page marks none, or when they hold no text.
fn main_elements(document: &Html) -> Vec<NodeRef<'_, Node>> {
    let mut mains = Vec::new();
    let mut skipping = None;
    let mut sections = 0usize;
    for edge in document.tree.root().traverse() {
        match edge {
            Edge::Open(node) => {
                if skipping.is_some() {
                    continue;
                }
                if let Node::Element(element) = node.value() {
                    if is_skipped(element, sections > 0) || is_main(element) {
                        if is_main(element) && !is_skipped(element, sections > 0) {
                            mains.push(node);
                        }
                        skipping = Some(node.id());
                    } else if SECTIONING.contains(&element.name()) {
                        sections += 1;
                    }
                }
            }
            Edge::Close(node) => {
                if skipping == Some(node.id()) {
                    skipping = None;
                } else if skipping.is_none() {
                    if let Node::Element(element) = node.value() {
                        if SECTIONING.contains(&element.name()) {
                            sections = sections.saturating_sub(1);
                        }
                    }
                }
            }
        }
    }
    let has_text = |node: &NodeRef<'_, Node>| {
        node.descendants()
            .any(|d| matches!(d.value(), Node::Text(t) if !t.trim().is_empty()))
    };
    if mains.iter().any(has_text) {
        mains
    } else {
        Vec::new()
    }
}

/// Feeds the text under `root` to `walker`, leaving out what [`is_skipped`] says.
/// `in_section` is true when `root` is itself sectioning content (a `main`).
fn walk(walker: &mut Walker, root: NodeRef<'_, Node>, in_section: bool) {
    // The node being skipped (a script, say) until its closing edge.
    let mut skipping = None;
    let mut sections = usize::from(in_section);
    for edge in root.traverse() {
        match edge {
            Edge::Open(node) => {
                if skipping.is_some() {
                    continue;
                }
                match node.value() {
                    // The root itself is kept even if it is a `main` that a rule would drop.
                    Node::Element(element)
                        if node.id() != root.id() && is_skipped(element, sections > 0) =>
                    {
                        skipping = Some(node.id());
                    }
                    Node::Element(element) => {
                        if SECTIONING.contains(&element.name()) && node.id() != root.id() {
                            sections += 1;
                        }
                        walker.open(element.name());
                    }
                    Node::Text(text) => walker.text(text),
                    _ => {}
                }
            }
            Edge::Close(node) => {
                if skipping == Some(node.id()) {
                    skipping = None;
                } else if skipping.is_none() {
                    if let Node::Element(element) = node.value() {
                        if SECTIONING.contains(&element.name()) && node.id() != root.id() {
                            sections = sections.saturating_sub(1);
                        }
                        walker.close(element.name());
                    }
                }
            }
        }
    }
}

pub(super) fn parse(text: &str) -> ParsedDocument {
    let document = Html::parse_document(text);
    let mut walker = Walker {
        blocks: Vec::new(),
        headings: Vec::new(),
        current: String::new(),
        current_kind: BlockKind::Paragraph,
        heading: None,
        pre_depth: 0,
        pre_text: String::new(),
    };
    let mains = main_elements(&document);
    if mains.is_empty() {
        walk(&mut walker, document.tree.root(), false);
    } else {
        for main in mains {
            walk(&mut walker, main, true);
        }
    }
    walker.flush();
    ParsedDocument {
        blocks: walker.blocks,
    }
}
