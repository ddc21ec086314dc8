//! `moat keys create|ls|revoke`: API keys for `moat serve`. The secret is printed once, at
//! creation, and only its hash is kept; once any key exists the server asks every API request
//! for one. Keys work from this command while the server runs: it reads them per request.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use moat_auth::{Budget, BudgetPeriod, Key, Limits, NewKey, Scopes, Secret, UsageFilter};
use serde_json::json;

use crate::trust::{open_auth, settings};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown this once only), or, with --secret-stdin,
    /// store a secret made on another node so that a fleet accepts one key.
    Create(CreateArgs),
    /// List the keys: prefix, name, scopes, limits, whether revoked, usage.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Revoke a key by its prefix (as listed) or its name; requests with it get 401.
    Revoke(RevokeArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// A name for listings and the audit log.
    #[arg(long, default_value = "default")]
    name: String,
    /// The models (names or aliases) the key may use, comma-separated, or `*` for all.
    #[arg(long, default_value = "*", value_name = "a,b|*")]
    models: String,
    /// May use the admin routes (metrics).
    #[arg(long)]
    admin: bool,
    /// Requests per minute.
    #[arg(long, value_name = "N")]
    rpm: Option<u32>,
    /// Tokens (prompt + max_tokens reserved, then the real count) per minute.
    #[arg(long, value_name = "N")]
    tpm: Option<u64>,
    /// Tokens per UTC day.
    #[arg(long, value_name = "N", conflicts_with = "monthly_tokens")]
    daily_tokens: Option<u64>,
    /// Tokens per UTC calendar month.
    #[arg(long, value_name = "N")]
    monthly_tokens: Option<u64>,
    /// The guard policy (`[guard.policies.NAME]` in moat.toml) for this key's requests.
    #[arg(long, value_name = "NAME")]
    guard: Option<String>,
    /// Keep this key's requests off external upstreams (closed APIs) whatever alias they use.
    #[arg(long)]
    private: bool,
    /// The moat.toml that defines the guard policies (default: ./moat.toml, else
    /// $MOAT_HOME/moat.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Read the secret from stdin instead of drawing a new one: a secret that `moat keys
    /// create` printed on another node, so that every node behind a gateway accepts the same
    /// key. Nothing is printed back.
    #[arg(long)]
    secret_stdin: bool,
    /// Print the key and its secret as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LsArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct RevokeArgs {
    /// The key's prefix (`moat-sk-…` as listed) or name.
    key: String,
}

pub fn run(home: &Path, command: KeysCommand) -> Result<u8> {
    match command {
        KeysCommand::Create(args) => create(home, args),
        KeysCommand::Ls(args) => ls(home, args),
        KeysCommand::Revoke(args) => revoke(home, args),
    }
}

fn scopes(models: &str, admin: bool) -> Scopes {
    let models = models
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(str::to_owned)
        .collect();
    Scopes { models, admin }
}

fn create(home: &Path, args: CreateArgs) -> Result<u8> {
    if let Some(guard) = &args.guard {
        let defined = settings(home, args.config.as_deref())?;
        if !defined.guard.policies.contains_key(guard) {
            bail!("no guard policy {guard:?}: define [guard.policies.{guard}] in moat.toml first");
        }
    }
    let budget = match (args.daily_tokens, args.monthly_tokens) {
        (Some(tokens), _) => Some(Budget {
            tokens,
            period: BudgetPeriod::Day,
        }),
        (None, Some(tokens)) => Some(Budget {
            tokens,
            period: BudgetPeriod::Month,
        }),
        (None, None) => None,
    };
    let new = NewKey {
        name: args.name,
        scopes: scopes(&args.models, args.admin),
        limits: Limits {
            requests_per_minute: args.rpm,
            tokens_per_minute: args.tpm,
            budget,
        },
        guard: args.guard.clone(),
        private: args.private,
    };
    let auth = open_auth(home)?;
    if args.secret_stdin {
        let mut text = String::new();
        // A secret is 51 bytes; a little more allows for a newline and stray spaces, and a
        // larger input is a mistake (a wrong file), not a key.
        std::io::stdin()
            .take(256)
            .read_to_string(&mut text)
            .context("reading the secret from stdin")?;
        let secret = Secret::from_text(&text).context("the secret on stdin")?;
        let key = auth.import_key(&new, &secret).context("storing the key")?;
        if args.json {
            println!("{}", key_json(&key, None));
        } else {
            eprintln!(
                "stored key {} ({}) from the secret on stdin",
                key.prefix, key.name
            );
        }
        return Ok(0);
    }
    let created = auth.create_key(&new).context("creating the key")?;
    if args.json {
        let mut value = key_json(&created.key, None);
        value["secret"] = json!(created.secret.expose());
        println!("{value}");
    } else {
        println!("{}", created.secret.expose());
        eprintln!(
            "created key {} ({}): the secret above is shown this once only",
            created.key.prefix, created.key.name
        );
    }
    Ok(0)
}

fn limits_text(limits: &Limits) -> String {
    let mut parts = Vec::new();
    if let Some(rpm) = limits.requests_per_minute {
        parts.push(format!("{rpm} req/min"));
    }
    if let Some(tpm) = limits.tokens_per_minute {
        parts.push(format!("{tpm} tok/min"));
    }
    if let Some(budget) = limits.budget {
        let period = match budget.period {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Month => "month",
        };
        parts.push(format!("{} tok/{period}", budget.tokens));
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

/// Requests, prompt and completion tokens over the key's whole history.
type Totals = (u64, u64, u64);

fn key_json(key: &Key, usage: Option<Totals>) -> serde_json::Value {
    let mut value = json!({
        "prefix": key.prefix,
        "name": key.name,
        "models": key.scopes.models,
        "admin": key.scopes.admin,
        "limits": key.limits,
        "guard": key.guard,
        "private": key.private,
        "created_ms": key.created_ms,
        "revoked": key.revoked_ms.is_some(),
        "revoked_ms": key.revoked_ms,
    });
    if let Some((requests, prompt, completion)) = usage {
        value["usage"] = json!({
            "requests": requests,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        });
    }
    value
}

fn ls(home: &Path, args: LsArgs) -> Result<u8> {
    let auth = open_auth(home)?;
    let keys = auth.list_keys()?;
    let mut rows = Vec::new();
    for key in &keys {
        let usage = auth.usage(&UsageFilter {
            key: Some(key.id),
            ..UsageFilter::default()
        })?;
        let totals = usage.iter().fold((0, 0, 0), |(r, p, c), row| {
            (
                r + row.requests,
                p + row.prompt_tokens,
                c + row.completion_tokens,
            )
        });
        rows.push((key, totals));
    }
    if args.json {
        let all: Vec<_> = rows
            .iter()
            .map(|(key, totals)| key_json(key, Some(*totals)))
            .collect();
        println!("{}", serde_json::Value::Array(all));
        return Ok(0);
    }
    if rows.is_empty() {
        eprintln!("no keys: the server answers without one on loopback (`moat keys create`)");
        return Ok(0);
    }
    println!(
        "{:<18} {:<16} {:<20} {:<5} {:<28} {:<7} {:<8} USAGE",
        "PREFIX", "NAME", "MODELS", "ADMIN", "LIMITS", "REVOKED", "GUARD"
    );
    for (key, (requests, prompt, completion)) in rows {
        println!(
            "{:<18} {:<16} {:<20} {:<5} {:<28} {:<7} {:<8} {requests} req, {} tok",
            key.prefix,
            key.name,
            key.scopes.models.join(","),
            if key.scopes.admin { "yes" } else { "no" },
            limits_text(&key.limits),
            if key.revoked_ms.is_some() {
                "yes"
            } else {
                "no"
            },
            key.guard.as_deref().unwrap_or("-"),
            prompt + completion,
        );
    }
    Ok(0)
}

fn revoke(home: &Path, args: RevokeArgs) -> Result<u8> {
    let auth = open_auth(home)?;
    let key = auth.revoke_key(&args.key)?;
    println!("revoked {} ({})", key.prefix, key.name);
    Ok(0)
}
