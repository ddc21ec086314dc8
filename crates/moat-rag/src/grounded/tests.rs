//! Unit tests of `grounded`.

use moat_engine::ContentPart;
use moat_vector::{Hit, Location};

use super::*;

fn retrieved(chunk_id: i64, path: &str, text: &str, location: Location) -> RetrievedHit {
    RetrievedHit {
        hit: Hit {
            chunk_id,
            path: path.into(),
            ordinal: 0,
            text: text.into(),
            location,
            score: 0.8,
        },
        score: 0.03,
        vector_rank: Some(1),
        vector_score: Some(0.8),
        text_rank: None,
    }
}

fn text_of(message: &ChatMessage) -> &str {
    match &message.content {
        Some(MessageContent::Text(text)) => text,
        other => panic!("not text: {other:?}"),
    }
}

fn hits() -> Vec<RetrievedHit> {
    vec![
        retrieved(
            7,
            "docs/install.md",
            "Run cargo install moat.",
            Location {
                line_start: 10,
                line_end: 14,
                page: 0,
                heading: "Guide > Install".into(),
            },
        ),
        retrieved(
            9,
            "manual.pdf",
            "  The server listens on port 8080.  ",
            Location {
                line_start: 0,
                line_end: 0,
                page: 3,
                heading: String::new(),
            },
        ),
    ]
}

#[test]
fn passages_are_numbered_in_a_new_system_message() {
    let messages = vec![ChatMessage::text("user", "How do I install it?")];
    let Grounded::Prompt {
        messages,
        citations,
    } = ground(&messages, &hits(), &GroundingConfig::default())
    else {
        panic!("expected a prompt");
    };
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].role, "system");
    let expected = format!(
        "{DEFAULT_INSTRUCTION}\n\n[1] (docs/install.md, Guide > Install, lines 10-14)\nRun cargo \
         install moat.\n\n[2] (manual.pdf, page 3)\nThe server listens on port 8080."
    );
    assert_eq!(text_of(&messages[0]), expected);
    assert_eq!(text_of(&messages[1]), "How do I install it?");
    assert_eq!(citations.len(), 2);
    assert_eq!(citations[0].marker, 1);
    assert_eq!(citations[0].path, "docs/install.md");
    assert_eq!(citations[0].chunk_id, 7);
    assert_eq!(citations[1].marker, 2);
    assert_eq!(citations[1].location.page, 3);
    assert_eq!(citations[1].snippet, "The server listens on port 8080.");
}

#[test]
fn an_existing_system_message_is_extended_not_duplicated() {
    let messages = vec![
        ChatMessage::text("system", "You are terse."),
        ChatMessage::text("user", "Port?"),
    ];
    let Grounded::Prompt { messages, .. } = ground(&messages, &hits(), &GroundingConfig::default())
    else {
        panic!("expected a prompt");
    };
    assert_eq!(messages.len(), 2);
    assert!(text_of(&messages[0]).starts_with("You are terse.\n\nAnswer the user's question"));
}

#[test]
fn nothing_found_follows_the_policy() {
    let messages = vec![ChatMessage::text("user", "Anything?")];
    let reply = ground(&messages, &[], &GroundingConfig::default());
    assert_eq!(
        reply,
        Grounded::NoAnswer {
            reply: DEFAULT_NO_ANSWER_REPLY.into()
        }
    );
    let config = GroundingConfig {
        no_answer: NoAnswerPolicy::AskModel,
        ..GroundingConfig::default()
    };
    let Grounded::Prompt {
        messages,
        citations,
    } = ground(&messages, &[], &config)
    else {
        panic!("expected a prompt");
    };
    assert!(citations.is_empty());
    assert_eq!(text_of(&messages[0]), DEFAULT_NOTHING_FOUND_INSTRUCTION);
}

#[test]
fn snippets_are_cut_at_a_word() {
    let long = "word ".repeat(100);
    let config = GroundingConfig {
        snippet_chars: 12,
        ..GroundingConfig::default()
    };
    let hits = vec![retrieved(1, "a.txt", &long, Location::default())];
    let Grounded::Prompt { citations, .. } = ground(&[], &hits, &config) else {
        panic!("expected a prompt");
    };
    assert_eq!(citations[0].snippet, "word word…");
}

#[test]
fn query_is_the_last_user_text() {
    let parts = ChatMessage {
        content: Some(MessageContent::Parts(vec![
            ContentPart::text("part one"),
            ContentPart::text("two"),
        ])),
        ..ChatMessage::text("user", "")
    };
    let messages = vec![
        ChatMessage::text("user", "first"),
        parts,
        ChatMessage::text("assistant", "reply"),
    ];
    assert_eq!(
        query_from_messages(&messages).as_deref(),
        Some("part one\ntwo")
    );
    assert_eq!(
        query_from_messages(&[ChatMessage::text("system", "x")]),
        None
    );
}

#[test]
fn cited_markers_are_found_once_in_order() {
    assert_eq!(
        cited_markers("Use X [2]. Also [1][2] and [x] [3 ] [10]."),
        [2, 1, 10]
    );
    assert!(cited_markers("no citations [").is_empty());
}
