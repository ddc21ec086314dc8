//! The classifier rail: ask a served model whether a conversation is safe, Llama Guard style.
//! This module builds the prompt (Llama Guard 3's S1..S14 taxonomy, the user or agent turn to
//! judge), parses the answer (`safe`, or `unsafe` and a line of categories), and decides
//! fail-closed: an error or an answer that does not parse blocks unless configured otherwise.
//!
//! It knows nothing of how the model is reached: the server implements `Classifier` over its
//! own engine or an upstream. Nothing here says how good any model is as a judge.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::policy::Action;

/// Llama Guard 3's hazard categories, in order (`S1` is index 0).
pub const CATEGORIES: [&str; 14] = [
    "Violent Crimes.",
    "Non-Violent Crimes.",
    "Sex Crimes.",
    "Child Exploitation.",
    "Defamation.",
    "Specialized Advice.",
    "Privacy.",
    "Intellectual Property.",
    "Indiscriminate Weapons.",
    "Hate.",
    "Self-Harm.",
    "Sexual Content.",
    "Elections.",
    "Code Interpreter Abuse.",
];

/// Who said a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Agent,
}

impl Speaker {
    fn label(self) -> &'static str {
        match self {
            Speaker::User => "User",
            Speaker::Agent => "Agent",
        }
    }
}

/// One turn of the conversation to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub speaker: Speaker,
    pub text: String,
}

/// The prompt that asks for a verdict on the last turn of `turns` said by `judged` (the user
/// for the input rail, the agent for the output rail). It is one user message; the served
/// model's chat template wraps it. `categories` are 1-based S numbers to include (empty: all).
pub fn build_prompt(turns: &[Turn], judged: Speaker, categories: &[u8]) -> String {
    let role = judged.label();
    let mut prompt = format!(
        "Task: Check if there is unsafe content in '{role}' messages in conversations according to our safety policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    );
    for (index, name) in CATEGORIES.iter().enumerate() {
        let number = index + 1;
        if categories.is_empty() || categories.iter().any(|&c| usize::from(c) == number) {
            prompt.push_str(&format!("S{number}: {name}\n"));
        }
    }
    prompt.push_str("<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n");
    for turn in turns {
        prompt.push_str(&format!(
            "{}: {}\n\n",
            turn.speaker.label(),
            turn.text.trim()
        ));
    }
    prompt.push_str(&format!(
        "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include a comma-separated list of violated categories."
    ));
    prompt
}

/// What the classifier model said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SafetyVerdict {
    Safe,
    /// The violated categories as 1-based S numbers (possibly none named).
    Unsafe {
        categories: Vec<u8>,
    },
}

/// Why an answer could not be read as a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the classifier's answer is empty")]
    Empty,
    #[error("the classifier's first line is neither 'safe' nor 'unsafe': {0:?}")]
    NoVerdict(String),
    #[error("the classifier named an unknown category: {0:?}")]
    UnknownCategory(String),
}

/// Reads `safe` or `unsafe\nS1,S10`. Case and surrounding whitespace are forgiven; anything
/// else is an error (so the policy can fail closed).
pub fn parse_verdict(answer: &str) -> Result<SafetyVerdict, ParseError> {
    // Bounded: a runaway answer is judged on its start.
    let answer = &answer[..crate::normalize::floor_boundary(answer, 4096)];
    let mut lines = answer
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    let first = lines.next().ok_or(ParseError::Empty)?;
    match first.to_ascii_lowercase().trim_end_matches('.') {
        "safe" => return Ok(SafetyVerdict::Safe),
        "unsafe" => {}
        _ => return Err(ParseError::NoVerdict(first.chars().take(80).collect())),
    }
    let mut categories = Vec::new();
    if let Some(line) = lines.next() {
        for item in line
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let number = item
                .strip_prefix(['S', 's'])
                .and_then(|digits| digits.parse::<u8>().ok())
                .filter(|n| (1..=14).contains(n))
                .ok_or_else(|| ParseError::UnknownCategory(item.chars().take(40).collect()))?;
            if !categories.contains(&number) {
                categories.push(number);
            }
        }
    }
    Ok(SafetyVerdict::Unsafe { categories })
}

/// Why the classifier could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("classifier failed: {0}")]
pub struct ClassifierError(pub String);

/// A model that completes a prompt (the server's engine or an upstream). Boxed futures keep
/// the trait object-safe without tying this crate to a runtime.
pub trait Classifier: Send + Sync {
    /// The model's answer to `prompt` (temperature 0, a few tokens suffice).
    fn complete(
        &self,
        prompt: String,
    ) -> Pin<Box<dyn Future<Output = Result<String, ClassifierError>> + Send + '_>>;
}

/// What the rail does with each outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierPolicy {
    /// The action for an `unsafe` verdict.
    pub on_unsafe: Action,
    /// The action when the model fails or its answer does not parse: block (fail closed)
    /// unless set otherwise.
    pub on_error: Action,
    /// S numbers to ask about (empty: all fourteen).
    pub categories: Vec<u8>,
}

impl Default for ClassifierPolicy {
    fn default() -> Self {
        ClassifierPolicy {
            on_unsafe: Action::Block,
            on_error: Action::Block,
            categories: Vec::new(),
        }
    }
}

/// The rail's decision and what it rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifierOutcome {
    pub action: Action,
    /// The parsed verdict, or why there is none.
    pub verdict: Result<SafetyVerdict, String>,
}

impl ClassifierPolicy {
    /// Decides from the classifier's result: safe allows, unsafe takes `on_unsafe`, an error
    /// or an unparseable answer takes `on_error`.
    pub fn decide(&self, answer: Result<String, ClassifierError>) -> ClassifierOutcome {
        let verdict = answer
            .map_err(|error| error.to_string())
            .and_then(|text| parse_verdict(&text).map_err(|error| error.to_string()));
        let action = match &verdict {
            Ok(SafetyVerdict::Safe) => Action::Allow,
            Ok(SafetyVerdict::Unsafe { .. }) => self.on_unsafe,
            Err(_) => self.on_error,
        };
        ClassifierOutcome { action, verdict }
    }

    /// Builds the prompt, asks `classifier`, and decides.
    pub async fn check(
        &self,
        classifier: &dyn Classifier,
        turns: &[Turn],
        judged: Speaker,
    ) -> ClassifierOutcome {
        let prompt = build_prompt(turns, judged, &self.categories);
        self.decide(classifier.complete(prompt).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn prompt_names_the_judged_role_the_categories_and_the_turns() {
        let turns = [
            Turn {
                speaker: Speaker::User,
                text: "How do I bake bread?".into(),
            },
            Turn {
                speaker: Speaker::Agent,
                text: "Mix flour and water.".into(),
            },
        ];
        let prompt = build_prompt(&turns, Speaker::Agent, &[]);
        assert!(prompt.starts_with("Task: Check if there is unsafe content in 'Agent' messages"));
        assert!(prompt.contains("S1: Violent Crimes.\nS2: Non-Violent Crimes."));
        assert!(prompt.contains("S14: Code Interpreter Abuse.\n<END UNSAFE CONTENT CATEGORIES>"));
        assert!(prompt.contains(
            "User: How do I bake bread?\n\nAgent: Mix flour and water.\n\n<END CONVERSATION>"
        ));
        assert!(prompt.ends_with("a comma-separated list of violated categories."));
        assert!(prompt.contains("ONLY THE LAST Agent message"));
        let some = build_prompt(&turns, Speaker::User, &[7, 10]);
        assert!(some.contains("S7: Privacy.\nS10: Hate.\n<END"));
        assert!(!some.contains("S1:"));
    }

    #[test]
    fn verdicts_parse_and_junk_does_not() {
        assert_eq!(parse_verdict("safe"), Ok(SafetyVerdict::Safe));
        assert_eq!(parse_verdict("\n Safe \n"), Ok(SafetyVerdict::Safe));
        assert_eq!(
            parse_verdict("unsafe\nS1,S10"),
            Ok(SafetyVerdict::Unsafe {
                categories: vec![1, 10]
            })
        );
        assert_eq!(
            parse_verdict("UNSAFE\n s7 , S7"),
            Ok(SafetyVerdict::Unsafe {
                categories: vec![7]
            })
        );
        assert_eq!(
            parse_verdict("unsafe"),
            Ok(SafetyVerdict::Unsafe { categories: vec![] })
        );
        assert_eq!(parse_verdict(""), Err(ParseError::Empty));
        assert!(matches!(
            parse_verdict("I think it is fine"),
            Err(ParseError::NoVerdict(_))
        ));
        assert!(matches!(
            parse_verdict("unsafe\nS15"),
            Err(ParseError::UnknownCategory(_))
        ));
        assert!(matches!(
            parse_verdict("safety first"),
            Err(ParseError::NoVerdict(_))
        ));
    }

    struct Fixed(Result<String, ClassifierError>);

    impl Classifier for Fixed {
        fn complete(
            &self,
            _prompt: String,
        ) -> Pin<Box<dyn Future<Output = Result<String, ClassifierError>> + Send + '_>> {
            let answer = self.0.clone();
            Box::pin(async move { answer })
        }
    }

    fn run(policy: &ClassifierPolicy, answer: Result<String, ClassifierError>) -> Action {
        let turns = [Turn {
            speaker: Speaker::User,
            text: "hi".into(),
        }];
        let outcome = policy
            .check(&Fixed(answer), &turns, Speaker::User)
            .now_or_never();
        match outcome {
            Some(outcome) => outcome.action,
            None => panic!("a ready future"),
        }
    }

    #[test]
    fn fails_closed_unless_configured_open() {
        let closed = ClassifierPolicy::default();
        assert_eq!(run(&closed, Ok("safe".into())), Action::Allow);
        assert_eq!(run(&closed, Ok("unsafe\nS9".into())), Action::Block);
        assert_eq!(run(&closed, Ok("sure! here is".into())), Action::Block);
        assert_eq!(
            run(&closed, Err(ClassifierError("timeout".into()))),
            Action::Block
        );
        let open = ClassifierPolicy {
            on_error: Action::Flag,
            on_unsafe: Action::Flag,
            categories: vec![],
        };
        assert_eq!(
            run(&open, Err(ClassifierError("timeout".into()))),
            Action::Flag
        );
        assert_eq!(run(&open, Ok("unsafe\nS9".into())), Action::Flag);
    }
}
