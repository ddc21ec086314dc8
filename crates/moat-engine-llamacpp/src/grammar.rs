//! Constrained sampling: a request's [`Grammar`] compiled into llama.cpp's grammar sampler, and
//! the choice of a token that the grammar allows.
//!
//! The choice follows llama.cpp's own sampler (`common_sampler_sample`): sample from the whole
//! vocabulary first and keep the token when the grammar allows it (one grammar check); only
//! when it does not, mask every token the grammar forbids (a pass over the vocabulary) and
//! sample again. With temperature alone this is the distribution of sampling from the masked
//! logits: a token t the grammar allows is drawn with probability p(t) at once, or after a
//! refused first draw with probability (1 - A) p(t) / A, where A is the allowed mass; together
//! p(t) / A. With top-k, top-p or min-p it is not quite: the first draw is cut to the likeliest
//! tokens of the whole vocabulary, the second to the likeliest allowed ones (llama.cpp and
//! llama-server sample the same way).
//!
//! A plain greedy request (temperature 0, no bias, no penalties) goes further: it checks the
//! most likely tokens one by one, most likely first, and takes the first the grammar allows,
//! which is the token greedy sampling from the masked logits picks (ties to the lower id, as
//! llama.cpp's greedy sampler). The whole-vocabulary mask (about 5 ms a token for SmolLM2's
//! 49,152 tokens here) is then needed only when none of the first few is allowed.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use moat_engine::{EngineError, Grammar, Thinking, TokenId};

use crate::sampling::most_likely;
use crate::schema_check;

/// The grammar's start rule, as `json_schema_to_grammar` names it.
const ROOT: &str = "root";
/// The start rule around a tagged value (checked not to be among the converter's rules,
/// which are named after the schema's properties and definitions).
const TAGGED_ROOT: &str = "moat-tagged-root";

/// The start rule of a grammar that lets the model think first, and the prefix of the rules
/// that read the thinking.
const THINKING_ROOT: &str = "moat-thinking-root";
const THOUGHT: &str = "moat-thought";

/// Most whitespace between the end of the thinking and what the grammar holds (Qwen3 writes
/// `</think>` and a blank line).
const GAP_AFTER_THINKING: usize = 4;

/// How many of the most likely tokens a plain greedy request checks one at a time before it
/// masks the whole vocabulary.
const GREEDY_CANDIDATES: usize = 32;

/// Turns a request's grammar into llama.cpp's sampler for it, so that a schema llama.cpp
/// cannot use is a clear error before the request is queued. `None`: a lazy grammar this
/// model cannot watch for (see [`Grammar::Tagged`]), so the model is free. With
/// [`Thinking::grammar_after`], a grammar that holds the answer from its first token lets the
/// model think first ([`after_thinking`]).
pub(crate) fn compile(
    model: &LlamaModel,
    grammar: &Grammar,
    thinking: Option<&Thinking>,
) -> Result<Option<LlamaSampler>, EngineError> {
    let thinking = thinking.filter(|thinking| thinking.grammar_after);
    let held = |gbnf: String, root: &str| match thinking {
        None => strict(model, &gbnf, root),
        Some(thinking) => strict(
            model,
            &after_thinking(&gbnf, root, thinking)?,
            THINKING_ROOT,
        ),
    };
    match grammar {
        Grammar::JsonSchema(schema) => held(schema_grammar(schema)?, ROOT).map(Some),
        Grammar::Choice(texts) => held(choice_grammar(texts)?, ROOT).map(Some),
        Grammar::Tagged {
            schema,
            open,
            close,
            many,
            lazy,
        } => {
            if !lazy {
                let gbnf = tagged_grammar(schema, open, close, *many)?;
                return held(gbnf, TAGGED_ROOT).map(Some);
            }
            // llama.cpp watches for a trigger token at no cost per token; a trigger word
            // would be searched for in the whole text so far at every token.
            let Some(trigger) = open.split_whitespace().next() else {
                return Ok(None);
            };
            let [token] = model.vocab().tokenize(trigger.as_bytes(), false, true)[..] else {
                return Ok(None);
            };
            let Ok(gbnf) = tagged_grammar(schema, open, close, *many) else {
                return Ok(None);
            };
            let no_words: [&[u8]; 0] = [];
            Ok(LlamaSampler::grammar_lazy(model, &gbnf, TAGGED_ROOT, no_words, &[token]).ok())
        }
    }
}

fn strict(model: &LlamaModel, gbnf: &str, root: &str) -> Result<LlamaSampler, EngineError> {
    LlamaSampler::grammar(model, gbnf, root).map_err(|error| {
        EngineError::InvalidGrammar(format!(
            "this grammar was refused by llama.cpp ({error}); \
             a smaller schema (fewer or shorter repetitions) may fit"
        ))
    })
}

/// The rules of a tagged value: the converter's, plus a start rule of our own around its
/// `root`.
fn tagged_grammar(
    schema: &str,
    open: &str,
    close: &str,
    many: bool,
) -> Result<String, EngineError> {
    let one = format!("{} {ROOT} {}", gbnf_literal(open), gbnf_literal(close));
    let more = if many {
        format!(" ({} {one})*", gbnf_literal("\n"))
    } else {
        String::new()
    };
    let rules = schema_grammar(schema)?;
    if rules.lines().any(|line| line.starts_with(TAGGED_ROOT)) {
        return Err(EngineError::InvalidGrammar(format!(
            "the schema gives a rule named {TAGGED_ROOT}, which moat needs for its own"
        )));
    }
    Ok(format!("{rules}\n{TAGGED_ROOT} ::= {one}{more}\n"))
}

/// `rules` (starting at `root`) after the model's thinking: free text up to the first
/// `thinking.close`, then a little whitespace. After a prompt that opened the thinking, the
/// thinking must end; otherwise the answer may start with `thinking.open` (and then must end
/// its thinking) or go straight to `root`.
fn after_thinking(rules: &str, root: &str, thinking: &Thinking) -> Result<String, EngineError> {
    if rules
        .lines()
        .any(|line| line.starts_with(THINKING_ROOT) || line.starts_with(THOUGHT))
    {
        return Err(EngineError::InvalidGrammar(format!(
            "the schema gives a rule named {THINKING_ROOT} or {THOUGHT}…, which moat needs for \
             its own"
        )));
    }
    let close: Vec<char> = thinking.close.chars().collect();
    if close.is_empty() || thinking.open.is_empty() {
        return Err(EngineError::InvalidGrammar(
            "thinking needs an opening and a closing tag".to_owned(),
        ));
    }
    let thought = format!("{THOUGHT}-0");
    let gap = format!("[ \\t\\n]{{0,{GAP_AFTER_THINKING}}}");
    let start = if thinking.opened {
        format!("{thought} {gap} {root}")
    } else {
        format!("({} {thought} {gap})? {root}", gbnf_literal(&thinking.open))
    };
    Ok(format!(
        "{rules}\n{THINKING_ROOT} ::= {start}\n{}",
        text_through(&close)
    ))
}

/// Rules `moat-thought-0` .. `-(n-1)` for any text up to and including the first `close` (of
/// n characters): rule i reads on after the first i characters of `close` were just seen,
/// like a string-search automaton; each alternative reads one character, and reading the
/// last one of `close` ends the text.
fn text_through(close: &[char]) -> String {
    // After the first `matched` characters of `close` and then `c`: how many now match.
    let advance = |matched: usize, c: char| {
        let mut seen: Vec<char> = close[..matched].to_vec();
        seen.push(c);
        (1..=seen.len())
            .rev()
            .find(|&n| seen[seen.len() - n..] == close[..n])
            .unwrap_or(0)
    };
    let mut distinct: Vec<char> = close.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    // A `-` goes last, where llama.cpp reads it as itself rather than a range.
    let mut class: String = distinct
        .iter()
        .filter(|&&c| c != '-')
        .map(|&c| gbnf_class_char(c))
        .collect();
    if distinct.contains(&'-') {
        class.push('-');
    }
    let mut rules = String::new();
    for matched in 0..close.len() {
        let mut alternatives = Vec::new();
        for &c in &distinct {
            let literal = gbnf_literal(&c.to_string());
            match advance(matched, c) {
                n if n == close.len() => alternatives.push(literal),
                0 => {}
                n => alternatives.push(format!("{literal} {THOUGHT}-{n}")),
            }
        }
        // Any other character, or one of close's that leads back to the start.
        let back_to_start: String = distinct
            .iter()
            .filter(|&&c| advance(matched, c) == 0)
            .map(|&c| gbnf_literal(&c.to_string()))
            .collect::<Vec<_>>()
            .join(" | ");
        alternatives.push(format!("[^{class}] {THOUGHT}-0"));
        if !back_to_start.is_empty() {
            alternatives.push(format!("({back_to_start}) {THOUGHT}-0"));
        }
        rules.push_str(&format!(
            "{THOUGHT}-{matched} ::= {}\n",
            alternatives.join(" | ")
        ));
    }
    rules
}

/// A character inside a GBNF character class (after its first position, so `^` is itself;
/// the caller puts `-` last), escaped as llama.cpp's grammar parser reads escapes.
fn gbnf_class_char(c: char) -> String {
    match c {
        '\\' | ']' | '[' => format!("\\{c}"),
        '\n' => "\\n".to_owned(),
        '\r' => "\\r".to_owned(),
        '\t' => "\\t".to_owned(),
        c => c.to_string(),
    }
}

/// The most texts a choice grammar takes, and the most bytes of all of them together.
/// Each text is a grammar stack while it is a candidate, and a refused first draw checks the
/// vocabulary against every stack: the count bounds that work.
const MAX_CHOICES: usize = 256;
const MAX_CHOICE_BYTES: usize = 64 * 1024;

/// One of `texts`, as a grammar: literals only, so nothing in them is grammar syntax.
fn choice_grammar(texts: &[String]) -> Result<String, EngineError> {
    let bytes: usize = texts.iter().map(String::len).sum();
    if texts.is_empty() || texts.len() > MAX_CHOICES || bytes > MAX_CHOICE_BYTES {
        return Err(EngineError::InvalidGrammar(format!(
            "a choice takes 1 to {MAX_CHOICES} texts of at most {MAX_CHOICE_BYTES} bytes in \
             all ({} texts, {bytes} bytes given)",
            texts.len()
        )));
    }
    if texts
        .iter()
        .any(|text| text.is_empty() || text.contains('\0'))
    {
        return Err(EngineError::InvalidGrammar(
            "a choice's texts must be non-empty and hold no NUL character".to_owned(),
        ));
    }
    let alternatives: Vec<String> = texts.iter().map(|text| gbnf_literal(text)).collect();
    Ok(format!("{ROOT} ::= {}\n", alternatives.join(" | ")))
}

/// A JSON Schema as llama.cpp grammar rules, its start rule named `root`.
fn schema_grammar(schema: &str) -> Result<String, EngineError> {
    // Shapes that crash or stall llama.cpp's converter never reach it.
    schema_check::check(schema).map_err(|problem| {
        EngineError::InvalidGrammar(format!("the JSON Schema is refused: {problem}"))
    })?;
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|_| {
        EngineError::InvalidGrammar(
            "llama.cpp cannot turn this JSON Schema into a grammar (a malformed schema, an \
             unresolvable $ref, or a feature it does not support)"
                .to_owned(),
        )
    })
}

/// Text as a GBNF string literal.
fn gbnf_literal(text: &str) -> String {
    let mut literal = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '\r' => literal.push_str("\\r"),
            '\t' => literal.push_str("\\t"),
            c => literal.push(c),
        }
    }
    literal.push('"');
    literal
}

/// Samples a token that `grammar` allows from the logits at batch index `at`, then advances
/// both samplers past it. `plain_greedy` says the chain is greedy on the raw logits
/// (`sampling::plain_greedy`). Fails when no token is allowed, or the grammar refuses the token
/// it allowed (neither happens with a grammar llama.cpp accepted).
pub(crate) fn sample_constrained(
    chain: &mut LlamaSampler,
    grammar: &mut LlamaSampler,
    context: &LlamaContext<'_>,
    at: i32,
    plain_greedy: bool,
) -> Result<TokenId, String> {
    let logits = context.get_logits_ith(at);
    let first = if plain_greedy {
        most_likely(logits, GREEDY_CANDIDATES)
            .into_iter()
            .filter_map(|index| i32::try_from(index).ok().map(LlamaToken))
            .find(|&token| allows(grammar, token))
    } else {
        let mut candidates = context.token_data_array_ith(at);
        candidates.apply_sampler(chain);
        candidates
            .selected_token()
            .filter(|&token| allows(grammar, token))
    };
    let token = match first {
        Some(token) => token,
        None => {
            let mut candidates = context.token_data_array_ith(at);
            candidates.apply_sampler(grammar);
            candidates.apply_sampler(chain);
            candidates
                .selected_token()
                .filter(|&token| allows(grammar, token))
                .ok_or_else(|| "the grammar allows no token here".to_owned())?
        }
    };
    chain.accept(token);
    grammar
        .try_accept(token)
        .map_err(|error| format!("the grammar refused token {}: {error}", token.0))?;
    Ok(token.0)
}

/// Takes `token` without sampling it (a forced token): advances the chain (the penalties'
/// history) and the grammar past it. False, with nothing changed, when the grammar does not
/// allow it.
pub(crate) fn force(
    chain: &mut LlamaSampler,
    grammar: Option<&mut LlamaSampler>,
    token: TokenId,
) -> bool {
    let token = LlamaToken(token);
    if let Some(grammar) = grammar {
        if !allows(grammar, token) || grammar.try_accept(token).is_err() {
            return false;
        }
    }
    chain.accept(token);
    true
}

/// Whether the grammar, in its present state, allows `token` next: it sets the logit of a
/// token it forbids to -inf, so the candidate starts at 0.
fn allows(grammar: &mut LlamaSampler, token: LlamaToken) -> bool {
    let mut single = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 0.0, 0.0)], false);
    single.apply_sampler(grammar);
    single
        .data
        .first()
        .is_some_and(|data| data.logit() != f32::NEG_INFINITY)
}
