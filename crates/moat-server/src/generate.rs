//! Running a request's generations: start every choice's engine stream (so admission errors
//! such as 429 or a too-long prompt become the response's status), wait until each has taken
//! its prompt, then merge their events. `collect` folds them into one whole answer; the SSE
//! side is in `stream.rs`. Dropping what this returns drops the engine streams, which cancels
//! their generations. Each choice's events pass a `Probe` (when the request has an observation
//! record) that times them for the metrics, for streamed and whole answers alike.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{self, SelectAll, Stream, StreamExt};
use moat_engine::{Engine, EngineError, GenerationEvent, TokenStream, ValidGenerate};
use moat_openai::{UsageTally, WireUsage};
use serde::Serialize;

use crate::format::ThinkingCount;
use crate::guarding::Watch;
use crate::ApiError;

/// One generation to start: choice `index` of the response.
pub(crate) struct Job {
    pub index: u32,
    /// Choice 0 of its prompt: its prompt tokens count in the usage.
    pub first_of_prompt: bool,
    pub request: ValidGenerate,
}

impl Job {
    pub(crate) fn new(index: u32, first_of_prompt: bool, request: ValidGenerate) -> Self {
        Self {
            index,
            first_of_prompt,
            request,
        }
    }
}

/// A generation the engine has admitted and started.
pub(crate) struct Started {
    index: u32,
    first_of_prompt: bool,
    /// The `Started` event, replayed to the format first.
    started: GenerationEvent,
    stream: TokenStream,
    /// When `start` received the `Started` event (the end of the choice's queue time).
    started_at: Instant,
    /// Counts its tokens for the request's account and runs the output rails.
    watch: Option<Watch>,
    /// Counts its tokens spent thinking, before the watch.
    thinking: Option<ThinkingCount>,
}

impl Started {
    /// Which choice of the response this is.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Sets what watches this choice's answer (see `guarding::Watch`).
    pub(crate) fn watch(&mut self, watch: Watch) {
        self.watch = Some(watch);
    }

    /// Sets what counts this choice's tokens spent thinking, on the engine's events as they
    /// come (before the watch may hold their text back).
    pub(crate) fn count_thinking(&mut self, count: ThinkingCount) {
        self.thinking = Some(count);
    }
}

/// One merged event: which choice, whether it is its prompt's first, what happened.
pub(crate) type ChoiceEvent = (u32, bool, Result<GenerationEvent, ApiError>);
pub(crate) type MergedEvents = SelectAll<Pin<Box<dyn Stream<Item = ChoiceEvent> + Send>>>;

/// Turns engine events into an API's chunks, and remembers enough to build the whole answer.
pub(crate) trait Format: Send + 'static {
    type Chunk: Serialize + Send;
    type Whole: Serialize + Send;
    /// The chunks to stream for one event (none for an event with nothing to show).
    fn on_event(&mut self, index: u32, event: GenerationEvent) -> Vec<Self::Chunk>;
    /// The last chunk of a stream with `include_usage`.
    fn usage_chunk(&self, usage: WireUsage) -> Self::Chunk;
    fn into_whole(self, usage: WireUsage) -> Self::Whole;
}

/// Starts every job, then waits for each one's `Started`. Any failure drops the streams
/// already started, which cancels them. A grammar the engine cannot use is a 400 naming
/// `grammar_field`, the request field it came from (`GenerationParams::grammar_field`).
pub(crate) async fn start(
    engine: &Arc<dyn Engine>,
    jobs: Vec<Job>,
    grammar_field: &'static str,
) -> Result<Vec<Started>, ApiError> {
    let refused = |error: EngineError| {
        let grammar = matches!(error, EngineError::InvalidGrammar(_));
        let error = ApiError::from(error);
        if grammar {
            error.with_param(grammar_field)
        } else {
            error
        }
    };
    let mut pending = Vec::with_capacity(jobs.len());
    for job in jobs {
        let stream = if job.request.grammar.is_some() {
            // Compiling a large schema into a grammar takes milliseconds (22 ms for 200
            // properties): not on the runtime's threads.
            let engine = Arc::clone(engine);
            tokio::task::spawn_blocking(move || engine.generate(job.request))
                .await
                .map_err(|error| {
                    EngineError::Internal(format!("the grammar task failed: {error}"))
                })?
                .map_err(refused)?
        } else {
            engine.generate(job.request).map_err(refused)?
        };
        pending.push((job.index, job.first_of_prompt, stream));
    }
    let mut started = Vec::with_capacity(pending.len());
    for (index, first_of_prompt, mut stream) in pending {
        let first = match stream.next().await {
            Some(event) => event?,
            None => return Err(ended_early().into()),
        };
        started.push(Started {
            index,
            first_of_prompt,
            started: first,
            stream,
            started_at: Instant::now(),
            watch: None,
            thinking: None,
        });
    }
    Ok(started)
}

fn ended_early() -> EngineError {
    EngineError::Internal("the generation ended without finishing".into())
}

/// One choice's events: its `Started`, then the rest until `Finished` or an error. A stream
/// that ends before `Finished` reads as an engine error. With a watch, every event passes
/// through it (it may rewrite token text, add a last token, or end the choice with an error).
fn choice_events(choice: Started) -> Pin<Box<dyn Stream<Item = ChoiceEvent> + Send>> {
    let Started {
        index,
        first_of_prompt,
        started,
        stream,
        started_at,
        watch,
        mut thinking,
    } = choice;
    let mut probe = watch
        .as_ref()
        .and_then(|watch| watch.ticket().record())
        .map(|record| record.probe(started_at));
    let already_finished = matches!(started, GenerationEvent::Finished { .. });
    let head = stream::once(async move { Ok(started) });
    let rest = stream::unfold((!already_finished).then_some(stream), |state| async move {
        let mut stream = state?;
        match stream.next().await {
            Some(Ok(event @ GenerationEvent::Finished { .. })) => Some((Ok(event), None)),
            Some(Ok(event)) => Some((Ok(event), Some(stream))),
            Some(Err(error)) => Some((Err(error), None)),
            None => Some((Err(ended_early()), None)),
        }
    });
    let events = head.chain(rest).map(move |event| {
        if let (Some(probe), Ok(event)) = (&mut probe, &event) {
            probe.on_event(first_of_prompt, event);
        }
        if let (Some(thinking), Ok(event)) = (&mut thinking, &event) {
            thinking.on_event(event);
        }
        event.map_err(ApiError::from)
    });
    let watched = stream::unfold(
        (
            Box::pin(events),
            watch,
            std::collections::VecDeque::new(),
            false,
        ),
        |(mut events, mut watch, mut queue, mut ended)| async move {
            loop {
                if let Some(event) = queue.pop_front() {
                    return Some((event, (events, watch, queue, ended)));
                }
                if ended {
                    return None;
                }
                match events.next().await {
                    None => return None,
                    Some(Err(error)) => {
                        ended = true;
                        queue.push_back(Err(error));
                    }
                    Some(Ok(event)) => match &mut watch {
                        None => queue.push_back(Ok(event)),
                        Some(watch) => {
                            let out = watch.on_event(event);
                            ended = out.iter().any(Result::is_err);
                            queue.extend(out);
                        }
                    },
                }
            }
        },
    );
    Box::pin(watched.map(move |event| (index, first_of_prompt, event)))
}

pub(crate) fn merge(choices: Vec<Started>) -> MergedEvents {
    stream::select_all(choices.into_iter().map(choice_events))
}

/// Counts a `Finished` event's usage.
pub(crate) fn tally_event(tally: &mut UsageTally, first_of_prompt: bool, event: &GenerationEvent) {
    if let GenerationEvent::Finished { usage, .. } = event {
        tally.add(usage, first_of_prompt);
    }
}

/// Runs every choice to its end and builds the whole answer.
pub(crate) async fn collect<F: Format>(
    choices: Vec<Started>,
    mut format: F,
) -> Result<F::Whole, ApiError> {
    let mut tally = UsageTally::default();
    let mut events = merge(choices);
    while let Some((index, first_of_prompt, event)) = events.next().await {
        let event = event?;
        tally_event(&mut tally, first_of_prompt, &event);
        format.on_event(index, event);
    }
    Ok(format.into_whole(tally.wire()))
}
