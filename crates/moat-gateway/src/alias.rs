//! One alias of a gateway seen as a [`Provider`], so a gateway can sit wherever a provider is
//! expected (under a guard or an eval decorator, or as a target of another router).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::provider::{Provider, ProviderError, ProviderReply};
use crate::{CallContext, Gateway, GatewayError};

/// A gateway alias bound to one caller context.
#[derive(Debug, Clone)]
pub struct AliasProvider {
    gateway: Arc<Gateway>,
    alias: String,
    context: CallContext,
}

impl AliasProvider {
    /// The provider answering `alias` through `gateway` on behalf of `context`.
    pub fn new(gateway: Arc<Gateway>, alias: impl Into<String>, context: CallContext) -> Self {
        Self {
            gateway,
            alias: alias.into(),
            context,
        }
    }
}

/// A gateway failure as a provider failure: the retry classification is kept (an overloaded or
/// unreachable alias is retryable, a rejected request is not).
fn to_provider_error(err: GatewayError) -> ProviderError {
    match err {
        GatewayError::Provider { source, .. } => source,
        GatewayError::NoTargetAvailable { .. } => ProviderError::Overloaded { retry_after: None },
        other => ProviderError::Rejected {
            message: other.to_string(),
        },
    }
}

impl Provider for AliasProvider {
    fn chat(&self, body: Value) -> BoxFuture<'_, Result<ProviderReply, ProviderError>> {
        Box::pin(async move {
            let reply = self.gateway.chat(&self.context, &self.alias, body).await;
            reply.map(|reply| reply.reply).map_err(to_provider_error)
        })
    }

    fn embeddings(&self, body: Value) -> BoxFuture<'_, Result<Value, ProviderError>> {
        Box::pin(async move {
            let reply = self
                .gateway
                .embeddings(&self.context, &self.alias, body)
                .await;
            reply.map_err(to_provider_error)
        })
    }

    fn health(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            if self.gateway.aliases().contains(&self.alias) {
                Ok(())
            } else {
                Err(ProviderError::Failed {
                    message: format!("alias {:?} is not configured", self.alias),
                })
            }
        })
    }

    /// Conservatively external when the alias could reach an external target: the privacy rule
    /// of an outer router then keeps private callers off it.
    fn is_external(&self) -> bool {
        self.gateway.may_reach_external(&self.alias, &self.context)
    }
}
