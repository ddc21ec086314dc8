//! One request as the worker sees it: its sampler chain, text assembly (UTF-8 and stop
//! strings), logprobs and the events on their way to the client. It turns each sampled token
//! into events; the scheduler decides when the sequence ends. It knows nothing of batches,
//! slots or the KV cache.

use std::collections::VecDeque;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use moat_engine::{
    EngineError, FinishReason, GeneratedToken, GenerationEvent, StopMatcher, TokenId, TokenLogprob,
    TopLogprob, Usage, Utf8Decoder, ValidGenerate,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::sampling::{penalties_active, sampler_chain, LogSoftmax};
use crate::vocab::Vocab;

pub(crate) type Event = Result<GenerationEvent, EngineError>;
pub(crate) type EventSender = mpsc::Sender<Event>;

/// A request on its way to the worker: validated, tokenized, with its stream's sender.
pub(crate) struct Job {
    pub(crate) prompt: Vec<TokenId>,
    pub(crate) request: ValidGenerate,
    pub(crate) sender: EventSender,
}

/// What one sampled token gave.
pub(crate) struct Sample {
    pub(crate) token: TokenId,
    /// An end-of-generation token or a completed stop string ends the sequence here.
    pub(crate) stop: bool,
}

pub(crate) struct Stream {
    sender: EventSender,
    /// Events the client has not taken yet. The worker never blocks on a client: what the
    /// channel refuses waits here. It is bounded by the request's tokens, which the context
    /// bounds (`n_ctx_per_seq`), so a client that stops reading costs memory, not throughput.
    outbox: VecDeque<Event>,
    sampler: LlamaSampler,
    utf8: Utf8Decoder,
    stops: StopMatcher,
    ignore_eos: bool,
    logprobs: Option<u8>,
    /// Filled while the prompt is computed, when the request asked for prompt logprobs.
    prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    /// The last event is queued; the stream goes once the client has it.
    ended: bool,
}

impl Stream {
    pub(crate) fn new(job: &Job, vocab: &Vocab<'_>) -> Self {
        let request = &job.request;
        let mut sampler = sampler_chain(&request.sampling, vocab.n_vocab());
        if penalties_active(&request.sampling) {
            // Penalties count the prompt's tokens too, as in llama-server.
            sampler.accept_many(job.prompt.iter().map(|&token| LlamaToken(token)));
        }
        Self {
            sender: job.sender.clone(),
            outbox: VecDeque::new(),
            sampler,
            utf8: Utf8Decoder::new(),
            stops: StopMatcher::new(request.stop.stop_strings.iter().cloned()),
            ignore_eos: request.stop.ignore_eos,
            logprobs: request.logprobs,
            prompt_logprobs: request.prompt_logprobs.then(|| vec![None]),
            ended: false,
        }
    }

    /// Hands over what the channel has room for; false once the client dropped its stream.
    pub(crate) fn deliver(&mut self) -> bool {
        while let Some(event) = self.outbox.pop_front() {
            match self.sender.try_send(event) {
                Ok(()) => {}
                Err(TrySendError::Full(event)) => {
                    self.outbox.push_front(event);
                    return true;
                }
                Err(TrySendError::Closed(_)) => return false,
            }
        }
        !self.sender.is_closed()
    }

    pub(crate) fn has_backlog(&self) -> bool {
        !self.outbox.is_empty()
    }

    /// Nothing more will be sent.
    pub(crate) fn is_done(&self) -> bool {
        self.ended && self.outbox.is_empty()
    }

    /// Queues the stream's last event (`Finished` or an error); later ones are ignored.
    pub(crate) fn end_with(&mut self, event: Event) {
        if !self.ended {
            self.outbox.push_back(event);
            self.ended = true;
        }
    }

    pub(crate) fn finish(&mut self, reason: FinishReason, usage: Usage) {
        if reason == FinishReason::Length {
            // The text held back (an incomplete character, a possible stop string) was not a
            // stop after all: it goes out with the last token.
            let tail = self.flush();
            if let Some(Ok(GenerationEvent::Token(token))) = self.outbox.back_mut() {
                token.text.push_str(&tail);
            }
        }
        self.end_with(Ok(GenerationEvent::Finished { reason, usage }));
    }

    /// Scores the prompt token that follows a prompt position, from that position's logits.
    pub(crate) fn record_prompt_logprob(
        &mut self,
        next: TokenId,
        logits: &[f32],
        vocab: &Vocab<'_>,
    ) {
        if let Some(prompt_logprobs) = &mut self.prompt_logprobs {
            let softmax = LogSoftmax::new(logits);
            prompt_logprobs.push(Some(token_logprob(next, &softmax, 0, vocab)));
        }
    }

    /// The prompt is in.
    pub(crate) fn start(&mut self, prompt_tokens: u32, cached_tokens: u32) {
        let prompt_logprobs = self.prompt_logprobs.take();
        self.outbox.push_back(Ok(GenerationEvent::Started {
            prompt_tokens,
            cached_tokens,
            prompt_logprobs,
        }));
    }

    /// Samples from the logits at batch index `at` and streams the token's text. An
    /// end-of-generation token is counted but not shown, unless it carries held-back text.
    pub(crate) fn sample(
        &mut self,
        context: &LlamaContext<'_>,
        at: i32,
        vocab: &Vocab<'_>,
    ) -> Sample {
        let token = self.sampler.sample(context, at).0;
        let end_of_generation = !self.ignore_eos && vocab.is_eog(token);
        let (text, stop) = if end_of_generation {
            (self.flush(), true)
        } else {
            let output = self.stops.push(&self.utf8.push(&vocab.piece(token, false)));
            (output.text, output.stopped)
        };
        if !(end_of_generation && text.is_empty()) {
            let logprob = self.logprobs.map(|n_top| {
                let softmax = LogSoftmax::new(context.get_logits_ith(at));
                token_logprob(token, &softmax, usize::from(n_top), vocab)
            });
            self.outbox
                .push_back(Ok(GenerationEvent::Token(GeneratedToken {
                    id: token,
                    text,
                    logprob,
                })));
        }
        Sample { token, stop }
    }

    /// Text held back, released because the stream ends without a stop string.
    fn flush(&mut self) -> String {
        let tail = self.utf8.finish();
        let mut text = self.stops.push(&tail).text;
        text.push_str(&self.stops.finish());
        text
    }
}

fn token_logprob(
    token: TokenId,
    softmax: &LogSoftmax<'_>,
    n_top: usize,
    vocab: &Vocab<'_>,
) -> TokenLogprob {
    let entry = |token: TokenId| {
        let bytes = vocab.piece(token, true);
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    };
    let (text, bytes) = entry(token);
    TokenLogprob {
        token: text,
        bytes,
        logprob: softmax.logprob(token),
        top: softmax
            .top(n_top)
            .into_iter()
            .map(|(id, logprob)| {
                let (token, bytes) = entry(id);
                TopLogprob {
                    token,
                    bytes,
                    logprob,
                }
            })
            .collect(),
    }
}
