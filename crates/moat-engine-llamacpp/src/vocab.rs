//! What the loaded model tells us without computing anything: tokenization, token text, the
//! end-of-generation set and the `EngineInfo`. These calls only read the vocabulary, which
//! llama.cpp allows from any thread while the worker decodes (llama-server tokenizes on its HTTP
//! threads the same way). Every token id is range-checked before it reaches llama.cpp, whose
//! vocabulary lookups abort the process on an id out of range.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use moat_engine::{EngineError, EngineInfo, TokenId};

use crate::LoadOptions;

/// The model as the vocabulary sees it.
pub(crate) struct Vocab<'m> {
    model: &'m LlamaModel,
    n_vocab: i32,
}

impl<'m> Vocab<'m> {
    pub(crate) fn new(model: &'m LlamaModel) -> Self {
        Self {
            model,
            n_vocab: model.n_vocab(),
        }
    }

    pub(crate) fn n_vocab(&self) -> i32 {
        self.n_vocab
    }

    pub(crate) fn contains(&self, token: TokenId) -> bool {
        (0..self.n_vocab).contains(&token)
    }

    pub(crate) fn check(&self, token: TokenId) -> Result<(), EngineError> {
        if self.contains(token) {
            Ok(())
        } else {
            Err(EngineError::InvalidRequest(format!(
                "token id {token} is outside the vocabulary (0..{})",
                self.n_vocab
            )))
        }
    }

    pub(crate) fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Vec<TokenId> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), add_special, parse_special)
            .into_iter()
            .map(|token| token.0)
            .collect()
    }

    /// The bytes of a token; `special` renders control tokens (`<|im_end|>`) as their text,
    /// otherwise they give nothing, as in llama.cpp's own output. The id must be in range.
    pub(crate) fn piece(&self, token: TokenId, special: bool) -> Vec<u8> {
        debug_assert!(self.contains(token));
        self.model
            .vocab()
            .token_to_piece(LlamaToken(token), special, None)
    }

    /// The most bytes of text any one token stands for, control tokens as their text.
    pub(crate) fn max_token_bytes(&self) -> usize {
        (0..self.n_vocab)
            .map(|token| self.piece(token, true).len())
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// The model's end-of-sequence token, for a sequence that must end without a real sample.
    pub(crate) fn eog_token(&self) -> TokenId {
        self.model.vocab().eos().0
    }

    pub(crate) fn is_eog(&self, token: TokenId) -> bool {
        self.contains(token) && self.model.vocab().is_eog(LlamaToken(token))
    }

    /// The text of a special token the model names (BOS, EOS), if it has one.
    fn special_text(&self, token: LlamaToken) -> Option<String> {
        self.contains(token.0)
            .then(|| String::from_utf8_lossy(&self.piece(token.0, true)).into_owned())
    }

    /// What the server needs to know about the model, once loaded.
    pub(crate) fn info(
        &self,
        options: &LoadOptions,
        n_ctx_per_seq: u32,
        placement: String,
    ) -> EngineInfo {
        let vocab = self.model.vocab();
        let chat_template = options.chat_template_override.clone().or_else(|| {
            self.model
                .chat_template(None)
                .ok()
                .and_then(|template| template.to_string().ok())
        });
        EngineInfo {
            model: options.model_name.clone(),
            n_ctx: n_ctx_per_seq,
            n_ctx_train: self.model.n_ctx_train(),
            n_vocab: u32::try_from(self.n_vocab).unwrap_or(0),
            parallel: options.parallel,
            chat_template,
            bos_token: self.special_text(vocab.bos()),
            eos_token: self.special_text(vocab.eos()),
            eog_tokens: (0..self.n_vocab).filter(|&t| self.is_eog(t)).collect(),
            placement,
        }
    }
}

/// What the engine reports before the model is loaded: the settings it was asked for.
pub(crate) fn placeholder_info(options: &LoadOptions) -> EngineInfo {
    EngineInfo {
        model: options.model_name.clone(),
        n_ctx: options.n_ctx_per_seq,
        n_ctx_train: 0,
        n_vocab: 0,
        parallel: options.parallel,
        chat_template: options.chat_template_override.clone(),
        bos_token: None,
        eos_token: None,
        eog_tokens: Vec::new(),
        placement: String::new(),
    }
}
