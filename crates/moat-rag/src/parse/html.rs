//! HTML through `scraper` (html5ever's parser, which repairs any markup as browsers do):
//! headings `h1`-`h6` open sections, block elements (`p`, `li`, `div`, table cells, ...)
//! end paragraphs, `pre` becomes a code block with its whitespace kept, and the contents of
//! `script`, `style`, `head` and similar elements are dropped. Inline text has its whitespace
//! collapsed. HTML has no useful line numbers after parsing, so blocks carry line 0.
//!
//! The tree is walked with an explicit iterator, not recursion, so a deeply nested hostile
//! document cannot overflow the stack.

use ego_tree::iter::Edge;
use scraper::{Html, Node};

use super::{Block, BlockKind, ParsedDocument};

/// Elements whose whole content is not text for a reader.
const SKIPPED: &[&str] = &[
    "head", "script", "style", "noscript", "template", "svg", "math", "canvas", "iframe", "object",
    "embed", "select", "button",
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
    // The node being skipped (a script, say) until its closing edge.
    let mut skipping = None;
    for edge in document.tree.root().traverse() {
        match edge {
            Edge::Open(node) => {
                if skipping.is_some() {
                    continue;
                }
                match node.value() {
                    Node::Element(element) if SKIPPED.contains(&element.name()) => {
                        skipping = Some(node.id());
                    }
                    Node::Element(element) => walker.open(element.name()),
                    Node::Text(text) => walker.text(text),
                    _ => {}
                }
            }
            Edge::Close(node) => {
                if skipping == Some(node.id()) {
                    skipping = None;
                } else if skipping.is_none() {
                    if let Node::Element(element) = node.value() {
                        walker.close(element.name());
                    }
                }
            }
        }
    }
    walker.flush();
    ParsedDocument {
        blocks: walker.blocks,
    }
}
