//! `moat run MODEL [PROMPT]`: a model in this process, answers streamed to the terminal. With a
//! prompt (or text piped on stdin, which is appended to it) it answers once; with neither it is
//! an interactive chat that keeps the conversation's history. No server and no async runtime:
//! the engine's streams are read with `blocking_next`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context, Result};
use clap::Args;
use moat_engine::{
    ChatMessage, ChatTemplate, Engine, EngineError, GenerationEvent, Grammar, Prompt,
    RenderOptions, SamplingParams, StopConditions, TemplateError, TokenId, ValidGenerate,
};
use moat_engine_llamacpp::{LlamaEngine, LoadOptions};
use moat_types::SamplingDefaults;

use crate::models::open_store;
use crate::serve::{load_engine, model_file, EngineArgs};
use crate::{CANCEL, EXIT_INTERRUPTED};

#[derive(Args)]
pub struct RunArgs {
    /// The model's name[:tag].
    model: String,
    /// The prompt; several words are joined with spaces. Without one: stdin when it is piped
    /// (an empty pipe is an error), else an interactive chat (/clear forgets the conversation, /bye or Ctrl-D ends it).
    prompt: Vec<String>,
    /// Context in tokens (prompt plus answer; in a chat, the whole conversation).
    #[arg(long, default_value_t = LoadOptions::DEFAULT_N_CTX_PER_SEQ)]
    ctx: u32,
    /// Compute threads (default: the cores this process may use).
    #[arg(long)]
    threads: Option<u32>,
    /// Layers to offload to the GPU on a GPU build, like llama.cpp's `-ngl` (default: all;
    /// 0: run on the CPU).
    #[arg(long, value_name = "N")]
    gpu_layers: Option<u32>,
    /// Sampling temperature, 0 (greedy) to 2. Default: the model's manifest, else 0.7.
    #[arg(long)]
    temperature: Option<f32>,
    /// Seed for reproducible answers.
    #[arg(long)]
    seed: Option<u64>,
    /// Most tokens per answer (default: until the model stops or the context is full).
    #[arg(long)]
    max_tokens: Option<u32>,
    /// A system prompt (default: the model's manifest, if it sets one).
    #[arg(long)]
    system: Option<String>,
    /// Send the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Answer with one JSON object (OpenAI's `json_object`, Ollama's `--format json`).
    #[arg(long, conflicts_with = "json_schema")]
    json: bool,
    /// Answer with a JSON value matching the JSON Schema in FILE. The model is held to it while
    /// it writes; `--max-tokens` can still cut an answer short.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<std::path::PathBuf>,
    /// A reasoning model's thinking (`<think>…</think>`, when its chat template writes or
    /// reads it) is not printed. Otherwise it goes to stderr (dimmed on a terminal), apart
    /// from the answer on stdout.
    #[arg(long)]
    hide_thinking: bool,
    /// Most tokens a reasoning model may spend thinking before it is made to end its thinking
    /// and answer. -1 (the default): no limit; 0: it answers at once.
    #[arg(long, default_value_t = -1, value_name = "TOKENS", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..=i64::from(u32::MAX)))]
    reasoning_budget: i64,
}

/// The grammar `--json` or `--json-schema FILE` asks for.
fn run_grammar(args: &RunArgs) -> Result<Option<Grammar>> {
    if args.json {
        return Ok(Some(Grammar::json_object()));
    }
    let Some(path) = &args.json_schema else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the JSON Schema {}", path.display()))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(schema @ serde_json::Value::Object(_)) => {
            Ok(Some(Grammar::JsonSchema(schema.to_string())))
        }
        Ok(_) => bail!("{}: a JSON Schema is a JSON object", path.display()),
        Err(error) => bail!("{} is not JSON: {error}", path.display()),
    }
}

/// Sampling when neither the flags nor the manifest say: mild, like other local runners.
fn run_sampling(defaults: &SamplingDefaults, args: &RunArgs) -> SamplingParams {
    SamplingParams {
        temperature: args.temperature.or(defaults.temperature).unwrap_or(0.7),
        top_p: defaults.top_p.unwrap_or(0.9),
        top_k: defaults.top_k.unwrap_or(40),
        min_p: defaults.min_p.unwrap_or(0.05),
        repeat_penalty: defaults.repeat_penalty.unwrap_or(1.1),
        seed: args.seed,
        ..SamplingParams::default()
    }
}

struct Session {
    engine: LlamaEngine,
    /// `None` with `--raw`; the error when the model has no usable template.
    template: Option<Result<ChatTemplate, TemplateError>>,
    sampling: SamplingParams,
    grammar: Option<Grammar>,
    max_tokens: Option<u32>,
    stop: Vec<String>,
    history: Vec<ChatMessage>,
    /// The template is a reasoning model's: its thinking is read out of the answer.
    thinks: bool,
    hide_thinking: bool,
    /// Most tokens of thinking (`--reasoning-budget`; `None`: no limit).
    thinking_budget: Option<u32>,
}

pub fn run(home: &Path, args: RunArgs) -> Result<u8> {
    if let Some(t) = args.temperature {
        if !(0.0..=2.0).contains(&t) {
            bail!("--temperature must be between 0 and 2");
        }
    }
    let grammar = run_grammar(&args)?;
    let store = open_store(home)?;
    let model = model_file(&store, &args.model)?;
    let engine_args = EngineArgs {
        parallel: 1,
        ctx: args.ctx,
        threads: args.threads,
        no_prefix_reuse: false,
        kv_unified: false,
        cache_tokens: None,
        compute_nice: moat_engine::compute::DEFAULT_COMPUTE_NICE,
        gpu_layers: args.gpu_layers,
        // One request at a time: no burst to wait for.
        arrival_window: 0,
        // The default: it polls only with a core to spare.
        compute_poll: None,
        compute_slice: moat_engine_llamacpp::DEFAULT_COMPUTE_SLICE.as_millis() as u64,
    };
    let engine = load_engine(&model, &engine_args, 1)?;
    engine
        .wait_until_loaded()
        .with_context(|| format!("loading {}", model.manifest.name))?;
    let info = engine.info().clone();
    let template = (!args.raw).then(|| {
        moat_engine::select_template_source(None, info.chat_template.as_deref()).and_then(
            |source| ChatTemplate::new(source, info.bos_token.clone(), info.eos_token.clone()),
        )
    });
    let system = args.system.clone().or(model.manifest.system_prompt.clone());
    let thinks = template
        .as_ref()
        .and_then(|template| template.as_ref().ok())
        .is_some_and(|template| moat_openai::template_thinks(template.source()));
    let mut session = Session {
        engine,
        thinks,
        hide_thinking: args.hide_thinking,
        // -1, the one value the parser lets through that does not fit, means no limit.
        thinking_budget: u32::try_from(args.reasoning_budget).ok(),
        template,
        sampling: run_sampling(&model.manifest.sampling, &args),
        grammar,
        max_tokens: args.max_tokens.or(model.manifest.sampling.max_tokens),
        stop: model.manifest.sampling.stop.clone(),
        history: system
            .map(|text| ChatMessage::text("system", text))
            .into_iter()
            .collect(),
    };
    let mut prompt = args.prompt.join(" ");
    let piped = !std::io::stdin().is_terminal();
    if piped {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading stdin")?;
        prompt = match (prompt.is_empty(), input.trim_end()) {
            (true, input) => input.to_string(),
            (false, "") => prompt,
            (false, input) => format!("{prompt}\n\n{input}"),
        };
    }
    if piped && prompt.trim().is_empty() {
        // Not a terminal, so no chat either: answering an empty message would be a guess.
        bail!("no prompt: give one as an argument, or pipe text on stdin (it was empty)");
    }
    if !prompt.is_empty() {
        return session.answer(&prompt).map(|_| 0);
    }
    interactive(&mut session)
}

fn interactive(session: &mut Session) -> Result<u8> {
    let system_messages = session.history.len();
    eprintln!(
        "chatting with {} (/clear forgets the conversation, /bye or Ctrl-D ends it)",
        session.engine.info().model
    );
    let stdin = std::io::stdin();
    loop {
        print!(">>> ");
        std::io::stdout().flush()?;
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            println!();
            return Ok(0);
        }
        match line.trim() {
            "" => continue,
            "/bye" | "/exit" => return Ok(0),
            "/clear" => {
                session.history.truncate(system_messages);
                continue;
            }
            _ => {}
        }
        match session.answer(line.trim_end()) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            // The conversation no longer fits: say so and let the user clear it.
            Err(error) => eprintln!("error: {error:#}"),
        }
    }
}

impl Session {
    /// The prompt tokens for `text` as the next user turn (or as is, raw), the user message,
    /// and whether the prompt opened the model's thinking.
    fn prompt_tokens(&self, text: &str) -> Result<(Vec<TokenId>, Option<ChatMessage>, bool)> {
        let engine = &self.engine;
        let (rendered, message) = match &self.template {
            None => (text.to_string(), None),
            Some(Err(error)) => bail!(
                "{}: {error}; use --raw to send the prompt as is",
                engine.info().model
            ),
            Some(Ok(template)) => {
                let message = ChatMessage::text("user", text);
                let mut messages = self.history.clone();
                messages.push(message.clone());
                let options = RenderOptions {
                    add_generation_prompt: true,
                    ..RenderOptions::default()
                };
                (template.render(&messages, &options)?, Some(message))
            }
        };
        let starts_with_bos = engine
            .info()
            .bos_token
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && rendered.starts_with(bos));
        let opened = message.is_some() && moat_openai::prompt_opens_thinking(&rendered);
        Ok((
            engine.tokenize(&rendered, !starts_with_bos, true)?,
            message,
            opened,
        ))
    }

    /// Streams the answer to stdout; `Some(exit code)` when interrupted.
    fn answer(&mut self, text: &str) -> Result<Option<u8>> {
        let (tokens, message, opened) = self.prompt_tokens(text)?;
        let n_ctx = self.engine.info().n_ctx;
        let prompt_tokens = u32::try_from(tokens.len()).unwrap_or(u32::MAX);
        if prompt_tokens >= n_ctx {
            // Only a conversation can be cleared; a single prompt (after the system messages the
            // history starts with) just does not fit.
            let (what, hint) = if self.history.iter().any(|m| m.role != "system") {
                ("the conversation", "; /clear starts over")
            } else {
                ("the prompt", "")
            };
            bail!("{what} is {prompt_tokens} tokens; the context holds {n_ctx} (--ctx){hint}");
        }
        let room = n_ctx - prompt_tokens;
        // A chat with a reasoning model reads its thinking out; a grammar (`--json`) then
        // holds what follows the thinking.
        let thinking = moat_openai::answer_thinking(
            self.thinks && message.is_some(),
            false,
            opened,
            self.grammar.as_ref(),
            self.thinking_budget,
        );
        let request = ValidGenerate {
            prompt: Prompt::Tokens(tokens),
            sampling: self.sampling.clone(),
            stop: StopConditions {
                max_tokens: self.max_tokens.unwrap_or(room).min(room),
                stop_strings: self.stop.clone(),
                ignore_eos: false,
            },
            logprobs: None,
            prompt_logprobs: false,
            deadline: None,
            grammar: self.grammar.clone(),
            thinking: thinking.clone(),
        };
        let mut reader = thinking.map(|_| moat_openai::ReasoningReader::new(opened));
        let mut out = Output::new(self.hide_thinking);
        let mut stream = self.engine.generate(request)?;
        while let Some(event) = stream.blocking_next() {
            if CANCEL.load(Ordering::SeqCst) {
                out.end();
                return Ok(Some(EXIT_INTERRUPTED));
            }
            let piece = match event.map_err(anyhow_engine)? {
                GenerationEvent::Token(token) => match &mut reader {
                    Some(reader) => reader.push(&token.text),
                    None => moat_openai::Split::answer(token.text),
                },
                GenerationEvent::Started { .. } | GenerationEvent::Finished { .. } => continue,
            };
            if out.write(&piece).is_err() {
                // stdout closed (`moat run m hi | head -c 10`): stop quietly.
                return Ok(Some(0));
            }
        }
        if let Some(reader) = &mut reader {
            // What the reader still held; stdout may be gone by now, which changes nothing.
            let _ = out.write(&reader.finish());
        }
        out.end();
        if let Some(message) = message {
            self.history.push(message);
            let mut answer = ChatMessage::text("assistant", out.answer);
            if !out.thinking.is_empty() {
                // The template decides whether the model sees it again.
                answer.extra.insert(
                    moat_openai::REASONING_CONTENT.into(),
                    serde_json::Value::String(out.thinking),
                );
            }
            self.history.push(answer);
        }
        Ok(None)
    }
}

/// Where an answer goes: the answer to stdout, a reasoning model's thinking to stderr (dimmed
/// on a terminal) unless hidden, both kept for the conversation's history.
struct Output {
    hide_thinking: bool,
    dim: bool,
    thinking: String,
    answer: String,
    /// Stderr is inside a dimmed stretch of thinking.
    dimmed: bool,
}

impl Output {
    fn new(hide_thinking: bool) -> Self {
        Self {
            hide_thinking,
            dim: std::io::stderr().is_terminal(),
            thinking: String::new(),
            answer: String::new(),
            dimmed: false,
        }
    }

    /// Writes a piece; an error when stdout is closed.
    fn write(&mut self, piece: &moat_openai::Split) -> std::io::Result<()> {
        if !piece.reasoning.is_empty() {
            self.thinking.push_str(&piece.reasoning);
            if !self.hide_thinking {
                let mut stderr = std::io::stderr();
                if self.dim && !self.dimmed {
                    let _ = write!(stderr, "\x1b[2m");
                    self.dimmed = true;
                }
                let _ = write!(stderr, "{}", piece.reasoning);
                let _ = stderr.flush();
            }
        }
        if !piece.content.is_empty() {
            self.end_thinking();
            self.answer.push_str(&piece.content);
            let mut stdout = std::io::stdout();
            write!(stdout, "{}", piece.content)?;
            stdout.flush()?;
        }
        Ok(())
    }

    /// Ends the thinking's stretch on stderr (with a newline, so the answer starts on a line
    /// of its own).
    fn end_thinking(&mut self) {
        if self.thinking.is_empty() || self.hide_thinking {
            return;
        }
        let mut stderr = std::io::stderr();
        if self.dimmed {
            let _ = write!(stderr, "\x1b[0m");
            self.dimmed = false;
        }
        if !self.answer.is_empty() || self.thinking.ends_with('\n') {
            return;
        }
        let _ = writeln!(stderr);
    }

    fn end(&mut self) {
        if self.answer.is_empty() {
            self.end_thinking();
        }
        println!();
    }
}

fn anyhow_engine(error: EngineError) -> anyhow::Error {
    anyhow::Error::new(error).context("generation failed")
}
