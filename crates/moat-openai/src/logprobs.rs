//! Logprobs in OpenAI's two shapes: chat's list of `{token, logprob, bytes, top_logprobs}` and
//! the completions API's parallel arrays (`tokens`, `token_logprobs`, `top_logprobs` as maps,
//! `text_offset`), built from the engine's `TokenLogprob`s.

use moat_engine::{TokenLogprob, TopLogprob};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatTopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChatLogprobToken {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<ChatTopLogprob>,
}

/// A chat choice's `logprobs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ChatLogprobs {
    pub content: Vec<ChatLogprobToken>,
    pub refusal: Option<Vec<ChatLogprobToken>>,
}

impl From<&TopLogprob> for ChatTopLogprob {
    fn from(top: &TopLogprob) -> Self {
        Self {
            token: top.token.clone(),
            logprob: top.logprob,
            bytes: top.bytes.clone(),
        }
    }
}

impl From<&TokenLogprob> for ChatLogprobToken {
    fn from(logprob: &TokenLogprob) -> Self {
        Self {
            token: logprob.token.clone(),
            logprob: logprob.logprob,
            bytes: logprob.bytes.clone(),
            top_logprobs: logprob.top.iter().map(ChatTopLogprob::from).collect(),
        }
    }
}

/// The alternatives of one token as a JSON object `{token: logprob}`, most likely first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopMap(pub Vec<(String, f32)>);

impl Serialize for TopMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (token, logprob) in &self.0 {
            map.serialize_entry(token, logprob)?;
        }
        map.end()
    }
}

/// A completion choice's `logprobs`: one entry per token in each array.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CompletionLogprobs {
    pub tokens: Vec<String>,
    /// `None` for the first prompt token, which has nothing before it.
    pub token_logprobs: Vec<Option<f32>>,
    pub top_logprobs: Vec<Option<TopMap>>,
    /// Where each token starts in the choice's text, in characters.
    pub text_offset: Vec<u32>,
}

impl CompletionLogprobs {
    /// Appends one token; `logprob` is `None` for a token without one (the first of a prompt).
    pub fn push(&mut self, token: &str, logprob: Option<&TokenLogprob>, text_offset: u32) {
        self.tokens.push(token.to_string());
        self.token_logprobs.push(logprob.map(|l| l.logprob));
        self.top_logprobs.push(logprob.map(|l| {
            TopMap(
                l.top
                    .iter()
                    .map(|top| (top.token.clone(), top.logprob))
                    .collect(),
            )
        }));
        self.text_offset.push(text_offset);
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_logprobs_serialize_as_parallel_arrays() {
        let lp = TokenLogprob {
            token: " a".into(),
            bytes: b" a".to_vec(),
            logprob: -0.5,
            top: vec![
                TopLogprob {
                    token: " a".into(),
                    bytes: b" a".to_vec(),
                    logprob: -0.5,
                },
                TopLogprob {
                    token: " b".into(),
                    bytes: b" b".to_vec(),
                    logprob: -1.5,
                },
            ],
        };
        let mut logprobs = CompletionLogprobs::default();
        logprobs.push("Hi", None, 0);
        logprobs.push(" a", Some(&lp), 2);
        assert_eq!(
            serde_json::to_string(&logprobs).unwrap(),
            r#"{"tokens":["Hi"," a"],"token_logprobs":[null,-0.5],"top_logprobs":[null,{" a":-0.5," b":-1.5}],"text_offset":[0,2]}"#
        );
    }
}
