//! One request as the worker sees it: its sampler chain, text assembly (UTF-8 and stop
//! strings), logprobs and the events on their way to the client. It turns each sampled token
//! into events; the scheduler decides when the sequence ends. It knows nothing of batches,
//! slots or the KV cache.

use std::collections::VecDeque;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use moat_engine::{
    BudgetWatch, EngineError, Event, EventOutbox, FinishReason, GeneratedToken, GenerationEvent,
    TextAssembler, TokenId, TokenLogprob, TopLogprob, Usage, ValidGenerate,
};
use tokio::sync::mpsc;

use crate::grammar::{force, sample_constrained};
use crate::sampling::{penalties_active, plain_greedy, sampler_chain, LogSoftmax};
use crate::vocab::Vocab;

pub(crate) type EventSender = mpsc::Sender<Event>;

/// A request on its way to the worker: validated, tokenized, with its stream's sender.
pub(crate) struct Job {
    pub(crate) prompt: Vec<TokenId>,
    pub(crate) request: ValidGenerate,
    /// The request's grammar, compiled by the handle (so a bad one fails before queueing).
    pub(crate) grammar: Option<LlamaSampler>,
    pub(crate) sender: EventSender,
}

/// What one sampled token gave.
pub(crate) struct Sample {
    pub(crate) token: TokenId,
    /// An end-of-generation token or a completed stop string ends the sequence here.
    pub(crate) stop: bool,
}

pub(crate) struct Stream {
    /// Events on their way to the client; the worker never blocks on a client.
    outbox: EventOutbox,
    sampler: LlamaSampler,
    /// Kept apart from `sampler`: the prompt's tokens go through the penalties' history but
    /// must never reach the grammar, which only reads the output.
    grammar: Option<LlamaSampler>,
    /// The chain is greedy on the raw logits (`sampling::plain_greedy`).
    plain_greedy: bool,
    text: TextAssembler,
    ignore_eos: bool,
    logprobs: Option<u8>,
    /// Filled while the prompt is computed, when the request asked for prompt logprobs.
    prompt_logprobs: Option<Vec<Option<TokenLogprob>>>,
    /// The request's thinking budget, watched token by token.
    budget: Option<BudgetWatch>,
    /// What ends the thinking when its budget is spent: the closing tag, as tokens.
    closing: Vec<TokenId>,
    /// Tokens that the model is made to write next, in order, instead of sampling.
    forced: VecDeque<TokenId>,
}

impl Stream {
    pub(crate) fn new(job: &mut Job, vocab: &Vocab<'_>) -> Self {
        let request = &job.request;
        let mut sampler = sampler_chain(&request.sampling, vocab.n_vocab());
        if penalties_active(&request.sampling) {
            // Penalties count the prompt's tokens too, as in llama-server.
            sampler.accept_many(job.prompt.iter().map(|&token| LlamaToken(token)));
        }
        Self {
            outbox: EventOutbox::new(job.sender.clone()),
            sampler,
            grammar: job.grammar.take(),
            plain_greedy: plain_greedy(&request.sampling),
            text: TextAssembler::new(request.stop.stop_strings.iter().cloned()),
            ignore_eos: request.stop.ignore_eos,
            logprobs: request.logprobs,
            prompt_logprobs: request.prompt_logprobs.then(|| vec![None]),
            budget: request.thinking.as_ref().and_then(BudgetWatch::new),
            // A newline first, so the tag stands on its own line (as reasoning models write
            // it), and a blank line after it, as Qwen3's and DeepSeek-R1's do.
            closing: request
                .thinking
                .as_ref()
                .filter(|thinking| thinking.budget.is_some())
                .map_or_else(Vec::new, |thinking| {
                    vocab.tokenize(&format!("\n{}\n\n", thinking.close), false, true)
                }),
            forced: VecDeque::new(),
        }
    }

    /// Hands over what the channel has room for; false once the client dropped its stream.
    pub(crate) fn deliver(&mut self) -> bool {
        self.outbox.deliver()
    }

    pub(crate) fn in_channel(&self) -> bool {
        self.outbox.in_channel()
    }

    pub(crate) fn has_backlog(&self) -> bool {
        self.outbox.has_backlog()
    }

    /// Nothing more will be sent.
    pub(crate) fn is_done(&self) -> bool {
        self.outbox.is_done()
    }

    /// Queues the stream's last event (`Finished` or an error); later ones are ignored.
    pub(crate) fn end_with(&mut self, event: Event) {
        self.outbox.end_with(event);
    }

    pub(crate) fn finish(&mut self, reason: FinishReason, usage: Usage) {
        self.outbox.finish(reason, usage, &mut self.text);
    }

    /// Scores the prompt token that follows a prompt position, from that position's logits,
    /// with as many alternatives as a generated token gets: evaluation harnesses read a prompt
    /// token's alternatives to tell whether it was the model's greedy choice.
    pub(crate) fn record_prompt_logprob(
        &mut self,
        next: TokenId,
        logits: &[f32],
        vocab: &Vocab<'_>,
    ) {
        if let Some(prompt_logprobs) = &mut self.prompt_logprobs {
            let softmax = LogSoftmax::new(logits);
            let n_top = self.logprobs.map_or(0, usize::from);
            prompt_logprobs.push(Some(token_logprob(next, &softmax, n_top, vocab)));
        }
    }

    /// The prompt is in.
    pub(crate) fn start(&mut self, prompt_tokens: u32, cached_tokens: u32) {
        let prompt_logprobs = self.prompt_logprobs.take();
        self.outbox.push(GenerationEvent::Started {
            prompt_tokens,
            cached_tokens,
            prompt_logprobs,
        });
    }

    /// Samples from the logits at batch index `at` (within the grammar, if the request has
    /// one) and streams the token's text. An end-of-generation token is counted but not
    /// shown, unless it carries held-back text. A grammar that allows no token ends the
    /// stream with an error.
    pub(crate) fn sample(
        &mut self,
        context: &LlamaContext<'_>,
        at: i32,
        vocab: &Vocab<'_>,
    ) -> Sample {
        if let Some(budget) = self.budget.as_mut().filter(|budget| budget.spent()) {
            budget.end();
            self.forced = self.closing.iter().copied().collect();
        }
        let forced = self
            .forced
            .pop_front()
            .filter(|&token| force(&mut self.sampler, self.grammar.as_mut(), token));
        if forced.is_none() {
            // Nothing to force, or the grammar refused the forced text: the model goes on.
            self.forced.clear();
        }
        let token = match (forced, self.grammar.as_mut()) {
            (Some(token), _) => token,
            (None, None) => self.sampler.sample(context, at).0,
            (None, Some(grammar)) => {
                match sample_constrained(&mut self.sampler, grammar, context, at, self.plain_greedy)
                {
                    Ok(token) => token,
                    Err(problem) => {
                        self.end_with(Err(EngineError::Internal(problem)));
                        return Sample {
                            token: vocab.eog_token(),
                            stop: true,
                        };
                    }
                }
            }
        };
        let end_of_generation = !self.ignore_eos && vocab.is_eog(token);
        let (text, stop) = if end_of_generation {
            (self.text.flush(), true)
        } else {
            let piece = vocab.piece(token, false);
            if let Some(budget) = &mut self.budget {
                budget.observe(&piece);
            }
            let output = self.text.push(&piece);
            (output.text, output.stopped)
        };
        if !(end_of_generation && text.is_empty()) {
            let logprob = self.logprobs.map(|n_top| {
                let softmax = LogSoftmax::new(context.get_logits_ith(at));
                token_logprob(token, &softmax, usize::from(n_top), vocab)
            });
            self.outbox.push(GenerationEvent::Token(GeneratedToken {
                id: token,
                text,
                logprob,
            }));
        }
        Sample { token, stop }
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
